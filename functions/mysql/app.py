"""MySQL rotation function (RDS for MySQL, Aurora MySQL, RDS for MariaDB, self-managed).

The whole engine, top to bottom: connecting (TLS with certificate verification by
default, a connect timeout on every connection), changing a password, and creating and
re-syncing the alternate user. The rotation protocol and the strategies live in the
rotation_core layer. pymysql is imported only by the steps that connect (setSecret,
testSecret). The server's flavour (MariaDB or MySQL, and MySQL's major version) is read
from the connection handshake, never from the secret's "engine" field.

What reaches the server when a password changes
-----------------------------------------------
Every value travels as a bound parameter (quoted by pymysql, which honours the
server's NO_BACKSLASH_ESCAPES), never formatted into the SQL text by this code.

MariaDB (its general, slow and binary logs record statements verbatim):
  - single user:           SET PASSWORD = '*<hash>'
  - master, existing user: ALTER USER 'u'@'h' IDENTIFIED BY PASSWORD '*<hash>'
  - master, alternate:     CREATE USER 'u_clone'@'h' IDENTIFIED BY PASSWORD '*<hash>'
                           (ALTER USER ... the same way once it exists)
  '*<hash>' is the mysql_native_password hash, upper-case hex SHA1(SHA1(password)),
  computed by this function: the password itself never reaches a MariaDB server, so it
  is in no MariaDB log. (PASSWORD('...') is never used: the clear text would be logged.)
  SET PASSWORD is used for the single user because ALTER USER needs the CREATE USER
  privilege on MariaDB; it keeps the account's plugin and fails, rather than switching
  plugins, on an account that is not mysql_native_password. Only mysql_native_password
  accounts are rotated on MariaDB: ed25519 needs PyNaCl to log in (not bundled), and
  pam, gssapi and unix_socket accounts have no database password.
  A server with strict_password_validation and a password-validation plugin refuses
  hashes; the rotation then fails with the server's message (no clear-text fallback).

MySQL 5.7 / 8.x and Aurora MySQL (they rewrite passwords out of their general, slow and
binary logs; the password crosses the network inside TLS):
  - single user:           ALTER USER CURRENT_USER() IDENTIFIED BY '<password>'
                           (the account keeps its plugin)
  - master, mysql_native_password accounts:
                           ALTER USER / CREATE USER 'u'@'h'
                               IDENTIFIED WITH mysql_native_password AS '*<hash>'
  - master, caching_sha2_password or sha256_password accounts:
                           ALTER USER / CREATE USER 'u'@'h' IDENTIFIED WITH <plugin> BY '<password>'
  With "ssl": false in the secret, those clear-text forms cross the network unencrypted.

Alternating users
-----------------
The master creates `<username>_clone` for every host part the original account has (one
clone account per `'<username>'@'<host>'`, never a hard-coded '%'), with the original's
authentication plugin, and on every rotation copies onto it, per host:
  - TLS requirements (REQUIRE NONE | SSL | X509 | ISSUER/SUBJECT/CIPHER) and resource
    limits (MAX_QUERIES/UPDATES/CONNECTIONS_PER_HOUR, MAX_USER_CONNECTIONS, and on
    MariaDB MAX_STATEMENT_TIME), from mysql.user;
  - privileges at every level, with WITH GRANT OPTION: global, database, table and
    column ones from information_schema.USER_/SCHEMA_/TABLE_/COLUMN_PRIVILEGES, routine
    ones from mysql.procs_priv. Privileges the clone has and the original no longer has
    are revoked, so the two never drift apart;
  - roles granted to the user (MariaDB mysql.roles_mapping, MySQL 8 mysql.role_edges),
    WITH ADMIN OPTION as the original has it, and the default role(s) (MariaDB
    mysql.user.default_role, MySQL 8 mysql.default_roles).
No statement is made from SHOW GRANTS text (AWS's function rewrites it by string
replacement, which their issue #158 reports as SQL injection). GRANT statements are
built from those catalogs: identifiers quoted with backticks (doubled inside), privilege
names checked against a whitelist pattern, account and role names as bound parameters.
information_schema names an account by the string 'user'@'host' (unescaped): as servers
refuse '@' in host names, the last "'@'" splits it, so the string names one account (an
account whose host has '@' is refused). Its comparisons ignore case, so rows are matched
to the account exactly in Python.
Not copied: account locking and password-expiry options, MySQL 8 partial revokes and
proxy privileges (mysql.proxies_priv). Clone accounts for hosts the original no longer
has are left alone. A host the original gains after the clone exists gets its clone
account at the next rotation that sets the clone's password.

What only a MySQL 8 server can test (this suite runs MariaDB 10.11)
--------------------------------------------------------------------
ALTER USER CURRENT_USER() and the IDENTIFIED WITH ... BY / AS forms; caching_sha2_password
and sha256_password logins (pymysql with cryptography); that MySQL's logs rewrite those
statements; roles through mysql.role_edges and default roles through mysql.default_roles
(ALTER USER ... DEFAULT ROLE); dynamic global privileges (BACKUP_ADMIN, ...) as listed by
USER_PRIVILEGES; error 3159 (require_secure_transport) with "ssl": false.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
)
from rotation_core.engine import Standing
from rotation_core.errors import printable
from rotation_core.observability import logger
from rotation_core.passwords import WHITESPACE_AND_CONTROL

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
_PRIVILEGE_REFUSED = frozenset({1044, 1045, 1142, 1143, 1227, 1370, 1698})  # 1045: GRANT of one not held
_PLUGIN_REFUSED = frozenset({1372, 1699})  # a hash the account's plugin does not take
_TLS_MARKERS = ("SSL", "ssl", "TLS", "certificate", "CERTIFICATE")

_MARIADB_PLUGINS = frozenset({"mysql_native_password", ""})  # "" is a pre-plugin native account
_MYSQL_PLUGINS = frozenset({"mysql_native_password", "caching_sha2_password", "sha256_password"})
_NATIVE = "mysql_native_password"

# Privilege names as the server reports them: upper-case words (MySQL 8 dynamic
# privileges and MariaDB's READ_ONLY ADMIN have underscores), separated by spaces.
_PRIVILEGE_NAME = re.compile(r"[A-Z][A-Z_]*(?: [A-Z][A-Z_]*)*")
_ROUTINE_TYPES = frozenset({"FUNCTION", "PROCEDURE", "PACKAGE", "PACKAGE BODY"})
_SSL_TYPES = {"": "REQUIRE NONE", "ANY": "REQUIRE SSL", "X509": "REQUIRE X509"}
_LIMITS = ("MAX_QUERIES_PER_HOUR", "MAX_UPDATES_PER_HOUR", "MAX_CONNECTIONS_PER_HOUR", "MAX_USER_CONNECTIONS")
_MARIADB_LIMITS = (*_LIMITS, "MAX_STATEMENT_TIME")


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
        raise RotationError(f"{action}: the server refused a statement: {cause}") from None


@dataclass(frozen=True)
class _Server:
    mariadb: bool
    major: int

    @property
    def has_roles(self) -> bool:
        return self.mariadb or self.major >= 8


def _server(conn: Connection) -> _Server:
    version = str(conn.get_server_info())  # type: ignore[no-untyped-call]  # untyped in types-PyMySQL
    match = re.match(r"\d+", version)
    return _Server(mariadb="MariaDB" in version, major=int(match.group()) if match else 0)


Role = tuple[str, ...]  # MariaDB: (name,); MySQL 8: (user, host)


@dataclass(frozen=True)
class _Account:
    user: str
    host: str
    plugin: str = _NATIVE
    require: tuple[str, str, str, str] = ("", "", "", "")  # ssl_type, issuer, subject, cipher
    limits: tuple[Any, ...] = ()
    default_roles: frozenset[Role] = frozenset()

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
    items: set[str] = field(default_factory=set)  # "SELECT", "SELECT (`col`)"
    grantable: bool = False


Privileges = dict[str, _Grant]  # by GRANT target: *.*, `db`.*, `db`.`table`, PROCEDURE `db`.`name`


# -- reading the catalogs ----------------------------------------------------------------
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


def _privileges(cur: Cursor, source: _Account, target: _Account) -> tuple[Privileges, Privileges]:
    """The privileges of source and of target, by GRANT target."""
    found: dict[str, Privileges] = {source.grantee: {}, target.grantee: {}}
    _execute(cur, _PRIVILEGES_SQL, (source.grantee, target.grantee) * 4)
    for grantee, level, schema, table, column, name, grantable in cur.fetchall():
        if grantee not in found:  # information_schema compares names case-insensitively
            continue
        if level == "global":
            on = "*.*"
        elif level == "schema":
            on = f"{_ident(schema)}.*"
        else:
            on = f"{_ident(schema)}.{_ident(table)}"
        grant = found[grantee].setdefault(on, _Grant())
        grant.grantable |= grantable == "YES"
        privilege = _privilege(name)
        if privilege != "USAGE":
            grant.items.add(f"{privilege} ({_ident(column)})" if level == "column" else privilege)
    by_user = {source.user: found[source.grantee], target.user: found[target.grantee]}
    _execute(
        cur,
        "SELECT User, Routine_type, Db, Routine_name, Proc_priv FROM mysql.procs_priv "
        "WHERE Host = %s AND User IN (%s, %s)",
        (source.host, source.user, target.user),
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
    return by_user[source.user], by_user[target.user]


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


# -- writing -------------------------------------------------------------------------------
def _check_plugin(server: _Server, account: _Account) -> None:
    supported = _MARIADB_PLUGINS if server.mariadb else _MYSQL_PLUGINS
    if account.plugin not in supported:
        plugin = account.plugin if account.plugin.isidentifier() else "another"
        raise ConfigurationError(
            f"the user named by field 'username' authenticates with the {plugin} plugin; this function rotates "
            f"passwords of {', '.join(sorted(p for p in supported if p))} accounts only"
        )


def _identified(server: _Server, plugin: str, password: Sensitive) -> tuple[str, str]:
    """The IDENTIFIED clause for an account using `plugin`, and its parameter."""
    if server.mariadb:
        return "IDENTIFIED BY PASSWORD %s", native_password_hash(password)
    if plugin == _NATIVE:
        return "IDENTIFIED WITH mysql_native_password AS %s", native_password_hash(password)
    if plugin == "caching_sha2_password":
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


def _sync_privileges(cur: Cursor, want: Privileges, have: Privileges, account: tuple[str, str]) -> None:
    for on in sorted(want.keys() | have.keys()):
        wanted, held = want.get(on, _Grant()), have.get(on, _Grant())
        missing, extra = wanted.items - held.items, held.items - wanted.items
        if missing or (wanted.grantable and not held.grantable):
            items = ", ".join(sorted(missing or wanted.items or {"USAGE"}))
            option = " WITH GRANT OPTION" if wanted.grantable else ""
            _execute(cur, f"GRANT {items} ON {on} TO %s@%s{option}", account)
        if extra:
            _execute(cur, f"REVOKE {', '.join(sorted(extra))} ON {on} FROM %s@%s", account)
        if held.grantable and not wanted.grantable:
            _execute(cur, f"REVOKE GRANT OPTION ON {on} FROM %s@%s", account)


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


def _sync_account(cur: Cursor, server: _Server, source: _Account, target: _Account) -> None:
    """Make target (an existing clone account) a copy of source, apart from its password."""
    _sync_attributes(cur, server, source, target)
    want, have = _privileges(cur, source, target)
    _sync_privileges(cur, want, have, target.name)
    if server.has_roles:
        want_roles, have_roles = _roles(cur, server, source, target)
        _sync_roles(cur, want_roles, have_roles, target.name)
        _sync_default_roles(cur, server, source, target)


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
            raise self._connect_error(exc, login.password) from None
        except RuntimeError as exc:  # pymysql: an authentication plugin it cannot run (ed25519 without PyNaCl)
            raise ConfigurationError(
                f"the account uses an authentication method this function cannot use: {_cause(exc, None)}"
            ) from None
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
    def _connect_error(exc: Exception, password: Sensitive) -> RotationError:
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
        if code == _TLS_FAILED or any(marker in cause for marker in _TLS_MARKERS):
            return UnreachableError(f"TLS with certificate verification failed: {cause}")
        return UnreachableError(f"cannot connect: {cause}")

    def set_own_password(self, conn: Connection, username: str, password: Sensitive) -> None:  # noqa: ARG002
        # CURRENT_USER is the logged-in account: the name is not needed.
        server = _server(conn)
        with _statements("setting the user's own password", password), conn.cursor() as cur:
            if server.mariadb:
                _execute(cur, "SET PASSWORD = %s", (native_password_hash(password),))
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
        privilege (or grant option) and no role beyond the original's, host by host."""
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
                want, have = _privileges(cur, source, target)
                wanted, held = want.get("*.*", _Grant()), have.get("*.*", _Grant())
                beyond.update(f"global {name}" for name in held.items - wanted.items)
                if held.grantable and not wanted.grantable:
                    beyond.add("global GRANT OPTION")
                if server.has_roles:
                    want_roles, have_roles = _roles(cur, server, source, target)
                    if have_roles.keys() - want_roles.keys():
                        beyond.add("roles")
        return Standing(related=None, beyond=tuple(sorted(beyond)))

    def sync_clone(self, conn: Connection, original: str, clone: str, password: Sensitive | None) -> None:
        server = _server(conn)
        with _statements("copying the user to the alternate user", password), conn.cursor() as cur:
            accounts = _accounts(cur, server, [original, clone])
            sources = [account for account in accounts if account.user == original]
            if not sources:
                raise ConfigurationError("the user named by field 'username' does not exist in the database")
            targets = {account.host: account for account in accounts if account.user == clone}
            if not targets and password is None:
                raise ConfigurationError("the alternate user does not exist and no pending password creates it")
            for source in sources:
                _check_plugin(server, source)
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
                    clause, value = _identified(server, source.plugin, password)
                    verb = "CREATE" if target is None else "ALTER"
                    _execute(cur, f"{verb} USER %s@%s {clause}", (clone, source.host, value))
                # A new account has no TLS requirement and no limits.
                fresh = _Account(clone, source.host, limits=(0,) * len(source.limits))
                _sync_account(cur, server, source, target or fresh)

    def check(self, conn: Connection) -> None:
        with conn.cursor() as cur:
            _execute(cur, "SELECT 1")
            cur.fetchone()


lambda_handler = rotation_handler(MySQLEngine())
