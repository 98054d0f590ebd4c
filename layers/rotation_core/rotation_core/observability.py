"""Logging, metrics and (optional) tracing, with Powertools for AWS Lambda.

Logs are JSON with the ClientRequestToken as correlation id; metrics are CloudWatch EMF
(one success or failure count per step, the step's duration and its throttled Secrets
Manager calls, by engine and step).
Nothing here ever receives a secret value. The tracer is imported only when tracing is
turned on (POWERTOOLS_TRACE_DISABLED=false), so it costs nothing otherwise.

The AWS SDK's loggers are capped at WARNING, whatever level the function logs at. At DEBUG,
botocore logs every request and response body: "Making request for ... with params"
(botocore.endpoint) and "Response body" (botocore.parsers), that is every GetSecretValue
reply (the current, pending, master and admin secrets) and every PutSecretValue request
(the new password, the RotationToken). Lambda's runtime sets the ROOT logger's level from
AWS_LAMBDA_LOG_LEVEL (awslambdaric bootstrap, before it imports the handler) and botocore
leaves its own loggers at NOTSET, so without the cap a DEBUG function would log them all.
"""

from __future__ import annotations

import contextlib
import logging
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

#: The loggers of the AWS SDK and its HTTP stack, and the most they may log.
LIBRARY_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
LIBRARY_LOG_LEVEL = logging.WARNING


def cap_library_loggers() -> None:
    """Raise the SDK's loggers to WARNING (or keep a higher level already set), and any of
    their child loggers that has a level of its own below it.

    The level is set on the named loggers themselves, so neither the root logger's level
    (AWS_LAMBDA_LOG_LEVEL, logging.basicConfig) nor POWERTOOLS_LOG_LEVEL lowers it: a logger
    with a level of its own never looks at its parents'. botocore, boto3, s3transfer and
    urllib3 set no level on any logger of theirs; only their opt-in helpers do
    (boto3.set_stream_logger, botocore's Session.set_stream_logger and set_file_logger,
    urllib3.add_stderr_logger), which this project never calls. Imports nothing: the
    loggers exist before the libraries do, and the libraries only ever get them by name.
    """
    prefixes = tuple(f"{name}." for name in LIBRARY_LOGGERS)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        if library.level < LIBRARY_LOG_LEVEL:  # NOTSET (0) included
            library.setLevel(LIBRARY_LOG_LEVEL)
    for name, child in list(logging.Logger.manager.loggerDict.items()):
        if (
            name.startswith(prefixes)
            and isinstance(child, logging.Logger)
            and logging.NOTSET < child.level < LIBRARY_LOG_LEVEL
        ):
            child.setLevel(LIBRARY_LOG_LEVEL)


cap_library_loggers()

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


def record_step(engine: str, step: str, ok: bool, duration_ms: float, throttled: int = 0) -> None:
    """One success or failure count, the step's duration, and how many of its Secrets
    Manager calls were throttled and retried (ThrottledCalls: a fleet meeting its quotas)."""
    metrics.add_dimension(name="engine", value=engine)
    metrics.add_dimension(name="step", value=step)
    metrics.add_metric(name="StepSucceeded" if ok else "StepFailed", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="StepDuration", unit=MetricUnit.Milliseconds, value=round(duration_ms, 3))
    if throttled:
        metrics.add_metric(name="ThrottledCalls", unit=MetricUnit.Count, value=throttled)
    try:
        metrics.flush_metrics()
    finally:
        metrics.clear_metrics()  # flush skips this when metrics are disabled
