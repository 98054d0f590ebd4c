"""`rotate invoke`: one step from an event file, through the function's own handler loaded
as `rotate --local` loads it, without Docker (what `sam local invoke -e` does with it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import PgSecret, current, rotate_bin, run_bin, run_cli, unchanged_state, version_value
from tests.engines import PostgresHarness
from tests.support import rotations


def _event(tmp_path: Path, step: str, arn: str, token: str, name: str | None = None) -> Path:
    path = tmp_path / (name or f"{step}.json")
    path.write_text(json.dumps({"Step": step, "SecretId": arn, "ClientRequestToken": token}))
    return path


def test_each_step_from_its_event_file(pg_secret: PgSecret, pg: PostgresHarness, sm: Any, tmp_path: Path) -> None:
    token = rotations.start_rotation(sm, pg_secret.arn)  # the AWSPENDING version the events name
    folder = tmp_path / "events"
    assert run_cli("events", pg_secret.arn, "--token", token, "--out", str(folder)).code == 0
    first = run_cli("invoke", "--engine", "postgres", "-e", str(folder / "createSecret.json"), "--json")
    assert first.code == 0, first
    assert first.doc is not None and first.doc["ok"] and first.doc["step"] == "createSecret"
    assert first.doc["stages"] == ["AWSPENDING"]
    pending = version_value(sm, pg_secret.arn, token)
    assert pending["password"] != pg_secret.doc["password"], "createSecret stored the next password"
    assert current(sm, pg_secret.arn) == pg_secret.doc and pg.works(pg_secret.doc), "nothing else changed yet"
    for step in ("setSecret", "testSecret", "finishSecret"):
        # --function is the other spelling; the human output names the step and its outcome
        done = run_cli("invoke", "--function", "postgres", "-e", str(folder / f"{step}.json"))
        assert done.code == 0, done
        assert f"{step}" in done.out and " ok " in done.out
    assert "AWSCURRENT" in rotations.stages(sm, pg_secret.arn)[token]
    assert pg.works(current(sm, pg_secret.arn)) and not pg.works(pg_secret.doc)


def test_an_event_the_function_refuses_exits_1_and_changes_nothing(
    pg_secret: PgSecret, sm: Any, tmp_path: Path
) -> None:
    rotations.start_rotation(sm, pg_secret.arn)  # rotation enabled, one AWSPENDING version
    before = unchanged_state(sm, pg_secret.arn)
    path = _event(tmp_path, "createSecret", pg_secret.arn, rotations.new_token())  # not the pending version
    done = run_cli("invoke", "--engine", "postgres", "-e", str(path))
    assert done.code == 1, done
    assert "createSecret" in done.out and "FAILED" in done.out and "Traceback" not in done.out + done.err
    assert "ClientRequestToken is not a version of this secret" in done.out, "the function's own reason"
    bad_step = _event(tmp_path, "dropEverything", pg_secret.arn, rotations.new_token(), "bad-step.json")
    refused = run_cli("invoke", "--engine", "postgres", "-e", str(bad_step))
    assert refused.code == 1 and "FAILED" in refused.out and "Step" in refused.out, refused
    assert unchanged_state(sm, pg_secret.arn) == before


def test_the_readme_command_runs_as_printed(sm: Any) -> None:
    """The README's command, from the repository: the committed event names an example
    secret, so here (moto, where it does not exist) the function fails and says why."""
    done = run_bin([rotate_bin(), "invoke", "--engine", "postgres", "-e", "events/postgres/createSecret.json"])
    assert done.code == 1, done
    assert "invoke postgres with events/postgres/createSecret.json: createSecret" in done.out
    assert "FAILED" in done.out and "Traceback" not in done.err


def test_bad_arguments_exit_2_before_anything_runs(pg_secret: PgSecret, sm: Any, tmp_path: Path) -> None:
    before = unchanged_state(sm, pg_secret.arn)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"Step": "createSecret",')
    a_list = tmp_path / "list.json"
    a_list.write_text("[]")
    good = _event(tmp_path, "createSecret", pg_secret.arn, rotations.new_token())
    cases = [
        (["--engine", "postgres", "-e", str(tmp_path / "missing.json")], f"-e: no event file {tmp_path}/missing.json"),
        (["--engine", "postgres", "-e", str(bad_json)], f"-e: {bad_json} is not JSON: Expecting"),
        (["--engine", "postgres", "-e", str(tmp_path)], "is a folder, not an event file"),
        (["--engine", "postgres", "-e", str(a_list)], "holds a JSON list, not the event object"),
        (["--engine", "oracle", "-e", str(good)], "no function 'oracle'"),
        (["-e", str(good)], "the following arguments are required: --engine/--function"),
        (["--engine", "postgres", "-e", str(good), "--env", "=x"], "--env takes KEY=VALUE"),
    ]
    for argv, message in cases:
        done = run_cli("invoke", *argv)
        assert done.code == 2, (argv, done)
        assert message in done.err and "Traceback" not in done.err, (argv, done.err)
    assert unchanged_state(sm, pg_secret.arn) == before
