"""The handler's edges: the Secrets Manager endpoint variables, structured logs with the
agreed keys, one EMF success or failure metric per step, and no tracer unless asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from rotation_core import EventError
from tests.conftest import RotationCase
from tests.engines import PostgresHarness
from tests.support import rotations
from tests.support.functions import ROOT


@pytest.fixture
def pg(postgres_harness: PostgresHarness, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> PostgresHarness:
    for key, value in postgres_harness.env().items():
        monkeypatch.setenv(key, value)
    return postgres_harness


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_secrets_manager_endpoint_is_honoured(
    pg: PostgresHarness, sm: Any, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    """AWS's own variable works when the standard boto3 variables are not set."""
    case = RotationCase(pg, sm, "single-user")
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("SECRETS_MANAGER_ENDPOINT", moto_endpoint)
    handler = pg.make_handler()
    assert handler.client.meta.endpoint_url == moto_endpoint
    before = case.current()
    rotations.rotate(handler, sm, case.arn)
    assert case.current() != before
    assert case.works(case.current())


def test_logs_carry_the_agreed_keys_and_metrics_count_each_step(
    pg: PostgresHarness, sm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    case = RotationCase(pg, sm, "alternating-users")
    token = case.rotate()
    records = json_lines(capsys.readouterr().out)
    logs = [r for r in records if "message" in r]
    metrics = [r for r in records if "_aws" in r]
    set_log = next(r for r in logs if r.get("step") == "setSecret")
    assert set_log["correlation_id"] == token
    assert set_log["version"] == token
    assert set_log["secret_arn"] == case.arn
    assert set_log["engine"] == "postgres"
    assert set_log["strategy"] == "alternating-users"
    assert [m["step"] for m in metrics] == list(rotations.STEPS)
    for metric in metrics:
        assert metric["StepSucceeded"] == [1.0]
        assert metric["engine"] == "postgres"
        assert metric["StepDuration"][0] > 0
        assert metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["engine", "step", "service"]]


def test_a_failed_step_is_logged_and_counted_as_failed(
    pg: PostgresHarness, sm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    case = RotationCase(pg, sm, "single-user")
    rotations.start_rotation(sm, case.arn)
    with pytest.raises(EventError):
        case.handler(rotations.event(case.arn, rotations.new_token(), "setSecret"), None)
    records = json_lines(capsys.readouterr().out)
    error = next(r for r in records if r.get("level") == "ERROR")
    assert error["error"] == "EventError"
    assert "not a version of this secret" in error["reason"]
    metric = next(r for r in records if "_aws" in r)
    assert metric["StepFailed"] == [1.0]
    assert metric["step"] == "setSecret"


def test_a_malformed_event_is_counted_under_an_unknown_step(
    pg: PostgresHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(EventError, match="Step"):
        pg.make_handler()({"Step": "dropSecret", "SecretId": "x", "ClientRequestToken": "t" * 36}, None)
    metric = next(r for r in json_lines(capsys.readouterr().out) if "_aws" in r)
    assert metric["step"] == "unknown"
    assert metric["StepFailed"] == [1.0]


def test_importing_the_handler_loads_neither_driver_nor_xray_nor_boto3() -> None:
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT / "layers" / "rotation_core")!r}, {str(ROOT / "functions" / "postgres")!r}]
        import app
        loaded = [m for m in ("psycopg2", "boto3", "aws_xray_sdk") if m in sys.modules]
        print("loaded:", loaded)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "POWERTOOLS_TRACE_DISABLED": "true"},
    )
    assert out.stdout.strip() == "loaded: []"
