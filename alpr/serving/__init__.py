"""Serving: the plate reader behind KServe's V1 and V2 protocols, and reading from a shell.

- :mod:`alpr.serving.codec` -- request payloads to images (V1/V2 bodies, base64 JPEG/PNG, size limits, clear errors).
- :mod:`alpr.serving.server` -- the ``kserve.Model`` (``alpr``) and its ``ModelServer`` command line.
- :mod:`alpr.serving.predict` -- read image files with a model directory, storage URI or ``latest``.
- :mod:`alpr.serving.export` -- ``alpr export-onnx``: the ONNX export for a model directory written without one.

``python -m alpr.serving`` starts the server (:mod:`alpr.serving.__main__`).
"""
