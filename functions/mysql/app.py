"""MySQL rotation function (RDS for MySQL, Aurora MySQL, RDS for MariaDB, self-managed).

The whole engine, top to bottom: connecting (TLS with certificate verification by
default, a connect timeout on every connection), changing a password, and creating and
re-syncing the alternate user. The rotation protocol and the strategies live in the
rotation_core layer. pymysql is imported only by the steps that connect (setSecret,
testSecret). The server's flavour (MariaDB or MySQL, and MySQL's version) is read from
the connection handshake, never from the secret's "engine" field. docs/mysql.md lists
every statement each kind of server receives, and which behaviour is verified against a
real server here (MariaDB 10.11) and which against documentation only (MySQL 8.0/8.4).

Passwords on the wire and in the server's logs
----------------------------------------------
Every value is a bound parameter (quoted by pymysql, which honours NO_BACKSLASH_ESCAPES),
never formatted into SQL text by this code.
  - MariaDB logs statements verbatim, so it only ever receives the mysql_native_password
    hash ('*' + upper-case hex SHA1(SHA1(password))): SET PASSWORD = '*<hash>' for the
    single user (it needs no CREATE USER privilege and keeps the account's plugin), and
    CREATE/ALTER USER ... IDENTIFIED BY PASSWORD '*<hash>' as the master. Only
    mysql_native_password accounts are rotated on MariaDB.
  - MySQL 5.7/8.x and Aurora MySQL rewrite passwords out of their logs; the password
    crosses the network inside TLS: ALTER USER CURRENT_USER() IDENTIFIED BY '<new>'
    [REPLACE '<current>'] for the single user, and as the master IDENTIFIED WITH
    mysql_native_password AS '*<hash>' or IDENTIFIED WITH caching_sha2_password |
    sha256_password BY '<password>'. A clone of an account on a deprecated plugin
    (mysql_native_password, sha256_password) is created on the server's default plugin.

Alternating users
-----------------
The master creates `<username>_clone` for every host part of the original and, on every
rotation, copies onto it: TLS requirement and resource limits (mysql.user); privileges at
every level with their grant option (information_schema.*_PRIVILEGES, mysql.procs_priv;
MySQL 8 dynamic privileges keep their grant option one by one); MySQL 8 partial revokes
(mysql.user.User_attributes $.Restrictions); roles with their admin option and the default
roles. What the clone holds and the original does not is revoked. Statements are built
from those catalogs, never from SHOW GRANTS text: identifiers backtick-quoted, privilege
names checked against a pattern, account and role names bound parameters.
A grant on an object that no longer exists (a dropped table or column keeps its grants) is
skipped, logged and counted (metric GrantsSkipped). A privilege the master may not grant
fails setSecret with an error naming it, after every other privilege is copied, unless it
is listed in SKIP_UNGRANTABLE_PRIVILEGES (then it is skipped, logged and counted).
Not copied: account locking and password-expiry options, proxy privileges.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import ssl
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from rotation_core import (
    AuthenticationError,
    ConfigurationError,
    ConnectionSettings,
    DatabaseSecret,
    Defaults,
    PasswordRules,
    RotationError,
    Sensitive,
    UnreachableError,
    rotation_handler,
    trust,
)
from rotation_core.engine import Standing
from rotation_core.errors import printable
from rotation_core.observability import logger, metrics
from rotation_core.passwords import WHITESPACE_AND_CONTROL
from rotation_core.settings import SKIP_UNGRANTABLE_PRIVILEGES

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

# Server error codes (the same numbers on MySQL and MariaDB unless noted).
_AUTH_REFUSED = frozenset(
    {
        1045,  # access denied (wrong password, unknown user)
        1698,  # access denied without a password
        1862,  # password expired
        3118,  # account locked (MySQL)
        4151,  # account locked (MariaDB)
    }
)
_CONNECT_REFUSALS: dict[int, tuple[type[RotationError], str]] = {
    1049: (ConfigurationError, "field 'dbname' names a database that does not exist"),
    1044: (ConfigurationError, "the user may not use the database named by field 'dbname'"),
    1130: (UnreachableError, "the server accepts no account from this function's host"),
    # MySQL's require_secure_transport
    3159: (UnreachableError, "the server requires TLS, and field 'ssl' of the secret is false"),
}
_TLS_FAILED = 2026
# A statement refused for want of a privilege: 1044 database, 1045 a global privilege not
# held (GRANT), 1142/1143 table/column, 1227 a privilege such as a MySQL 8 dynamic one
# (ER_SPECIFIC_ACCESS_DENIED_ERROR), 1370 routine, 1410 ER_CANT_CREATE_USER_WITH_GRANT.
_PRIVILEGE_REFUSED = frozenset({1044, 1045, 1142, 1143, 1227, 1370, 1410, 1698})
# A GRANT on an object that no longer exists: DROP TABLE (and ALTER TABLE ... DROP COLUMN)
# keep the grants on it (MySQL 8.4 reference, GRANT: "MySQL does not automatically revoke
# any privileges when you drop a database or table"; MariaDB the same, checked here).
_NO_SUCH_TABLE, _NO_SUCH_COLUMN, _NO_SUCH_ROUTINE = 1146, 1054, 1305
_OBJECT_GONE = frozenset({_NO_SUCH_TABLE, _NO_SUCH_COLUMN, _NO_SUCH_ROUTINE})
_PLUGIN_REFUSED = frozenset({1372, 1699})  # a hash the account's plugin does not take
_PLUGIN_NOT_LOADED = 1524  # ER_PLUGIN_IS_NOT_LOADED: mysql_native_password on MySQL 8.4 by default
_UNKNOWN_VARIABLE = 1193
_TLS_MARKERS = ("SSL", "ssl", "TLS", "certificate", "CERTIFICATE")

_MARIADB_PLUGINS = frozenset({"mysql_native_password", ""})  # "" is a pre-plugin native account
_MYSQL_PLUGINS = frozenset({"mysql_native_password", "caching_sha2_password", "sha256_password"})
_NATIVE = "mysql_native_password"
_CACHING_SHA2 = "caching_sha2_password"
# Deprecated on MySQL: mysql_native_password since 8.0.34, disabled by default in 8.4,
# removed in 9.0 (MySQL 8.4 reference, 8.4.1.1 Native Pluggable Authentication);
# sha256_password since 8.0.16 (8.4.1.3 SHA-256 Pluggable Authentication).
_DEPRECATED_PLUGINS = frozenset({_NATIVE, "sha256_password"})
_PLUGIN_GONE_MESSAGE = (
    "the account authenticates with mysql_native_password, which MySQL 8.4 no longer loads by default "
    "(--mysql-native-password=ON) and MySQL 9.0 removed; move the account to caching_sha2_password "
    "(ALTER USER ... IDENTIFIED WITH caching_sha2_password BY ...)"
)

# Privilege names as the server reports them: upper-case words (MySQL 8 dynamic
# privileges and MariaDB's READ_ONLY ADMIN have underscores), separated by spaces.
_PRIVILEGE_NAME = re.compile(r"[A-Z][A-Z_]*(?: [A-Z][A-Z_]*)*")
# MySQL's static privileges (MySQL 8.0 reference, GRANT, "Permissible Static Privileges");
# every other global privilege a MySQL 8 server reports is dynamic, and carries its own
# grant option: "GRANT OPTION granted for any static global privilege applies to all static
# global privileges. GRANT OPTION granted for any dynamic privilege applies only to that
# dynamic privilege" (same page, "Global Privileges"). MariaDB has no dynamic privileges.
_MYSQL_STATIC = frozenset(
    {
        "ALTER", "ALTER ROUTINE", "CREATE", "CREATE ROLE", "CREATE ROUTINE", "CREATE TABLESPACE",
        "CREATE TEMPORARY TABLES", "CREATE USER", "CREATE VIEW", "DELETE", "DROP", "DROP ROLE", "EVENT",
        "EXECUTE", "FILE", "GRANT OPTION", "INDEX", "INSERT", "LOCK TABLES", "PROCESS", "PROXY", "REFERENCES",
        "RELOAD", "REPLICATION CLIENT", "REPLICATION SLAVE", "SELECT", "SHOW DATABASES", "SHOW VIEW", "SHUTDOWN",
        "SUPER", "TRIGGER", "UPDATE", "USAGE",
    }
)  # fmt: skip
_ROUTINE_TYPES = frozenset({"FUNCTION", "PROCEDURE", "PACKAGE", "PACKAGE BODY"})
_SSL_TYPES = {"": "REQUIRE NONE", "ANY": "REQUIRE SSL", "X509": "REQUIRE X509"}
_LIMITS = ("MAX_QUERIES_PER_HOUR", "MAX_UPDATES_PER_HOUR", "MAX_CONNECTIONS_PER_HOUR", "MAX_USER_CONNECTIONS")
_MARIADB_LIMITS = (*_LIMITS, "MAX_STATEMENT_TIME")
_GLOBAL = "*.*"


def native_password_hash(password: Sensitive) -> str:
    """The mysql_native_password hash: '*' and upper-case hex SHA1(SHA1(password))."""
    # SHA1 is what the mysql_native_password protocol defines; nothing to choose here.
    inner = hashlib.sha1(password.reveal().encode(), usedforsecurity=False).digest()
    return "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()


def _ident(name: str) -> str:
    """A backtick-quoted identifier, for SQL text that also takes %s parameters
    (pymysql formats with %, so a literal % is doubled)."""
    return ("`" + name.replace("`", "``") + "`").replace("%", "%%")


def _privilege(name: str) -> str:
    if not _PRIVILEGE_NAME.fullmatch(name):
        raise ConfigurationError("the server reported a privilege name this function does not recognise")
    return name


def _text(value: Any) -> str:
    """A catalog value that may come back as bytes (BLOB columns on MySQL)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _error_code(exc: Exception) -> int | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


