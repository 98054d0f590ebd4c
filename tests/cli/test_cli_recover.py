"""`recover`: unblock a stuck rotation, never losing the only working credential."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rotation_cli import paths
from tests.cli.conftest import PgSecret, current, run_cli, stuck, version_value
from tests.conftest import TARGETS
from tests.engines import PostgresHarness, new_password, unique
from tests.support import rotations


def _fail_at(arn: str, step: str) -> str:
    result = run_cli("rotate", arn, "--local", "--engine", "postgres", "--fail-at", step, "--json")
    assert result.code == 1 and result.doc is not None, result
    return str(result.doc["token"])


def test_dry_run_changes_nothing_and_apply_unblocks_the_next_rotation(
    pg_secret: PgSecret, pg: PostgresHarness, sm: Any
) -> None:
    token = _fail_at(pg_secret.arn, "createSecret")
    before = rotations.stages(sm, pg_secret.arn)
    dry = run_cli("recover", pg_secret.arn, "--json")
    assert dry.code == 0, dry
    assert dry.doc is not None and dry.doc["action"] == "remove-pending-label" and not dry.doc["applied"]
    assert dry.doc["probes"]["current"]["verdict"] == "works"
    assert rotations.stages(sm, pg_secret.arn) == before, "a dry run changes nothing"
    human = run_cli("recover", pg_secret.arn)
    assert "dry run: nothing was changed" in human.out
    assert rotations.stages(sm, pg_secret.arn) == before

    applied = run_cli("recover", pg_secret.arn, "--apply")
    assert applied.code == 0, applied
    assert f"removed AWSPENDING from version {token}" in applied.out
    assert stuck(sm, pg_secret.arn) == []
    assert rotations.stages(sm, pg_secret.arn)[token] == [], "the pending value stays, unlabelled"
    assert current(sm, pg_secret.arn) == pg_secret.doc and pg.works(pg_secret.doc)

    again = run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres", "--json")
    assert again.code == 0, again
    assert again.doc is not None and not again.doc["resumed"] and again.doc["token"] != token
    assert pg.works(current(sm, pg_secret.arn)) and not pg.works(pg_secret.doc)


def test_the_only_working_credential_is_promoted_not_dropped(pg_secret: PgSecret, pg: PostgresHarness, sm: Any) -> None:
    token = _fail_at(pg_secret.arn, "setSecret")  # the database now has the pending password only
    pending = version_value(sm, pg_secret.arn, token)
    assert pg.works(pending) and not pg.works(pg_secret.doc)
    before = rotations.stages(sm, pg_secret.arn)

    dry = run_cli("recover", pg_secret.arn, "--json")
    assert dry.code == 0, dry
    assert dry.doc is not None and dry.doc["action"] == "promote-pending"
    assert dry.doc["probes"]["current"]["verdict"] == "refused"
    assert dry.doc["probes"]["pending"]["verdict"] == "works"
    assert rotations.stages(sm, pg_secret.arn) == before

    applied = run_cli("recover", pg_secret.arn, "--apply", "--json")
    assert applied.code == 0, applied
    stages = rotations.stages(sm, pg_secret.arn)
    assert "AWSCURRENT" in stages[token], "AWSCURRENT moved to the only working credential"
    assert current(sm, pg_secret.arn) == pending and pg.works(current(sm, pg_secret.arn))
    assert json.loads(rotations.value(sm, pg_secret.arn, "AWSPREVIOUS")) == pg_secret.doc
    assert stuck(sm, pg_secret.arn) == []
    assert run_cli("rotate", pg_secret.arn, "--local", "--engine", "postgres").code == 0
    assert pg.works(current(sm, pg_secret.arn))


def test_refuses_when_it_cannot_tell_which_credential_works(pg: PostgresHarness, sm: Any) -> None:
    """The target is unreachable: whether the pending credential is the only one that works
    cannot be proven, so nothing is changed, dry run or not."""
    doc = {"engine": "postgres", "host": "127.0.0.1", "port": 9, "username": unique("app"), "password": new_password()}
    doc["ssl"] = False
    arn = str(sm.create_secret(Name=unique("unreachable"), SecretString=json.dumps(doc))["ARN"])
    _fail_at(arn, "createSecret")
    before = rotations.stages(sm, arn)
    for extra in ([], ["--apply"]):
        result = run_cli("recover", arn, "--engine", "postgres", *extra, "--json")
        assert result.code == 1, result
        assert result.doc is not None and result.doc["refused"] and result.doc["action"] is None
        assert "cannot tell" in result.doc["refused"]
        assert rotations.stages(sm, arn) == before
    human = run_cli("recover", arn, "--engine", "postgres", "--apply")
    assert "REFUSED" in human.out and "nothing was changed" in human.out


def test_an_empty_pending_version_is_cleared_without_trying_credentials(pg_secret: PgSecret, sm: Any) -> None:
    token = rotations.start_rotation(sm, pg_secret.arn)
    result = run_cli("recover", pg_secret.arn, "--apply", "--json")
    assert result.code == 0, result
    assert result.doc is not None and result.doc["probes"]["pending"]["verdict"] == "no value"
    assert stuck(sm, pg_secret.arn) == [] and token in rotations.stages(sm, pg_secret.arn)


def test_without_an_engine_it_guesses_from_the_secret_or_refuses(pg_secret: PgSecret, sm: Any) -> None:
    _fail_at(pg_secret.arn, "createSecret")
    guessed = run_cli("recover", pg_secret.arn, "--json")
    assert guessed.doc is not None and guessed.doc["engine"] == "postgres" and guessed.doc["action"]

    other = dict(pg_secret.doc, engine="oracle")
    arn = str(sm.create_secret(Name=unique("odd-engine"), SecretString=json.dumps(other))["ARN"])
    token = rotations.start_rotation(sm, arn)
    sm.put_secret_value(
        SecretId=arn, ClientRequestToken=token, SecretString=json.dumps(other), VersionStages=["AWSPENDING"]
    )
    result = run_cli("recover", arn, "--apply", "--json")
    assert result.code == 1 and result.doc is not None and "--engine" in result.doc["refused"]
    assert stuck(sm, arn) == [token]


def test_nothing_to_recover(pg_secret: PgSecret) -> None:
    result = run_cli("recover", pg_secret.arn, "--apply")
    assert result.code == 0 and "nothing to recover" in result.out


@pytest.mark.parametrize(
    "fixture", list(TARGETS), ids=lambda name: name.removesuffix("_harness").removesuffix("_target")
)
def test_recover_with_every_function(
    fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, sm: Any
) -> None:
    """The credentials are tried with each function's own testSecret logic, whatever it rotates."""
    target = request.getfixturevalue(fixture)
    if target.name not in paths.engines():
        pytest.skip(f"no functions/{target.name}/app.py")
    for key, value in target.env().items():
        monkeypatch.setenv(key, value)
    arn, doc = target.new_secret(sm, TARGETS[fixture][0])
    failed = run_cli("rotate", arn, "--local", "--engine", target.name, "--fail-at", "createSecret", "--json")
    assert failed.code == 1 and failed.doc is not None
    result = run_cli("recover", arn, "--engine", target.name, "--apply", "--json")
    assert result.code == 0, result
    assert result.doc is not None and result.doc["probes"]["current"]["verdict"] == "works"
    assert result.doc["action"] == "remove-pending-label"
    assert stuck(sm, arn) == [] and current(sm, arn) == doc
    assert run_cli("rotate", arn, "--local", "--engine", target.name).code == 0
    assert target.works(current(sm, arn))
