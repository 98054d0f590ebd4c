"""MySQL rotation function (RDS for MySQL, Aurora MySQL, RDS for MariaDB, self-managed).

The engine, top to bottom: connecting (TLS with certificate verification by default, a
connect timeout on every connection), changing a password, and creating and re-syncing the
alternate user. Two modules beside it hold one subject each: mysql_statements.py (the
server's flavour and plugins, statements and their errors) and mysql_accounts.py (copying an
account's privileges, roles and limits onto the alternate user). The rotation protocol and
the strategies live in the rotation_core layer. pymysql is imported only by the steps that connect (setSecret,
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
rotation, makes it hold exactly what the original holds (mysql_accounts.py). A grant on
an object that no longer exists (a dropped table or column keeps its grants) is skipped,
logged and counted (metric GrantsSkipped). A privilege the master may not grant fails
setSecret with an error naming it, after every other privilege is copied, unless it is
listed in SKIP_UNGRANTABLE_PRIVILEGES (then it is skipped, logged and counted).
Not copied: account locking and password-expiry options, proxy privileges.
"""

from __future__ import annotations

import ssl
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mysql_statements as sql
from mysql_accounts import (
    GLOBAL,
    Account,
    Copy,
    Grant,
    check_plugin,
    default_plugin,
    identified,
    read_accounts,
    read_privileges,
    read_roles,
    report_left_out,
    sync_account,
)
from mysql_statements import (
    CACHING_SHA2,
    DEPRECATED_PLUGINS,
    MYSQL_PLUGINS,
    PLUGIN_GONE_MESSAGE,
    PLUGIN_NOT_LOADED,
    error_code,
    server_cause,
    server_of,
    statement_errors,
)

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
from rotation_core.observability import logger
from rotation_core.passwords import WHITESPACE_AND_CONTROL

if TYPE_CHECKING:
    from pymysql.connections import Connection

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
_TLS_MARKERS = ("SSL", "ssl", "TLS", "certificate", "CERTIFICATE")


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