def _cause(exc: Exception, password: Sensitive | None) -> str:
    """The server's or driver's message, first line, printable. When the statement or login
    carried a password (or its hash), only the server's error code: its text could quote
    the statement."""
    code = _error_code(exc)
    if password is not None and code is not None:
        return f"error {code}"
    parts = [str(arg) for arg in exc.args] if exc.args else [type(exc).__name__]
    text = (parts[-1].strip().splitlines() or [type(exc).__name__])[0]
    if password is not None:  # no code: a driver's own text (never a statement); mask anyway
        for secret in (password.reveal(), native_password_hash(password)):
            if len(secret) >= 8:
                text = text.replace(secret, "********")
    return printable(f"error {code}: {text}" if code is not None else text)


class _RefusePassword:
    """An authentication plugin handler for the master's logins: refuses a server that asks
    for the password in clear text (mysql_clear_password, or the dialog plugin's prompt)."""

    def __init__(self, conn: object) -> None:
        self.conn = conn

    def authenticate(self, packet: object) -> object:  # noqa: ARG002 - pymysql's plugin interface
        raise UnreachableError(
            "the server asked for the master password in clear text (mysql_clear_password or dialog); refused"
        )


_CLEAR_TEXT_PLUGINS = {b"mysql_clear_password": _RefusePassword, b"dialog": _RefusePassword}


def _execute(cur: Cursor, statement: str, params: Sequence[Any] = ()) -> None:
    """cur.execute, noting the statement's template (identifiers and placeholders, never a
    value) on a failure, for the error message."""
    try:
        cur.execute(statement, tuple(params))
    except Exception as exc:
        exc.add_note(statement.replace("%%", "%"))
        raise


