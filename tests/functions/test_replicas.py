"""Secrets naming a read replica, against real replication on this machine: a PostgreSQL
physical standby (pg_basebackup -R) and a MariaDB replica (devtools/replicas.py).

Every password change happens on the primary; setSecret then waits until the replica the
secret names accepts the new password. Alternating users prove the replica belongs to the
master's database before the master acts (PostgreSQL: the same system identifier; MariaDB:
the primary lists the replica); single user finds the primary from 'writer_host'.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from devtools.servers import (
    MariaDBServer,
    PostgresServer,
    mariadb_from_env_or_start,
    mariadb_replica_of,
    postgres_standby_of,
)
from rotation_core import ConfigurationError
from tests.engines import DatabaseHarness, MySQLHarness, PostgresHarness, new_password, unique
from tests.security.test_database_attacks import master_secret, rotate_as_secrets_manager, rotated_secret, user_exists
from tests.support import rotations


@dataclass
class Replicated:
    harness: DatabaseHarness  # on the primary
    replica: Any  # a PostgresStandby or MariaDBReplica
    other: DatabaseHarness  # another primary
    other_replica: Any

    def wait(self) -> None:
        for replica in (self.replica, self.other_replica):
            (replica.wait_replayed if hasattr(replica, "wait_replayed") else replica.wait_caught_up)()

    def on_replica(self, doc: dict[str, Any], replica: Any = None) -> dict[str, Any]:
        replica = replica or self.replica
        return {**doc, "host": replica.info.host, "port": replica.info.port}

    def replica_accepts(self, doc: dict[str, Any]) -> bool:
        try:
            conn = self.replica.connect(doc["username"], doc["password"])
        except Exception:  # refused, whatever the driver's error type
            return False
        conn.close()
        return True


def _postgres() -> Iterator[Replicated]:
    primary, other = PostgresServer(), PostgresServer()
    primary.start()
    other.start()
    try:
        yield Replicated(
            PostgresHarness(primary), postgres_standby_of(primary), PostgresHarness(other), postgres_standby_of(other)
        )
    finally:
        other.stop()
        primary.stop()


def _mariadb() -> Iterator[Replicated]:
    primary = mariadb_from_env_or_start(replication=True)
    other = MariaDBServer(replication=True)
    other.start()
    try:
        harness, other_harness = MySQLHarness(primary), MySQLHarness(other)
        for h in (harness, other_harness):  # SHOW SLAVE HOSTS: how the primary lists its replicas
            h.admin_execute("GRANT REPLICATION MASTER ADMIN ON *.* TO %s@'%%'", (h.master_user,))
        yield Replicated(harness, mariadb_replica_of(primary), other_harness, mariadb_replica_of(other))
    finally:
        other.stop()
        primary.stop()


@pytest.fixture(scope="module", params=["postgres", "mysql"])
def replicated(request: pytest.FixtureRequest) -> Iterator[Replicated]:
    yield from (_postgres() if request.param == "postgres" else _mariadb())


@pytest.fixture
def rep(
    replicated: Replicated, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, tmp_path: pathlib.Path
) -> Replicated:
    # Both primaries' CAs, so that the other primary's replica is refused for what it is,
    # not for its certificate.
    bundle = tmp_path / "cas.pem"
    bundle.write_text("".join(pathlib.Path(h.info.ca_file).read_text() for h in (replicated.harness, replicated.other)))
    monkeypatch.setenv("DB_CA_BUNDLE", str(bundle))
    return replicated


def new_user(harness: DatabaseHarness) -> tuple[str, str]:
    username, password = unique("app"), new_password()
    harness.create_user(username, password)
    return username, password


def test_alternating_users_on_a_replica(rep: Replicated, sm: Any) -> None:
    username, password = new_user(rep.harness)
    rep.wait()
    doc = rep.on_replica(rep.harness.secret(username, password, masterarn=master_secret(rep.harness, sm)))
    arn = rotated_secret(sm, doc)
    handler = rep.harness.make_handler()
    for _ in range(3):  # both directions: clone created, original changed, clone changed
        before = json.loads(rotations.value(sm, arn, "AWSCURRENT"))
        assert rotate_as_secrets_manager(handler, sm, arn) is None
        after = json.loads(rotations.value(sm, arn, "AWSCURRENT"))
        assert after["username"] != before["username"] and after["host"] == rep.replica.info.host
        assert rep.harness.works(after), "the new credential logs in on the primary"
        assert rep.replica_accepts(after), "and on the replica the secret names"


def test_single_user_on_a_replica_changes_the_password_on_its_writer(rep: Replicated, sm: Any) -> None:
    username, password = new_user(rep.harness)
    rep.wait()
    primary = rep.harness.info
    doc = rep.on_replica(rep.harness.secret(username, password, writer_host=primary.host, writer_port=primary.port))
    arn = rotated_secret(sm, doc)
    assert rotate_as_secrets_manager(rep.harness.make_handler(), sm, arn) is None
    after = json.loads(rotations.value(sm, arn, "AWSCURRENT"))
    assert after["password"] != password and after["writer_host"] == primary.host
    assert rep.harness.works(after) and rep.replica_accepts(after)
    assert not rep.harness.logs_in(username, password)


def test_single_user_on_a_replica_without_its_writer_is_refused(rep: Replicated, sm: Any) -> None:
    username, password = new_user(rep.harness)
    rep.wait()
    arn = rotated_secret(sm, rep.on_replica(rep.harness.secret(username, password)))
    failure = rotate_as_secrets_manager(rep.harness.make_handler(), sm, arn)
    assert isinstance(failure, ConfigurationError) and "'writer_host'" in str(failure)
    assert rep.harness.logs_in(username, password)


def test_a_replica_of_another_primary_is_refused_before_anything_changes(rep: Replicated, sm: Any) -> None:
    """The same user and password exist on another primary and its replica: a secret naming
    that replica, with this primary's master, is refused; nothing changes on either."""
    username, password = new_user(rep.harness)
    rep.other.create_user(username, password)
    rep.wait()
    doc = rep.on_replica(
        rep.harness.secret(username, password, masterarn=master_secret(rep.harness, sm)), rep.other_replica
    )
    arn = rotated_secret(sm, doc)
    failure = rotate_as_secrets_manager(rep.harness.make_handler(), sm, arn)
    assert isinstance(failure, ConfigurationError) and "nor a proven replica" in str(failure)
    assert not user_exists(rep.harness, username + "_clone")
    assert rep.harness.logs_in(username, password) and rep.other.logs_in(username, password)
