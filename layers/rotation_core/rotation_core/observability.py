"""Logging, metrics and (optional) tracing, with Powertools for AWS Lambda.

Logs are JSON with the ClientRequestToken as correlation id; metrics are CloudWatch EMF
(one success or failure count per step, and the step's duration, by engine and step).
Nothing here ever receives a secret value. The tracer is imported only when tracing is
turned on (POWERTOOLS_TRACE_DISABLED=false), so it costs nothing otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from rotation_core import settings

logger = Logger(service=os.environ.get(settings.POWERTOOLS_SERVICE_NAME, settings.DEFAULT_SERVICE_NAME))
metrics = Metrics(
    namespace=os.environ.get(settings.POWERTOOLS_METRICS_NAMESPACE, settings.DEFAULT_METRICS_NAMESPACE),
    service=os.environ.get(settings.POWERTOOLS_SERVICE_NAME, settings.DEFAULT_SERVICE_NAME),
)

_tracer: list[Any] = []  # [Tracer] once created, [None] when the X-Ray SDK is missing


def _tracing_enabled() -> bool:
    return os.environ.get(settings.POWERTOOLS_TRACE_DISABLED, "true").strip().lower() in ("false", "0")


@contextlib.contextmanager
def traced(step: str, engine: str) -> Iterator[None]:
    """A subsegment per step when tracing is on; nothing at all when it is off."""
    if not _tracing_enabled():
        yield
        return
    if not _tracer:
        try:
            from aws_lambda_powertools import Tracer  # deferred: pulls in the X-Ray SDK

            _tracer.append(Tracer())
        except ImportError:
            # The layer does not bundle the X-Ray SDK (it would bring its own botocore):
            # add aws-xray-sdk to the function to trace.
            logger.warning("tracing is on but the X-Ray SDK is not installed: steps are not traced")
            _tracer.append(None)
    if _tracer[0] is None:
        yield
        return
    with _tracer[0].provider.in_subsegment(f"## {step}") as subsegment:
        subsegment.put_annotation("step", step)
        subsegment.put_annotation("engine", engine)
        yield


def record_step(engine: str, step: str, ok: bool, duration_ms: float) -> None:
    metrics.add_dimension(name="engine", value=engine)
    metrics.add_dimension(name="step", value=step)
    metrics.add_metric(name="StepSucceeded" if ok else "StepFailed", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="StepDuration", unit=MetricUnit.Milliseconds, value=round(duration_ms, 3))
    try:
        metrics.flush_metrics()
    finally:
        metrics.clear_metrics()  # flush skips this when metrics are disabled