@contextlib.contextmanager
def _statements(action: str, password: Sensitive | None) -> Iterator[None]:
    """Turn the server's refusal of a statement into a RotationError that names the
    action and the cause, never a value."""
    import pymysql

    try:
        yield
    except pymysql.MySQLError as exc:
        code = _error_code(exc)
        notes = getattr(exc, "__notes__", [])
        cause = f"{notes[-1]}: {_cause(exc, password)}" if notes else _cause(exc, password)
        if code is not None and 2000 <= code < 3000:  # client-side: the connection broke
            raise UnreachableError(f"{action}: the connection to the server failed: {cause}") from None
        if code in _PRIVILEGE_REFUSED:
            raise ConfigurationError(f"{action}: the connected user lacks a privilege: {cause}") from None
        if code in _PLUGIN_REFUSED:
            raise ConfigurationError(
                f"{action}: the account does not authenticate with mysql_native_password: {cause}"
            ) from None
        if code == _PLUGIN_NOT_LOADED:
            raise ConfigurationError(f"{action}: {_PLUGIN_GONE_MESSAGE}: {cause}") from None
        raise RotationError(f"{action}: the server refused a statement: {cause}") from None


@dataclass(frozen=True)
class _Server:
    mariadb: bool
    major: int
    version: tuple[int, int, int] = (0, 0, 0)

    @property
    def has_roles(self) -> bool:
        return self.mariadb or self.major >= 8

    @property
    def has_partial_revokes(self) -> bool:
        """MySQL 8.0.16+ (mysql.user.User_attributes holds them)."""
        return not self.mariadb and self.version >= (8, 0, 16)

    @property
    def takes_replace(self) -> bool:
        """ALTER USER ... REPLACE 'current': MySQL 8.0.13+ (MariaDB has no such clause)."""
        return not self.mariadb and self.version >= (8, 0, 13)


# Aurora MySQL 3 reports "8.0.mysql_aurora.3.05.2": it is MySQL 8.0.23 or later
# (Aurora user guide, "Aurora MySQL version 3 compatible with MySQL 8.0").
_AURORA_3_MYSQL = 23


def _server(conn: Connection) -> _Server:
    version = str(conn.get_server_info())  # type: ignore[no-untyped-call]  # untyped in types-PyMySQL
    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if not match:
        return _Server(mariadb="MariaDB" in version, major=0)
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    patch = int(match.group(3)) if match.group(3) else (_AURORA_3_MYSQL if "mysql_aurora" in version else 0)
    return _Server(mariadb="MariaDB" in version, major=major, version=(major, minor, patch))


Role = tuple[str, ...]  # MariaDB: (name,); MySQL 8: (user, host)
Restriction = tuple[str, str]  # MySQL 8 partial revoke: (database, privilege)


@dataclass(frozen=True)
class _Account:
    user: str
    host: str
    plugin: str = _NATIVE
    require: tuple[str, str, str, str] = ("", "", "", "")  # ssl_type, issuer, subject, cipher
    limits: tuple[Any, ...] = ()
    default_roles: frozenset[Role] = frozenset()
    restrictions: frozenset[Restriction] = frozenset()

    @property
    def name(self) -> tuple[str, str]:
        return (self.user, self.host)

    @property
    def grantee(self) -> str:
        """How information_schema names the account: 'user'@'host', unescaped. Servers refuse
        '@' in a host name, so the last "'@'" splits it: the string names one account."""
        if "@" in self.host:
            raise ConfigurationError("an account of the user has '@' in its host name: refusing to copy privileges")
        return f"'{self.user}'@'{self.host}'"


@dataclass
class _Grant:
    """What an account holds at one level (one GRANT target)."""

    items: set[str] = field(default_factory=set)  # static privileges: "SELECT", "SELECT (`col`)"
    grantable: bool = False  # the level's GRANT OPTION, shared by all its static privileges
    dynamic: dict[str, bool] = field(default_factory=dict)  # MySQL 8 dynamic privilege -> its own grant option


Privileges = dict[str, _Grant]  # by GRANT target: *.*, `db`.*, `db`.`table`, PROCEDURE `db`.`name`


@dataclass
class _Copy:
    """What copying the privileges left out, for the log, the metric and the error."""

    skip: frozenset[str]  # SKIP_UNGRANTABLE_PRIVILEGES
    gone: list[tuple[str, str]] = field(default_factory=list)  # (target, item) on an object that no longer exists
    skipped: list[tuple[str, str]] = field(default_factory=list)  # refused, and listed in skip
    refused: list[tuple[str, str]] = field(default_factory=list)  # refused: setSecret fails naming them

    def record(self, on: str, item: str, code: int | None) -> None:
        if code in _OBJECT_GONE:
            self.gone.append((on, item))
        elif item.split(" (", 1)[0] in self.skip:
            self.skipped.append((on, item))
        else:
            self.refused.append((on, item))

    def left_out(self, on: str) -> set[str]:
        return {item for target, item in (*self.skipped, *self.refused) if target == on}


@dataclass(frozen=True)
class _Session:
    """What the engine remembers of a connection it opened."""

    password: Sensitive  # the password it logged in with (ALTER USER ... REPLACE)
    skip_privileges: frozenset[str] = frozenset()


# -- reading the catalogs ----------------------------------------------------------------
def _restrictions(value: Any) -> frozenset[Restriction]:
    """MySQL 8 partial revokes, as mysql.user.User_attributes stores them under $.Restrictions:
    [{"Database": "mysql", "Privileges": ["SELECT", ...]}, ...] (MySQL 8.4 reference, 8.2.12
    Privilege Restriction Using Partial Revokes)."""
    text = _text(value)
    if not text:
        return frozenset()
    try:
        entries = json.loads(text)
        return frozenset(
            (str(entry["Database"]), _privilege(str(name).upper()))
            for entry in entries or ()
            for name in entry["Privileges"]
        )
    except (ValueError, TypeError, KeyError):
        raise ConfigurationError("the server reported partial revokes this function does not recognise") from None


