"""Each attack of the threat model (docs/security.md) by whoever can write a rotated
database secret, reproduced against the real local servers: the rotation must refuse,
nothing must reach the attacker's server, and nothing must change in the database.

The attacker's server is tests/support/recorder.py: it asks for passwords in clear text
and records every byte it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from rotation_core import ConfigurationError, RotationError, UnreachableError
from rotation_core.credentials import parse
from rotation_core.settings import ConnectionSettings
from tests.engines import DatabaseHarness, new_password, unique
from tests.support import rotations
from tests.support.recorder import Recorder

RECORDER_MODE = {"postgres": "postgres-cleartext", "redshift": "postgres-cleartext", "mysql": "mysql-clear"}
# The system tag each engine's managed master secrets carry, and the API call that answers it.
SYSTEM_TAG = {
    "postgres": ("aws:rds:primaryDBInstanceArn", "arn:aws:rds:us-east-1:123456789012:db:orders"),
    "mysql": ("aws:rds:primaryDBClusterArn", "arn:aws:rds:us-east-1:123456789012:cluster:orders"),
    "redshift": ("aws:redshift:primaryClusterArn", "arn:aws:redshift:us-east-1:123456789012:cluster:orders"),
}


@pytest.fixture
def recorder(harness: DatabaseHarness) -> Iterator[Recorder]:
    server = Recorder(RECORDER_MODE[harness.name]).start()
    yield server
    server.stop()


class FakeAws:
    """RDS and Redshift as AWS would answer for the master's database: the real local server."""

    def __init__(self, host: str, port: int) -> None:
        self.endpoint = {"Address": host, "Port": port}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, service: str) -> FakeAws:
        return self

    def describe_db_instances(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("rds:DescribeDBInstances", kw))
        return {"DBInstances": [{"Endpoint": self.endpoint}]}

    def describe_db_clusters(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("rds:DescribeDBClusters", kw))
        return {"DBClusters": [{"Endpoint": self.endpoint["Address"], "Port": self.endpoint["Port"]}]}

    def describe_clusters(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("redshift:DescribeClusters", kw))
        return {"Clusters": [{"Endpoint": self.endpoint}]}


def new_user(harness: DatabaseHarness, name: str | None = None) -> tuple[str, str]:
    username, password = name or unique("app"), new_password()
    harness.create_user(username, password)
    return username, password


def master_secret(
    harness: DatabaseHarness, sm: Any, *, hostless: bool = False, tagged: bool = False, **extra: Any
) -> str:
    doc = harness.master()
    if hostless:
        doc = {"username": doc["username"], "password": doc["password"]}
    doc.update(extra)
    tags = [{"Key": SYSTEM_TAG[harness.name][0], "Value": SYSTEM_TAG[harness.name][1]}] if tagged else []
    return str(sm.create_secret(Name=unique("master"), SecretString=json.dumps(doc), Tags=tags)["ARN"])


def rotated_secret(sm: Any, doc: dict[str, Any]) -> str:
    return str(sm.create_secret(Name=unique("rotated"), SecretString=json.dumps(doc))["ARN"])


def rotate_as_secrets_manager(handler: Any, sm: Any, arn: str) -> RotationError | None:
    """The four steps in order, stopping at the first failure, as Secrets Manager does."""
    token = rotations.start_rotation(sm, arn)
    for step in rotations.STEPS:
        try:
            handler(rotations.event(arn, token, step), None)
        except RotationError as exc:
            return exc
    return None


def user_exists(harness: DatabaseHarness, name: str) -> bool:
    query = {
        "postgres": "SELECT 1 FROM pg_roles WHERE rolname = %s",
        "redshift": "SELECT 1 FROM pg_user WHERE usename = %s",
        "mysql": "SELECT 1 FROM mysql.user WHERE User = %s",
    }[harness.name]
    return bool(harness.admin_execute(query, (name,)))


# -- 1. the master's server never comes from the rotated secret ---------------------------
def test_hostless_master_is_not_sent_to_the_rotated_secrets_server(
    harness: DatabaseHarness, sm: Any, recorder: Recorder
) -> None:
    username, password = new_user(harness)
    doc = harness.secret(username, password, masterarn=master_secret(harness, sm, hostless=True), ssl=False)
    arn = rotated_secret(sm, {**doc, "host": recorder.host, "port": recorder.port})
    failure = rotate_as_secrets_manager(harness.make_handler(), sm, arn)
    assert isinstance(failure, ConfigurationError) and "no 'host'" in str(failure)
    assert recorder.connections == 0, "no login of any kind reached the writer's server"
    assert not recorder.saw(harness.master_password)
    assert harness.logs_in(username, password)