@dataclass(frozen=True)
class _Session:
    """What the engine remembers of a connection it opened."""

    password: Sensitive  # the password it logged in with (ALTER USER ... REPLACE)
    skip_privileges: frozenset[str] = frozenset()


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
                f"the account uses an authentication method this function cannot use: {server_cause(exc, None)}"
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
        code = error_code(exc)
        # Connecting sends no statement: the driver's and server's text helps (TLS errors)
        # and holds no password; masked all the same, should a driver ever echo one.
        cause = server_cause(exc, None)
        if len(password) >= 8:
            cause = cause.replace(password.reveal(), "********")
        if code in _AUTH_REFUSED:
            return AuthenticationError("the server refused the user name or password")
        if code in _CONNECT_REFUSALS:
            kind, message = _CONNECT_REFUSALS[code]
            return kind(message)
        if code == PLUGIN_NOT_LOADED:
            return ConfigurationError(f"{PLUGIN_GONE_MESSAGE}: {cause}")
        if code == _TLS_FAILED or any(marker in cause for marker in _TLS_MARKERS):
            return UnreachableError(trust.describe_tls_failure(login.host, settings.ca_source, cause))
        return UnreachableError(f"cannot connect: {cause}")

    def set_own_password(self, conn: Connection, username: str, password: Sensitive) -> None:  # noqa: ARG002
        # CURRENT_USER is the logged-in account: the name is not needed.
        server = server_of(conn)
        session = self._sessions.get(conn)
        with statement_errors("setting the user's own password", password), conn.cursor() as cur:
            if server.mariadb:
                sql.execute(cur, "SET PASSWORD = %s", (sql.native_password_hash(password),))
            elif server.takes_replace and session is not None:
                # The password this session logged in with, for an account with
                # password_require_current (global, or PASSWORD REQUIRE CURRENT). Given when
                # it is optional too: "The statement fails if the clause is given but does
                # not match the current password, even if the clause is optional" (MySQL 8.0
                # reference, 15.7.1.1 ALTER USER Statement; REPLACE "is available as of MySQL
                # 8.0.13" and "can be specified only when changing the account password for
                # the current user"). It matches: the session logged in with it.
                sql.execute(
                    cur,
                    "ALTER USER CURRENT_USER() IDENTIFIED BY %s REPLACE %s",
                    (password.reveal(), session.password.reveal()),
                )
            else:
                sql.execute(cur, "ALTER USER CURRENT_USER() IDENTIFIED BY %s", (password.reveal(),))

    def set_password(self, conn: Connection, username: str, password: Sensitive) -> None:
        server = server_of(conn)
        with statement_errors("setting the user's password as the master user", password), conn.cursor() as cur:
            accounts = read_accounts(cur, server, [username])
            if not accounts:
                raise ConfigurationError("the user named by field 'username' does not exist in the database")
            for account in accounts:
                check_plugin(server, account)
            for account in accounts:
                clause, value = identified(server, account.plugin, password)
                sql.execute(cur, f"ALTER USER %s@%s {clause}", (*account.name, value))

    def alternate_standing(self, conn: Connection, original: str, clone: str) -> Standing | None:
        """MySQL has no tie between two accounts: the clone stands when it holds no global
        privilege, grant option, role or freedom from a partial revoke beyond the
        original's, host by host."""
        server = server_of(conn)
        beyond: set[str] = set()
        with statement_errors("reading the alternate user", None), conn.cursor() as cur:
            accounts = read_accounts(cur, server, [original, clone])
            clones = [account for account in accounts if account.user == clone]
            if not clones:
                return None
            sources = {account.host: account for account in accounts if account.user == original}
            for target in clones:
                source = sources.get(target.host, Account(original, target.host))
                want, have = read_privileges(cur, server, source, target)
                wanted, held = want.get(GLOBAL, Grant()), have.get(GLOBAL, Grant())
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
                    want_roles, have_roles = read_roles(cur, server, source, target)
                    if have_roles.keys() - want_roles.keys():
                        beyond.add("roles")
        return Standing(related=None, beyond=tuple(sorted(beyond)))

    def sync_clone(self, conn: Connection, original: str, clone: str, password: Sensitive | None) -> None:
        server = server_of(conn)
        session = self._sessions.get(conn)
        copy = Copy(skip=session.skip_privileges if session else frozenset())
        action = "copying the user to the alternate user"
        with statement_errors(action, password), conn.cursor() as cur:
            accounts = read_accounts(cur, server, [original, clone])
            sources = [account for account in accounts if account.user == original]
            if not sources:
                raise ConfigurationError("the user named by field 'username' does not exist in the database")
            targets = {account.host: account for account in accounts if account.user == clone}
            if not targets and password is None:
                raise ConfigurationError("the alternate user does not exist and no pending password creates it")
            for source in sources:
                check_plugin(server, source)
            server_default: str | None = None
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
                    if not server.mariadb and plugin in DEPRECATED_PLUGINS:
                        if server_default is None:
                            server_default = default_plugin(cur, server)
                        if server_default != plugin:
                            # Never a new credential on a deprecated plugin the server no longer
                            # defaults to: the clone gets the default one (inside TLS).
                            plugin = server_default if server_default in MYSQL_PLUGINS else CACHING_SHA2
                            logger.warning(
                                "the user authenticates with a deprecated plugin; the alternate user gets the "
                                "server's default plugin",
                                extra={"user_plugin": source.plugin, "alternate_plugin": plugin},
                            )
                    clause, value = identified(server, plugin, password)
                    verb = "CREATE" if target is None else "ALTER"
                    sql.execute(cur, f"{verb} USER %s@%s {clause}", (clone, source.host, value))
                # A new account has no TLS requirement and no limits.
                fresh = Account(clone, source.host, limits=(0,) * len(source.limits))
                sync_account(cur, server, source, target or fresh, copy)
        report_left_out(copy, action)

    def is_replica(self, conn: Connection) -> bool:
        """read_only (a replica, an RDS read replica), or innodb_read_only (an Aurora reader)."""
        with conn.cursor() as cur:
            sql.execute(cur, "SELECT @@global.read_only, @@global.innodb_read_only")
            row = cur.fetchone()
        return bool(row and (int(row[0] or 0) or int(row[1] or 0)))

    def same_cluster(self, primary: Connection, replica: Connection) -> bool | None:
        """The primary lists its replicas (SHOW SLAVE HOSTS, SHOW REPLICAS on MySQL 8.0.22+:
        server id and the port each reports); the replica's own @@server_id and @@port must
        be among them. Listing needs REPLICATION MASTER ADMIN (MariaDB) or REPLICATION SLAVE
        (MySQL) for the master: without it, None (the RDS API decides)."""
        import pymysql

        with replica.cursor() as cur:
            sql.execute(cur, "SELECT @@server_id, @@port")
            row = cur.fetchone()
        if row is None:
            return None
        server_id, port = int(row[0]), int(row[1])
        server = server_of(primary)
        statement = "SHOW REPLICAS" if not server.mariadb and server.version >= (8, 0, 22) else "SHOW SLAVE HOSTS"
        try:
            with primary.cursor() as cur:
                sql.execute(cur, statement)
                listed = [(int(r[0]), int(r[2] or 0)) for r in cur.fetchall()]
        except pymysql.MySQLError as exc:
            logger.info("the master may not list the primary's replicas", extra={"error": error_code(exc)})
            return None
        return any(sid == server_id and reported in (port, 0) for sid, reported in listed) and self.is_replica(replica)

    def check(self, conn: Connection) -> None:
        with conn.cursor() as cur:
            sql.execute(cur, "SELECT 1")
            cur.fetchone()


lambda_handler = rotation_handler(MySQLEngine())
