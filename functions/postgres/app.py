"""PostgreSQL rotation function (RDS for PostgreSQL, Aurora PostgreSQL, self-managed).

The whole engine, top to bottom: connecting (TLS verify-full by default, a connect
timeout on every connection), changing a password, and creating and re-syncing the
alternate user. The rotation protocol and the strategies live in the rotation_core layer.

- The password never travels in clear text: the client computes a SCRAM-SHA-256 verifier
  (libpq's PQencryptPasswordConn) and only the verifier is sent, so server logs,
  pg_stat_statements and log_statement=all never see the password.
- Identifiers are quoted by the driver (psycopg2.sql.Identifier); nothing from the secret
  is pasted into SQL text.
- Alternating users without ownership drift: `<user>_clone` is a member of the original
  role and starts every session as it (ALTER ROLE ... SET role), so objects either user
  creates belong to the original role, and privileges granted to the original role reach
  the clone. Membership, role setting and attributes are re-synced on every rotation.
- psycopg2 is imported only by the steps that connect (setSecret, testSecret).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rotation_core import (
    AuthenticationError,
    ConfigurationError,
    ConnectionSettings,
    DatabaseSecret,
    Defaults,
    PasswordRules,
    Sensitive,
    UnreachableError,
    rotation_handler,
    trust,
)
from rotation_core.engine import Standing
from rotation_core.errors import printable
from rotation_core.passwords import WHITESPACE_AND_CONTROL

if TYPE_CHECKING:
    import psycopg2.extensions

    Connection = psycopg2.extensions.connection

# Refusals that mean "this credential is not accepted" (so another one may be tried).
_AUTH_FAILURES = ("password authentication failed", "does not exist", "authentication failed", "password is expired")
_TLS_FAILURES = ("certificate", "SSL", "ssl", "TLS")
_ATTRIBUTES = (("rolinherit", "INHERIT"), ("rolcreatedb", "CREATEDB"), ("rolcreaterole", "CREATEROLE"))
# What an alternate user must not hold unless the original does.
_POWERS = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
# libpq's refusal of an authentication request that require_auth does not allow.
_AUTH_REQUIREMENT = "authentication method requirement"


def _cause(exc: Exception, password: Sensitive) -> str:
    """The driver's first line, printable, with the password masked should it ever appear."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    secret = password.reveal()
    return printable(text.replace(secret, "********") if len(secret) >= 8 else text)


def _statement_failed(action: str, exc: Exception) -> ConfigurationError:
    """A statement that carries a password (a SCRAM verifier) failed: the server's SQLSTATE,
    never its text (a syntax error would quote the statement)."""
    code = getattr(exc, "pgcode", None) or type(exc).__name__
    return ConfigurationError(f"{action} failed (SQLSTATE {printable(str(code), 10)})")


