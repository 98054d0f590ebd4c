"""What only MySQL/MariaDB has: password hashes instead of passwords in the server's logs,
TLS modes, the alternate user as a full copy of the original (host part, privileges at
every level, TLS requirement, limits, roles) re-synced every rotation, grants it cannot get
(dropped objects, privileges the master may not grant), name limits, and pymysql loaded only
when needed. Runs against MariaDB; what only a MySQL 8 server could show is tested at
statement level in test_mysql8_statements.py (docs/mysql.md says which is which)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devtools.servers import import_pymysql, mysql_native_password_hash
from devtools.tls import generate_ca
from rotation_core import AuthenticationError, ConfigurationError, UnreachableError
from rotation_core import settings as config
from rotation_core.credentials import DatabaseSecret
from rotation_core.settings import ConnectionSettings
from rotation_core.values import Sensitive
from tests.conftest import RotationCase
from tests.engines import MySQLHarness, new_password, unique
from tests.support import leaks, rotations


@pytest.fixture
def my(mysql_harness: MySQLHarness, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> MySQLHarness:
    for key, value in mysql_harness.env().items():
        monkeypatch.setenv(key, value)
    return mysql_harness


def login(my: MySQLHarness, username: str, password: str, ssl: bool | None = None, **extra: Any) -> DatabaseSecret:
    return DatabaseSecret(
        engine="mariadb",
        host=my.info.host,
        port=my.info.port,
        username=username,
        password=Sensitive(password),
        dbname=extra.get("dbname"),
        ssl=ssl,
    )


def settings(my: MySQLHarness, **changes: Any) -> ConnectionSettings:
    return ConnectionSettings(**{"ca_bundle": my.info.ca_file, **changes})


def session_cipher(conn: Any) -> str:
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        return str(cur.fetchone()[1])


def grants(my: MySQLHarness, user: str, host: str = "%") -> set[str]:
    """SHOW GRANTS of an account, with its own name and password hash taken out (test only)."""
    rows = my.admin_execute("SHOW GRANTS FOR %s@%s", (user, host))
    quoted = "`" + user.replace("`", "``") + "`@"
    return {
        re.sub(r" IDENTIFIED BY PASSWORD '\*[0-9A-F]{40}'", "", row[0]).replace(quoted, "<account>@") for row in rows
    }


def hosts(my: MySQLHarness, user: str) -> list[str]:
    return [row[0] for row in my.admin_execute("SELECT Host FROM mysql.user WHERE User = %s ORDER BY Host", (user,))]


def denied(my: MySQLHarness, doc: dict[str, Any], statement: str) -> bool:
    """Whether the server refuses `statement` to the credential in doc (it logs in)."""
    pymysql = import_pymysql()
    conn = my.server.connect(doc["username"], doc["password"])
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            cur.fetchall()
    except (pymysql.err.OperationalError, pymysql.err.ProgrammingError) as exc:
        if exc.args[0] in (1142, 1143, 1044, 1370, 1227):
            return True
        raise
    finally:
        conn.close()
    return False


# -- passwords never in clear text in the server's logs --------------------------------------
@pytest.mark.parametrize("strategy", ["single-user", "alternating-users"])
def test_the_server_log_never_holds_a_generated_password(my: MySQLHarness, sm: Any, strategy: str) -> None:
    if not my.server_log():
        pytest.skip("an external server: its log cannot be read")
    case = RotationCase(my, sm, strategy)
    passwords = [case.password]
    for _ in range(3):
        case.rotate()
        passwords.append(case.current()["password"])
    log = my.server_log()
    # The log did record the statements that set the passwords, each with a hash.
    statement = "SET PASSWORD = " if strategy == "single-user" else "IDENTIFIED BY PASSWORD "
    for password in passwords[1:]:
        assert f"{statement}'{mysql_native_password_hash(password)}'" in log
    for password in passwords:
        assert password not in log


# -- TLS ----------------------------------------------------------------------------------------
def test_tls_is_on_and_verified_by_default(my: MySQLHarness) -> None:
    engine = my.module.MySQLEngine()
    conn = engine.connect(login(my, my.master_user, my.master_password), settings(my))
    try:
        assert session_cipher(conn) != ""
    finally:
        conn.close()


def test_a_server_certificate_from_another_ca_is_refused(my: MySQLHarness, tmp_path: Any) -> None:
    other = generate_ca(str(tmp_path))
    engine = my.module.MySQLEngine()
    with pytest.raises(UnreachableError, match="TLS") as info:
        engine.connect(login(my, my.master_user, my.master_password), settings(my, ca_bundle=other))
    assert my.master_password not in str(info.value)


def test_ssl_false_turns_tls_off_explicitly(my: MySQLHarness) -> None:
    engine = my.module.MySQLEngine()
    conn = engine.connect(login(my, my.master_user, my.master_password, ssl=False), settings(my))
    try:
        assert session_cipher(conn) == ""
    finally:
        conn.close()


# -- connection errors, by kind -----------------------------------------------------------------
def test_unreachable_server_is_a_clear_error(my: MySQLHarness) -> None:
    engine = my.module.MySQLEngine()
    closed = DatabaseSecret(**{**login(my, my.master_user, my.master_password).__dict__, "port": 1})
    with pytest.raises(UnreachableError, match="cannot connect") as info:
        engine.connect(closed, settings(my, connect_timeout=2))
    assert my.master_password not in str(info.value)


def test_wrong_password_is_an_authentication_error(my: MySQLHarness) -> None:
    engine = my.module.MySQLEngine()
    wrong = new_password()
    with pytest.raises(AuthenticationError) as info:
        engine.connect(login(my, my.master_user, wrong), settings(my))
    assert wrong not in str(info.value)


def test_a_database_that_does_not_exist_is_named(my: MySQLHarness) -> None:
    engine = my.module.MySQLEngine()
    target = login(my, my.master_user, my.master_password, dbname=unique("missing"))
    with pytest.raises(ConfigurationError, match="field 'dbname'"):
        engine.connect(target, settings(my))


def test_rotation_with_a_dbname(my: MySQLHarness, sm: Any) -> None:
    username, password, db = unique("app"), new_password(), unique("appdb")
    my.create_user(username, password)
    my.admin_execute(f"CREATE DATABASE `{db}`")
    my.admin_execute(f"GRANT SELECT ON `{db}`.* TO %s@'%%'", (username,))
    arn = sm.create_secret(Name=unique("db"), SecretString=json.dumps(my.secret(username, password, dbname=db)))["ARN"]
    rotations.rotate(my.make_handler(), sm, arn)
    current = json.loads(rotations.value(sm, arn))
    assert current["dbname"] == db
    assert my.logs_in(username, current["password"])


# -- alternating users: the clone is a copy of the original ---------------------------------------
def test_the_clone_gets_the_originals_privileges_and_loses_revoked_ones(my: MySQLHarness, sm: Any) -> None:
    case = RotationCase(my, sm, "alternating-users")
    user = case.username
    db, role = unique("shop"), unique("reporting")
    my.admin_execute(f"CREATE DATABASE `{db}`")
    my.admin_execute(f"CREATE TABLE `{db}`.orders (id int, note text)")
    my.admin_execute(f"CREATE TABLE `{db}`.audit (id int)")
    my.admin_execute(f"CREATE PROCEDURE `{db}`.ping() SELECT 1")
    my.admin_execute("CREATE ROLE %s", (role,))
    my.admin_execute(f"GRANT SELECT ON `{db}`.audit TO %s", (role,))
    my.admin_execute("GRANT %s TO %s@'%%' WITH ADMIN OPTION", (role, my.master_user))  # as its creator would
    for statement in (
        "GRANT %s TO %s@'%%'",
        "SET DEFAULT ROLE %s FOR %s@'%%'",
    ):
        my.admin_execute(statement, (role, user))
    for statement in (
        f"GRANT SELECT (id), UPDATE (id) ON `{db}`.orders TO %s@'%%'",
        f"GRANT INSERT ON `{db}`.orders TO %s@'%%' WITH GRANT OPTION",
        f"GRANT EXECUTE ON PROCEDURE `{db}`.ping TO %s@'%%'",
        f"GRANT CREATE TEMPORARY TABLES ON `{db}`.* TO %s@'%%'",
        "GRANT PROCESS ON *.* TO %s@'%%'",
        "ALTER USER %s@'%%' REQUIRE SSL WITH MAX_USER_CONNECTIONS 7",
    ):
        my.admin_execute(statement, (user,))
    case.rotate()
    clone = case.current()
    assert clone["username"] == user + "_clone"
    assert grants(my, clone["username"]) == grants(my, user)
    assert any("REQUIRE SSL" in line and "MAX_USER_CONNECTIONS 7" in line for line in grants(my, user))
    # What the clone can really do.
    assert not denied(my, clone, f"SELECT id FROM `{db}`.orders")
    assert denied(my, clone, f"SELECT note FROM `{db}`.orders"), "only the column privilege was copied"
    assert not denied(my, clone, f"SELECT id FROM `{db}`.audit"), "through the default role"
    assert not denied(my, clone, f"CALL `{db}`.ping()")
    pymysql = import_pymysql()
    with pytest.raises(pymysql.err.OperationalError):
        my.server.connect(clone["username"], clone["password"], ssl=False).close()  # REQUIRE SSL
    # The original loses some of it; the next rotation to the clone takes it away there too.
    my.admin_execute(f"REVOKE INSERT, GRANT OPTION ON `{db}`.orders FROM %s@'%%'", (user,))
    my.admin_execute("REVOKE %s FROM %s@'%%'", (role, user))
    my.admin_execute("ALTER USER %s@'%%' REQUIRE NONE", (user,))
    case.rotate()
    case.rotate()
    clone = case.current()
    assert clone["username"] == user + "_clone"
    assert grants(my, clone["username"]) == grants(my, user)
    assert denied(my, clone, f"INSERT INTO `{db}`.orders (id) VALUES (2)")
    assert denied(my, clone, f"SELECT id FROM `{db}`.audit")
    my.server.connect(clone["username"], clone["password"], ssl=False).close()


def test_the_clone_has_the_originals_host_parts(my: MySQLHarness, sm: Any) -> None:
    username, password = unique("app"), new_password()
    for host in ("127.0.0.1", "localhost"):
        my.create_user(username, password, host=host)
    master = sm.create_secret(Name=unique("master"), SecretString=json.dumps(my.master()))["ARN"]
    doc = my.secret(username, password, masterarn=master)
    arn = sm.create_secret(Name=unique("hosts"), SecretString=json.dumps(doc))["ARN"]
    handler = my.make_handler()
    rotations.rotate(handler, sm, arn)
    assert hosts(my, username + "_clone") == ["127.0.0.1", "localhost"]
    rotations.rotate(handler, sm, arn)
    current = json.loads(rotations.value(sm, arn))
    assert current["username"] == username
    assert my.logs_in(username, current["password"])
    # The master set the new password on every account of the user, keeping the plugin.
    expected = mysql_native_password_hash(current["password"])
    rows = my.admin_execute(
        "SELECT plugin, authentication_string = %s FROM mysql.user WHERE User = %s", (expected, username)
    )
    assert rows == [("mysql_native_password", 1)] * 2


def test_an_account_that_does_not_use_mysql_native_password_is_refused(my: MySQLHarness) -> None:
    username = unique("ed")
    try:
        my.admin_execute("INSTALL SONAME 'auth_ed25519'")
    except Exception as exc:
        if "already" not in str(exc):
            pytest.skip(f"the ed25519 plugin cannot be loaded here: {exc}")
    my.admin_execute("CREATE USER %s@'%%' IDENTIFIED VIA ed25519 USING PASSWORD(%s)", (username, "not-a-secret"))
    engine = my.module.MySQLEngine()
    conn = engine.connect(login(my, my.master_user, my.master_password), settings(my))
    try:
        for change in (
            lambda: engine.set_password(conn, username, Sensitive(new_password())),
            lambda: engine.sync_clone(conn, username, username + "_clone", Sensitive(new_password())),
        ):
            with pytest.raises(ConfigurationError, match="ed25519 plugin"):
                change()
    finally:
        conn.close()
    assert hosts(my, username + "_clone") == []
    assert my.admin_execute("SELECT plugin FROM mysql.user WHERE User = %s", (username,)) == [("ed25519",)]


def emf(text: str, name: str) -> list[dict[str, Any]]:
    """The EMF metric records in captured stdout that carry metric `name`."""
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [record for record in records if "_aws" in record and name in record]


def log_records(text: str, message: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [record for record in records if message in str(record.get("message", ""))]


# -- grants the clone cannot get ------------------------------------------------------------------
def test_grants_on_dropped_tables_and_columns_are_skipped_and_counted(
    my: MySQLHarness, sm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """DROP TABLE and ALTER TABLE ... DROP COLUMN keep the grants on them, and GRANT on a
    missing table or column fails (1146, 1054): such a grant of the user must not stop the
    rotation; every live grant is copied."""
    case = RotationCase(my, sm, "alternating-users")
    user, db = case.username, unique("shop")
    my.admin_execute(f"CREATE DATABASE `{db}`")
    for table in ("gone (id int)", "kept (id int, note text, dropped int)", "live (id int)"):
        my.admin_execute(f"CREATE TABLE `{db}`.{table}")
    for statement in (
        f"GRANT SELECT, INSERT ON `{db}`.gone TO %s@'%%'",
        f"GRANT SELECT (id, dropped), UPDATE (note) ON `{db}`.kept TO %s@'%%'",
        f"GRANT SELECT ON `{db}`.live TO %s@'%%'",
    ):
        my.admin_execute(statement, (user,))
    my.admin_execute(f"DROP TABLE `{db}`.gone")
    my.admin_execute(f"ALTER TABLE `{db}`.kept DROP COLUMN dropped")
    assert any("`gone`" in line for line in grants(my, user)), "the server kept the dropped table's grant"
    capsys.readouterr()
    case.rotate()
    clone = case.current()
    assert clone["username"] == user + "_clone"
    dead = ("`gone`", "`dropped`")
    live = {line for line in grants(my, user) if not any(name in line for name in dead)}
    assert grants(my, clone["username"]) == live | {
        f"GRANT SELECT (`id`), UPDATE (`note`) ON `{db}`.`kept` TO <account>@`%`"
    }
    assert not denied(my, clone, f"SELECT id FROM `{db}`.live")
    assert not denied(my, clone, f"SELECT id FROM `{db}`.kept")
    assert denied(my, clone, f"SELECT note FROM `{db}`.kept")
    out = capsys.readouterr().out
    [metric] = emf(out, "GrantsSkipped")
    assert metric["GrantsSkipped"] == [3.0]  # SELECT and INSERT on the table, SELECT on the column
    assert metric["engine"] == "mysql" and metric["step"] == "setSecret"
    [warning] = log_records(out, "no longer exist")
    assert warning["grants_skipped"] == 3
    # The rotation back to the user and the next one to the clone converge the same way.
    case.rotate()
    case.rotate()
    assert case.current()["username"] == user + "_clone"
    assert case.works(case.current())


def test_a_privilege_the_master_may_not_grant_fails_naming_it_until_listed(
    my: MySQLHarness, sm: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The harness's master (an RDS-like master user) holds neither SHUTDOWN nor FILE: setSecret
    fails naming both, after copying everything else, with AWSCURRENT untouched; listing one
    in SKIP_UNGRANTABLE_PRIVILEGES still fails naming the other; listing both completes."""
    case = RotationCase(my, sm, "alternating-users")
    user, db = case.username, unique("ops")
    my.admin_execute(f"CREATE DATABASE `{db}`")
    my.admin_execute("GRANT SHUTDOWN, FILE, PROCESS ON *.* TO %s@'%%'", (user,))
    my.admin_execute(f"GRANT SELECT ON `{db}`.* TO %s@'%%'", (user,))
    before = case.current()
    token = rotations.start_rotation(sm, case.arn)
    rotations.run_steps(case.handler, case.arn, token, ("createSecret",))
    pending = json.loads(rotations.value(sm, case.arn, "AWSPENDING", token))
    with pytest.raises(ConfigurationError, match="lacks a privilege") as info:
        case.handler(rotations.event(case.arn, token, "setSecret"), None)
    message = str(info.value)
    assert "may not grant FILE ON *.*, SHUTDOWN ON *.*." in message
    assert "PROCESS" not in message and "SKIP_UNGRANTABLE_PRIVILEGES" in message
    assert pending["password"] not in message and leaks.find(message) == []
    assert case.current() == before and case.works(before)
    # Everything else was copied: the global PROCESS (granted one by one) and the database grant.
    clone = user + "_clone"
    assert grants(my, clone) >= {"GRANT PROCESS ON *.* TO <account>@`%`", f"GRANT SELECT ON `{db}`.* TO <account>@`%`"}
    monkeypatch.setenv("SKIP_UNGRANTABLE_PRIVILEGES", " shutdown ")
    with pytest.raises(ConfigurationError, match=r"may not grant FILE ON \*\.\*\.") as info:
        case.handler(rotations.event(case.arn, token, "setSecret"), None)
    assert "SHUTDOWN ON" not in str(info.value)
    assert case.current() == before and case.works(before)
    monkeypatch.setenv("SKIP_UNGRANTABLE_PRIVILEGES", "SHUTDOWN,file")
    capsys.readouterr()
    rotations.run_steps(case.handler, case.arn, token, ("setSecret", "testSecret", "finishSecret"))
    current = case.current()
    assert current["username"] == clone and case.works(current)
    assert grants(my, clone) == {
        "GRANT PROCESS ON *.* TO <account>@`%`",
        f"GRANT SELECT ON `{db}`.* TO <account>@`%`",
    }
    out = capsys.readouterr().out
    [metric] = emf(out, "GrantsSkipped")
    assert metric["GrantsSkipped"] == [2.0]
    [warning] = log_records(out, "SKIP_UNGRANTABLE_PRIVILEGES")
    assert warning["privileges_skipped"] == ["FILE", "SHUTDOWN"]


class InjectedFault(RuntimeError):
    pass


def test_a_copy_interrupted_after_any_statement_converges(
    my: MySQLHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy is many auto-committed statements, some retried one privilege at a time: a
    fault after any one of them (each time on a fresh pair), then the rotation run again with
    the same token, ends with a clone that has every live grant, and AWSCURRENT logs in
    throughout."""
    monkeypatch.setenv("SKIP_UNGRANTABLE_PRIVILEGES", "SHUTDOWN")
    original_execute = my.module.sql.execute
    armed = {"at": 0, "count": 0}

    def execute(*args: Any, **kwargs: Any) -> None:
        original_execute(*args, **kwargs)
        armed["count"] += 1
        if armed["count"] == armed["at"]:
            raise InjectedFault(f"fault after statement {armed['count']}")

    monkeypatch.setattr(my.module.sql, "execute", execute)
    writes = 0
    for n in range(1, 200):
        case = RotationCase(my, sm, "alternating-users")
        user, db = case.username, unique("fault")
        my.admin_execute(f"CREATE DATABASE `{db}`")
        my.admin_execute(f"CREATE TABLE `{db}`.gone (id int)")
        my.admin_execute(f"CREATE TABLE `{db}`.kept (id int, dropped int)")
        for statement in (
            "GRANT SHUTDOWN, PROCESS, RELOAD ON *.* TO %s@'%%' WITH GRANT OPTION",
            f"GRANT SELECT ON `{db}`.gone TO %s@'%%'",
            f"GRANT SELECT (id, dropped), INSERT (id) ON `{db}`.kept TO %s@'%%'",
        ):
            my.admin_execute(statement, (user,))
        my.admin_execute(f"DROP TABLE `{db}`.gone")
        my.admin_execute(f"ALTER TABLE `{db}`.kept DROP COLUMN dropped")
        token = rotations.start_rotation(sm, case.arn)
        rotations.run_steps(case.handler, case.arn, token, ("createSecret",))
        armed.update(at=n, count=0)
        try:
            case.handler(rotations.event(case.arn, token, "setSecret"), None)
        except InjectedFault:
            writes += bool(hosts(my, user + "_clone"))
        else:
            break  # the step sends fewer than n statements: every position was tried
        finally:
            armed["at"] = 0
        assert case.works(case.current()), f"the current credential fails after a fault at statement {n}"
        rotations.run_steps(case.handler, case.arn, token, ("setSecret", "testSecret", "finishSecret"))
        assert case.works(case.current())
        assert grants(my, user + "_clone") == {
            "GRANT RELOAD, PROCESS ON *.* TO <account>@`%` WITH GRANT OPTION",
            f"GRANT SELECT (`id`), INSERT (`id`) ON `{db}`.`kept` TO <account>@`%`",
        }, f"after a fault at statement {n}"
    else:
        pytest.fail("setSecret never completed")
    assert writes >= 6, "faults landed after the clone's statements, not only after reads"


def test_skip_ungrantable_privileges_must_name_privileges(
    my: MySQLHarness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed list is refused before anything is changed, naming the variable."""
    assert settings(my).skip_privileges == frozenset()
    parsed = config.load({"SKIP_UNGRANTABLE_PRIVILEGES": "backup_admin, Show  View,,"})
    assert parsed.connection.skip_privileges == frozenset({"BACKUP_ADMIN", "SHOW VIEW"})
    case = RotationCase(my, sm, "alternating-users")
    token = rotations.start_rotation(sm, case.arn)
    rotations.run_steps(case.handler, case.arn, token, ("createSecret",))
    monkeypatch.setenv("SKIP_UNGRANTABLE_PRIVILEGES", "BACKUP_ADMIN; DROP USER x")
    with pytest.raises(ConfigurationError, match="SKIP_UNGRANTABLE_PRIVILEGES must be a comma-separated list"):
        case.handler(rotations.event(case.arn, token, "setSecret"), None)
    assert hosts(my, case.username + "_clone") == []


@pytest.mark.parametrize(
    ("engine", "length", "limit"), [("mariadb", 75, "80 characters"), ("mysql", 27, "32 characters")]
)
def test_a_clone_name_over_the_limit_is_refused_before_anything_is_written(
    my: MySQLHarness, sm: Any, engine: str, length: int, limit: str
) -> None:
    username, password = unique("u")[:10].ljust(length, "u"), new_password()  # + "_clone" is one too many
    my.create_user(username, password)
    master = sm.create_secret(Name=unique("master"), SecretString=json.dumps(my.master()))["ARN"]
    doc = {**my.secret(username, password, masterarn=master), "engine": engine}
    arn = sm.create_secret(Name=unique("long"), SecretString=json.dumps(doc))["ARN"]
    token = rotations.start_rotation(sm, arn)
    with pytest.raises(ConfigurationError, match=limit):
        my.make_handler()(rotations.event(arn, token, "createSecret"), None)
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        rotations.value(sm, arn, "AWSPENDING", token)
    assert hosts(my, username + "_clone") == []


# -- budgets and imports -------------------------------------------------------------------------


def test_error_messages_mask_the_password_and_its_hash(my: MySQLHarness) -> None:
    """Server messages can quote a statement ("... near '...'"): neither value survives."""
    pymysql = import_pymysql()
    password = new_password()
    hashed = mysql_native_password_hash(password)
    error = pymysql.err.ProgrammingError(1064, f"syntax error near '{password}' and '{hashed}' at line 1")
    text = my.module.sql.server_cause(error, Sensitive(password))
    assert password not in text and hashed not in text
    # A statement that carried a password: the server's code only, never its text.
    assert text == "error 1064"


def test_x509_requirements_and_limits_are_copied_and_followed(my: MySQLHarness) -> None:
    """Called directly: an original bound to a client certificate cannot log in to rotate."""
    user = unique("x509")
    my.create_user(user, new_password())
    my.admin_execute(
        "ALTER USER %s@'%%' REQUIRE ISSUER %s AND SUBJECT %s AND CIPHER %s "
        "WITH MAX_QUERIES_PER_HOUR 9 MAX_STATEMENT_TIME 2.5",
        (user, "/CN=Issuer 'quoted' \\ CA", "/CN=app", "ECDHE-RSA-AES256-GCM-SHA384"),
    )
    engine = my.module.MySQLEngine()
    conn = engine.connect(login(my, my.master_user, my.master_password), settings(my))
    try:
        engine.sync_clone(conn, user, user + "_clone", Sensitive(new_password()))
        assert grants(my, user + "_clone") == grants(my, user)
        assert any("SUBJECT '/CN=app'" in line and "MAX_STATEMENT_TIME 2.5" in line for line in grants(my, user))
        my.admin_execute("ALTER USER %s@'%%' REQUIRE X509 WITH MAX_QUERIES_PER_HOUR 0", (user,))
        engine.sync_clone(conn, user, user + "_clone", None)
        assert grants(my, user + "_clone") == grants(my, user)
    finally:
        conn.close()
