"""The road back from production: the prediction log, its metrics and drift, and the monitor service.

The served model's requests and responses arrive as KServe payload-logger CloudEvents; the monitor pairs them,
stores one row per image, exports Prometheus metrics with drift against the model's Test-step baseline, and serves
the review page.

- :mod:`alpr.monitoring.store`: :class:`~alpr.monitoring.store.PredictionLog`, the prediction log in the metadata
  store (``predictions``, ``corrections``, ``model_baselines``) and sampled images in blob storage; the records
  (:class:`~alpr.monitoring.store.PredictionRecord`, ...), trends, corrections and the retention purge.
- :mod:`alpr.monitoring.baseline`: the served model's baseline (valid-plate share, score histogram) as the Test
  step records it, and the population stability index the score drift is measured with.
- :mod:`alpr.monitoring.events`: KServe's payload-logger CloudEvents: their headers and types, parsing, pairing a
  request with its response by event id, decoding V1/V2 bodies into prediction records.
- :mod:`alpr.monitoring.metrics`: the Prometheus metrics (``alpr_monitor_*``) in their own registry, with the
  drift gauges.
- :mod:`alpr.monitoring.app`: :func:`~alpr.monitoring.app.create_app`, the FastAPI service (``POST /events``,
  ``GET /metrics``, ``GET /healthz``, the review page) and :class:`~alpr.monitoring.app.MonitorConfig`.
- :mod:`alpr.monitoring.review`: the review page (upload, recent readings, corrections, trends; Jinja2 templates
  in ``templates/``).
- :mod:`alpr.monitoring.plots`: the review page's trend plots (valid share, mean score, traffic per hour) as SVG.
- :mod:`alpr.monitoring.cli`: ``alpr monitor`` (also ``python -m alpr.monitoring``): the service under uvicorn.

Nothing here imports alpr.serving: the monitor talks to the model server over HTTP only.
"""
