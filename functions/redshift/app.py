"""Amazon Redshift rotation function (provisioned clusters and Redshift Serverless workgroups).

The whole engine, top to bottom: connecting (TLS verify-full by default, a connect timeout
on every connection), changing a password, and creating and re-syncing the alternate user.
The rotation protocol and the strategies live in the rotation_core layer. A Serverless
workgroup endpoint takes the same secret (host, port 5439, dbname, username, password).

- The password never travels in clear text: the function sends Redshift's md5 form,
  'md5' + md5(password + user name), computed for the user the password belongs to, by its
  name as Redshift stores it. A user name in double quotes keeps its case in Redshift
  (whatever enable_case_sensitive_identifier says), and every name here is quoted, so the
  stored name is the secret's `username`; single user checks it against current_user first
  and refuses, changing nothing, when they differ.
- Redshift's password rules are enforced whatever the environment asks: 8 to 64
  characters, at least one upper-case letter, one lower-case letter and one digit, none of
  ' " \\ / @ or space.
- Identifiers are quoted by quote_ident (double quotes doubled, NUL refused); values go as
  bound parameters (redshift_connector's "format" paramstyle, bound by the server). Utility
  statements take no parameters, so the md5 form is written as a literal after checking it
  is exactly 'md5' and 32 hexadecimal digits: it is not the password.
- TLS: redshift_connector verifies the server against the system store (OpenSSL's
  SSL_CERT_FILE included) plus the Redshift CA bundle it ships, and has no parameter for
  another CA file, so DB_CA_BUNDLE does not apply to this function (set SSL_CERT_FILE in
  the function's environment to trust another CA). With `ssl` absent or true the function
  asks for sslmode verify-full explicitly: the driver's own default only warns when the
  certificate does not name the host. The driver has no mode that encrypts without
  verifying ("require"): it would fall back to its default, so none is offered. `"ssl":
  false` turns TLS off, explicitly. CONNECT_TIMEOUT bounds connecting; after that, each read
  waits at most STATEMENT_TIMEOUT seconds.
- Alternating users (the master, a superuser, changes `<user>_clone` and `<user>`):
  Redshift has no `SET role`, so objects keep the owner that created them. What the
  function does instead, every rotation, so that nothing drifts:
  1. the clone is put in every group the original is in, and taken out of every other;
  2. a group for the pair, `<user>_pair` (created if missing; refused if anyone else is in
     it), holds both users, and holds ALL on the databases, schemas, tables and views
     either user owns; default privileges (ALTER DEFAULT PRIVILEGES FOR USER both GRANT ALL
     ON TABLES TO GROUP pair) give it every table either creates from then on, so what one
     user creates the other can read and write (not drop or alter: that stays the owner's);
  3. the original's privileges on databases, schemas, tables and views that neither owns
     (CREATE, TEMP; CREATE, USAGE; SELECT, INSERT, UPDATE, DELETE, REFERENCES) are mirrored
     on the clone: granted when missing, revoked when the original no longer has them;
  4. CREATEDB follows the original.
  Schemas and tables are those of the secret's database. Privileges granted WITH GRANT
  OPTION, per-user settings (ALTER USER ... SET) and Redshift roles (RBAC) are not copied.
- redshift_connector is imported only by the steps that connect (setSecret, testSecret).

Tested against PostgreSQL 15 (md5 authentication) behind a small shim, through the real
redshift_connector (tests/support/redshift_shim.py). Only a real Redshift can test: its
md5 handling of user names (case folding at login), its password rules as the server
enforces them, the SQL PostgreSQL also accepts but Redshift might not (has_*_privilege on
every catalog object, ALTER DEFAULT PRIVILEGES FOR USER, GRANT ... TO GROUP), names of
more than 63 bytes (PostgreSQL's limit; Redshift's is 127), tables with mixed-case names
under enable_case_sensitive_identifier, require_ssl, the driver's bundled Redshift CAs,
and Serverless endpoints.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import re
import ssl
from collections.abc import Iterator, Sequence
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
from rotation_core.passwords import WHITESPACE_AND_CONTROL

if TYPE_CHECKING:
    from redshift_connector.core import Connection

# The driver logs start-up parameters and statements at DEBUG: keep them out of the
# function's logs whatever the root logger's level (AWS_LAMBDA_LOG_LEVEL=DEBUG).
logging.getLogger("redshift_connector").setLevel(logging.WARNING)

MAX_NAME_BYTES = 127  # Redshift identifiers, user and group names: 1 to 127 bytes
PAIR_GROUP_SUFFIX = "_pair"
STATEMENT_TIMEOUT = 25  # seconds each read may wait once connected (the function's timeout is 30)
# Characters Redshift refuses in a password, and AWS's default exclusions for Redshift.
REDSHIFT_FORBIDDEN = "'\"\\/@ "
AWS_DEFAULT_EXCLUDE = "/@\"'\\:"
_MD5_FORM = re.compile(r"md5[0-9a-f]{32}")
_AUTH_FAILURES = ("password authentication failed", "authentication failed", "does not exist", "password is expired")
_CHUNK = 200  # objects per GRANT / REVOKE statement

_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "REFERENCES")
_SCHEMA_PRIVILEGES = ("CREATE", "USAGE")
_DATABASE_PRIVILEGES = ("CREATE", "TEMP")
_NOT_SYSTEM = "substring({0}, 1, 3) <> 'pg_' AND {0} <> 'information_schema'"
# Each catalog query returns: the object's name parts, its owner, then one boolean per
# privilege, for the user given as every parameter.
_TABLES = (
    "SELECT schemaname, relname, owner, {checks} FROM ("
    " SELECT schemaname, tablename AS relname, tableowner AS owner,"
    " quote_ident(schemaname) || '.' || quote_ident(tablename) AS qualified FROM pg_tables"
    " WHERE " + _NOT_SYSTEM.format("schemaname") + " UNION ALL"
    " SELECT schemaname, viewname, viewowner,"
    " quote_ident(schemaname) || '.' || quote_ident(viewname) FROM pg_views"
    " WHERE " + _NOT_SYSTEM.format("schemaname") + ") AS relations ORDER BY 1, 2"
).format(checks=", ".join(f"has_table_privilege(%s, qualified, '{p}')" for p in _TABLE_PRIVILEGES))
_SCHEMAS = (
    "SELECT n.nspname, u.usename, {checks} FROM pg_namespace n LEFT JOIN pg_user u ON u.usesysid = n.nspowner"
    " WHERE " + _NOT_SYSTEM.format("n.nspname") + " ORDER BY 1"
).format(checks=", ".join(f"has_schema_privilege(%s, n.nspname, '{p}')" for p in _SCHEMA_PRIVILEGES))
_DATABASES = (
    "SELECT d.datname, u.usename, {checks} FROM pg_database d LEFT JOIN pg_user u ON u.usesysid = d.datdba ORDER BY 1"
).format(checks=", ".join(f"has_database_privilege(%s, d.datname, '{p}')" for p in _DATABASE_PRIVILEGES))
_USER = "SELECT usecreatedb FROM pg_user WHERE usename = %s"
_GROUPS_OF = "SELECT g.groname FROM pg_group g, pg_user u WHERE u.usename = %s AND u.usesysid = ANY(g.grolist)"
_MEMBERS_OF = "SELECT u.usename FROM pg_group g, pg_user u WHERE g.groname = %s AND u.usesysid = ANY(g.grolist)"
_GROUP = "SELECT groname FROM pg_group WHERE groname = %s"
_POWERS = "SELECT usename, usesuper, usecreatedb FROM pg_user WHERE usename IN (%s, %s)"
_CLEARTEXT_REQUEST = 3  # AuthenticationCleartextPassword (PostgreSQL wire protocol, which Redshift speaks)
# Set while the master logs in: a server asking for the password in clear text is refused.
_refuse_cleartext: contextvars.ContextVar[bool] = contextvars.ContextVar("refuse_cleartext", default=False)


def _guard_cleartext() -> None:
    """Wrap redshift_connector's authentication handler once: while _refuse_cleartext is
    set, a clear-text password request is refused before the password is sent. (The driver
    has no option for it; its handler table is built from the class at connect time.)"""
    from redshift_connector.core import Connection

    handler = Connection.handle_AUTHENTICATION_REQUEST
    if getattr(handler, "_rotation_guard", False):
        return

    def guarded(self: Any, data: bytes, cursor: Any) -> None:
        if _refuse_cleartext.get() and data[:4] == _CLEARTEXT_REQUEST.to_bytes(4, "big"):
            raise UnreachableError("the server asked for the master password in clear text; refused")
        handler(self, data, cursor)

    guarded._rotation_guard = True  # type: ignore[attr-defined]
    Connection.handle_AUTHENTICATION_REQUEST = guarded  # type: ignore[method-assign]


def quote_ident(name: str) -> str:
    """A Redshift (and PostgreSQL) delimited identifier: double quotes doubled, NUL refused."""
    if "\x00" in name:
        raise ConfigurationError("a user, group or object name contains a NUL character")
    return '"' + name.replace('"', '""') + '"'


def md5_password(password: Sensitive, username: str) -> str:
    """Redshift's md5 form of a password: 'md5' + hex md5(password + user name)."""
    # MD5 is what Redshift's md5 password form is; nothing to choose here.
    digest = hashlib.md5((password.reveal() + username).encode(), usedforsecurity=False).hexdigest()
    return "md5" + digest


