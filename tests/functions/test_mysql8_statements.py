"""What only a MySQL 8.0 / 8.4 / 9.x server (RDS for MySQL, Aurora MySQL 3) would show, tested
at statement level: a connection double stands in for pymysql's connection, records every
(statement, parameters) the engine sends, and answers as the documented server would (its
handshake version, catalog rows, error codes). Each test cites the document that defines
the server's answer. What MariaDB can show runs against the real server in test_mysql.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from devtools.servers import import_pymysql
from rotation_core import ConfigurationError
from rotation_core.credentials import DatabaseSecret
from rotation_core.settings import ConnectionSettings
from rotation_core.values import Sensitive
from tests.engines import new_password
from tests.support import functions

app = functions.load("mysql")
pymysql = import_pymysql()

HOST = "%"
USER, CLONE = "app", "app_clone"
Row = tuple[Any, ...]
Answer = list[Row] | Exception


def refused(code: int, message: str) -> Exception:
    """A server error as pymysql raises it (OperationalError for these codes)."""
    return pymysql.err.OperationalError(code, message)


# ER_SPECIFIC_ACCESS_DENIED_ERROR, as MySQL words it for a grantor without the grant option
# of a dynamic privilege (the message RDS users report: "Access denied; you need (at least
# one of) the ... privilege(s) for this operation", mydumper issue #1956).
NO_GRANT_OPTION = (1227, "Access denied; you need (at least one of) the GRANT OPTION privilege(s) for this operation")


class FakeCursor:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.rows: list[Row] = []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> int:
        self.server.sent.append((statement, tuple(params)))
        answer = self.server.answer(statement, tuple(params))
        if isinstance(answer, Exception):
            raise answer
        self.rows = list(answer)
        return len(self.rows)

    def fetchall(self) -> list[Row]:
        return self.rows

    def fetchone(self) -> Row | None:
        return self.rows[0] if self.rows else None


class FakeServer:
    """A MySQL server as its documentation describes it, for one test: `version` is what
    the handshake reports; `rules` map a statement pattern (a regular expression searched
    in the statement text) to the rows or the error the server answers."""

    def __init__(self, version: str, rules: dict[str, Answer | Callable[[str, tuple[Any, ...]], Answer]]) -> None:
        self.version = version
        self.rules = rules
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.closed = False

    # pymysql.connections.Connection, as far as the engine uses it
    def get_server_info(self) -> str:
        return self.version

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def close(self) -> None:
        self.closed = True

    def answer(self, statement: str, params: tuple[Any, ...]) -> Answer:
        for pattern, answer in self.rules.items():
            if re.search(pattern, statement):
                return answer(statement, params) if callable(answer) else answer
        return []  # no rows, no error: what an unlisted catalog query or a write returns here

    def writes(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The statements that change something (everything but SELECT)."""
        return [(s, p) for s, p in self.sent if not s.startswith("SELECT")]


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Any, Any]]:
    """engine.connect against a FakeServer: pymysql.connect hands back the double, so the
    engine remembers the session as it would a real one."""

    def open_session(
        server: FakeServer, *, password: str = "", master: bool = True, skip: frozenset[str] = frozenset()
    ) -> tuple[Any, Any]:
        engine = app.MySQLEngine()
        monkeypatch.setattr(pymysql, "connect", lambda **_: server)
        login = DatabaseSecret(
            engine="mysql",
            host="db.example.com",
            port=3306,
            username="rotation_master" if master else USER,
            password=Sensitive(password or new_password()),
            dbname=None,
            ssl=None,
        )
        conn = engine.connect(login, ConnectionSettings(skip_privileges=skip), master=master)
        return engine, conn

    return open_session


def account(user: str, plugin: str = "caching_sha2_password", restrictions: Any = None) -> Row:
    """A mysql.user row as the engine selects it on MySQL 8.0.16+ (the last column is
    JSON_EXTRACT(User_attributes, '$.Restrictions'), NULL without partial revokes)."""
    return (user, HOST, plugin, "", "", "", "", 0, 0, 0, 0, None if restrictions is None else json.dumps(restrictions))


def privilege(user: str, name: str, grantable: bool = False) -> Row:
    """An information_schema.USER_PRIVILEGES row, in the engine's UNION's columns."""
    return (f"'{user}'@'{HOST}'", "global", "", "", "", name, "YES" if grantable else "NO")


