"""`events`: the four step events, exactly what the handlers accept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rotation_cli import paths
from tests.cli.conftest import rotate_bin, run_bin, run_cli
from tests.conftest import RotationCase
from tests.support import rotations


def test_events_drive_a_rotation_through_the_handler(case: RotationCase, tmp_path: Path) -> None:
    token = rotations.new_token()
    out = tmp_path / "events"
    result = run_cli("events", case.arn, "--token", token, "--out", str(out), "--json")
    assert result.code == 0, result
    files = [out / f"{step}.json" for step in rotations.STEPS]
    assert result.doc is not None and result.doc["files"] == [str(f) for f in files]
    before = case.current()
    rotations.start_rotation(case.sm, case.arn, token)  # the version the events name, staged AWSPENDING
    for path in files:
        doc = json.loads(path.read_text())
        assert doc == {"Step": path.stem, "SecretId": case.arn, "ClientRequestToken": token}
        case.handler(doc, None)
    assert "AWSCURRENT" in rotations.stages(case.sm, case.arn)[token]
    after = case.current()
    assert after != before and case.works(after)


def test_default_folder_and_a_generated_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/postgres-AbCdEf"
    result = run_cli("events", arn, "--engine", "postgres")
    assert result.code == 0, result
    folder = tmp_path / ".aws-sam" / "events" / "postgres"
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted(f"{step}.json" for step in rotations.STEPS)
    assert not (tmp_path / "events").exists(), "never into an events/ folder by default"
    assert str(folder) in result.out, "says where it writes"
    first = json.loads((folder / "createSecret.json").read_text())
    assert 32 <= len(first["ClientRequestToken"]) <= 64
    assert "AWSPENDING" in result.out  # says the version must be staged first


def test_the_repository_events_have_the_same_shape() -> None:
    for folder in sorted((paths.ROOT / "events").iterdir()):
        for step in rotations.STEPS:
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


# -- never over the repository's committed events; check the token, or say it was not -------
def _tracked_events() -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted((paths.ROOT / "events").rglob("*.json"))}


def test_from_the_repository_the_committed_events_are_left_alone(tmp_path: Path) -> None:
    before = _tracked_events()
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/postgres-AbCdEf"
    # what the README showed: run from a checkout, --engine only (in a copy of the layout, so
    # that this test writes nothing into the tree others work in)
    (tmp_path / "events" / "postgres").mkdir(parents=True)
    committed = tmp_path / "events" / "postgres" / "createSecret.json"
    committed.write_bytes(before[paths.ROOT / "events" / "postgres" / "createSecret.json"])
    done = run_bin([rotate_bin(), "events", arn, "--engine", "postgres"], cwd=str(tmp_path))
    assert done.code == 0, done
    assert committed.read_bytes() == before[paths.ROOT / "events" / "postgres" / "createSecret.json"]
    assert sorted(p.name for p in (tmp_path / "events" / "postgres").iterdir()) == ["createSecret.json"]
    assert f"into {tmp_path / '.aws-sam' / 'events' / 'postgres'}/" in done.out
    assert "not checked: no AWS call was made" in done.out
    # straight at the committed files: refused, one line, nothing written (were the protection
    # gone, the files are put back so that the tree others work in stays as it was)
    try:
        refused = run_bin(
            [rotate_bin(), "events", arn, "--engine", "postgres", "--out", str(paths.ROOT / "events" / "postgres")]
        )
    finally:
        overwritten = [path for path, content in before.items() if path.read_bytes() != content]
        for path in overwritten:
            path.write_bytes(before[path])
    assert not overwritten, f"overwrote {overwritten}"
    assert refused.code == 1, refused
    assert refused.err.strip().splitlines() == [refused.err.strip()]
    assert "createSecret.json exists (and 3 more): nothing was written" in refused.err and "--force" in refused.err
    assert _tracked_events() == before


def test_an_existing_file_is_overwritten_only_with_force(tmp_path: Path) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/postgres-AbCdEf"
    out = tmp_path / "mine"
    out.mkdir()
    (out / "testSecret.json").write_text("my own notes\n")
    refused = run_cli("events", arn, "--out", str(out), "--token", rotations.new_token())
    assert refused.code == 1 and "testSecret.json exists: nothing was written" in refused.err, refused
    assert sorted(p.name for p in out.iterdir()) == ["testSecret.json"], "no file written before the refusal"
    assert (out / "testSecret.json").read_text() == "my own notes\n"
    token = rotations.new_token()
    forced = run_cli("events", arn, "--out", str(out), "--token", token, "--force")
    assert forced.code == 0, forced
    assert json.loads((out / "testSecret.json").read_text())["ClientRequestToken"] == token


def test_check_confirms_the_pending_version_with_describe_secret(case: RotationCase, tmp_path: Path) -> None:
    token = rotations.new_token()
    out = tmp_path / "checked"
    disabled = run_cli("events", case.arn, "--token", token, "--out", str(out), "--check")
    assert disabled.code == 1 and "rotation is not enabled" in disabled.err, disabled
    rotations.start_rotation(case.sm, case.arn, token)  # enables rotation, stages the token AWSPENDING
    other = rotations.new_token()
    unstaged = run_cli("events", case.arn, "--token", other, "--out", str(out), "--check")
    assert unstaged.code == 1 and "not a version of the secret, not AWSPENDING" in unstaged.err, unstaged
    current = next(v for v, s in rotations.stages(case.sm, case.arn).items() if "AWSCURRENT" in s)
    staged = run_cli("events", case.arn, "--token", current, "--out", str(out), "--check")
    assert staged.code == 1 and "staged AWSCURRENT, not AWSPENDING" in staged.err, staged
    assert not out.exists(), "nothing written when the check fails"
    assert run_cli("events", case.arn, "--out", str(out), "--check").code == 2  # --check needs --token
    ok = run_cli("events", case.arn, "--token", token, "--out", str(out), "--check", "--json")
    assert ok.code == 0, ok
    assert ok.doc is not None and "staged AWSPENDING" in ok.doc["checked"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{step}.json" for step in rotations.STEPS)