def _password_clause(password: Sensitive, username: str) -> str:
    verifier = md5_password(password, username)
    if not _MD5_FORM.fullmatch(verifier):  # never paste anything else into SQL text
        raise ConfigurationError("the md5 form of the password is malformed")
    return f"PASSWORD '{verifier}'"


def _server_message(exc: Exception, *secrets: str) -> str:
    """The server's message (or the driver's first line), with any secret masked."""
    first = exc.args[0] if exc.args else None
    if isinstance(first, dict):
        text = str(first.get("M", "")) or type(exc).__name__
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for secret in secrets:
        if len(secret) >= 8:
            text = text.replace(secret, "********")
    return printable(re.sub(r"md5[0-9a-f]{32}", "md5********", text))


def _sqlstate(exc: Exception) -> str:
    first = exc.args[0] if exc.args else None
    code = str(first.get("C", "")) if isinstance(first, dict) else ""
    return printable(code, 10) or type(exc).__name__


def _refusal(code: str, message: str) -> RotationError:
    """What the server's ErrorResponse to a start-up means, by kind."""
    if code == "3D000" or ("database" in message and "does not exist" in message):
        return ConfigurationError("field 'dbname' names a database that does not exist")
    if "pg_hba.conf" in message:
        return UnreachableError(
            "the server refuses this connection (it may require TLS: the cluster's require_ssl parameter)"
        )
    if code.startswith("28") or any(marker in message for marker in _AUTH_FAILURES):
        return AuthenticationError("the server refused the user name or password")
    return UnreachableError(f"the server refused the connection: {message}")


