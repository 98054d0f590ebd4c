"""attach.yaml, the small stack that attaches existing secrets to a deployed rotation function,
and what a first `sam deploy --guided` asks of each template.

The attach stack is checked with the same small CloudFormation as template.yaml
(tests/test_template.py: parameters, Rules, Conditions, intrinsics), on what would be deployed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from tests.support.sam import NO_CREDENTIALS, sam_without_credentials
from tests.test_template import (
    ACCOUNT,
    PROJECT_ROOT,
    REGION,
    ROTATION_EVENTS,
    TEMPLATE_PATH,
    ParameterRejected,
    Stack,
    load_template,
)

ATTACH_PATH = PROJECT_ROOT / "attach.yaml"
SLOTS = 10
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:secrets-manager-rotation-postgres"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:secrets-manager-rotation-NotificationTopic-AbC123"


def secret_arns(count: int) -> list[str]:
    return [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/app{n}-Ab{n % 10}dEf" for n in range(count)]


def slots(arns: list[str], first: int = 1) -> dict[str, str]:
    return {f"SecretArn{first + n}": arn for n, arn in enumerate(arns)}


@pytest.fixture(scope="module")
def attach_template() -> dict[str, Any]:
    return load_template(ATTACH_PATH)


def schedules(stack: Stack) -> list[dict[str, Any]]:
    return list(stack.of_type("AWS::SecretsManager::RotationSchedule").values())


def test_cfn_lint_reports_nothing() -> None:
    matches = lint(ATTACH_PATH.read_text(encoding="utf-8"), config=ManualArgs(regions=[REGION], include_checks=["I"]))
    assert [str(m) for m in matches] == []


@pytest.mark.parametrize(("count", "first"), [(1, 1), (3, 1), (SLOTS, 1), (2, 4), (1, SLOTS)])
def test_one_rotation_schedule_per_filled_slot(attach_template: dict[str, Any], count: int, first: int) -> None:
    arns = secret_arns(count)
    given = slots(arns, first)
    if first != 1:
        given["SecretArn1"] = secret_arns(SLOTS + 1)[SLOTS]  # slot 1 is required
    stack = Stack(attach_template, {"RotationFunctionArn": FUNCTION, **given})
    attached = [s["Properties"]["SecretId"] for s in schedules(stack)]
    assert sorted(attached) == sorted(given.values())
    for schedule in schedules(stack):
        assert schedule["Properties"] == {
            "SecretId": schedule["Properties"]["SecretId"],
            "RotationLambdaARN": FUNCTION,
            "RotateImmediatelyOnUpdate": "true",
            "RotationRules": {"ScheduleExpression": "rate(30 days)"},
        }


def test_schedule_window_and_immediacy_follow_the_parameters(attach_template: dict[str, Any]) -> None:
    stack = Stack(
        attach_template,
        {
            "RotationFunctionArn": FUNCTION,
            **slots(secret_arns(2)),
            "ScheduleExpression": "cron(0 2 ? * SAT *)",
            "RotationWindow": "4h",
            "RotateImmediately": "false",
        },
    )
    for schedule in schedules(stack):
        rules = schedule["Properties"]["RotationRules"]
        assert rules == {"ScheduleExpression": "cron(0 2 ? * SAT *)", "Duration": "4h"}
        assert schedule["Properties"]["RotateImmediatelyOnUpdate"] == "false"


def test_each_slot_reads_its_own_parameter(attach_template: dict[str, Any]) -> None:
    """No slot depends on another: clearing or changing one never touches the other secrets' schedules
    (CloudFormation replaces a schedule whose SecretId changes, and turns that secret's rotation off)."""
    resources = attach_template["Resources"]
    for slot in range(1, SLOTS + 1):
        schedule = resources[f"RotationSchedule{slot}"]
        assert schedule["Properties"]["SecretId"] == {"Ref": f"SecretArn{slot}"}
        if slot > 1:
            assert schedule["Condition"] == f"HasSecret{slot}"
            assert attach_template["Conditions"][f"HasSecret{slot}"] == {
                "Fn::Not": [{"Fn::Equals": [{"Ref": f"SecretArn{slot}"}, ""]}]
            }


@pytest.mark.parametrize(
    "value",
    [
        ",".join(secret_arns(2)),  # one secret per slot
        f" {secret_arns(1)[0]}",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!cluster-0123-AbCdEf",  # RDS rotates it itself
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/app",  # partial ARN, no suffix
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/app-??????",  # a wildcard
        "prod/app",  # a name
    ],
)
def test_attached_secrets_must_be_full_arns(attach_template: dict[str, Any], value: str) -> None:
    for slot in range(1, SLOTS + 1):
        others = {} if slot == 1 else {"SecretArn1": secret_arns(1)[0]}
        with pytest.raises(ParameterRejected):
            Stack(attach_template, {"RotationFunctionArn": FUNCTION, **others, f"SecretArn{slot}": value})


def test_the_function_and_one_secret_are_required(attach_template: dict[str, Any]) -> None:
    with pytest.raises(ParameterRejected):
        Stack(attach_template, {"SecretArn1": secret_arns(1)[0]})
    with pytest.raises(ParameterRejected):
        Stack(attach_template, {"RotationFunctionArn": FUNCTION})
    with pytest.raises(ParameterRejected):
        Stack(attach_template, {"RotationFunctionArn": "secrets-manager-rotation-postgres", **slots(secret_arns(1))})


def test_failed_rotations_of_these_secrets_reach_the_topic_when_given(attach_template: dict[str, Any]) -> None:
    arns = secret_arns(3)
    assert Stack(attach_template, {"RotationFunctionArn": FUNCTION, **slots(arns)}).of_type("AWS::Events::Rule") == {}
    stack = Stack(attach_template, {"RotationFunctionArn": FUNCTION, **slots(arns), "NotificationTopicArn": TOPIC})
    ((_, rule),) = stack.of_type("AWS::Events::Rule").items()
    pattern = {**ROTATION_EVENTS, "detail": {**ROTATION_EVENTS["detail"], "additionalEventData": {"SecretId": arns}}}
    assert rule["Properties"]["EventPattern"] == pattern
    assert rule["Properties"]["Targets"] == [{"Id": "notification-topic", "Arn": TOPIC}]
    assert stack.outputs["AttachedSecretArns"] == ",".join(arns)


def test_schedule_pattern_is_the_rotation_stacks(attach_template: dict[str, Any]) -> None:
    """One schedule syntax everywhere: the same refusals as rotation_cli.schedule (tests/test_template.py)."""
    from rotation_cli.schedule import ScheduleError, validate

    pattern = attach_template["Parameters"]["ScheduleExpression"]["AllowedPattern"]
    for expression in ("rate(4 hours)", "rate(30 days)", "cron(0 3 ? * SUN *)"):
        assert re.fullmatch(pattern, expression)
        validate(expression)
    for expression in ("rate(30 minutes)", "cron(15 3 ? * SUN *)", "30 days"):
        assert not re.fullmatch(pattern, expression)
        with pytest.raises(ScheduleError):
            validate(expression)


# --------------------------------------------------------------------------
# `sam deploy --guided`: what a first deployment asks

# Everything guided asks besides the template's parameters (sam deploy's own questions).
SAM_QUESTIONS = [
    "Stack Name",
    "AWS Region",
    "Confirm changes before deploy",
    "Allow SAM CLI IAM role creation",
    "Disable rollback",
    "Save arguments to configuration file",
    "SAM configuration file",
    "SAM configuration environment",
]
FIRST_DECISIONS = [
    "NotificationEmail",
    "SubnetIds",
    "SecurityGroupIds",
    "PostgresMasterSecretArns",
    "MySqlMasterSecretArns",
    "RedshiftMasterSecretArns",
    "ApiKeyAdminSecretArns",
    "KmsKeyArns",
    "Architecture",
]


def guided_questions(template: Path, tmp_path: Path, answers: tuple[str, ...] = ()) -> list[str]:
    """Run `sam deploy --guided` on a copy of the template, giving the answers, then Enter to every
    question, with no AWS credentials: it asks everything, then stops at its first AWS call."""
    shutil.copy(template, tmp_path / "template.yaml")
    done = sam_without_credentials(["deploy", "--guided"], tmp_path, "".join(f"{a}\n" for a in answers) + "\n" * 200)
    assert NO_CREDENTIALS in done.stdout + done.stderr, done.stdout + done.stderr
    prompts = re.findall(r"(?:Parameter ([A-Za-z0-9]+)|(" + "|".join(SAM_QUESTIONS) + r"))(?: \[|: )", done.stdout)
    return [parameter or question for parameter, question in prompts]


def test_a_first_guided_deploy_asks_the_decisions_first(tmp_path: Path) -> None:
    questions = guided_questions(TEMPLATE_PATH, tmp_path)
    parameters = [q for q in questions if q not in SAM_QUESTIONS]
    assert parameters == list(load_template()["Parameters"]), "guided asks every parameter, in template order"
    assert parameters[: len(FIRST_DECISIONS)] == FIRST_DECISIONS
    # 68 questions before the secrets were attached by their own stack; the functions' settings now.
    assert len(parameters) <= 32, parameters  # 28 for the functions, 4 for the optional fleet audit
    assert len(questions) == len(parameters) + len(SAM_QUESTIONS)


def test_the_attach_stack_asks_about_the_function_its_secrets_and_schedule(tmp_path: Path) -> None:
    # Stack name, Region, then the two parameters without a default.
    questions = guided_questions(ATTACH_PATH, tmp_path, ("app-secrets", REGION, FUNCTION, secret_arns(1)[0]))
    parameters = [q for q in questions if q not in SAM_QUESTIONS]
    assert parameters[:2] == ["RotationFunctionArn", "SecretArn1"]
    assert parameters == list(load_template(ATTACH_PATH)["Parameters"])