def _accounts(cur: Cursor, server: _Server, users: Sequence[str]) -> list[_Account]:
    placeholders = ", ".join(["%s"] * len(users))
    columns = (
        "User, Host, plugin, ssl_type, x509_issuer, x509_subject, ssl_cipher, "
        "max_questions, max_updates, max_connections, max_user_connections"
    )
    if server.mariadb:
        _execute(
            cur,
            f"SELECT {columns}, max_statement_time, default_role FROM mysql.user "
            f"WHERE is_role = 'N' AND User IN ({placeholders}) ORDER BY Host",
            tuple(users),
        )
    elif server.has_partial_revokes:
        _execute(
            cur,
            f"SELECT {columns}, JSON_EXTRACT(User_attributes, '$.Restrictions') FROM mysql.user "
            f"WHERE User IN ({placeholders}) ORDER BY Host",
            tuple(users),
        )
    else:
        _execute(cur, f"SELECT {columns} FROM mysql.user WHERE User IN ({placeholders}) ORDER BY Host", tuple(users))
    limit_count = len(_MARIADB_LIMITS if server.mariadb else _LIMITS)
    rows = list(cur.fetchall())
    defaults: dict[tuple[str, str], set[Role]] = {}
    if server.mariadb:
        for row in rows:
            if _text(row[-1]):
                defaults[(row[0], row[1])] = {(_text(row[-1]),)}
    elif server.has_roles:
        _execute(
            cur,
            "SELECT USER, HOST, DEFAULT_ROLE_USER, DEFAULT_ROLE_HOST FROM mysql.default_roles "
            f"WHERE USER IN ({placeholders})",
            tuple(users),
        )
        for user, host, role_user, role_host in cur.fetchall():
            defaults.setdefault((user, host), set()).add((_text(role_user), _text(role_host)))
    rows = [row for row in rows if row[0] in users]  # exact names (comparisons ignore trailing spaces)
    return [
        _Account(
            user=row[0],
            host=row[1],
            plugin=_text(row[2]),
            require=(_text(row[3]), _text(row[4]), _text(row[5]), _text(row[6])),
            limits=tuple(row[7 : 7 + limit_count]),
            default_roles=frozenset(defaults.get((row[0], row[1]), ())),
            restrictions=_restrictions(row[11]) if server.has_partial_revokes else frozenset(),
        )
        for row in rows
    ]


_PRIVILEGES_SQL = (
    "SELECT GRANTEE, 'column', TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, PRIVILEGE_TYPE, IS_GRANTABLE"
    " FROM information_schema.COLUMN_PRIVILEGES WHERE GRANTEE IN (%s, %s)"
    " UNION ALL SELECT GRANTEE, 'table', TABLE_SCHEMA, TABLE_NAME, '', PRIVILEGE_TYPE, IS_GRANTABLE"
    " FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE IN (%s, %s)"
    " UNION ALL SELECT GRANTEE, 'schema', TABLE_SCHEMA, '', '', PRIVILEGE_TYPE, IS_GRANTABLE"
    " FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE IN (%s, %s)"
    " UNION ALL SELECT GRANTEE, 'global', '', '', '', PRIVILEGE_TYPE, IS_GRANTABLE"
    " FROM information_schema.USER_PRIVILEGES WHERE GRANTEE IN (%s, %s)"
)


def _privileges(cur: Cursor, server: _Server, source: _Account, target: _Account) -> tuple[Privileges, Privileges]:
    """The privileges of source and of target, by GRANT target."""
    found: dict[str, Privileges] = {source.grantee: {}, target.grantee: {}}
    _execute(cur, _PRIVILEGES_SQL, (source.grantee, target.grantee) * 4)
    for grantee, level, schema, table, column, name, grantable in cur.fetchall():
        if grantee not in found:  # information_schema compares names case-insensitively
            continue
        if level == "global":
            on = _GLOBAL
        elif level == "schema":
            on = f"{_ident(schema)}.*"
        else:
            on = f"{_ident(schema)}.{_ident(table)}"
        grant = found[grantee].setdefault(on, _Grant())
        privilege = _privilege(name)
        if level == "global" and not server.mariadb and privilege not in _MYSQL_STATIC:
            grant.dynamic[privilege] = grantable == "YES"
            continue
        grant.grantable |= grantable == "YES"
        if privilege != "USAGE":
            grant.items.add(f"{privilege} ({_ident(column)})" if level == "column" else privilege)
    by_user = {source.user: found[source.grantee], target.user: found[target.grantee]}
    _routine_privileges(cur, source, by_user)
    return by_user[source.user], by_user[target.user]


def _routine_privileges(cur: Cursor, source: _Account, by_user: dict[str, Privileges]) -> None:
    """Add the routine-level privileges (mysql.procs_priv) of the users of by_user, on source's host."""
    users = list(by_user)
    _execute(
        cur,
        "SELECT User, Routine_type, Db, Routine_name, Proc_priv FROM mysql.procs_priv "
        "WHERE Host = %s AND User IN (%s, %s)",
        (source.host, *users),
    )
    for user, kind, schema, routine, names in cur.fetchall():
        if user not in by_user:
            continue
        if _text(kind) not in _ROUTINE_TYPES:
            raise ConfigurationError("the server reported a routine type this function does not recognise")
        grant = by_user[user].setdefault(f"{_text(kind)} {_ident(schema)}.{_ident(routine)}", _Grant())
        for name in names if isinstance(names, set) else _text(names).split(","):
            if name.upper() == "GRANT":
                grant.grantable = True
            elif name:
                grant.items.add(_privilege(name.upper()))


