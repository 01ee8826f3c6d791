"""Where a reading's time goes: seconds per named stage, summed over one call.

:class:`PlateReader.read <alpr.model.inference.PlateReader.read>` and both detectors' ``run`` take an optional
:class:`StageClock` and add to it; the model server adds the request's own stages and publishes the sums as the
Prometheus histogram :data:`STAGE_METRIC` (:mod:`alpr.serving.server`), which ``make bench-serve`` reads back with
:func:`stage_totals` to print each stage's share of a request (docs/serving.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

#: Decoding the request's JPEG/PNG files to arrays (the server's codec).
DECODE: Final = "decode"
#: Resizing, padding and normalising the frames for the first network pass (and batching them).
PREPROCESS: Final = "preprocess"
#: The first network pass (backbone, neck, head) over the frames.
NETWORK: Final = "network"
#: Turning the first pass's outputs into boxes: score threshold, top-k, box decoding, NMS, rescaling.
POSTPROCESS: Final = "postprocess"
#: The zoomed pass: cutting the plates' crops and reading them through the reader network (all of its own
#: pre-processing, network and decoding), then merging them into the frame's detections.
ZOOM: Final = "zoom"
#: The reading rules of PLATE_SPEC.md (:func:`alpr.model.reading.read_arrays`): detections to plate texts.
READING: Final = "reading"
#: Encoding the readings of a V2 response as JSON strings (a V1 response is encoded by kserve after the model).
ENCODE: Final = "encode"
#: Every stage, in the order a request passes them.
STAGES: Final = (DECODE, PREPROCESS, NETWORK, POSTPROCESS, ZOOM, READING, ENCODE)
#: The model server's Prometheus histogram of each request's seconds per stage (labels ``model_name``, ``stage``).
STAGE_METRIC: Final = "alpr_stage_seconds"


def stage_totals(metrics_text: str, model_name: str | None = None) -> dict[str, tuple[float, float]]:
    """``{stage: (sum of seconds, count of requests)}`` of the :data:`STAGE_METRIC` histogram in a Prometheus text
    exposition (a model server's ``/metrics``), parsed with prometheus_client's parser.

    Args:
        metrics_text: the exposition text.
        model_name: count only this model's series; None: sum over every model.

    Returns:
        one entry per stage that has a series (empty when the histogram is absent).

    Raises:
        ValueError: the text is not a Prometheus exposition (prometheus_client's parser).
    """
    from prometheus_client.parser import text_string_to_metric_families

    kinds = {STAGE_METRIC + "_sum": 0, STAGE_METRIC + "_count": 1}
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != STAGE_METRIC:
            continue
        for sample in family.samples:
            kind = kinds.get(sample.name)
            if kind is not None and model_name in (None, sample.labels.get("model_name")):
                totals.setdefault(sample.labels["stage"], [0.0, 0.0])[kind] += sample.value
    return {stage: (v[0], v[1]) for stage, v in totals.items()}


class StageClock:
    """Seconds per stage (:data:`STAGES`), summed over everything timed with it (``time.perf_counter``).

    Not thread-safe: one clock per request (the server gives each request its own).
    """

    def __init__(self) -> None:
        #: ``{stage: seconds}``, the stages timed so far.
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time the ``with`` block takes to ``name`` (also when it raises).

        Raises:
            ValueError: ``name`` is not one of :data:`STAGES`.
        """
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def timed(clock: StageClock | None, name: str) -> Iterator[None]:
    """``clock.stage(name)``, or nothing when ``clock`` is None (the callers' default: no timing)."""
    if clock is None:
        yield
    else:
        with clock.stage(name):
            yield


def run_groups(n: int, batched: bool) -> list[list[int]]:
    """The network calls of one detector ``run`` over ``n`` images: the indexes each call takes.

    Both back ends' ``run`` (:class:`~alpr.model.onnx_detector.OnnxDetector`,
    :class:`~alpr.model.torch_detector.TorchDetector`) group their images this way, so their stages compare.

    Returns:
        ``[[0, ..., n-1]]`` (one batch) when ``batched`` and ``n > 1``; else ``[[0], [1], ...]`` (one call per image;
        ``[]`` for ``n == 0``).
    """
    return [list(range(n))] if batched and n > 1 else [[i] for i in range(n)]