def test_master_found_through_system_tags_is_used_on_its_own_server_only(
    harness: DatabaseHarness, sm: Any, recorder: Recorder
) -> None:
    """RDS- and Redshift-managed master secrets hold only username and password: the
    function asks the RDS or Redshift API (from the secret's system tags) where the
    database is, as AWS's functions do, and the rotated secret must name that server."""
    fake_aws = FakeAws(harness.info.host, harness.info.port)
    masterarn = master_secret(harness, sm, hostless=True, tagged=True)
    username, password = new_user(harness)
    handler = harness.make_handler()
    handler.aws_client_factory = fake_aws
    # The writer points the rotated secret at their own server, as if it were a replica:
    # at most the secret's own credential goes there (to prove it a replica), never the
    # master's; refused before anything changes.
    lure = rotated_secret(
        sm, {**harness.secret(username, password, masterarn=masterarn), "host": recorder.host, "port": recorder.port}
    )
    failure = rotate_as_secrets_manager(handler, sm, lure)
    assert isinstance(failure, RotationError)
    assert_master_never_reached(harness, recorder)
    assert harness.logs_in(username, password) and not user_exists(harness, username + "_clone")
    assert fake_aws.calls and fake_aws.calls[0][1] in (
        {"DBInstanceIdentifier": SYSTEM_TAG[harness.name][1]},
        {"DBClusterIdentifier": SYSTEM_TAG[harness.name][1]},
        {"ClusterIdentifier": "orders"},
    )
    # The same secret naming the master's own server rotates.
    arn = rotated_secret(sm, harness.secret(username, password, masterarn=masterarn))
    assert rotate_as_secrets_manager(handler, sm, arn) is None
    current = json.loads(rotations.value(sm, arn, "AWSCURRENT"))
    assert current["username"] == username + "_clone" and harness.works(current)


def test_master_with_a_host_ignores_another_host_in_the_rotated_secret(
    harness: DatabaseHarness, sm: Any, recorder: Recorder
) -> None:
    username, password = new_user(harness)
    doc = harness.secret(username, password, masterarn=master_secret(harness, sm), ssl=False)
    arn = rotated_secret(sm, {**doc, "host": recorder.host, "port": recorder.port})
    failure = rotate_as_secrets_manager(harness.make_handler(), sm, arn)
    assert isinstance(failure, RotationError)
    assert_master_never_reached(harness, recorder)
    assert harness.logs_in(username, password) and not user_exists(harness, username + "_clone")


def assert_master_never_reached(harness: DatabaseHarness, recorder: Recorder) -> None:
    """Neither the master's name nor its password reached the writer's server."""
    assert not recorder.saw(harness.master_password)
    assert not recorder.saw(harness.master_user)