def _roles(
    cur: Cursor, server: _Server, source: _Account, target: _Account
) -> tuple[dict[Role, bool], dict[Role, bool]]:
    """The roles granted to source and to target, with their admin option."""
    found: dict[str, dict[Role, bool]] = {source.user: {}, target.user: {}}
    if server.mariadb:
        _execute(
            cur,
            "SELECT User, Role, Admin_option FROM mysql.roles_mapping WHERE Host = %s AND User IN (%s, %s)",
            (source.host, source.user, target.user),
        )
        for user, role, admin in cur.fetchall():
            if user in found:
                found[user][(_text(role),)] = _text(admin) == "Y"
    elif server.has_roles:
        _execute(
            cur,
            "SELECT TO_USER, FROM_USER, FROM_HOST, WITH_ADMIN_OPTION FROM mysql.role_edges "
            "WHERE TO_HOST = %s AND TO_USER IN (%s, %s)",
            (source.host, source.user, target.user),
        )
        for user, role_user, role_host, admin in cur.fetchall():
            if user in found:
                found[user][(_text(role_user), _text(role_host))] = _text(admin) == "Y"
    return found[source.user], found[target.user]


def _default_plugin(cur: Cursor, server: _Server) -> str:
    """The plugin MySQL gives an account created without IDENTIFIED WITH. From 8.0.27, the
    first element of @@authentication_policy when it names one ("name" or, 8.4, "*:name");
    when it is "*" or empty, @@default_authentication_plugin on 8.0 and caching_sha2_password
    from 8.4, which removed that variable (MySQL 8.0 and 8.4 reference, "Pluggable
    Authentication", "The Default Authentication Plugin"). Before 8.0.27 (no such policy),
    @@default_authentication_plugin."""
    import pymysql

    try:
        _execute(cur, "SELECT @@authentication_policy")
        row = cur.fetchone()
    except pymysql.MySQLError as exc:
        if _error_code(exc) != _UNKNOWN_VARIABLE:
            raise
        row = None
    if row is not None:
        first = _text(row[0]).split(",", 1)[0].strip()
        first = first.removeprefix("*:")
        if first not in ("*", ""):
            return first
        if server.version >= (8, 4, 0):
            return _CACHING_SHA2
    _execute(cur, "SELECT @@default_authentication_plugin")
    row = cur.fetchone()
    return _text(row[0]) if row else _CACHING_SHA2


# -- writing -------------------------------------------------------------------------------
def _check_plugin(server: _Server, account: _Account) -> None:
    supported = _MARIADB_PLUGINS if server.mariadb else _MYSQL_PLUGINS
    if account.plugin not in supported:
        plugin = account.plugin if account.plugin.isidentifier() else "another"
        raise ConfigurationError(
            f"the user named by field 'username' authenticates with the {plugin} plugin; this function rotates "
            f"passwords of {', '.join(sorted(p for p in supported if p))} accounts only"
        )
    if not server.mariadb and server.major >= 9 and account.plugin == _NATIVE:
        raise ConfigurationError(f"the user named by field 'username': {_PLUGIN_GONE_MESSAGE}")


def _identified(server: _Server, plugin: str, password: Sensitive) -> tuple[str, str]:
    """The IDENTIFIED clause for an account using `plugin`, and its parameter."""
    if server.mariadb:
        return "IDENTIFIED BY PASSWORD %s", native_password_hash(password)
    if plugin == _NATIVE:
        return "IDENTIFIED WITH mysql_native_password AS %s", native_password_hash(password)
    if plugin == _CACHING_SHA2:
        return "IDENTIFIED WITH caching_sha2_password BY %s", password.reveal()
    return "IDENTIFIED WITH sha256_password BY %s", password.reveal()


def _require(require: tuple[str, str, str, str]) -> tuple[str, tuple[str, ...]]:
    ssl_type, issuer, subject, cipher = require
    if ssl_type in _SSL_TYPES:
        return _SSL_TYPES[ssl_type], ()
    if ssl_type != "SPECIFIED":
        raise ConfigurationError("the server reported a TLS requirement this function does not recognise")
    given = [
        (keyword, value) for keyword, value in (("ISSUER", issuer), ("SUBJECT", subject), ("CIPHER", cipher)) if value
    ]
    if not given:
        return "REQUIRE SSL", ()
    return "REQUIRE " + " AND ".join(f"{keyword} %s" for keyword, _ in given), tuple(v for _, v in given)


def _sync_attributes(cur: Cursor, server: _Server, source: _Account, target: _Account) -> None:
    if source.require == target.require and source.limits == target.limits:
        return
    clause, values = _require(source.require)
    names = _MARIADB_LIMITS if server.mariadb else _LIMITS
    limits = " ".join(f"{name} %s" for name in names)
    _execute(cur, f"ALTER USER %s@%s {clause} WITH {limits}", (*target.name, *values, *source.limits))


def _grant(cur: Cursor, on: str, items: Iterable[str], account: tuple[str, str], *, option: bool, copy: _Copy) -> None:
    """GRANT items ON on, with or without GRANT OPTION. When the server refuses for want of a
    privilege or because the object is gone, find out which items it refuses by granting
    them one by one (a gone table refuses them all), and record those in copy."""
    import pymysql

    ordered = sorted(items)
    suffix = " WITH GRANT OPTION" if option else ""
    try:
        _execute(cur, f"GRANT {', '.join(ordered)} ON {on} TO %s@%s{suffix}", account)
        return
    except pymysql.MySQLError as exc:
        code = _error_code(exc)
        if code not in _PRIVILEGE_REFUSED | _OBJECT_GONE:
            raise
        if len(ordered) == 1 or code in (_NO_SUCH_TABLE, _NO_SUCH_ROUTINE):
            for item in ordered:
                copy.record(on, item, code)
            return
    for item in ordered:
        try:
            _execute(cur, f"GRANT {item} ON {on} TO %s@%s{suffix}", account)
        except pymysql.MySQLError as exc:
            code = _error_code(exc)
            if code not in _PRIVILEGE_REFUSED | _OBJECT_GONE:
                raise
            copy.record(on, item, code)


