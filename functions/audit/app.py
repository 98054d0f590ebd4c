"""The scheduled fleet audit: every secret of this account and Region, once a day.

EventBridge Scheduler invokes it (template.yaml, EnableAudit=true). It audits with the
policy in AUDIT_POLICY (JSON: the options of a policy file, docs/audit.md), publishes one
CloudWatch metric per check with Powertools (EMF in its log stream), HighSeverityFindings
(what the stack's alarm watches) and SecretsAudited, and sends a summary to the stack's
notification topic (NOTIFICATION_TOPIC_ARN) when there are findings at or above
AUDIT_NOTIFY_ON. Read-only: ListSecrets, GetResourcePolicy, DescribeSecret (replicas only),
lambda GetFunctionConfiguration and GetPolicy; never GetSecretValue. The check logic is
fleet_audit, beside this file, which `bin/rotate audit` runs too.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from fleet_audit import CHECKS, Policy, Report, Severity, Target, audit, from_text
from fleet_audit.report import notification
from rotation_core import settings
from rotation_core.observability import cap_library_loggers

SERVICE = "secrets-audit"
AUDIT_POLICY = "AUDIT_POLICY"
AUDIT_NOTIFY_ON = "AUDIT_NOTIFY_ON"
NOTIFICATION_TOPIC_ARN = "NOTIFICATION_TOPIC_ARN"
HIGH_METRIC = "HighSeverityFindings"

logger = Logger(service=os.environ.get(settings.POWERTOOLS_SERVICE_NAME, SERVICE))
metrics = Metrics(
    namespace=os.environ.get(settings.POWERTOOLS_METRICS_NAMESPACE, settings.DEFAULT_METRICS_NAMESPACE),
    service=os.environ.get(settings.POWERTOOLS_SERVICE_NAME, SERVICE),
)
cap_library_loggers()
_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    """One client per service and execution environment, with adaptive retries on throttling."""
    if service not in _clients:
        import boto3
        from botocore.config import Config

        endpoint = settings.secrets_manager_endpoint(os.environ) if service == "secretsmanager" else None
        config = Config(retries={"mode": "adaptive", "max_attempts": 10}, connect_timeout=5, read_timeout=15)
        _clients[service] = boto3.client(service, endpoint_url=endpoint, config=config)  # type: ignore[call-overload]
    return _clients[service]


def load_policy(env: dict[str, str] | os._Environ[str]) -> Policy:
    """AUDIT_POLICY (JSON, empty: the defaults); AUDIT_NOTIFY_ON overrides its notify_on."""
    policy = from_text(env.get(AUDIT_POLICY, ""), AUDIT_POLICY)
    notify_on = env.get(AUDIT_NOTIFY_ON, "").strip()
    if notify_on:
        policy = policy.with_overrides(notify_on=Severity.parse(notify_on, AUDIT_NOTIFY_ON))
    return policy


def publish_metrics(report: Report) -> dict[str, int]:
    """One count per check (zeros too, so that every graph and alarm has its data point)."""
    values = {CHECKS[check].metric: count for check, count in report.by_check().items()}
    values[HIGH_METRIC] = len(report.at_or_above(Severity.HIGH))
    values["SecretsAudited"] = report.secrets
    values["RegionsNotAudited"] = len(report.errors)
    try:
        for name, value in values.items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        metrics.flush_metrics()
    finally:
        metrics.clear_metrics()  # flush skips this when metrics are disabled
    return values


def notify(report: Report, severity: Severity) -> bool:
    topic = os.environ.get(NOTIFICATION_TOPIC_ARN, "").strip()
    message = notification(report, severity)
    if not topic or message is None:
        return False
    subject, body = message
    client("sns").publish(TopicArn=topic, Subject=subject, Message=body)
    return True


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    del event, context  # the schedule sends nothing the audit needs
    policy = load_policy(os.environ)
    region = os.environ.get("AWS_REGION") or client("secretsmanager").meta.region_name
    report = audit([Target(region, client("secretsmanager"), client("lambda"))], policy)
    values = publish_metrics(report)
    notified = notify(report, policy.notify_on)
    summary = report.summary()
    logger.info(report.summary_line(), extra={"audit": {**summary, "notified": notified}})
    if report.errors:
        logger.error("not audited", extra={"errors": summary["errors"]})
    return {"summary": summary, "metrics": values, "notified": notified}