def _connect_error(exc: Exception, password: Sensitive) -> RotationError:
    """What a failed redshift_connector.connect means, by kind."""
    first = exc.args[0] if exc.args else None
    cause = exc.args[1] if len(exc.args) > 1 else None  # ("communication error", OSError)
    message = _server_message(exc, password.reveal())
    if isinstance(first, dict):  # the server answered with an ErrorResponse
        return _refusal(str(first.get("C", "")), message)
    if isinstance(cause, Exception):
        message = _server_message(cause, password.reveal())
    if isinstance(cause, ssl.SSLError) or "SSL" in message:
        return UnreachableError(f"TLS with certificate verification failed: {message}")
    return UnreachableError(f"cannot connect: {message}")


def _rows(conn: Connection, statement: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        cur.execute(statement, params)
        return [tuple(row) for row in cur.fetchall()] if cur.description else []
    finally:
        cur.close()


def _execute(conn: Connection, statement: str) -> None:
    cur = conn.cursor()
    try:
        cur.execute(statement)
    finally:
        cur.close()


@contextlib.contextmanager
def _transaction(conn: Connection) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    conn.commit()


def _in_chunks(names: Sequence[str]) -> Iterator[str]:
    for start in range(0, len(names), _CHUNK):
        yield ", ".join(names[start : start + _CHUNK])


class RedshiftEngine:
    name = "redshift"
    defaults = Defaults(engines=frozenset({"redshift"}), port=5439, dbname="dev", max_username=MAX_NAME_BYTES)
    password_rules = PasswordRules(
        default_exclude=AWS_DEFAULT_EXCLUDE,
        always_exclude=WHITESPACE_AND_CONTROL + REDSHIFT_FORBIDDEN,
        min_length=8,
        max_length=64,
        require_classes=frozenset({"lower", "upper", "digits"}),
    )

    # -- connecting ----------------------------------------------------------------------
    def connect(self, login: DatabaseSecret, settings: ConnectionSettings, *, master: bool = False) -> Connection:
        import redshift_connector
        from redshift_connector.error import Error

        _guard_cleartext()

        options: dict[str, Any] = {
            "host": login.host,
            "port": login.port,
            "database": login.dbname,
            "user": login.username,
            "password": login.password.reveal(),
            "timeout": settings.connect_timeout,
            "application_name": "secrets-manager-rotation",
        }
        if login.ssl is False:
            options["ssl"] = False
        else:
            # Named explicitly: the driver's default mode only warns on a host name mismatch.
            options.update(ssl=True, sslmode="verify-full")
        guard = _refuse_cleartext.set(master)
        try:
            conn = redshift_connector.connect(**options)
        except Error as exc:
            raise _connect_error(exc, login.password) from None
        finally:
            _refuse_cleartext.reset(guard)
        # The driver has one socket timeout for everything: connecting is done, so give
        # statements (catalog queries on a busy leader node) longer than CONNECT_TIMEOUT.
        sock = getattr(conn, "_usock", None)
        if sock is not None:
            sock.settimeout(max(STATEMENT_TIMEOUT, settings.connect_timeout))
        return conn

    # -- passwords -----------------------------------------------------------------------
    @staticmethod
    def _alter_password(conn: Connection, username: str, password: Sensitive, role: str) -> None:
        from redshift_connector.error import Error

        statement = f"ALTER USER {quote_ident(username)} {_password_clause(password, username)}"
        try:
            _execute(conn, statement)
        except Error as exc:
            # The statement carries the md5 form: the server's error code, never its text.
            raise ConfigurationError(f"the {role} cannot change the password (SQLSTATE {_sqlstate(exc)})") from None

    def set_own_password(self, conn: Connection, username: str, password: Sensitive) -> None:
        with _transaction(conn):
            stored = _rows(conn, "SELECT current_user")[0][0]
            if stored != username:
                raise ConfigurationError(
                    "field 'username' differs from the name Redshift stores for the user (Redshift folds "
                    "unquoted names to lower case): the md5 password would not match; put the stored name "
                    "in the secret"
                )
            self._alter_password(conn, username, password, "user")

    def set_password(self, conn: Connection, username: str, password: Sensitive) -> None:
        with _transaction(conn):
            if not _rows(conn, _USER, (username,)):
                raise ConfigurationError("the user named by field 'username' does not exist in the database")
            self._alter_password(conn, username, password, "master user")

    # -- the alternate user --------------------------------------------------------------
    def alternate_standing(self, conn: Connection, original: str, clone: str) -> Standing | None:
        """Redshift has no tie between two users: the clone stands when it is no superuser,
        has no CREATEDB and is in no group, beyond the original."""
        with _transaction(conn):
            powers = {row[0]: row[1:] for row in _rows(conn, _POWERS, (original, clone))}
            if clone not in powers:
                return None
            mine = powers.get(original, (False, False))
            beyond = [
                name
                for name, has, has_too in zip(("SUPERUSER", "CREATEDB"), powers[clone], mine, strict=True)
                if has and not has_too
            ]
            pair = original + PAIR_GROUP_SUFFIX
            groups = {row[0] for row in _rows(conn, _GROUPS_OF, (clone,))} - {pair}
            if groups - {row[0] for row in _rows(conn, _GROUPS_OF, (original,))}:
                beyond.append("groups")
        return Standing(related=None, beyond=tuple(beyond))

    def sync_clone(self, conn: Connection, original: str, clone: str, password: Sensitive | None) -> None:
        with _transaction(conn):
            source = _rows(conn, _USER, (original,))
            if not source:
                raise ConfigurationError("the user named by field 'username' does not exist in the database")
            target = _rows(conn, _USER, (clone,))
            if not target:
                if password is None:
                    raise ConfigurationError("the alternate user does not exist and no pending password creates it")
                _execute(conn, f"CREATE USER {quote_ident(clone)} {_password_clause(password, clone)}")
                target = [(False,)]
            elif password is not None:
                self._alter_password(conn, clone, password, "master user")
            if bool(source[0][0]) != bool(target[0][0]):
                _execute(conn, f"ALTER USER {quote_ident(clone)} {'CREATEDB' if source[0][0] else 'NOCREATEDB'}")
            pair = original + PAIR_GROUP_SUFFIX
            self._sync_groups(conn, original, clone, pair)
            self._sync_pair_group(conn, original, clone, pair)
            self._sync_privileges(conn, original, clone, pair)

    @staticmethod
    def _sync_groups(conn: Connection, original: str, clone: str, pair: str) -> None:
        wanted = {row[0] for row in _rows(conn, _GROUPS_OF, (original,))} - {pair}
        held = {row[0] for row in _rows(conn, _GROUPS_OF, (clone,))} - {pair}
        for group in sorted(wanted - held):
            _execute(conn, f"ALTER GROUP {quote_ident(group)} ADD USER {quote_ident(clone)}")
        for group in sorted(held - wanted):
            _execute(conn, f"ALTER GROUP {quote_ident(group)} DROP USER {quote_ident(clone)}")

    @staticmethod
    def _sync_pair_group(conn: Connection, original: str, clone: str, pair: str) -> None:
        if not _rows(conn, _GROUP, (pair,)):
            _execute(conn, f"CREATE GROUP {quote_ident(pair)}")
        members = {row[0] for row in _rows(conn, _MEMBERS_OF, (pair,))}
        if members - {original, clone}:
            raise ConfigurationError(
                f"the group '<username>{PAIR_GROUP_SUFFIX}' exists with other members: it is the alternating "
                "users' own group; rename that group or remove its other members"
            )
        missing = [quote_ident(user) for user in (original, clone) if user not in members]
        if missing:
            _execute(conn, f"ALTER GROUP {quote_ident(pair)} ADD USER {', '.join(missing)}")
        # Tables either user creates from now on: the other gets them through the group.
        _execute(
            conn,
            f"ALTER DEFAULT PRIVILEGES FOR USER {quote_ident(original)}, {quote_ident(clone)} "
            f"GRANT ALL ON TABLES TO GROUP {quote_ident(pair)}",
        )

    @staticmethod
    def _sync_privileges(conn: Connection, original: str, clone: str, pair: str) -> None:
        grants: list[str] = []
        kinds = (
            ("TABLE", _TABLES, _TABLE_PRIVILEGES, 2),
            ("SCHEMA", _SCHEMAS, _SCHEMA_PRIVILEGES, 1),
            ("DATABASE", _DATABASES, _DATABASE_PRIVILEGES, 1),
        )
        for kind, query, privileges, name_parts in kinds:
            params = len(privileges)
            of_original = {row[:name_parts]: row for row in _rows(conn, query, (original,) * params)}
            of_clone = {row[:name_parts]: row for row in _rows(conn, query, (clone,) * params)}
            to_pair: list[str] = []
            add: dict[str, list[str]] = {p: [] for p in privileges}
            remove: dict[str, list[str]] = {p: [] for p in privileges}
            for key, row in of_original.items():
                other = of_clone.get(key)
                if other is None:
                    continue
                name = ".".join(quote_ident(part) for part in key)
                owner = row[name_parts]
                has_original = row[name_parts + 1 :]
                has_clone = other[name_parts + 1 :]
                if owner in (original, clone):
                    # The pair's own objects: both users reach them through the pair group.
                    if not all(has_clone if owner == original else has_original):
                        to_pair.append(name)
                    continue
                for privilege, by_original, by_clone in zip(privileges, has_original, has_clone, strict=True):
                    if by_original and not by_clone:
                        add[privilege].append(name)
                    elif by_clone and not by_original:
                        remove[privilege].append(name)
            grants.extend(f"GRANT ALL ON {kind} {names} TO GROUP {quote_ident(pair)}" for names in _in_chunks(to_pair))
            for privilege in privileges:
                grants.extend(
                    f"GRANT {privilege} ON {kind} {names} TO {quote_ident(clone)}"
                    for names in _in_chunks(add[privilege])
                )
                grants.extend(
                    f"REVOKE {privilege} ON {kind} {names} FROM {quote_ident(clone)}"
                    for names in _in_chunks(remove[privilege])
                )
        for statement in grants:
            _execute(conn, statement)

    def check(self, conn: Connection) -> None:
        _rows(conn, "SELECT 1")
        conn.rollback()


lambda_handler = rotation_handler(RedshiftEngine())