def _sync_privileges(cur: Cursor, want: Privileges, have: Privileges, account: tuple[str, str], copy: _Copy) -> None:
    """Make the account hold exactly `want`, level by level: first take away what it has
    beyond (grant options, then privileges), then grant what it lacks, grouped by grant
    option: the level's static privileges, then dynamic ones with, then without, their own."""
    for on in sorted(want.keys() | have.keys()):
        wanted, held = want.get(on, _Grant()), have.get(on, _Grant())
        held_option, held_dynamic = held.grantable, dict(held.dynamic)
        lower = {name for name, option in held.dynamic.items() if option and not wanted.dynamic.get(name)}
        if (held.grantable and not wanted.grantable) or (lower & wanted.dynamic.keys()):
            # On MySQL this takes the grant option off every dynamic privilege as well
            # (sql_authorization.cc, mysql_grant: revoke_grant_option_for_all_dynamic_privileges);
            # the ones that keep it are granted it again below.
            _execute(cur, f"REVOKE GRANT OPTION ON {on} FROM %s@%s", account)
            held_option, held_dynamic = False, dict.fromkeys(held.dynamic, False)
        extra = (held.items - wanted.items) | (held.dynamic.keys() - wanted.dynamic.keys())
        if extra:
            _execute(cur, f"REVOKE {', '.join(sorted(extra))} ON {on} FROM %s@%s", account)
        missing = wanted.items - held.items
        if missing or (wanted.grantable and not held_option):
            _grant(cur, on, missing or wanted.items or {"USAGE"}, account, option=wanted.grantable, copy=copy)
        for option in (True, False):
            dynamic = {
                name
                for name, grantable in wanted.dynamic.items()
                if grantable == option and (name not in held_dynamic or (option and not held_dynamic[name]))
            }
            if dynamic:
                _grant(cur, on, dynamic, account, option=option, copy=copy)


def _sync_restrictions(
    cur: Cursor, source: _Account, target: _Account, granted: set[str], account: tuple[str, str]
) -> None:
    """MySQL 8 partial revokes (partial_revokes=ON): information_schema shows a global grant
    without its restrictions, so after the global GRANT, revoke it again on each database
    the user is restricted on; and lift the restrictions the clone has and the user has not
    by granting the privilege on that database, which removes the restriction (MySQL 8.4
    reference, 8.2.12 Privilege Restriction Using Partial Revokes). Only privileges the
    account holds globally can be restricted."""
    add = {(db, name) for db, name in source.restrictions - target.restrictions if name in granted}
    lift = target.restrictions - source.restrictions
    for verb, pairs, direction in (("REVOKE", add, "FROM"), ("GRANT", lift, "TO")):
        for db in sorted({db for db, _ in pairs}):
            names = ", ".join(sorted(name for other, name in pairs if other == db))
            _execute(cur, f"{verb} {names} ON {_ident(db)}.* {direction} %s@%s", account)


def _role_placeholder(role: Role) -> str:
    return "%s@%s" if len(role) == 2 else "%s"


def _sync_roles(cur: Cursor, want: dict[Role, bool], have: dict[Role, bool], account: tuple[str, str]) -> None:
    for role in sorted(want.keys() | have.keys()):
        if role in have and want.get(role) != have[role]:  # gone, or another admin option
            _execute(cur, f"REVOKE {_role_placeholder(role)} FROM %s@%s", (*role, *account))
        if role in want and have.get(role) != want[role]:
            option = " WITH ADMIN OPTION" if want[role] else ""
            _execute(cur, f"GRANT {_role_placeholder(role)} TO %s@%s{option}", (*role, *account))


def _sync_default_roles(cur: Cursor, server: _Server, source: _Account, target: _Account) -> None:
    if source.default_roles == target.default_roles:
        return
    roles = sorted(source.default_roles)
    if server.mariadb:
        if roles:
            _execute(cur, "SET DEFAULT ROLE %s FOR %s@%s", (*roles[0], *target.name))
        else:
            _execute(cur, "SET DEFAULT ROLE NONE FOR %s@%s", target.name)
        return
    listed = ", ".join(_role_placeholder(role) for role in roles) or "NONE"
    _execute(cur, f"ALTER USER %s@%s DEFAULT ROLE {listed}", (*target.name, *(part for r in roles for part in r)))


def _sync_account(cur: Cursor, server: _Server, source: _Account, target: _Account, copy: _Copy) -> None:
    """Make target (an existing clone account) a copy of source, apart from its password."""
    _sync_attributes(cur, server, source, target)
    want, have = _privileges(cur, server, source, target)
    _sync_privileges(cur, want, have, target.name, copy)
    if server.has_partial_revokes and (source.restrictions or target.restrictions):
        granted = want.get(_GLOBAL, _Grant()).items - copy.left_out(_GLOBAL)
        _sync_restrictions(cur, source, target, granted, target.name)
    if server.has_roles:
        want_roles, have_roles = _roles(cur, server, source, target)
        _sync_roles(cur, want_roles, have_roles, target.name)
        _sync_default_roles(cur, server, source, target)


