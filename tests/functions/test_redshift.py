"""What only Redshift has: md5 password forms on the wire, its password rules, groups and
privileges re-synced to the clone, TLS modes through redshift_connector, and the driver
loaded only when needed.

The Redshift here is PostgreSQL 15 with md5 authentication behind a shim that lets the
real redshift_connector in and emulates the SVV catalog views the engine reads
(tests/support/redshift_shim.py). What only a real Redshift does is tested at statement
level in test_redshift_statements.py; docs/redshift.md says which is which.
"""

from __future__ import annotations

import json
import re
import string
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.tls import generate_ca
from rotation_core import AuthenticationError, ConfigurationError, UnreachableError, passwords
from rotation_core.credentials import DatabaseSecret, parse
from rotation_core.settings import ConnectionSettings, password_policy
from rotation_core.values import Sensitive
from tests.conftest import RotationCase
from tests.engines import RedshiftHarness, new_password, redshift_md5, unique
from tests.support import functions, rotations
from tests.support.functions import ROOT

FORBIDDEN = "'\"\\/@ "


@pytest.fixture
def rs(redshift_harness: RedshiftHarness, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> RedshiftHarness:
    for key, value in redshift_harness.env().items():
        monkeypatch.setenv(key, value)
    return redshift_harness


def emulated(rs: RedshiftHarness) -> RedshiftHarness:
    if rs.shim is None:
        pytest.skip("needs the emulation (its server log, its shim); TEST_REDSHIFT_URL names a real Redshift")
    return rs


def login(rs: RedshiftHarness, username: str, password: str, ssl: bool | None = None, **changes: Any) -> DatabaseSecret:
    fields: dict[str, Any] = {
        "engine": "redshift",
        "host": rs.info.host,
        "port": rs.info.port,
        "username": username,
        "password": Sensitive(password),
        "dbname": rs.dbname,
        "ssl": ssl,
    }
    fields.update(changes)
    return DatabaseSecret(**fields)


def query(conn: Any, statement: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        cur.execute(statement, params)
        return [tuple(row) for row in cur.fetchall()]
    finally:
        cur.close()


def session_ssl(conn: Any) -> bool:
    return bool(query(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0][0])


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stored_password(rs: RedshiftHarness, username: str) -> str:
    return str(rs.admin_execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (username,))[0][0])


# -- the password never travels in clear text ------------------------------------------
@pytest.mark.parametrize("strategy", ["single-user", "alternating-users"])
def test_only_the_md5_form_of_a_password_reaches_the_server(rs: RedshiftHarness, sm: Any, strategy: str) -> None:
    rs = emulated(rs)
    case = RotationCase(rs, sm, strategy)
    seen = [case.password]
    for _ in range(2):
        case.rotate()
        current = case.current()
        seen.append(current["password"])
        # What the server holds is md5(password + user name) of the user it belongs to.
        expected = redshift_md5(current["password"], current["username"])
        assert stored_password(rs, current["username"]) == expected
    log = rs.server_log()
    statements = re.findall(r"(?:ALTER|CREATE) USER (\"[^\n]*?\") PASSWORD '(md5[0-9a-f]{32})'", log)
    users = {name for name, _ in statements}
    assert ident(case.username) in users or ident(case.username + "_clone") in users, "the change was logged"
    assert all(re.fullmatch(r"md5[0-9a-f]{32}", verifier) for _, verifier in statements)
    for password in [*seen, rs.master_password]:
        assert password not in log


# -- Redshift's password rules, whatever the environment asks ---------------------------
def test_generated_passwords_follow_redshift_rules_whatever_the_environment_asks() -> None:
    rules = functions.load("redshift").RedshiftEngine.password_rules
    env = {
        "EXCLUDE_NUMBERS": "true",
        "EXCLUDE_UPPERCASE": "true",
        "EXCLUDE_LOWERCASE": "true",
        "EXCLUDE_CHARACTERS": "",  # "exclude nothing" still excludes what Redshift refuses
        "REQUIRE_EACH_INCLUDED_TYPE": "false",
        "PASSWORD_LENGTH": "8",
    }
    for _ in range(200):
        password = passwords.generate(password_policy(env), rules).reveal()
        assert len(password) == 8
        assert any(c in string.ascii_lowercase for c in password)
        assert any(c in string.ascii_uppercase for c in password)
        assert any(c in string.digits for c in password)
        assert not set(password) & set(FORBIDDEN)
        assert all(33 <= ord(c) <= 126 for c in password)


@pytest.mark.parametrize("length", ["7", "65"])
def test_a_length_redshift_refuses_is_refused_before_anything_is_written(
    rs: RedshiftHarness, sm: Any, monkeypatch: pytest.MonkeyPatch, length: str
) -> None:
    monkeypatch.setenv("PASSWORD_LENGTH", length)
    case = RotationCase(rs, sm, "single-user")
    token = rotations.start_rotation(sm, case.arn)
    with pytest.raises(ConfigurationError, match="between 8 and 64"):
        case.handler(rotations.event(case.arn, token, "createSecret"), None)
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        rotations.value(sm, case.arn, "AWSPENDING", token)


def test_a_rotation_with_digits_excluded_still_gets_digits(
    rs: RedshiftHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCLUDE_NUMBERS", "true")
    monkeypatch.setenv("EXCLUDE_PUNCTUATION", "true")
    monkeypatch.setenv("PASSWORD_LENGTH", "64")
    case = RotationCase(rs, sm, "single-user")
    case.rotate()
    password = case.current()["password"]
    assert len(password) == 64 and any(c.isdigit() for c in password) and password.isalnum()
    assert case.works(case.current())


# -- the alternate user: groups, privileges, objects of either user --------------------
@pytest.fixture
def pair(rs: RedshiftHarness, sm: Any) -> Iterator[tuple[RotationCase, list[str]]]:
    """An alternating-users secret already rotated twice (the clone exists; back to the original)."""
    case = RotationCase(rs, sm, "alternating-users")
    case.rotate()
    case.rotate()
    created: list[str] = []
    yield case, created
    for statement in reversed(created):
        rs.admin_execute(statement)


def groups_of(rs: RedshiftHarness, user: str) -> set[str]:
    rows = rs.admin_execute(
        "SELECT g.groname FROM pg_group g, pg_user u WHERE u.usename = %s AND u.usesysid = ANY(g.grolist)", (user,)
    )
    return {row[0] for row in rows}


def can(rs: RedshiftHarness, user: str, table: str, privilege: str) -> bool:
    return bool(rs.admin_execute("SELECT has_table_privilege(%s, %s, %s)", (user, table, privilege))[0][0])


def test_groups_and_privileges_of_the_original_are_resynced_to_the_clone(
    rs: RedshiftHarness, pair: tuple[RotationCase, list[str]]
) -> None:
    case, created = pair
    original, clone = case.username, case.username + "_clone"
    readers, writers, stale = unique("readers"), unique("writers"), unique("stale")
    schema, table, granted, revoked = unique("mart"), unique("facts"), unique("direct"), unique("gone")
    for group in (readers, writers, stale):
        rs.admin_execute(f"CREATE GROUP {ident(group)}")
        created.append(f"DROP GROUP {ident(group)}")
    rs.admin_execute(f"CREATE SCHEMA {ident(schema)}")
    created.append(f"DROP SCHEMA {ident(schema)} CASCADE")
    for name in (table, granted, revoked):
        rs.admin_execute(f"CREATE TABLE {ident(schema)}.{ident(name)} (id int)")
    # After the clone was made: the original joins groups and gains direct privileges;
    # the clone drifted (a group and a privilege the original does not have).
    rs.admin_execute(f"ALTER GROUP {ident(readers)} ADD USER {ident(original)}")
    rs.admin_execute(f"ALTER GROUP {ident(writers)} ADD USER {ident(original)}")
    rs.admin_execute(f"ALTER GROUP {ident(stale)} ADD USER {ident(clone)}")
    rs.admin_execute(f"GRANT USAGE ON SCHEMA {ident(schema)} TO GROUP {ident(readers)}")
    rs.admin_execute(f"GRANT SELECT ON {ident(schema)}.{ident(table)} TO GROUP {ident(readers)}")
    rs.admin_execute(f"GRANT SELECT, INSERT ON {ident(schema)}.{ident(granted)} TO {ident(original)}")
    rs.admin_execute(f"GRANT CREATE ON SCHEMA {ident(schema)} TO {ident(original)}")
    rs.admin_execute(f"GRANT DELETE ON {ident(schema)}.{ident(revoked)} TO {ident(clone)}")
    rs.admin_execute(f"ALTER USER {ident(original)} CREATEDB")

    case.rotate()  # to the clone: re-synced
    assert case.current()["username"] == clone
    assert groups_of(rs, clone) == groups_of(rs, original) == {readers, writers, original + "_pair"}
    qualified = f"{ident(schema)}.{ident(granted)}"
    assert can(rs, clone, qualified, "SELECT") and can(rs, clone, qualified, "INSERT")
    assert not can(rs, clone, f"{ident(schema)}.{ident(revoked)}", "DELETE"), "drift is revoked"
    assert rs.admin_execute("SELECT usecreatedb FROM pg_user WHERE usename = %s", (clone,)) == [(True,)]
    current = case.current()
    conn = rs.connect(current["username"], current["password"])
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {ident(schema)}.{ident(table)}")  # through the group
            assert cur.fetchone() == (0,)
            cur.execute(f"INSERT INTO {qualified} VALUES (1)")  # direct privilege, mirrored
            cur.execute(f"CREATE TABLE {ident(schema)}.{ident('made_by_clone')} (id int)")  # CREATE mirrored
    finally:
        conn.close()


def test_objects_either_user_creates_are_usable_by_the_other(
    rs: RedshiftHarness, pair: tuple[RotationCase, list[str]]
) -> None:
    case, created = pair
    original = case.username
    schema = unique("shared")
    rs.admin_execute(f"CREATE SCHEMA {ident(schema)}")
    created.append(f"DROP SCHEMA {ident(schema)} CASCADE")
    rs.admin_execute(f"GRANT USAGE, CREATE ON SCHEMA {ident(schema)} TO {ident(original)}")
    before = case.current()
    conn = rs.connect(before["username"], before["password"])
    try:
        with conn.cursor() as cur:  # the original's table, made before the next rotation
            cur.execute(f"CREATE TABLE {ident(schema)}.by_original (id int)")
    finally:
        conn.close()
    case.rotate()  # to the clone: it gets USAGE, CREATE; the original's table through the pair
    clone = case.current()
    conn = rs.connect(clone["username"], clone["password"])
    try:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {ident(schema)}.by_original VALUES (1)")
            cur.execute(f"CREATE TABLE {ident(schema)}.by_clone (id int)")  # default privileges
            cur.execute(f"INSERT INTO {ident(schema)}.by_clone VALUES (2)")
    finally:
        conn.close()
    conn = rs.connect(before["username"], before["password"])  # the original still logs in
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM {ident(schema)}.by_clone")
            assert cur.fetchall() == [(2,)]
            cur.execute(f"UPDATE {ident(schema)}.by_clone SET id = 3")
    finally:
        conn.close()
    owner = rs.admin_execute(
        "SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 'by_clone'", (schema,)
    )
    assert owner == [(clone["username"],)], "Redshift has no SET role: the clone owns what it creates"


def test_a_pair_group_with_someone_else_in_it_is_refused(rs: RedshiftHarness, sm: Any) -> None:
    case = RotationCase(rs, sm, "alternating-users")
    intruder = unique("intruder")
    rs.create_user(intruder, new_password())
    rs.admin_execute(f"CREATE GROUP {ident(case.username + '_pair')} WITH USER {ident(intruder)}")
    token = rotations.start_rotation(sm, case.arn)
    rotations.run_steps(case.handler, case.arn, token, ("createSecret",))
    with pytest.raises(ConfigurationError, match="other members"):
        case.handler(rotations.event(case.arn, token, "setSecret"), None)
    assert not rs.admin_execute("SELECT 1 FROM pg_user WHERE usename = %s", (case.username + "_clone",))


def test_a_clone_name_over_127_bytes_is_refused_before_anything_is_written(rs: RedshiftHarness, sm: Any) -> None:
    master = sm.create_secret(Name=unique("master"), SecretString=json.dumps(rs.master()))["ARN"]
    doc = rs.secret("é" * 61, new_password(), masterarn=master)  # 122 bytes; with "_clone", 128
    arn = sm.create_secret(Name=unique("long"), SecretString=json.dumps(doc))["ARN"]
    token = rotations.start_rotation(sm, arn)
    with pytest.raises(ConfigurationError, match="127 bytes"):
        rs.make_handler()(rotations.event(arn, token, "createSecret"), None)
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        rotations.value(sm, arn, "AWSPENDING", token)


def test_single_user_refuses_a_name_that_is_not_the_stored_one(rs: RedshiftHarness) -> None:
    """Redshift folds unquoted names to lower case: an md5 form for another spelling of the
    name would never match, so the function changes nothing."""
    engine = rs.module.RedshiftEngine()
    user, password = unique("folded"), new_password()
    rs.create_user(user, password)
    conn = engine.connect(login(rs, user, password), ConnectionSettings())
    try:
        with pytest.raises(ConfigurationError, match="stores"):
            engine.set_own_password(conn, user.upper(), Sensitive(new_password()))
    finally:
        conn.close()
    assert rs.logs_in(user, password)


# -- Redshift's names, privileges and catalogs, as the emulation shows them ------------
def alternating_secret(rs: RedshiftHarness, sm: Any, username: str) -> str:
    password = new_password()
    rs.create_user(username, password)
    master = sm.create_secret(Name=unique("master"), SecretString=json.dumps(rs.master()))["ARN"]
    doc = rs.secret(username, password, masterarn=master)
    return str(sm.create_secret(Name=unique("mixed"), SecretString=json.dumps(doc))["ARN"])


def test_the_pair_group_of_a_mixed_case_user_is_the_lower_case_name_redshift_stores(
    rs: RedshiftHarness, sm: Any
) -> None:
    """Redshift folds group names to lower case: the group is created, and looked up again
    on every rotation, by that name (tests/functions/test_redshift_statements.py shows the
    second rotation against Redshift's folding)."""
    username = "Mixed_" + unique("Case")
    arn = alternating_secret(rs, sm, username)
    handler = rs.make_handler()
    for _ in range(3):  # to the clone, back, to the clone: the group is found each time
        rotations.rotate(handler, sm, arn)
    current = json.loads(rotations.value(sm, arn))
    assert current["username"] == username + "_clone" and rs.logs_in(current["username"], current["password"])
    pair_name = username.lower() + "_pair"
    assert groups_of(rs, username) == groups_of(rs, username + "_clone") == {pair_name}
    assert not rs.admin_execute("SELECT 1 FROM pg_group WHERE groname = %s", (username + "_pair",))


def test_the_master_s_sync_turns_case_sensitive_identifiers_on_and_mirrors_mixed_case_names(
    rs: RedshiftHarness, pair: tuple[RotationCase, list[str]]
) -> None:
    rs = emulated(rs)
    case, created = pair
    original, clone = case.username, case.username + "_clone"
    schema, table = unique("Mixed_Schema"), unique("OrdersQ1")
    rs.admin_execute(f"CREATE SCHEMA {ident(schema)}")
    created.append(f"DROP SCHEMA {ident(schema)} CASCADE")
    rs.admin_execute(f"CREATE TABLE {ident(schema)}.{ident(table)} (id int)")
    rs.admin_execute(f"GRANT USAGE ON SCHEMA {ident(schema)} TO {ident(original)}")
    rs.admin_execute(f"GRANT SELECT, TRUNCATE ON {ident(schema)}.{ident(table)} TO {ident(original)}")
    before = len(rs.shim.emulated_settings)
    case.rotate()
    assert rs.shim.emulated_settings[before:] == ["true"], "the setting reached the server once, in the sync"
    qualified = f"{ident(schema)}.{ident(table)}"
    assert can(rs, clone, qualified, "SELECT") and can(rs, clone, qualified, "TRUNCATE")
    current = case.current()
    conn = rs.connect(current["username"], current["password"])
    try:
        with conn.cursor() as cur:
            cur.execute(f"TRUNCATE {qualified}")  # TRUNCATE, mirrored
    finally:
        conn.close()


def test_database_privileges_are_mirrored_one_database_per_statement(
    rs: RedshiftHarness, pair: tuple[RotationCase, list[str]]
) -> None:
    rs = emulated(rs)  # a second database, and the server log
    case, created = pair
    original, clone = case.username, case.username + "_clone"
    other = unique("warehouse")
    rs.admin_execute(f"CREATE DATABASE {ident(other)}")
    created.insert(0, f"DROP DATABASE {ident(other)}")
    created.append(f"REVOKE ALL ON DATABASE {ident(rs.dbname)} FROM {ident(original)}, {ident(clone)}")
    rs.admin_execute(f"GRANT CREATE ON DATABASE {ident(rs.dbname)}, {ident(other)} TO {ident(original)}")
    rs.admin_execute(f"GRANT TEMP ON DATABASE {ident(other)} TO {ident(clone)}")  # drift
    logged = len(rs.server_log())
    case.rotate()

    def has(database: str, privilege: str) -> bool:
        query = "SELECT has_database_privilege(%s, %s, %s)"
        return bool(rs.admin_execute(query, (clone, database, privilege))[0][0])

    assert has(rs.dbname, "CREATE") and has(other, "CREATE")
    explicit = rs.admin_execute(
        "SELECT privilege_type FROM svv_database_privileges WHERE database_name = %s AND identity_name = %s",
        (other, clone),
    )
    assert explicit == [("CREATE",)], "the clone's TEMP drift was revoked"
    sent = re.findall(
        r"(?:GRANT|REVOKE) \w+ ON DATABASE ([^\n]*?) (?:TO|FROM) " + re.escape(ident(clone)), rs.server_log()[logged:]
    )
    assert sorted(sent) == sorted([ident(rs.dbname), ident(other), ident(other)]), "one database per statement"


def test_external_schemas_get_usage_outside_the_transaction_and_converge_after_a_fault_between(
    rs: RedshiftHarness, pair: tuple[RotationCase, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redshift refuses GRANT on an external schema inside a transaction block, so each is
    its own commit after the sync's: a failure after any of them, then Secrets Manager's
    retry of the rotation, converges. (PostgreSQL has no external schemas: the emulation
    lists the schemas marked so in SVV_EXTERNAL_SCHEMAS.)"""
    rs = emulated(rs)
    case, created = pair
    original, clone, group = case.username, case.username + "_clone", case.username + "_pair"
    read, own = unique("spectrum_read"), unique("spectrum_own")
    rs.admin_execute(f"CREATE SCHEMA {ident(read)}")
    rs.admin_execute(f"CREATE SCHEMA {ident(own)} AUTHORIZATION {ident(original)}")
    created.extend(f"DROP SCHEMA {ident(name)} CASCADE" for name in (read, own))
    for name in (read, own):
        rs.mark_external(name)
    rs.admin_execute(f"GRANT USAGE ON SCHEMA {ident(read)} TO {ident(original)}")
    outside = rs.module._execute_outside_transaction
    for fail_after in (1, 2):
        rs.admin_execute(f"REVOKE ALL ON SCHEMA {ident(read)} FROM {ident(clone)}")
        rs.admin_execute(f"REVOKE ALL ON SCHEMA {ident(own)} FROM GROUP {ident(group)}")
        sent: list[str] = []

        def failing(conn: Any, statement: str, _after: int = fail_after, _sent: list[str] = sent) -> None:
            outside(conn, statement)
            _sent.append(statement)
            if len(_sent) == _after:
                raise RuntimeError("injected fault after a statement outside the transaction")

        monkeypatch.setattr(rs.module, "_execute_outside_transaction", failing)
        token = rotations.start_rotation(case.sm, case.arn)
        rotations.run_steps(case.handler, case.arn, token, ("createSecret",))
        with pytest.raises(RuntimeError, match="injected fault"):
            case.handler(rotations.event(case.arn, token, "setSecret"), None)
        assert case.works(case.current()), "the current credential still logs in"
        monkeypatch.setattr(rs.module, "_execute_outside_transaction", outside)
        rotations.run_steps(case.handler, case.arn, token)  # Secrets Manager's retry
        assert (
            sent
            == [
                f"GRANT USAGE ON SCHEMA {ident(own)} TO GROUP {ident(group)}",
                f"GRANT USAGE ON SCHEMA {ident(read)} TO {ident(clone)}",
            ][:fail_after]
        ), "the statements outside the transaction, each its own commit"
        usage = "SELECT has_schema_privilege(%s, %s, 'USAGE')"
        assert rs.admin_execute(usage, (clone, read)) == [(True,)]
        assert rs.admin_execute(usage, (group, own)) == [(True,)]
        assert rs.admin_execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", (group, own)) == [(False,)], (
            "an external schema takes USAGE only: no GRANT ALL in the transaction"
        )
        case.rotate()  # back to the original, for the next round


def test_a_clone_whose_name_differs_only_in_case_is_refused_before_the_master_changes_anything(
    rs: RedshiftHarness, sm: Any
) -> None:
    username = unique("casey")
    arn = alternating_secret(rs, sm, username)
    lookalike = username.capitalize() + "_clone"
    rs.create_user(lookalike, new_password())
    handler = rs.make_handler()
    token = rotations.start_rotation(sm, arn)
    rotations.run_steps(handler, arn, token, ("createSecret",))
    with pytest.raises(ConfigurationError, match="differ only in letter case") as info:
        handler(rotations.event(arn, token, "setSecret"), None)
    assert "field 'username'" in str(info.value)
    assert not rs.admin_execute("SELECT 1 FROM pg_user WHERE usename = %s", (username + "_clone",))
    assert not rs.admin_execute("SELECT 1 FROM pg_group WHERE groname = %s", (username + "_pair",))


def test_the_master_refuses_an_original_whose_name_differs_only_in_case(rs: RedshiftHarness) -> None:
    engine = rs.module.RedshiftEngine()
    user, password = unique("folded"), new_password()
    rs.create_user(user, password)
    conn = engine.connect(login(rs, rs.master_user, rs.master_password), ConnectionSettings(), master=True)
    try:
        for call in (
            lambda: engine.alternate_standing(conn, user.upper(), user.upper() + "_clone"),
            lambda: engine.sync_clone(conn, user.upper(), user.upper() + "_clone", Sensitive(new_password())),
            lambda: engine.set_password(conn, user.upper(), Sensitive(new_password())),
        ):
            with pytest.raises(ConfigurationError, match="field 'username' and the name of the user Redshift stores"):
                call()
    finally:
        conn.close()
    assert rs.logs_in(user, password)
    assert not rs.admin_execute("SELECT 1 FROM pg_user WHERE lower(usename) = %s", (user + "_clone",))


# -- connecting: TLS, errors, timeouts -------------------------------------------------
def test_tls_is_verified_by_default(rs: RedshiftHarness) -> None:
    rs = emulated(rs)
    engine = rs.module.RedshiftEngine()
    conn = engine.connect(login(rs, rs.master_user, rs.master_password), ConnectionSettings())
    try:
        assert session_ssl(conn)
    finally:
        conn.close()


def test_a_certificate_from_another_ca_is_refused(rs: RedshiftHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    rs = emulated(rs)
    monkeypatch.setenv("SSL_CERT_FILE", generate_ca(tempfile.mkdtemp()))
    engine = rs.module.RedshiftEngine()
    with pytest.raises(UnreachableError, match="TLS: the certificate of") as info:
        engine.connect(login(rs, rs.master_user, rs.master_password), ConnectionSettings())
    assert rs.master_password not in str(info.value)


def test_a_certificate_for_another_host_name_is_refused(rs: RedshiftHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's default sslmode only warns on a name mismatch; the engine asks for verify-full."""
    from tests.support.redshift_shim import RedshiftShim

    rs = emulated(rs)
    upstream = rs.server.info
    other = RedshiftShim(
        upstream.host,
        upstream.port,
        upstream.ca_file,
        tempfile.mkdtemp(),
        dns_names=("elsewhere.invalid",),
        ip_addresses=(),
    ).start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", other.ca_file)
        engine = rs.module.RedshiftEngine()
        with pytest.raises(UnreachableError, match="TLS"):
            engine.connect(login(rs, rs.master_user, rs.master_password, port=other.port), ConnectionSettings())
    finally:
        other.stop()


def test_ssl_false_turns_tls_off_explicitly(rs: RedshiftHarness) -> None:
    rs = emulated(rs)
    engine = rs.module.RedshiftEngine()
    conn = engine.connect(login(rs, rs.master_user, rs.master_password, ssl=False), ConnectionSettings())
    try:
        assert not session_ssl(conn)
    finally:
        conn.close()


def test_a_refused_credential_is_an_authentication_error(rs: RedshiftHarness) -> None:
    engine = rs.module.RedshiftEngine()
    wrong = new_password()
    with pytest.raises(AuthenticationError, match="refused") as info:
        engine.connect(login(rs, rs.master_user, wrong), ConnectionSettings())
    assert wrong not in str(info.value)


def test_an_unknown_database_is_a_configuration_error_naming_dbname(rs: RedshiftHarness) -> None:
    engine = rs.module.RedshiftEngine()
    secret = login(rs, rs.master_user, rs.master_password, dbname=unique("nodb"))
    with pytest.raises(ConfigurationError, match="'dbname'"):
        engine.connect(secret, ConnectionSettings())


def test_an_unreachable_server_is_a_clear_error(rs: RedshiftHarness) -> None:
    engine = rs.module.RedshiftEngine()
    with pytest.raises(UnreachableError, match="cannot connect") as info:
        engine.connect(login(rs, rs.master_user, rs.master_password, port=1), ConnectionSettings(connect_timeout=2))
    assert rs.master_password not in str(info.value)


def test_statements_may_run_longer_than_the_connect_timeout(rs: RedshiftHarness) -> None:
    rs = emulated(rs)  # pg_sleep is PostgreSQL's
    engine = rs.module.RedshiftEngine()
    conn = engine.connect(login(rs, rs.master_user, rs.master_password), ConnectionSettings(connect_timeout=1))
    try:
        assert query(conn, "SELECT pg_sleep(1.1), 1")[0][1] == 1
    finally:
        conn.close()


def test_secret_defaults_are_redshift_s() -> None:
    engine = functions.load("redshift").RedshiftEngine()
    doc = {"engine": "redshift", "host": "wg.123456789012.us-east-1.redshift-serverless.amazonaws.com"}
    secret = parse(json.dumps({**doc, "username": "app", "password": "x"}), "current", engine.defaults)
    assert (secret.port, secret.dbname) == (5439, "dev")


def test_quote_ident_doubles_quotes_and_refuses_nul() -> None:
    module = functions.load("redshift")
    assert module.quote_ident('we"ird') == '"we""ird"'
    with pytest.raises(ConfigurationError, match="NUL"):
        module.quote_ident("a\x00b")


# -- budgets: calls, connections, the driver loaded only when needed --------------------


@pytest.mark.parametrize("step", rotations.STEPS)
def test_the_sam_local_events_are_well_formed(step: str) -> None:
    from rotation_core.protocol import parse_event

    event = parse_event(json.loads((ROOT / "events" / "redshift" / f"{step}.json").read_text()))
    assert event.step == step
    assert event.secret_id.startswith("arn:aws:secretsmanager:")
