"""What only PostgreSQL has: SCRAM verifiers on the wire, TLS modes, no ownership drift
between alternating users, grants re-synced, and psycopg2 loaded only when needed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools.tls import generate_ca
from rotation_core import ConfigurationError, UnreachableError
from rotation_core.credentials import DatabaseSecret
from rotation_core.settings import ConnectionSettings
from rotation_core.values import Sensitive
from tests.conftest import RotationCase
from tests.engines import PostgresHarness, new_password, unique
from tests.support import rotations


@pytest.fixture
def pg(postgres_harness: PostgresHarness, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> PostgresHarness:
    for key, value in postgres_harness.env().items():
        monkeypatch.setenv(key, value)
    return postgres_harness


def login(pg: PostgresHarness, username: str, password: str, ssl: bool | None = None) -> DatabaseSecret:
    return DatabaseSecret(
        engine="postgres",
        host=pg.info.host,
        port=pg.info.port,
        username=username,
        password=Sensitive(password),
        dbname=pg.info.dbname,
        ssl=ssl,
    )


def session_ssl(conn: Any) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return bool(cur.fetchone()[0])


@pytest.mark.parametrize("strategy", ["single-user", "alternating-users"])
def test_the_server_never_receives_a_password_in_clear_text(pg: PostgresHarness, sm: Any, strategy: str) -> None:
    if not pg.server_log():
        pytest.skip("an external server: its log cannot be read")
    case = RotationCase(pg, sm, strategy)
    passwords = [case.password]
    for _ in range(2):
        case.rotate()
        passwords.append(case.current()["password"])
    log = pg.server_log()
    assert "SCRAM-SHA-256$4096:" in log, "log_statement=all recorded the ALTER ROLE (with a verifier)"
    for password in passwords:
        assert password not in log


def test_tls_is_verified_by_default(pg: PostgresHarness) -> None:
    engine = pg.module.PostgresEngine()
    password = new_password()
    user = unique("tls")
    pg.create_user(user, password)
    conn = engine.connect(login(pg, user, password), ConnectionSettings(ca_bundle=pg.info.ca_file))
    try:
        assert session_ssl(conn)
    finally:
        conn.close()


def test_a_server_certificate_from_another_ca_is_refused(pg: PostgresHarness, tmp_path: Any) -> None:
    other = generate_ca(str(tmp_path))
    engine = pg.module.PostgresEngine()
    with pytest.raises(UnreachableError, match="TLS"):
        engine.connect(login(pg, pg.master_user, pg.master_password), ConnectionSettings(ca_bundle=other))


def test_ssl_false_turns_tls_off_explicitly(pg: PostgresHarness) -> None:
    engine = pg.module.PostgresEngine()
    conn = engine.connect(login(pg, pg.master_user, pg.master_password, ssl=False), ConnectionSettings())
    try:
        assert not session_ssl(conn)
    finally:
        conn.close()


def test_unreachable_server_is_a_clear_error(pg: PostgresHarness) -> None:
    engine = pg.module.PostgresEngine()
    target = login(pg, pg.master_user, pg.master_password)
    closed = DatabaseSecret(**{**target.__dict__, "port": 1})
    with pytest.raises(UnreachableError, match="cannot connect") as info:
        engine.connect(closed, ConnectionSettings(ca_bundle=pg.info.ca_file, connect_timeout=2))
    assert pg.master_password not in str(info.value)


def test_objects_created_by_either_user_belong_to_the_original_role(pg: PostgresHarness, sm: Any) -> None:
    case = RotationCase(pg, sm, "alternating-users")
    pg.admin_execute(f'GRANT CREATE ON SCHEMA public TO "{case.username}"')
    case.rotate()
    clone = case.current()
    assert clone["username"] == case.username + "_clone"
    table = unique("made_by_clone")
    conn = pg.server.connect(clone["username"], clone["password"])
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE TABLE "{table}" (id int)')
            cur.execute(f'INSERT INTO "{table}" VALUES (1)')
    finally:
        conn.close()
    owner = pg.admin_execute("SELECT tableowner FROM pg_tables WHERE tablename = %s", (table,))
    assert owner == [(case.username,)]
    conn = pg.server.connect(case.username, case.password)
    try:
        with conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{table}"')
            assert cur.fetchone() == (1,)
    finally:
        conn.close()


def test_privileges_of_the_original_are_resynced_every_rotation(pg: PostgresHarness, sm: Any) -> None:
    case = RotationCase(pg, sm, "alternating-users")
    case.rotate()  # creates the clone
    case.rotate()  # back to the original
    # Later, the original role gains an attribute and a membership.
    group, table = unique("readers"), unique("reports")
    pg.admin_execute(f'ALTER ROLE "{case.username}" CREATEDB CONNECTION LIMIT 7')
    pg.admin_execute(f'CREATE ROLE "{group}"')
    pg.admin_execute(f'CREATE TABLE "{table}" (id int)')
    pg.admin_execute(f'GRANT SELECT ON "{table}" TO "{group}"')
    pg.admin_execute(f'GRANT "{group}" TO "{case.username}"')
    case.rotate()  # to the clone again: re-synced
    clone = case.current()
    rows = pg.admin_execute("SELECT rolcreatedb, rolconnlimit FROM pg_roles WHERE rolname = %s", (clone["username"],))
    assert rows == [(True, 7)]
    conn = pg.server.connect(clone["username"], clone["password"])
    try:
        with conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{table}"')
            assert cur.fetchone() == (0,)
    finally:
        conn.close()


def test_a_clone_name_over_63_bytes_is_refused_before_anything_is_written(pg: PostgresHarness, sm: Any) -> None:
    username, password = "u" * 58, new_password()  # 58 + len("_clone") = 64 > 63
    pg.admin_execute(f'DROP ROLE IF EXISTS "{username}"')
    pg.create_user(username, password)
    master = sm.create_secret(Name=unique("master"), SecretString=json.dumps(pg.master()))["ARN"]
    arn = sm.create_secret(
        Name=unique("long"), SecretString=json.dumps(pg.secret(username, password, masterarn=master))
    )["ARN"]
    token = rotations.start_rotation(sm, arn)
    with pytest.raises(ConfigurationError, match="63 bytes"):
        pg.make_handler()(rotations.event(arn, token, "createSecret"), None)
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        rotations.value(sm, arn, "AWSPENDING", token)
