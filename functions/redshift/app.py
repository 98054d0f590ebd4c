"""Amazon Redshift rotation function (provisioned clusters and Redshift Serverless workgroups).

The whole engine, top to bottom: connecting (TLS verify-full by default, a connect timeout
on every connection), changing a password, and creating and re-syncing the alternate user.
The rotation protocol and the strategies live in the rotation_core layer. docs/redshift.md
lists every statement the function sends, what the pair group grants, what is mirrored, and
which behaviour is verified against PostgreSQL behind the test shim or only against
Redshift's documentation.

- The password never travels in clear text: the function sends Redshift's md5 form,
  'md5' + md5(password + user name), for the user's name as Redshift stores it. A user name
  in double quotes keeps its case, and every name here is quoted, so the stored name must be
  the secret's `username` exactly: single user checks current_user, the master looks the
  users up; a name that differs only in letter case is refused, changing nothing.
- Redshift's password rules are enforced whatever the environment asks: 8 to 64
  characters, at least one upper-case letter, one lower-case letter and one digit, none of
  ' " \\ / @ or space.
- Identifiers are quoted by quote_ident (double quotes doubled, NUL refused); values go as
  bound parameters. Utility statements take no parameters, so the md5 form is written as a
  literal after checking it is exactly 'md5' and 32 hexadecimal digits.
- TLS: verify-full against the system store (SSL_CERT_FILE included) plus the driver's
  Redshift CA bundle; DB_CA_BUNDLE does not apply (the driver takes no CA file). `"ssl":
  false` turns TLS off, explicitly; there is no "encrypt without verifying" mode.
  CONNECT_TIMEOUT bounds connecting; then each read waits at most STATEMENT_TIMEOUT seconds.
- Alternating users (the master, a superuser, changes `<user>_clone` and `<user>`): Redshift
  has no SET role, so every rotation re-syncs, in one transaction with
  enable_case_sensitive_identifier on (mixed-case names resolve exactly):
  1. the clone's groups to the original's, and CREATEDB;
  2. the pair group `<user>_pair`, its name in lower case as Redshift stores group names
     (refused if anyone else is in it): both users, ALL on the tables, views and schemas
     either user owns, ALL on the local databases (USAGE on the datashare databases) either
     owns, and default privileges ALL on the tables either creates;
  3. the original's explicit grants on objects neither user owns, as the SVV_*_PRIVILEGES
     views list them, mirrored on the clone (granted when missing, revoked when only the
     clone has them): tables and views SELECT, INSERT, UPDATE, DELETE, DROP, REFERENCES,
     ALTER, TRUNCATE; schemas CREATE, USAGE, ALTER, DROP; local databases CREATE, TEMP,
     ALTER; datashare databases USAGE, ALTER; one database per statement.
  External (Spectrum) schemas take USAGE only, and Redshift refuses GRANT on them inside a
  transaction block: after the commit, each is its own statement and commit.
  Schemas and tables are those of the secret's database. WITH GRANT OPTION, scoped
  privileges, per-user settings and Redshift roles (RBAC) are not copied.
- redshift_connector is imported only by the steps that connect (setSecret, testSecret).
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
    trust,
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
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# What may be mirrored, by kind: the privilege types Redshift's GRANT takes (GRANT reference;
# SVV_RELATION_PRIVILEGES, SVV_SCHEMA_PRIVILEGES, SVV_DATABASE_PRIVILEGES). Only these words
# are ever written into a statement; anything else a catalog lists is left alone.
_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "DROP", "REFERENCES", "ALTER", "TRUNCATE")
_SCHEMA_PRIVILEGES = ("CREATE", "USAGE", "ALTER", "DROP")
_DATABASE_PRIVILEGES = {"local": ("CREATE", "TEMP", "ALTER"), "shared": ("USAGE", "ALTER")}
_PRIVILEGE_SPELLINGS = {"TEMPORARY": "TEMP"}
_NOT_SYSTEM = "substring({0}, 1, 3) <> 'pg_' AND {0} <> 'information_schema'"
# Catalog queries read names as text: no name resolution, so no mixed-case name can fail them.
_CASE_SENSITIVE = "SET enable_case_sensitive_identifier TO true"
_RELATIONS = (
    "SELECT schemaname, tablename, tableowner FROM pg_tables WHERE " + _NOT_SYSTEM.format("schemaname") + " UNION ALL"
    " SELECT schemaname, viewname, viewowner FROM pg_views WHERE " + _NOT_SYSTEM.format("schemaname") + " ORDER BY 1, 2"
)
_SCHEMAS = (
    "SELECT n.nspname, u.usename FROM pg_namespace n LEFT JOIN pg_user u ON u.usesysid = n.nspowner"
    " WHERE " + _NOT_SYSTEM.format("n.nspname") + " ORDER BY 1"
)
_EXTERNAL_SCHEMAS = "SELECT schemaname FROM svv_external_schemas"
_DATABASES = (
    "SELECT d.database_name, u.usename, d.database_type FROM svv_redshift_databases d"
    " LEFT JOIN pg_user u ON u.usesysid = d.database_owner ORDER BY 1"
)
# Explicit grants to the two users (for schemas, to the pair group too): object, privilege, grantee.
_RELATION_GRANTS = (
    "SELECT namespace_name, relation_name, privilege_type, identity_name FROM svv_relation_privileges"
    " WHERE identity_type = 'user' AND identity_name IN (%s, %s)"
)
_SCHEMA_GRANTS = (
    "SELECT namespace_name, privilege_type, identity_type, identity_name FROM svv_schema_privileges"
    " WHERE COALESCE(privilege_scope, 'SCHEMA') = 'SCHEMA' AND ((identity_type = 'user' AND identity_name IN (%s, %s))"
    " OR (identity_type = 'group' AND identity_name = %s))"
)
_DATABASE_GRANTS = (
    "SELECT database_name, privilege_type, identity_name FROM svv_database_privileges"
    " WHERE COALESCE(privilege_scope, 'DATABASE') = 'DATABASE' AND identity_type = 'user' AND identity_name IN (%s, %s)"
)
_USER = "SELECT usename, usecreatedb FROM pg_user WHERE lower(usename) = lower(%s)"
_GROUPS_OF = "SELECT g.groname FROM pg_group g, pg_user u WHERE u.usename = %s AND u.usesysid = ANY(g.grolist)"
_MEMBERS_OF = "SELECT u.usename FROM pg_group g, pg_user u WHERE g.groname = %s AND u.usesysid = ANY(g.grolist)"
_GROUP = "SELECT groname FROM pg_group WHERE groname = %s"
_POWERS = "SELECT usename, usesuper, usecreatedb FROM pg_user WHERE usename IN (%s, %s)"
_ORIGINAL_CASE = "field 'username' and the name of the user Redshift stores"
_CLONE_CASE = "the name '<username>_clone' and the name of the alternate user Redshift stores"
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


REDSHIFT_TRUST = "the system store and the Redshift CAs redshift-connector ships (SSL_CERT_FILE adds another)"


def _connect_error(exc: Exception, password: Sensitive, host: str) -> RotationError:
    """What a failed redshift_connector.connect means, by kind."""
    first = exc.args[0] if exc.args else None
    cause = exc.args[1] if len(exc.args) > 1 else None  # ("communication error", OSError)
    message = _server_message(exc, password.reveal())
    if isinstance(first, dict):  # the server answered with an ErrorResponse
        return _refusal(str(first.get("C", "")), message)
    if isinstance(cause, Exception):
        message = _server_message(cause, password.reveal())
    if isinstance(cause, ssl.SSLError) or "SSL" in message:
        return UnreachableError(trust.describe_tls_failure(host, REDSHIFT_TRUST, message))
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


def _execute_outside_transaction(conn: Connection, statement: str) -> None:
    """One statement in a commit of its own: Redshift refuses GRANT and REVOKE on an external
    resource inside a transaction block (GRANT reference, usage notes)."""
    previous = conn.autocommit
    conn.autocommit = True
    try:
        _execute(conn, statement)
    finally:
        conn.autocommit = previous


def _in_chunks(names: Sequence[str]) -> Iterator[str]:
    for start in range(0, len(names), _CHUNK):
        yield ", ".join(names[start : start + _CHUNK])


def fold_name(name: str) -> str:
    """A name as Redshift stores it when it folds: ASCII letters in lower case, every other
    character as it is ("Names and identifiers"). Group names are always folded."""
    return name.translate(_ASCII_LOWER)


def pair_group(original: str) -> str:
    return fold_name(original + PAIR_GROUP_SUFFIX)


def _stored_user(conn: Connection, name: str, which: str) -> tuple[Any, ...] | None:
    """The user's pg_user row (name, usecreatedb) by its exact name; None when there is no user
    of any letter case; refused when only a name differing in letter case exists, since every
    statement here quotes the name and an md5 form for another spelling never matches."""
    rows = _rows(conn, _USER, (name,))
    exact = [row for row in rows if row[0] == name]
    if exact:
        return exact[0]
    if rows:
        raise ConfigurationError(
            f"{which} differ only in letter case (Redshift keeps the case of quoted user names and folds "
            "unquoted ones to lower case when the user is created); put the name exactly as Redshift stores it in "
            "the secret's field 'username', or rename the user (ALTER USER ... RENAME TO)"
        )
    return None


def _privileges(
    rows: Sequence[tuple[Any, ...]], parts: int, allowed: Sequence[str]
) -> dict[str, set[tuple[tuple[str, ...], str]]]:
    """{grantee: {(object name parts, privilege)}} for the privilege types in `allowed`."""
    held: dict[str, set[tuple[tuple[str, ...], str]]] = {}
    for row in rows:
        privilege = str(row[parts]).upper()
        privilege = _PRIVILEGE_SPELLINGS.get(privilege, privilege)
        if privilege in allowed:
            held.setdefault(str(row[-1]), set()).add((tuple(str(part) for part in row[:parts]), privilege))
    return held


def _mirror(
    kind: str,
    keys: Sequence[tuple[str, ...]],
    allowed: Sequence[str],
    held: dict[str, set[tuple[tuple[str, ...], str]]],
    users: tuple[str, str],
) -> list[str]:
    """GRANT to the clone what the original holds on `keys` and the clone lacks, REVOKE what
    only the clone holds: one statement per privilege and chunk of objects."""
    original, clone = users
    wanted, has = held.get(original, set()), held.get(clone, set())
    statements: list[str] = []
    for verb, chosen, preposition in (("GRANT", wanted - has, "TO"), ("REVOKE", has - wanted, "FROM")):
        for privilege in allowed:
            names = [".".join(map(quote_ident, key)) for key in keys if (key, privilege) in chosen]
            statements.extend(
                f"{verb} {privilege} ON {kind} {chunk} {preposition} {quote_ident(clone)}"
                for chunk in _in_chunks(names)
            )
    return statements


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
            raise _connect_error(exc, login.password, login.host) from None
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
            if _stored_user(conn, username, _ORIGINAL_CASE) is None:
                raise ConfigurationError("the user named by field 'username' does not exist in the database")
            self._alter_password(conn, username, password, "master user")

    # -- the alternate user --------------------------------------------------------------
    def alternate_standing(self, conn: Connection, original: str, clone: str) -> Standing | None:
        """The clone holds nothing beyond the original when it is no superuser, has no
        CREATEDB and is in no group the original is not in. The pair is tied when the pair
        group (which only the master creates, and refuses to share) holds exactly the two:
        each already reaches what the other owns."""
        with _transaction(conn):
            _stored_user(conn, original, _ORIGINAL_CASE)
            if _stored_user(conn, clone, _CLONE_CASE) is None:
                return None
            powers = {row[0]: row[1:] for row in _rows(conn, _POWERS, (original, clone))}
            mine = powers.get(original, (False, False))
            beyond = [
                name
                for name, has, has_too in zip(("SUPERUSER", "CREATEDB"), powers[clone], mine, strict=True)
                if has and not has_too
            ]
            pair = pair_group(original)
            groups = {row[0] for row in _rows(conn, _GROUPS_OF, (clone,))} - {pair}
            if groups - {row[0] for row in _rows(conn, _GROUPS_OF, (original,))}:
                beyond.append("groups")
            members = {row[0] for row in _rows(conn, _MEMBERS_OF, (pair,))}
        return Standing(related=True if members == {original, clone} else None, beyond=tuple(beyond))

    def sync_clone(self, conn: Connection, original: str, clone: str, password: Sensitive | None) -> None:
        with _transaction(conn):
            source = _stored_user(conn, original, _ORIGINAL_CASE)
            if source is None:
                raise ConfigurationError("the user named by field 'username' does not exist in the database")
            target = _stored_user(conn, clone, _CLONE_CASE)
            create = None
            if target is None:
                if password is None:
                    raise ConfigurationError("the alternate user does not exist and no pending password creates it")
                create = f"CREATE USER {quote_ident(clone)} {_password_clause(password, clone)}"
            # Every name below is quoted: with this on, mixed-case tables and schemas (made
            # with the setting on) resolve to themselves instead of their lower-case folding.
            _execute(conn, _CASE_SENSITIVE)
            if create is not None:
                _execute(conn, create)
            elif password is not None:
                self._alter_password(conn, clone, password, "master user")
            if bool(source[1]) != bool(target[1] if target is not None else False):
                _execute(conn, f"ALTER USER {quote_ident(clone)} {'CREATEDB' if source[1] else 'NOCREATEDB'}")
            pair = pair_group(original)
            self._sync_groups(conn, original, clone, pair)
            self._sync_pair_group(conn, original, clone, pair)
            later = self._sync_privileges(conn, original, clone, pair)
        # Committed: now what Redshift refuses inside a transaction block, one commit each.
        # Each is idempotent, so a failure after any of them converges on the next run.
        for statement in later:
            _execute_outside_transaction(conn, statement)

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
    def _sync_privileges(conn: Connection, original: str, clone: str, pair: str) -> list[str]:
        """Run, in the transaction, the grants of the pair's own objects and the mirror of the
        original's grants; return the statements that must run outside it (external schemas)."""
        users = (original, clone)
        group = quote_ident(pair)
        statements: list[str] = []
        external = {row[0] for row in _rows(conn, _EXTERNAL_SCHEMAS)}

        # Tables and views.
        relations = [row for row in _rows(conn, _RELATIONS) if row[0] not in external]
        owned = [quote_ident(row[0]) + "." + quote_ident(row[1]) for row in relations if row[2] in users]
        statements.extend(f"GRANT ALL ON TABLE {chunk} TO GROUP {group}" for chunk in _in_chunks(owned))
        others = [(str(row[0]), str(row[1])) for row in relations if row[2] not in users]
        held = _privileges(_rows(conn, _RELATION_GRANTS, users), 2, _TABLE_PRIVILEGES)
        statements.extend(_mirror("TABLE", others, _TABLE_PRIVILEGES, held, users))

        # Schemas: local ones here; external ones (USAGE only) after the commit.
        schemas = _rows(conn, _SCHEMAS)
        grants = _rows(conn, _SCHEMA_GRANTS, (*users, pair))
        held = _privileges([(*row[:2], row[3]) for row in grants if row[2] == "user"], 1, _SCHEMA_PRIVILEGES)
        pair_usage = {str(row[0]) for row in grants if row[2] == "group" and str(row[1]).upper() == "USAGE"}
        local = [row for row in schemas if row[0] not in external]
        owned = [quote_ident(row[0]) for row in local if row[1] in users]
        statements.extend(f"GRANT ALL ON SCHEMA {chunk} TO GROUP {group}" for chunk in _in_chunks(owned))
        statements.extend(
            _mirror("SCHEMA", [(str(row[0]),) for row in local if row[1] not in users], _SCHEMA_PRIVILEGES, held, users)
        )
        later = [
            f"GRANT USAGE ON SCHEMA {quote_ident(row[0])} TO GROUP {group}"
            for row in schemas
            if row[0] in external and row[1] in users and row[0] not in pair_usage
        ]
        for row in schemas:
            if row[0] in external and row[1] not in users:
                later.extend(_mirror("SCHEMA", [(str(row[0]),)], ("USAGE",), held, users))

        # Databases, one per statement: Redshift refuses a GRANT that names databases made
        # from datashares together with local ones; datashare databases take USAGE.
        held = _privileges(_rows(conn, _DATABASE_GRANTS, users), 1, ("CREATE", "TEMP", "USAGE", "ALTER"))
        for name, owner, database_type in _rows(conn, _DATABASES):
            kind = str(database_type).lower()
            if kind not in _DATABASE_PRIVILEGES:
                continue  # neither local nor made from a datashare: left alone
            if owner in users:
                privilege = "USAGE" if kind == "shared" else "ALL"
                statements.append(f"GRANT {privilege} ON DATABASE {quote_ident(name)} TO GROUP {group}")
            else:
                statements.extend(_mirror("DATABASE", [(str(name),)], _DATABASE_PRIVILEGES[kind], held, users))

        for statement in statements:
            _execute(conn, statement)
        return later

    def is_replica(self, conn: Connection) -> bool:  # noqa: ARG002 - Redshift endpoints always take writes
        return False

    def same_cluster(self, primary: Connection, replica: Connection) -> bool | None:  # noqa: ARG002
        return None  # no read replicas in Redshift: a secret naming another endpoint is refused

    def check(self, conn: Connection) -> None:
        _rows(conn, "SELECT 1")
        conn.rollback()


lambda_handler = rotation_handler(RedshiftEngine())
