"""`events`: the four step events, exactly what the handlers accept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rotation_cli import paths
from tests.cli.conftest import run_cli
from tests.conftest import RotationCase
from tests.support import driver


def test_events_drive_a_rotation_through_the_handler(case: RotationCase, tmp_path: Path) -> None:
    token = driver.new_token()
    out = tmp_path / "events"
    result = run_cli("events", case.arn, "--token", token, "--out", str(out), "--json")
    assert result.code == 0, result
    files = [out / f"{step}.json" for step in driver.STEPS]
    assert result.doc is not None and result.doc["files"] == [str(f) for f in files]
    before = case.current()
    driver.start_rotation(case.sm, case.arn, token)  # the version the events name, staged AWSPENDING
    for path in files:
        doc = json.loads(path.read_text())
        assert doc == {"Step": path.stem, "SecretId": case.arn, "ClientRequestToken": token}
        case.handler(doc, None)
    assert "AWSCURRENT" in driver.stages(case.sm, case.arn)[token]
    after = case.current()
    assert after != before and case.works(after)


def test_default_folder_and_a_generated_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/postgres-AbCdEf"
    result = run_cli("events", arn, "--engine", "postgres")
    assert result.code == 0, result
    written = sorted(p.name for p in (tmp_path / "events" / "postgres").iterdir())
    assert written == sorted(f"{step}.json" for step in driver.STEPS)
    first = json.loads((tmp_path / "events" / "postgres" / "createSecret.json").read_text())
    assert 32 <= len(first["ClientRequestToken"]) <= 64
    assert "AWSPENDING" in result.out  # says the version must be staged first


def test_the_repository_events_have_the_same_shape() -> None:
    for folder in sorted((paths.ROOT / "events").iterdir()):
        for step in driver.STEPS:
            path = folder / f"{step}.json"
            if path.exists():
                doc: dict[str, Any] = json.loads(path.read_text())
                assert set(doc) == {"Step", "SecretId", "ClientRequestToken"} and doc["Step"] == step


def test_bad_arguments(tmp_path: Path) -> None:
    assert (
        run_cli(
            "events", "arn:aws:secretsmanager:us-east-1:1:secret:x", "--token", "short", "--out", str(tmp_path)
        ).code
        == 2
    )
    assert run_cli("events", "arn:aws:secretsmanager:us-east-1:1:secret:x").code == 2  # neither --engine nor --out