class PostgresEngine:
    name = "postgres"
    defaults = Defaults(
        engines=frozenset({"postgres", "aurora-postgresql"}),
        port=5432,
        dbname="postgres",
        max_username=63,  # NAMEDATALEN - 1, in bytes
    )
    # AWS's default exclusions for PostgreSQL (they break connection URIs); whitespace
    # and control characters are never used.
    password_rules = PasswordRules(default_exclude=":/@\"'\\", always_exclude=WHITESPACE_AND_CONTROL)

    def connect(self, login: DatabaseSecret, settings: ConnectionSettings, *, master: bool = False) -> Connection:
        import psycopg2

        options: dict[str, Any] = {
            "host": login.host,
            "port": login.port,
            "dbname": login.dbname,
            "user": login.username,
            "password": login.password.reveal(),
            "connect_timeout": settings.connect_timeout,
            "application_name": "secrets-manager-rotation",
        }
        if login.ssl is False:
            options["sslmode"] = "disable"
        else:
            options["sslmode"] = "verify-full"
            options["sslrootcert"] = settings.ca_bundle or "system"
        if master:
            # The master's password never goes to the server, not even hashed: SCRAM only
            # (libpq refuses a clear-text, md5 or other request before answering it).
            options["require_auth"] = "scram-sha-256"
        try:
            conn: Connection = psycopg2.connect(**options)
        except psycopg2.OperationalError as exc:
            message = str(exc)
            if _AUTH_REQUIREMENT in message:
                raise UnreachableError(
                    "the server asked for the master password in another form than SCRAM-SHA-256 (clear text or "
                    "md5); the master logs in with SCRAM only: store its password as SCRAM "
                    "(password_encryption = 'scram-sha-256', then set it again)"
                ) from None
            if "database" in message and "does not exist" in message:
                raise ConfigurationError("field 'dbname' names a database that does not exist") from None
            if any(marker in message for marker in _AUTH_FAILURES):
                raise AuthenticationError("the server refused the user name or password") from None
            if "no pg_hba.conf entry" in message:
                raise UnreachableError(
                    "the server's pg_hba.conf refuses this connection (it may require TLS, or not allow this host)"
                ) from None
            if any(marker in message for marker in _TLS_FAILURES):
                cause = _cause(exc, login.password)
                raise UnreachableError(trust.describe_tls_failure(login.host, settings.ca_source, cause)) from None
            raise UnreachableError(f"cannot connect: {_cause(exc, login.password)}") from None
        return conn

    @staticmethod
    def _verifier(conn: Connection, username: str, password: Sensitive) -> str:
        from psycopg2.extensions import encrypt_password

        return encrypt_password(password.reveal(), username, conn, "scram-sha-256")

    def _alter_password(self, conn: Connection, username: str, password: Sensitive) -> None:
        import psycopg2
        from psycopg2 import sql

        verifier = self._verifier(conn, username, password)
        with conn.cursor() as cur:
            try:
                cur.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD %s").format(sql.Identifier(username)), (verifier,))
            except psycopg2.Error as exc:
                raise _statement_failed("changing the password", exc) from None

    def set_own_password(self, conn: Connection, username: str, password: Sensitive) -> None:
        with conn:
            self._alter_password(conn, username, password)

    def set_password(self, conn: Connection, username: str, password: Sensitive) -> None:
        with conn:
            if self._role(conn, username) is None:
                raise ConfigurationError("the user named by field 'username' does not exist in the database")
            self._alter_password(conn, username, password)

    @staticmethod
    def _role(conn: Connection, name: str) -> dict[str, Any] | None:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT rolinherit, rolcreatedb, rolcreaterole, rolconnlimit FROM pg_roles WHERE rolname = %s",
                (name,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return dict(zip(("rolinherit", "rolcreatedb", "rolcreaterole", "rolconnlimit"), row, strict=True))

    def alternate_standing(self, conn: Connection, original: str, clone: str) -> Standing | None:
        columns = ", ".join(_POWERS)
        with conn, conn.cursor() as cur:
            cur.execute(f"SELECT rolname, {columns} FROM pg_roles WHERE rolname IN (%s, %s)", (original, clone))
            roles = {row[0]: row[1:] for row in cur.fetchall()}
            if clone not in roles:
                return None
            mine = roles.get(original, (False,) * len(_POWERS))
            beyond = [
                column.removeprefix("rol").upper()
                for column, has, original_has in zip(_POWERS, roles[clone], mine, strict=True)
                if has and not original_has
            ]
            if original not in roles:
                return Standing(related=False, beyond=tuple(beyond))
            # Roles the clone is a member of, other than the original, that the original
            # does not reach itself (directly or through other roles).
            cur.execute(
                "SELECT r.rolname = %s, pg_has_role(%s, r.oid, 'MEMBER') "
                "FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s",
                (original, original, clone),
            )
            memberships = cur.fetchall()
        related = any(is_original for is_original, _ in memberships)
        extra_roles = sum(1 for is_original, reached in memberships if not is_original and not reached)
        if extra_roles:
            beyond.append(f"membership in {extra_roles} other role(s)")
        return Standing(related=related, beyond=tuple(beyond))

    def sync_clone(self, conn: Connection, original: str, clone: str, password: Sensitive | None) -> None:
        import psycopg2
        from psycopg2 import sql

        with conn:
            source = self._role(conn, original)
            if source is None:
                raise ConfigurationError("the user named by field 'username' does not exist in the database")
            target = self._role(conn, clone)
            with conn.cursor() as cur:
                if target is None:
                    if password is None:
                        raise ConfigurationError("the alternate user does not exist and no pending password creates it")
                    verifier = self._verifier(conn, clone, password)
                    try:
                        cur.execute(
                            sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD %s").format(sql.Identifier(clone)), (verifier,)
                        )
                    except psycopg2.Error as exc:
                        raise _statement_failed("creating the alternate user", exc) from None
                    target = {"rolinherit": True, "rolcreatedb": False, "rolcreaterole": False, "rolconnlimit": -1}
                elif password is not None:
                    self._alter_password(conn, clone, password)
                # Attributes: only those that differ, so a master without CREATEDB/CREATEROLE
                # can still rotate users that have neither.
                changes: list[sql.Composable] = [
                    sql.SQL(keyword if source[column] else "NO" + keyword)
                    for column, keyword in _ATTRIBUTES
                    if source[column] != target[column]
                ]
                if source["rolconnlimit"] != target["rolconnlimit"]:
                    changes.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(source["rolconnlimit"])))
                if changes:
                    cur.execute(
                        sql.SQL("ALTER ROLE {} WITH ").format(sql.Identifier(clone)) + sql.SQL(" ").join(changes)
                    )
                cur.execute(
                    "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                    "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname = %s",
                    (original, clone),
                )
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(original), sql.Identifier(clone)))
                # Every session of the clone runs as the original role: no ownership drift.
                cur.execute(
                    sql.SQL("ALTER ROLE {} SET role TO {}").format(sql.Identifier(clone), sql.Literal(original))
                )

    def is_replica(self, conn: Connection) -> bool:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")
            row = cur.fetchone()
        return bool(row and row[0])

    def same_cluster(self, primary: Connection, replica: Connection) -> bool | None:
        """A primary and its physical standbys share the system identifier initdb chose
        (pg_control_system(), readable by any user); the standby is in recovery."""
        identifiers = []
        for conn in (primary, replica):
            with conn, conn.cursor() as cur:
                cur.execute("SELECT system_identifier::text FROM pg_control_system()")
                row = cur.fetchone()
            identifiers.append(row[0] if row else None)
        if None in identifiers:
            return None
        return identifiers[0] == identifiers[1] and self.is_replica(replica)

    def check(self, conn: Connection) -> None:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()


lambda_handler = rotation_handler(PostgresEngine())