# -- 4. the rotated secret cannot turn the master's TLS off ---------------------------------
def test_rotated_secret_cannot_turn_off_tls_for_the_master(
    harness: DatabaseHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = harness.make_handler()
    engine = handler.rotation.engine  # type: ignore[attr-defined]
    logins: list[tuple[str, bool | None, bool]] = []
    connect = engine.connect

    def recording(login: Any, settings: Any, *, master: bool = False) -> Any:
        logins.append((login.username, login.ssl, master))
        return connect(login, settings, master=master)

    monkeypatch.setattr(engine, "connect", recording)
    username, password = new_user(harness)
    arn = rotated_secret(sm, harness.secret(username, password, masterarn=master_secret(harness, sm), ssl=False))
    assert rotate_as_secrets_manager(handler, sm, arn) is None
    masters = [(ssl, master) for name, ssl, master in logins if name == harness.master_user]
    assert masters == [(None, True)], "the master logged in once, over verified TLS, refusing clear-text requests"
    assert any(ssl is False for name, ssl, _ in logins if name == username), "the user's own login kept its setting"


def test_plain_text_master_only_by_the_operators_setting(
    harness: DatabaseHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    username, password = new_user(harness)
    arn = rotated_secret(sm, harness.secret(username, password, masterarn=master_secret(harness, sm, ssl=False)))
    failure = rotate_as_secrets_manager(harness.make_handler(), sm, arn)
    assert isinstance(failure, ConfigurationError) and "ALLOW_PLAINTEXT_MASTER" in str(failure)
    assert harness.logs_in(username, password) and not user_exists(harness, username + "_clone")
    monkeypatch.setenv("ALLOW_PLAINTEXT_MASTER", "true")
    assert rotate_as_secrets_manager(harness.make_handler(), sm, arn) is None


def test_master_logins_refuse_clear_text_password_requests(harness: DatabaseHarness, recorder: Recorder) -> None:
    """Even on its own server, the master never answers a clear-text request (PostgreSQL:
    anything but SCRAM). The same login as an ordinary user does send it: the recorder works."""
    engine = harness.make_handler().rotation.engine  # type: ignore[attr-defined]
    password = new_password()
    login = parse(
        json.dumps(harness.secret("admin", password, host=recorder.host, port=recorder.port, ssl=False)),
        "master",
        engine.defaults,
    )
    settings = ConnectionSettings(connect_timeout=5)
    with pytest.raises(UnreachableError, match=r"clear text|SCRAM"):
        engine.connect(login, settings, master=True)
    assert recorder.connections == 1 and not recorder.saw(password)
    with pytest.raises(RotationError):
        engine.connect(login, settings)
    assert recorder.saw(password), "control: without the guard the password reaches the recorder"


def test_postgres_master_refuses_md5_too(postgres_harness: Any) -> None:
    server = Recorder("postgres-md5").start()
    try:
        engine = postgres_harness.make_handler().rotation.engine
        login = parse(
            json.dumps(postgres_harness.secret("admin", new_password(), host=server.host, port=server.port, ssl=False)),
            "master",
            engine.defaults,
        )
        with pytest.raises(UnreachableError, match="SCRAM"):
            engine.connect(login, ConnectionSettings(connect_timeout=5), master=True)
        assert server.received.count(b"p") == 0 or b"md5" not in bytes(server.received)
    finally:
        server.stop()


# -- 2. the `_clone` naming cannot steer the master to another user ---------------------------
def test_own_login_named_victim_clone_does_not_take_over_victim(harness: DatabaseHarness, sm: Any) -> None:
    victim, victim_password = new_user(harness)
    mine, my_password = new_user(harness, victim + "_clone")  # a login the writer owns
    arn = rotated_secret(sm, harness.secret(mine, my_password, masterarn=master_secret(harness, sm)))
    before = rotations.value(sm, arn, "AWSCURRENT")
    failure = rotate_as_secrets_manager(harness.make_handler(), sm, arn)
    assert isinstance(failure, ConfigurationError) and "not proven to be this secret's" in str(failure)
    assert harness.logs_in(victim, victim_password), "the victim's password did not change"
    assert harness.logs_in(mine, my_password)
    assert rotations.value(sm, arn, "AWSCURRENT") == before


def grant_beyond(harness: DatabaseHarness, clone: str) -> None:
    """Give an existing alternate user something its original does not have."""
    if harness.name == "mysql":
        harness.admin_execute("GRANT PROCESS ON *.* TO %s@'%%'", (clone,))
    else:
        harness.admin_execute(f'ALTER USER "{clone}" CREATEDB')


def test_existing_clone_with_more_than_the_user_is_not_handed_out(harness: DatabaseHarness, sm: Any) -> None:
    username, password = new_user(harness)
    clone, clone_password = new_user(harness, username + "_clone")
    if harness.name == "postgres":
        harness.admin_execute(f'GRANT "{username}" TO "{clone}"')  # tied to the user, as the rotation makes it
    grant_beyond(harness, clone)
    arn = rotated_secret(sm, harness.secret(username, password, masterarn=master_secret(harness, sm)))
    failure = rotate_as_secrets_manager(harness.make_handler(), sm, arn)
    assert isinstance(failure, ConfigurationError) and "holds what the user does not" in str(failure)
    assert harness.logs_in(clone, clone_password), "the clone's password did not change"


def test_postgres_clone_not_tied_to_the_user_is_refused(
    postgres_harness: Any, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in postgres_harness.env().items():
        monkeypatch.setenv(key, value)
    username, password = new_user(postgres_harness)
    clone, clone_password = new_user(postgres_harness, username + "_clone")  # someone else's login
    arn = rotated_secret(sm, postgres_harness.secret(username, password, masterarn=master_secret(postgres_harness, sm)))
    failure = rotate_as_secrets_manager(postgres_harness.make_handler(), sm, arn)
    assert isinstance(failure, ConfigurationError) and "does not tie it to the user" in str(failure)
    assert postgres_harness.logs_in(clone, clone_password)


# -- the protections the suite must prove, not assume ---------------------------------------
def test_current_credential_must_log_in_before_the_master_acts(harness: DatabaseHarness, sm: Any) -> None:
    """AWS's confused-deputy check: naming a user whose password one does not have."""
    victim, victim_password = new_user(harness)
    arn = rotated_secret(sm, harness.secret(victim, new_password(), masterarn=master_secret(harness, sm)))
    failure = rotate_as_secrets_manager(harness.make_handler(), sm, arn)
    assert isinstance(failure, RotationError) and "current credential could not log in" in str(failure)
    assert not user_exists(harness, victim + "_clone"), "no clone of the victim was made for the writer"
    assert harness.logs_in(victim, victim_password)


def test_tampered_pending_naming_another_host_never_receives_the_new_password(
    harness: DatabaseHarness, sm: Any, recorder: Recorder
) -> None:
    username, password = new_user(harness)
    arn = rotated_secret(sm, harness.secret(username, password))
    token = rotations.start_rotation(sm, arn)
    handler = harness.make_handler()
    handler(rotations.event(arn, token, "createSecret"), None)
    pending = json.loads(rotations.value(sm, arn, "AWSPENDING", token))
    tampered = {**pending, "host": recorder.host, "port": recorder.port, "ssl": False}
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING", RemoveFromVersionId=token)
    tampered_token = rotations.new_token()
    sm.put_secret_value(
        SecretId=arn, ClientRequestToken=tampered_token, SecretString=json.dumps(tampered), VersionStages=["AWSPENDING"]
    )
    failure = None
    for step in ("setSecret", "testSecret"):
        try:
            handler(rotations.event(arn, tampered_token, step), None)
        except RotationError as exc:
            failure = exc
            break
    assert isinstance(failure, ConfigurationError) and "must match the current secret" in str(failure)
    assert recorder.connections == 0 and not recorder.saw(pending["password"])
    assert harness.logs_in(username, password)


def test_rotation_token_reaches_put_secret_value(
    postgres_harness: Any, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in postgres_harness.env().items():
        monkeypatch.setenv(key, value)
    username, password = new_user(postgres_harness)
    arn = rotated_secret(sm, postgres_harness.secret(username, password))
    handler = postgres_harness.make_handler()
    sent: list[Any] = []
    handler.client.meta.events.register(
        "provide-client-params.secrets-manager.PutSecretValue",
        lambda params, **_: sent.append(params.get("RotationToken")),
    )
    token = rotations.start_rotation(sm, arn)
    rotation_token = "rotation-token-" + rotations.new_token()
    handler(rotations.event(arn, token, "createSecret", rotation_token=rotation_token), None)
    assert sent == [rotation_token]


# -- 6. the other secrets a rotated secret may name --------------------------------------------
def test_master_must_be_one_of_the_trusted_secrets(
    harness: DatabaseHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With TRUSTED_SECRET_ARNS (the stack sets it from the master ARNs it lets the function
    read), a rotated secret cannot name any other secret as its master: not another secret
    this function rotates, which the function can read too."""
    username, password = new_user(harness)
    listed = master_secret(harness, sm)
    other_user, other_password = new_user(harness)
    other = rotated_secret(sm, harness.secret(other_user, other_password))  # rotated by this function too
    monkeypatch.setenv("TRUSTED_SECRET_ARNS", listed)
    arn = rotated_secret(sm, harness.secret(username, password, masterarn=other))
    failure = rotate_as_secrets_manager(harness.make_handler(), sm, arn)
    assert isinstance(failure, ConfigurationError) and "TRUSTED_SECRET_ARNS" in str(failure)
    assert not user_exists(harness, username + "_clone")
    # By its partial ARN (no suffix) or full ARN, the listed master is accepted.
    arn = rotated_secret(sm, harness.secret(username, password, masterarn=listed[:-7]))
    assert rotate_as_secrets_manager(harness.make_handler(), sm, arn) is None


def test_a_secret_cannot_be_its_own_master(harness: DatabaseHarness, sm: Any) -> None:
    username, password = new_user(harness)
    arn = rotated_secret(sm, harness.secret(username, password))
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps(harness.secret(username, password, masterarn=arn)))
    failure = rotate_as_secrets_manager(harness.make_handler(), sm, arn)
    assert isinstance(failure, ConfigurationError) and "cannot be the rotated secret itself" in str(failure)
    assert harness.logs_in(username, password)