def catalog(accounts: list[Row], privileges: list[Row], **more: Answer) -> dict[str, Any]:
    return {
        r"^SELECT User, Host, plugin": accounts,
        r"^SELECT GRANTEE": privileges,
        **more,
    }


# -- grant option, privilege by privilege ----------------------------------------------------
def test_dynamic_privileges_keep_their_own_grant_option(connect: Any) -> None:
    """MySQL 8.0 reference, 15.7.1.6 GRANT Statement, "Global Privileges": "GRANT OPTION granted
    for any static global privilege applies to all static global privileges. GRANT OPTION
    granted for any dynamic privilege applies only to that dynamic privilege." So
    information_schema.USER_PRIVILEGES.IS_GRANTABLE is per row for dynamic privileges, and one
    grantable dynamic privilege must not make the others grantable."""
    server = FakeServer(
        "8.0.36",
        catalog(
            [account(USER)],
            [
                privilege(USER, "SELECT", grantable=True),
                privilege(USER, "INSERT", grantable=True),
                privilege(USER, "XA_RECOVER_ADMIN", grantable=True),
                privilege(USER, "BACKUP_ADMIN"),
                privilege(USER, "APPLICATION_PASSWORD_ADMIN"),
            ],
        ),
    )
    engine, conn = connect(server)
    password = Sensitive(new_password())
    engine.sync_clone(conn, USER, CLONE, password)
    assert server.writes() == [
        ("CREATE USER %s@%s IDENTIFIED WITH caching_sha2_password BY %s", (CLONE, HOST, password.reveal())),
        ("GRANT INSERT, SELECT ON *.* TO %s@%s WITH GRANT OPTION", (CLONE, HOST)),
        ("GRANT XA_RECOVER_ADMIN ON *.* TO %s@%s WITH GRANT OPTION", (CLONE, HOST)),
        ("GRANT APPLICATION_PASSWORD_ADMIN, BACKUP_ADMIN ON *.* TO %s@%s", (CLONE, HOST)),
    ]


def test_a_grant_option_the_user_lacks_is_taken_off_the_clone(connect: Any) -> None:
    """REVOKE GRANT OPTION ON *.* takes the grant option off the static privileges and off
    every dynamic privilege (mysql-server sql/auth/sql_authorization.cc, mysql_grant(): when
    the statement names GRANT OPTION, revoke_grant_option_for_all_dynamic_privileges), so
    the ones that keep it are granted it again; the privilege itself is never taken away."""
    server = FakeServer(
        "8.0.36",
        catalog(
            [account(USER), account(CLONE)],
            [
                privilege(USER, "SELECT", grantable=True),
                privilege(USER, "XA_RECOVER_ADMIN", grantable=True),
                privilege(USER, "BACKUP_ADMIN"),
                privilege(CLONE, "SELECT", grantable=True),
                privilege(CLONE, "XA_RECOVER_ADMIN", grantable=True),
                privilege(CLONE, "BACKUP_ADMIN", grantable=True),
            ],
        ),
    )
    engine, conn = connect(server)
    standing = engine.alternate_standing(conn, USER, CLONE)
    assert standing.beyond == ("global BACKUP_ADMIN WITH GRANT OPTION",)
    engine.sync_clone(conn, USER, CLONE, None)
    assert server.writes() == [
        ("REVOKE GRANT OPTION ON *.* FROM %s@%s", (CLONE, HOST)),
        ("GRANT SELECT ON *.* TO %s@%s WITH GRANT OPTION", (CLONE, HOST)),
        ("GRANT XA_RECOVER_ADMIN ON *.* TO %s@%s WITH GRANT OPTION", (CLONE, HOST)),
    ]


# -- privileges the master may not grant (RDS for MySQL 8.0.36+, 8.4) ------------------------
RDS_DISALLOWED = ("BACKUP_ADMIN", "CONNECTION_ADMIN")


def rds_grant(statement: str, params: tuple[Any, ...]) -> Answer:
    """RDS user guide, "Dynamic privileges for RDS for MySQL": from 8.0.36, BACKUP_ADMIN and
    CONNECTION_ADMIN (among others) are "Disallowed" while APPLICATION_PASSWORD_ADMIN stays
    "Allowed"; the master holds no grant option for a disallowed one, so a GRANT naming it
    fails whole with ER_SPECIFIC_ACCESS_DENIED_ERROR (1227)."""
    if any(name in statement for name in RDS_DISALLOWED):
        return refused(*NO_GRANT_OPTION)
    return []


def rds_server() -> FakeServer:
    return FakeServer(
        "8.0.36",
        catalog(
            [account(USER)],
            [
                privilege(USER, "SELECT"),
                privilege(USER, "APPLICATION_PASSWORD_ADMIN"),
                privilege(USER, "BACKUP_ADMIN"),
                privilege(USER, "CONNECTION_ADMIN"),
            ],
            **{r"^GRANT": rds_grant},
        ),
    )


def test_rds_refuses_dynamic_privileges_and_the_error_names_exactly_those(connect: Any) -> None:
    server = rds_server()
    engine, conn = connect(server)
    with pytest.raises(ConfigurationError) as info:
        engine.sync_clone(conn, USER, CLONE, Sensitive(new_password()))
    message = str(info.value)
    assert "may not grant BACKUP_ADMIN ON *.*, CONNECTION_ADMIN ON *.*." in message
    assert "APPLICATION_PASSWORD_ADMIN" not in message
    assert "WITH GRANT OPTION" in message and "SKIP_UNGRANTABLE_PRIVILEGES" in message
    grants = [statement for statement, _ in server.writes() if statement.startswith("GRANT")]
    assert grants == [
        "GRANT SELECT ON *.* TO %s@%s",
        "GRANT APPLICATION_PASSWORD_ADMIN, BACKUP_ADMIN, CONNECTION_ADMIN ON *.* TO %s@%s",  # refused whole
        "GRANT APPLICATION_PASSWORD_ADMIN ON *.* TO %s@%s",
        "GRANT BACKUP_ADMIN ON *.* TO %s@%s",
        "GRANT CONNECTION_ADMIN ON *.* TO %s@%s",
    ]
    # Everything else was copied before failing: the roles were read and synced too.
    assert any(statement.startswith("SELECT TO_USER") for statement, _ in server.sent)


def test_privileges_listed_to_skip_are_left_off_and_the_rest_still_fails(connect: Any) -> None:
    server = rds_server()
    engine, conn = connect(server, skip=frozenset({*RDS_DISALLOWED, "APPLICATION_PASSWORD_ADMIN"}))
    engine.sync_clone(conn, USER, CLONE, Sensitive(new_password()))  # completes
    # A listed privilege the master may grant is still granted.
    assert ("GRANT APPLICATION_PASSWORD_ADMIN ON *.* TO %s@%s", (CLONE, HOST)) in server.writes()
    server = rds_server()
    engine, conn = connect(server, skip=frozenset({"BACKUP_ADMIN"}))
    with pytest.raises(ConfigurationError, match=r"may not grant CONNECTION_ADMIN ON \*\.\*\.") as info:
        engine.sync_clone(conn, USER, CLONE, Sensitive(new_password()))
    assert "BACKUP_ADMIN" not in str(info.value).split("Grant each")[0]


# -- partial revokes ---------------------------------------------------------------------
def test_partial_revokes_are_copied_and_extra_ones_lifted(connect: Any) -> None:
    """MySQL 8.4 reference, 8.2.12 Privilege Restriction Using Partial Revokes: with
    partial_revokes=ON, REVOKE INSERT ON world.* from an account with global INSERT records
    {"Restrictions": [{"Database": "world", "Privileges": ["INSERT"]}]} in
    mysql.user.User_attributes (information_schema shows only the global grant); granting
    the privilege at the database level removes the restriction."""
    restricted = [{"Database": "mysql", "Privileges": ["INSERT", "UPDATE"]}]
    server = FakeServer(
        "8.0.36",
        catalog(
            [account(USER, restrictions=restricted)],
            [privilege(USER, "SELECT"), privilege(USER, "INSERT")],
        ),
    )
    engine, conn = connect(server)
    engine.sync_clone(conn, USER, CLONE, Sensitive(new_password()))
    writes = [statement for statement, _ in server.writes()]
    # UPDATE is not held globally: there is nothing to restrict (the server would answer 1141).
    assert writes[1:] == ["GRANT INSERT, SELECT ON *.* TO %s@%s", "REVOKE INSERT ON `mysql`.* FROM %s@%s"]

    server = FakeServer(
        "8.0.36",
        catalog(
            [account(USER), account(CLONE, restrictions=[{"Database": "sales", "Privileges": ["SELECT"]}])],
            [privilege(USER, "SELECT"), privilege(CLONE, "SELECT")],
        ),
    )
    engine, conn = connect(server)
    engine.sync_clone(conn, USER, CLONE, None)
    assert [statement for statement, _ in server.writes()] == ["GRANT SELECT ON `sales`.* TO %s@%s"]


def test_a_clone_free_of_the_users_partial_revoke_holds_more(connect: Any) -> None:
    """The clone with global INSERT and no restriction on `mysql` can write there, which the
    user cannot: alternate_standing says so before the master touches it (same page)."""
    server = FakeServer(
        "8.4.3",
        catalog(
            [
                account(USER, restrictions=[{"Database": "mysql", "Privileges": ["INSERT"]}]),
                account(CLONE),
            ],
            [privilege(USER, "INSERT"), privilege(CLONE, "INSERT")],
        ),
    )
    engine, conn = connect(server)
    assert engine.alternate_standing(conn, USER, CLONE).beyond == (
        "INSERT on database mysql (the user has a partial revoke)",
    )


# -- password_require_current -----------------------------------------------------------------
def require_current(current: str) -> Callable[[str, tuple[Any, ...]], Answer]:
    """MySQL 8.0 reference, 15.7.1.1 ALTER USER Statement: with password_require_current
    (or PASSWORD REQUIRE CURRENT) "The clause must be given ..." else ER_MISSING_CURRENT_PASSWORD
    (3892); "The statement fails if the clause is given but does not match the current
    password, even if the clause is optional" (ER_INCORRECT_CURRENT_PASSWORD, 3891)."""

    def alter(statement: str, params: tuple[Any, ...]) -> Answer:
        if " REPLACE " not in statement:
            return refused(3892, "Current password needs to be specified in the REPLACE clause in order to change it.")
        if params[1] != current:
            return refused(3891, "Incorrect current password. Specify the correct password which has to be replaced.")
        return []

    return alter


@pytest.mark.parametrize("version", ["8.0.36", "8.4.3", "8.0.mysql_aurora.3.05.2"])
def test_the_single_user_gives_the_password_it_logged_in_with(connect: Any, version: str) -> None:
    current, new = new_password(), Sensitive(new_password())
    server = FakeServer(version, {r"^ALTER USER CURRENT_USER": require_current(current)})
    engine, conn = connect(server, password=current, master=False)
    engine.set_own_password(conn, USER, new)
    assert server.sent == [
        ("ALTER USER CURRENT_USER() IDENTIFIED BY %s REPLACE %s", (new.reveal(), current)),
    ]


def test_mysql_before_8_0_13_gets_no_replace_clause(connect: Any) -> None:
    """REPLACE "is available as of MySQL 8.0.13" (same page); 5.7 has no such clause."""
    server = FakeServer("5.7.44-log", {})
    engine, conn = connect(server, master=False)
    new = Sensitive(new_password())
    engine.set_own_password(conn, USER, new)
    assert server.sent == [("ALTER USER CURRENT_USER() IDENTIFIED BY %s", (new.reveal(),))]


# -- mysql_native_password on 8.4 and 9.x ------------------------------------------------------
def no_such_variable(statement: str, params: tuple[Any, ...]) -> Answer:
    return refused(1193, "Unknown system variable 'default_authentication_plugin'")


@pytest.mark.parametrize(
    ("version", "variables", "plugin"),
    [
        # 8.0.27+: authentication_policy element 1 '*' defers to default_authentication_plugin
        # (MySQL 8.0 reference, 8.2.17 Pluggable Authentication, "The Default Authentication Plugin").
        ("8.0.36", {"policy": "*,,", "default": "caching_sha2_password"}, "caching_sha2_password"),
        ("8.0.36", {"policy": "sha256_password,,", "default": "mysql_native_password"}, "sha256_password"),
        # 8.4 removed default_authentication_plugin; '*' means caching_sha2_password, and
        # '*:plugin' names the default (MySQL 8.4 reference, authentication_policy; bug #118447).
        ("8.4.3", {"policy": "*,,", "default": None}, "caching_sha2_password"),
        # Before 8.0.27 there is no authentication_policy (ER_UNKNOWN_SYSTEM_VARIABLE, 1193).
        ("8.0.20", {"policy": None, "default": "caching_sha2_password"}, "caching_sha2_password"),
    ],
)
def test_a_native_password_user_gets_a_clone_on_the_servers_default_plugin(
    connect: Any, version: str, variables: dict[str, str | None], plugin: str, caplog: pytest.LogCaptureFixture
) -> None:
    """mysql_native_password is "deprecated as of MySQL 8.0.34, disabled by default in MySQL
    8.4, and removed as of MySQL 9.0.0" (MySQL 8.4 reference, 8.4.1.1 Native Pluggable
    Authentication): a new credential goes on the default plugin, inside TLS."""
    policy, default = variables["policy"], variables["default"]
    server = FakeServer(
        version,
        catalog(
            [account(USER, plugin="mysql_native_password")],
            [privilege(USER, "SELECT")],
            **{
                r"@@authentication_policy": [(policy,)] if policy else no_such_variable,
                r"@@default_authentication_plugin": [(default,)] if default else no_such_variable,
            },
        ),
    )
    engine, conn = connect(server)
    password = Sensitive(new_password())
    engine.sync_clone(conn, USER, CLONE, password)
    assert server.writes()[0] == (
        f"CREATE USER %s@%s IDENTIFIED WITH {plugin} BY %s",
        (CLONE, HOST, password.reveal()),
    )


@pytest.mark.parametrize(("version", "policy"), [("8.0.36", None), ("8.4.3", "*:mysql_native_password,,")])
def test_a_server_that_defaults_to_native_keeps_the_clone_on_it(connect: Any, version: str, policy: str | None) -> None:
    """default_authentication_plugin=mysql_native_password (8.0) or authentication_policy
    '*:mysql_native_password' (8.4, with --mysql-native-password=ON): the hash form, as before."""
    server = FakeServer(
        version,
        catalog(
            [account(USER, plugin="mysql_native_password")],
            [],
            **{
                r"@@authentication_policy": [(policy or "*,,",)],
                r"@@default_authentication_plugin": [("mysql_native_password",)],
            },
        ),
    )
    engine, conn = connect(server)
    password = Sensitive(new_password())
    engine.sync_clone(conn, USER, CLONE, password)
    assert server.writes()[0] == (
        "CREATE USER %s@%s IDENTIFIED WITH mysql_native_password AS %s",
        (CLONE, HOST, app.sql.native_password_hash(password)),
    )


def test_mysql_9_refuses_a_native_password_user_before_any_change(connect: Any) -> None:
    """MySQL 9.0 removed mysql_native_password (same page): such an account cannot log in,
    and setting its password the old way is refused by this function, naming the way out."""
    server = FakeServer("9.1.0", catalog([account(USER, plugin="mysql_native_password")], []))
    engine, conn = connect(server)
    for change in (
        lambda: engine.set_password(conn, USER, Sensitive(new_password())),
        lambda: engine.sync_clone(conn, USER, CLONE, Sensitive(new_password())),
    ):
        with pytest.raises(ConfigurationError, match="caching_sha2_password"):
            change()
    assert server.writes() == []


def test_a_login_on_an_unloaded_plugin_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """MySQL 8.4 without --mysql-native-password=ON refuses a mysql_native_password account's
    login with ER_PLUGIN_IS_NOT_LOADED (1524, "Plugin 'mysql_native_password' is not loaded";
    MySQL 8.4 reference, 8.4.1.1; Pomelo.EntityFrameworkCore.MySql issue #1925)."""

    def refuse(**_: Any) -> Any:
        raise refused(1524, "Plugin 'mysql_native_password' is not loaded")

    monkeypatch.setattr(pymysql, "connect", refuse)
    login = DatabaseSecret(
        engine="mysql", host="db.example.com", port=3306, username=USER, password=Sensitive(new_password()), dbname=None
    )
    with pytest.raises(ConfigurationError, match=r"MySQL 8\.4 no longer loads by default"):
        app.MySQLEngine().connect(login, ConnectionSettings())