def _report(copy: _Copy, action: str) -> None:
    """Log and count what the copy left out; fail naming what the master may not grant."""
    left_out = len(copy.gone) + len(copy.skipped)
    if copy.gone:
        logger.warning(
            "grants on objects that no longer exist (dropped tables, columns or routines) were not copied",
            extra={"grants_skipped": len(copy.gone)},
        )
    if copy.skipped:
        logger.warning(
            f"privileges the master user may not grant and {SKIP_UNGRANTABLE_PRIVILEGES} lists were not copied",
            extra={"privileges_skipped": sorted({item.split(" (", 1)[0] for _, item in copy.skipped})},
        )
    if left_out:
        metrics.add_metric(name="GrantsSkipped", unit=MetricUnit.Count, value=left_out)
    if copy.refused:
        names = ", ".join(sorted({f"{item} ON {on}".replace("%%", "%") for on, item in copy.refused}))
        raise ConfigurationError(
            f"{action}: the master user lacks a privilege it must grant to copy the user: it may not grant "
            f"{names}. Every other privilege was copied; the current credential is unchanged. Grant each to the "
            f"master user WITH GRANT OPTION, revoke it from the user, or list its name in environment variable "
            f"{SKIP_UNGRANTABLE_PRIVILEGES} to leave it off the alternate user"
        )


