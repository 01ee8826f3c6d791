"""Calls to the Kubernetes API with one timeout and one retry policy, shared by :mod:`alpr.kubeflow.kserve` and
:mod:`alpr.kubeflow.trainjob`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: HTTP statuses of the Kubernetes API worth retrying: throttled, or the API server/webhook briefly unavailable.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Timeout of one Kubernetes API request, in seconds.
API_TIMEOUT_S = 30


def retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is transient: an ``ApiException`` with a status in :data:`RETRY_STATUSES`, or a connection
    failure (urllib3's ``HTTPError``: refused, reset, timed out; or Python's ``ConnectionError``)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        return exc.status in RETRY_STATUSES
    return isinstance(exc, (HTTPError, ConnectionError))


def call(fn: Callable[..., Any], *args: Any, attempts: int, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs, _request_timeout=API_TIMEOUT_S)``, retried with exponential back-off (0.5 s, 1 s,
    2 s, ... at most 8 s; tenacity) on a :func:`retryable` failure, at most ``attempts`` times; the last failure is
    raised."""
    from tenacity import Retrying, before_sleep_log, retry_if_exception, stop_after_attempt, wait_exponential

    for attempt in Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.5, max=8),
        retry=retry_if_exception(retryable),
        reraise=True,
        before_sleep=before_sleep_log(log, logging.WARNING),
    ):
        with attempt:
            return fn(*args, **kwargs, _request_timeout=API_TIMEOUT_S)
    raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover
