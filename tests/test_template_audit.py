"""template.yaml's fleet audit (EnableAudit=true), checked as tests/test_template.py checks the
rotation functions: on what CloudFormation would deploy for a set of parameters, every
resource, every statement of both roles, the schedule, the alarms and the log group."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_template import (
    ACCOUNT,
    AUDIT_FUNCTION,
    AUDIT_RESOURCES,
    CHECKOV_SUPPRESSIONS,
    LOGS_KEY,
    PARTITION,
    PROJECT_ROOT,
    REGION,
    SECURITY_GROUPS,
    STACK,
    SUBNETS,
    TEMPLATE_PATH,
    TOPIC_KEY,
    ParameterRejected,
    Stack,
    as_list,
    grants,
    load_template,
    normalized,
    statements_of,
    topic_id,
    transform,
)

ON = {"EnableAudit": "true"}
SECRETS = f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:*"
FUNCTIONS = f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:*"
AUDIT_ARN = f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{STACK}-audit"


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def cfn_template(sam_template: dict[str, Any]) -> dict[str, Any]:
    return transform(sam_template)


def app_constants() -> Any:
    """The names the function reads and publishes (functions/audit/app.py), without importing
    the handler's module state: read from the source."""
    source = (PROJECT_ROOT / "functions" / "audit" / "app.py").read_text(encoding="utf-8")
    return dict(re.findall(r'^([A-Z_]+) = "([^"]+)"$', source, re.MULTILINE))


def test_off_by_default_and_one_parameter_turns_it_on(cfn_template: dict[str, Any]) -> None:
    assert set(cfn_template["Resources"]) >= AUDIT_RESOURCES
    assert not AUDIT_RESOURCES & set(Stack(cfn_template, {}).resources)
    assert set(Stack(cfn_template, ON).resources) >= AUDIT_RESOURCES
    assert "AuditFunctionArn" not in Stack(cfn_template, {}).outputs
    assert Stack(cfn_template, ON).outputs["AuditFunctionArn"] == f"{{GetAtt:{AUDIT_FUNCTION}.Arn}}"
    with pytest.raises(ParameterRejected):
        Stack(cfn_template, {"EnableAudit": "yes"})


def test_parameters(sam_template: dict[str, Any]) -> None:
    from fleet_audit import Severity, from_text

    parameters = sam_template["Parameters"]
    assert parameters["EnableAudit"]["Default"] == "false"
    assert parameters["AuditNotifyOn"]["Default"] == "high"
    assert sorted(parameters["AuditNotifyOn"]["AllowedValues"]) == sorted(s.label for s in Severity)
    from_text(parameters["AuditPolicy"]["Default"], "AuditPolicy")  # the default is a valid policy
    pattern = parameters["AuditScheduleExpression"]["AllowedPattern"]
    assert re.fullmatch(pattern, parameters["AuditScheduleExpression"]["Default"])
    for good in ("cron(0 6 * * ? *)", "rate(1 day)", "rate(12 hours)", "cron(0 2 ? * MON *)"):
        assert re.fullmatch(pattern, good), good
    for bad in ("daily", "rate(0 days)", "cron(0 6 * *)", "rate(5 minutes)"):
        assert not re.fullmatch(pattern, bad), bad


def test_the_function(cfn_template: dict[str, Any]) -> None:
    for overrides in (ON, {**ON, "SubnetIds": ",".join(SUBNETS), "SecurityGroupIds": ",".join(SECURITY_GROUPS)}):
        stack = Stack(cfn_template, overrides)
        properties = stack.resources[AUDIT_FUNCTION]["Properties"]
        (layer_id,) = stack.of_type("AWS::Lambda::LayerVersion")
        assert properties["FunctionName"] == f"{STACK}-audit"
        assert properties["Runtime"] == "python3.13"
        assert properties["Handler"] == "app.lambda_handler"
        assert properties["Layers"] == [f"{{Ref:{layer_id}}}"], "Powertools and rotation_core from the layer"
        assert properties["Timeout"] == 900 and properties["MemorySize"] == 256
        assert properties["Role"] == "{GetAtt:AuditFunctionRole.Arn}"
        assert "VpcConfig" not in properties, "AWS APIs only: never in the VPC"
        variables = properties["Environment"]["Variables"]
        names = app_constants()
        assert variables["POWERTOOLS_SERVICE_NAME"] == names["SERVICE"] == "secrets-audit"
        assert variables[names["NOTIFICATION_TOPIC_ARN"]] == f"{{Ref:{topic_id(stack)}}}"
        assert variables[names["AUDIT_POLICY"]] == "{}"
        assert variables[names["AUDIT_NOTIFY_ON"]] == "high"
    chosen = Stack(cfn_template, {**ON, "AuditPolicy": '{"max_age": "90d"}', "AuditNotifyOn": "critical"})
    variables = chosen.resources[AUDIT_FUNCTION]["Properties"]["Environment"]["Variables"]
    assert (variables["AUDIT_POLICY"], variables["AUDIT_NOTIFY_ON"]) == ('{"max_age": "90d"}', "critical")
    traced = Stack(cfn_template, {**ON, "EnableTracing": "true"}).resources[AUDIT_FUNCTION]["Properties"]
    assert traced["TracingConfig"] == {"Mode": "Active"}


def expected_role(stack: Stack) -> dict[str, dict[str, Any]]:
    allow = {"Effect": "Allow"}
    key = "{GetAtt:NotificationKey.Arn}" if "NotificationKey" in stack.resources else TOPIC_KEY
    expected = {
        "WriteOwnLogs": {
            **allow,
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{{Ref:AuditFunctionLogGroup}}:*",
        },
        "ListSecrets": {**allow, "Action": "secretsmanager:ListSecrets", "Resource": "*"},
        "ReadSecretMetadata": {
            **allow,
            "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy"],
            "Resource": SECRETS,
        },
        "ReadRotationFunctions": {
            **allow,
            "Action": ["lambda:GetFunctionConfiguration", "lambda:GetPolicy"],
            "Resource": FUNCTIONS,
        },
        "PublishSummary": {**allow, "Action": "sns:Publish", "Resource": f"{{Ref:{topic_id(stack)}}}"},
        "EncryptSummary": {
            **allow,
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": key,
            "Condition": {"StringEquals": {"kms:ViaService": f"sns.{REGION}.amazonaws.com"}},
        },
    }
    if stack.resources[AUDIT_FUNCTION]["Properties"]["TracingConfig"]["Mode"] == "Active":
        expected["WriteTraces"] = {
            **allow,
            "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
            "Resource": "*",
        }
    return expected


@pytest.mark.parametrize(
    "overrides",
    [ON, {**ON, "NotificationKmsKeyArn": TOPIC_KEY}, {**ON, "EnableTracing": "true", "LogsKmsKeyArn": LOGS_KEY}],
    ids=["created-key", "given-key", "tracing"],
)
def test_the_role_is_read_only_exactly(cfn_template: dict[str, Any], overrides: dict[str, str]) -> None:
    stack = Stack(cfn_template, overrides)
    role = stack.resources["AuditFunctionRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    assert "ManagedPolicyArns" not in role
    statements = statements_of(stack, "AuditFunctionRole")
    assert {s["Sid"]: normalized(s) for s in statements} == expected_role(stack)
    for statement in statements:
        for action in as_list(statement["Action"]):
            for value_read in ("secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue"):
                assert not grants(action, value_read), f"the audit may never read a value: {action}"
            service, _, name = action.partition(":")
            if service in ("secretsmanager", "lambda"):
                assert name.startswith(("Describe", "Get", "List")), f"read-only: {action}"


def test_the_exact_check_catches_a_value_read(cfn_template: dict[str, Any]) -> None:
    import copy

    broken = copy.deepcopy(cfn_template)
    statements = broken["Resources"]["AuditFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    statements[2]["Action"].append("secretsmanager:GetSecretValue")
    stack = Stack(broken, ON)
    assert {s["Sid"]: normalized(s) for s in statements_of(stack, "AuditFunctionRole")} != expected_role(stack)


def test_it_runs_on_a_schedule_with_a_role_that_may_only_invoke_it(cfn_template: dict[str, Any]) -> None:
    stack = Stack(cfn_template, {**ON, "AuditScheduleExpression": "rate(1 day)"})
    (schedule_id, schedule) = next(iter(stack.of_type("AWS::Scheduler::Schedule").items()))
    assert schedule_id == "AuditSchedule"
    properties = schedule["Properties"]
    assert properties["ScheduleExpression"] == "rate(1 day)"
    assert properties["ScheduleExpressionTimezone"] == "UTC"
    assert properties["State"] == "ENABLED"
    assert properties["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert properties["Target"]["Arn"] == f"{{GetAtt:{AUDIT_FUNCTION}.Arn}}"
    assert properties["Target"]["RoleArn"] == "{GetAtt:AuditScheduleRole.Arn}"
    role = stack.resources["AuditScheduleRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "scheduler.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        }
    ]
    assert [normalized(s) for s in statements_of(stack, "AuditScheduleRole")] == [
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": AUDIT_ARN}
    ]
    assert Stack(cfn_template, ON).resources["AuditSchedule"]["Properties"]["ScheduleExpression"] == (
        "cron(0 6 * * ? *)"
    )


def test_alarms_on_high_findings_and_on_errors_reach_the_topic(cfn_template: dict[str, Any]) -> None:
    stack = Stack(cfn_template, {**ON, "MetricsNamespace": "Secrets"})
    topic = f"{{Ref:{topic_id(stack)}}}"
    high = stack.resources["AuditHighFindingsAlarm"]["Properties"]
    names = app_constants()
    assert {key: value for key, value in high.items() if key != "AlarmDescription"} == {
        "AlarmName": f"{STACK}-audit-high-findings",  # the topic policy lets this stack's alarms publish
        "Namespace": "Secrets",  # the function's POWERTOOLS_METRICS_NAMESPACE (Globals)
        "MetricName": names["HIGH_METRIC"],
        "Dimensions": [{"Name": "service", "Value": names["SERVICE"]}],  # Powertools' dimension
        "Statistic": "Maximum",
        "Period": 86400,
        "EvaluationPeriods": 1,
        "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [topic],
    }
    variables = stack.resources[AUDIT_FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "Secrets"
    errors = stack.resources["AuditFunctionErrorsAlarm"]["Properties"]
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": f"{{Ref:{AUDIT_FUNCTION}}}"}]
    assert (errors["Namespace"], errors["MetricName"], errors["AlarmActions"]) == ("AWS/Lambda", "Errors", [topic])
    assert errors["AlarmName"].startswith(f"{STACK}-")


def test_its_log_group_is_like_the_others(cfn_template: dict[str, Any]) -> None:
    for overrides, key in ((ON, None), ({**ON, "LogsKmsKeyArn": LOGS_KEY}, LOGS_KEY)):
        group = Stack(cfn_template, overrides).resources["AuditFunctionLogGroup"]
        assert group["Properties"]["LogGroupName"] == f"/aws/lambda/{STACK}-audit"
        assert group["Properties"]["RetentionInDays"] == "365"
        assert group["Properties"].get("KmsKeyId") == key
        assert group["DeletionPolicy"] == "Delete"


def test_only_the_audit_may_stay_outside_the_vpc(sam_template: dict[str, Any]) -> None:
    assert CHECKOV_SUPPRESSIONS["CKV_AWS_117"] == "AWS::Serverless::Function"
    outside = [
        logical_id
        for logical_id, resource in sam_template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
        if skip["id"] == "CKV_AWS_117"
    ]
    assert outside == [AUDIT_FUNCTION]


def test_checkov_passes_with_the_audit_on(tmp_path: Path) -> None:
    """checkov evaluates the template with its parameter defaults, where the audit is off:
    check it once more with the audit on."""
    checkov = PROJECT_ROOT / ".venv-checkov" / "bin" / "checkov"
    if not checkov.exists():
        checkov = Path(shutil.which("checkov") or "/nonexistent")
    if not checkov.exists():
        pytest.skip("checkov is not installed (make checkov-venv)")
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    on = text.replace(
        '  EnableAudit:\n    Type: String\n    Default: "false"',
        '  EnableAudit:\n    Type: String\n    Default: "true"',
    )
    assert on != text
    (tmp_path / "template.yaml").write_text(on, encoding="utf-8")
    done = subprocess.run(
        [str(checkov), "--file", str(tmp_path / "template.yaml"), "--framework", "cloudformation",
         "--skip-download", "--compact", "--quiet"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert "AuditFunction" in subprocess.run(
        [str(checkov), "--file", str(tmp_path / "template.yaml"), "--framework", "cloudformation",
         "--skip-download", "--compact", "--check", "CKV_AWS_116"],
        capture_output=True, text=True, timeout=600, check=False,
    ).stdout, "checkov saw the audit function"  # fmt: skip