class MySQLEngine:
    name = "mysql"
    defaults = Defaults(
        engines=frozenset({"mysql", "aurora-mysql", "mariadb"}),
        port=3306,
        dbname=None,
        max_username=32,  # MySQL 5.7 and 8.x
        max_username_by_engine={"mariadb": 80},
        username_unit="characters",
    )
    # AWS's default exclusions for MySQL; whitespace and control characters are never used.
    password_rules = PasswordRules(default_exclude="/@\"'\\", always_exclude=WHITESPACE_AND_CONTROL)

    def __init__(self) -> None:
        # What each open connection was opened with; an entry goes with its connection.
        self._sessions: weakref.WeakKeyDictionary[Any, _Session] = weakref.WeakKeyDictionary()

    def connect(self, login: DatabaseSecret, settings: ConnectionSettings, *, master: bool = False) -> Connection:
        import pymysql

        options: dict[str, Any] = {
            "host": login.host,
            "port": login.port,
            "user": login.username,
            "password": login.password.reveal(),
            "database": login.dbname,
            "connect_timeout": settings.connect_timeout,
            "autocommit": True,
            "charset": "utf8mb4",
            "program_name": "secrets-manager-rotation",
        }
        if login.ssl is False:
            options["ssl_disabled"] = True
        else:
            # An SSLContext makes pymysql require TLS: a server without it is refused.
            options["ssl"] = self._tls_context(settings.ca_bundle)
        if master:
            options["auth_plugin_map"] = _CLEAR_TEXT_PLUGINS
        try:
            conn: Connection = pymysql.connect(**options)
        except pymysql.MySQLError as exc:
            raise self._connect_error(exc, login, settings) from None
        except RuntimeError as exc:  # pymysql: an authentication plugin it cannot run (ed25519 without PyNaCl)
            raise ConfigurationError(
                f"the account uses an authentication method this function cannot use: {_cause(exc, None)}"
            ) from None
        self._sessions[conn] = _Session(password=login.password, skip_privileges=settings.skip_privileges)
        return conn

    @staticmethod
    def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=ca_bundle)
        except (ssl.SSLError, OSError):
            raise ConfigurationError("environment variable DB_CA_BUNDLE does not name a PEM CA bundle") from None
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    @staticmethod
    def _connect_error(exc: Exception, login: DatabaseSecret, settings: ConnectionSettings) -> RotationError:
        password = login.password
        code = _error_code(exc)
        # Connecting sends no statement: the driver's and server's text helps (TLS errors)
        # and holds no password; masked all the same, should a driver ever echo one.
        cause = _cause(exc, None)
        if len(password) >= 8:
            cause = cause.replace(password.reveal(), "********")
        if code in _AUTH_REFUSED:
            return AuthenticationError("the server refused the user name or password")
        if code in _CONNECT_REFUSALS:
            kind, message = _CONNECT_REFUSALS[code]
            return kind(message)
        if code == _PLUGIN_NOT_LOADED:
            return ConfigurationError(f"{_PLUGIN_GONE_MESSAGE}: {cause}")
        if code == _TLS_FAILED or any(marker in cause for marker in _TLS_MARKERS):
            return UnreachableError(trust.describe_tls_failure(login.host, settings.ca_source, cause))
        return UnreachableError(f"cannot connect: {cause}")

    def set_own_password(self, conn: Connection, username: str, password: Sensitive) -> None:  # noqa: ARG002
        # CURRENT_USER is the logged-in account: the name is not needed.
        server = _server(conn)
        session = self._sessions.get(conn)
        with _statements("setting the user's own password", password), conn.cursor() as cur:
            if server.mariadb:
                _execute(cur, "SET PASSWORD = %s", (native_password_hash(password),))
            elif server.takes_replace and session is not None:
                # The password this session logged in with, for an account with
                # password_require_current (global, or PASSWORD REQUIRE CURRENT). Given when
                # it is optional too: "The statement fails if the clause is given but does
                # not match the current password, even if the clause is optional" (MySQL 8.0
                # reference, 15.7.1.1 ALTER USER Statement; REPLACE "is available as of MySQL
                # 8.0.13" and "can be specified only when changing the account password for
                # the current user"). It matches: the session logged in with it.
                _execute(
                    cur,
                    "ALTER USER CURRENT_USER() IDENTIFIED BY %s REPLACE %s",
                    (password.reveal(), session.password.reveal()),
                )
            else:
                _execute(cur, "ALTER USER CURRENT_USER() IDENTIFIED BY %s", (password.reveal(),))

    def set_password(self, conn: Connection, username: str, password: Sensitive) -> None:
        server = _server(conn)
        with _statements("setting the user's password as the master user", password), conn.cursor() as cur:
            accounts = _accounts(cur, server, [username])
            if not accounts:
                raise ConfigurationError("the user named by field 'username' does not exist in the database")
            for account in accounts:
                _check_plugin(server, account)
            for account in accounts:
                clause, value = _identified(server, account.plugin, password)
                _execute(cur, f"ALTER USER %s@%s {clause}", (*account.name, value))

    def alternate_standing(self, conn: Connection, original: str, clone: str) -> Standing | None:
        """MySQL has no tie between two accounts: the clone stands when it holds no global
        privilege, grant option, role or freedom from a partial revoke beyond the
        original's, host by host."""
        server = _server(conn)
        beyond: set[str] = set()
        with _statements("reading the alternate user", None), conn.cursor() as cur:
            accounts = _accounts(cur, server, [original, clone])
            clones = [account for account in accounts if account.user == clone]
            if not clones:
                return None
            sources = {account.host: account for account in accounts if account.user == original}
            for target in clones:
                source = sources.get(target.host, _Account(original, target.host))
                want, have = _privileges(cur, server, source, target)
                wanted, held = want.get(_GLOBAL, _Grant()), have.get(_GLOBAL, _Grant())
                beyond.update(f"global {name}" for name in held.items - wanted.items)
                beyond.update(f"global {name}" for name in held.dynamic.keys() - wanted.dynamic.keys())
                if held.grantable and not wanted.grantable:
                    beyond.add("global GRANT OPTION")
                beyond.update(
                    f"global {name} WITH GRANT OPTION"
                    for name, option in held.dynamic.items()
                    if option and wanted.dynamic.get(name) is False
                )
                beyond.update(
                    f"{name} on database {db} (the user has a partial revoke)"
                    for db, name in source.restrictions - target.restrictions
                    if name in held.items
                )
                if server.has_roles:
                    want_roles, have_roles = _roles(cur, server, source, target)
                    if have_roles.keys() - want_roles.keys():
                        beyond.add("roles")
        return Standing(related=None, beyond=tuple(sorted(beyond)))

    def sync_clone(self, conn: Connection, original: str, clone: str, password: Sensitive | None) -> None:
        server = _server(conn)
        session = self._sessions.get(conn)
        copy = _Copy(skip=session.skip_privileges if session else frozenset())
        action = "copying the user to the alternate user"
        with _statements(action, password), conn.cursor() as cur:
            accounts = _accounts(cur, server, [original, clone])
            sources = [account for account in accounts if account.user == original]
            if not sources:
                raise ConfigurationError("the user named by field 'username' does not exist in the database")
            targets = {account.host: account for account in accounts if account.user == clone}
            if not targets and password is None:
                raise ConfigurationError("the alternate user does not exist and no pending password creates it")
            for source in sources:
                _check_plugin(server, source)
            default_plugin: str | None = None
            for source in sources:
                target = targets.get(source.host)
                if target is None and password is None:
                    logger.warning(
                        "the user has an account for a host the alternate user lacks; it is created when the "
                        "alternate user's password is next set",
                        extra={"account_host": source.host},
                    )
                    continue
                if password is not None:
                    plugin = source.plugin
                    if not server.mariadb and plugin in _DEPRECATED_PLUGINS:
                        if default_plugin is None:
                            default_plugin = _default_plugin(cur, server)
                        if default_plugin != plugin:
                            # Never a new credential on a deprecated plugin the server no longer
                            # defaults to: the clone gets the default one (inside TLS).
                            plugin = default_plugin if default_plugin in _MYSQL_PLUGINS else _CACHING_SHA2
                            logger.warning(
                                "the user authenticates with a deprecated plugin; the alternate user gets the "
                                "server's default plugin",
                                extra={"user_plugin": source.plugin, "alternate_plugin": plugin},
                            )
                    clause, value = _identified(server, plugin, password)
                    verb = "CREATE" if target is None else "ALTER"
                    _execute(cur, f"{verb} USER %s@%s {clause}", (clone, source.host, value))
                # A new account has no TLS requirement and no limits.
                fresh = _Account(clone, source.host, limits=(0,) * len(source.limits))
                _sync_account(cur, server, source, target or fresh, copy)
        _report(copy, action)

    def is_replica(self, conn: Connection) -> bool:
        """read_only (a replica, an RDS read replica), or innodb_read_only (an Aurora reader)."""
        with conn.cursor() as cur:
            _execute(cur, "SELECT @@global.read_only, @@global.innodb_read_only")
            row = cur.fetchone()
        return bool(row and (int(row[0] or 0) or int(row[1] or 0)))

    def same_cluster(self, primary: Connection, replica: Connection) -> bool | None:
        """The primary lists its replicas (SHOW SLAVE HOSTS, SHOW REPLICAS on MySQL 8.0.22+:
        server id and the port each reports); the replica's own @@server_id and @@port must
        be among them. Listing needs REPLICATION MASTER ADMIN (MariaDB) or REPLICATION SLAVE
        (MySQL) for the master: without it, None (the RDS API decides)."""
        import pymysql

        with replica.cursor() as cur:
            _execute(cur, "SELECT @@server_id, @@port")
            row = cur.fetchone()
        if row is None:
            return None
        server_id, port = int(row[0]), int(row[1])
        server = _server(primary)
        statement = "SHOW REPLICAS" if not server.mariadb and server.version >= (8, 0, 22) else "SHOW SLAVE HOSTS"
        try:
            with primary.cursor() as cur:
                _execute(cur, statement)
                listed = [(int(r[0]), int(r[2] or 0)) for r in cur.fetchall()]
        except pymysql.MySQLError as exc:
            logger.info("the master may not list the primary's replicas", extra={"error": _error_code(exc)})
            return None
        return any(sid == server_id and reported in (port, 0) for sid, reported in listed) and self.is_replica(replica)

    def check(self, conn: Connection) -> None:
        with conn.cursor() as cur:
            _execute(cur, "SELECT 1")
            cur.fetchone()


lambda_handler = rotation_handler(MySQLEngine())
