"""One harness per engine: what the contract suites need to know about a real target.

tests/contract/test_protocol.py is written once against `Target` and runs against every
rotation function (databases, API keys); tests/contract/test_database.py is written once
against `DatabaseHarness` and runs against every database engine, as HashiCorp Vault's
shared database plugin tests do. A new engine gets the whole suite by adding its harness
here and registering its fixture in tests/conftest.py (TARGETS).
"""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any, Protocol

from devtools.servers import MariaDBServer, PostgresServer, ServerInfo, mysql_native_password_hash
from rotation_core import RotationFunction, rotation_handler
from tests.support import functions, leaks


def new_password() -> str:
    return leaks.remember("Pw-" + secrets.token_urlsafe(24), "password")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


class Target(Protocol):
    """Whatever a rotation function keeps a credential for: a database, a key provider."""

    name: str

    def env(self) -> dict[str, str]: ...
    def make_handler(self) -> RotationFunction: ...
    def new_secret(self, sm: Any, strategy: str) -> tuple[str, dict[str, Any]]:
        """A fresh credential, valid in the target, stored as a new secret: (ARN, its JSON)."""
        ...

    def works(self, doc: dict[str, Any]) -> bool:
        """Whether the target accepts the credential in this secret JSON."""
        ...

    def check_rotated(self, strategy: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        """Target-specific assertions after a full rotation from `before` to `after`."""
        ...

    def fault_points(self, handler: RotationFunction) -> list[tuple[object, str]]:
        """(object, method name) pairs that reach the target: a fault is injected after each."""
        ...


class DatabaseHarness:
    """The Target side of every database engine, built on a few engine-specific methods."""

    name: str  # also the folder under functions/
    driver_module: str  # the database driver, which createSecret and finishSecret must never import
    info: ServerInfo
    master_user: str
    master_password: str
    strategies = ("single-user", "alternating-users")

    engine_class: str  # the engine's class in functions/<name>/app.py
    module: Any

    def make_handler(self) -> RotationFunction:
        return rotation_handler(getattr(self.module, self.engine_class)())

    def admin_connection(self) -> Any:
        """A DB-API connection as an administrator (autocommit)."""
        return self.server.admin_connect()  # type: ignore[attr-defined]

    def admin_execute(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.admin_connection()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params or None)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def secret(self, username: str, password: str, **extra: Any) -> dict[str, Any]:
        raise NotImplementedError

    def master(self) -> dict[str, Any]:
        raise NotImplementedError

    def create_user(self, username: str, password: str) -> None:
        raise NotImplementedError

    def logs_in(self, username: str, password: str) -> bool:
        raise NotImplementedError

    def server_log(self) -> str:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {"DB_CA_BUNDLE": self.info.ca_file} if self.info.ca_file else {}

    def new_secret(self, sm: Any, strategy: str) -> tuple[str, dict[str, Any]]:
        username, password = unique("app"), new_password()
        self.create_user(username, password)
        extra: dict[str, Any] = {}
        if strategy == "alternating-users":
            extra["masterarn"] = sm.create_secret(Name=unique("master"), SecretString=json.dumps(self.master()))["ARN"]
        doc = self.secret(username, password, **extra)
        arn = sm.create_secret(Name=unique(f"{self.name}-secret"), SecretString=json.dumps(doc))["ARN"]
        return arn, doc

    def works(self, doc: dict[str, Any]) -> bool:
        return self.logs_in(doc["username"], doc["password"])

    def check_rotated(self, strategy: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        original = before["username"].removesuffix("_clone")
        if strategy == "single-user":
            assert after["username"] == before["username"]
            assert not self.works(before), "the user's old password no longer works"
        else:
            assert {after["username"], before["username"]} == {original, original + "_clone"}
            assert self.works(before), "the previous user keeps working until the next rotation"

    def fault_points(self, handler: RotationFunction) -> list[tuple[object, str]]:
        engine = handler.rotation.engine  # type: ignore[attr-defined]
        return [(engine, name) for name in ("connect", "set_own_password", "set_password", "sync_clone", "check")]


class PostgresHarness(DatabaseHarness):
    name = "postgres"
    driver_module = "psycopg2"
    engine_class = "PostgresEngine"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.info = server.info
        self.module = functions.load("postgres")
        # An RDS-like master: CREATEROLE, not a superuser.
        self.master_user = unique("rotation_master")
        self.master_password = new_password()
        self.create_user(self.master_user, self.master_password, "CREATEROLE")

    def secret(self, username: str, password: str, **extra: Any) -> dict[str, Any]:
        return {
            "engine": "postgres",
            "host": self.info.host,
            "port": self.info.port,
            "username": username,
            "password": password,
            "dbname": self.info.dbname,
            **extra,
        }

    def master(self) -> dict[str, Any]:
        # A self-managed master secret names its server; the secrets RDS manages (username
        # and password only) are found through their system tags (tests/security).
        return {
            "username": self.master_user,
            "password": self.master_password,
            "host": self.info.host,
            "port": self.info.port,
        }

    def create_user(self, username: str, password: str, attributes: str = "") -> None:
        """Create a login role; only a SCRAM verifier reaches the server (its log stays clean)."""
        from psycopg2 import sql
        from psycopg2.extensions import encrypt_password

        conn = self.server.admin_connect()
        try:
            verifier = encrypt_password(password, username, conn, "scram-sha-256")
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("CREATE ROLE {} WITH LOGIN " + attributes + " PASSWORD %s").format(
                        sql.Identifier(username)
                    ),
                    (verifier,),
                )
        finally:
            conn.close()

    def logs_in(self, username: str, password: str) -> bool:
        import psycopg2

        try:
            conn = self.server.connect(username, password)
        except psycopg2.OperationalError as exc:
            if "authentication failed" in str(exc) or "does not exist" in str(exc):
                return False
            raise
        conn.close()
        return True

    def server_log(self) -> str:
        return self.server.log_text()


class MySQLHarness(DatabaseHarness):
    """The MySQL engine against a MariaDB server (its secrets say engine "mariadb")."""

    name = "mysql"
    driver_module = "pymysql"
    engine_class = "MySQLEngine"
    # What an RDS for MariaDB master user holds (no SUPER), with GRANT OPTION.
    MASTER_PRIVILEGES = (
        "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, REFERENCES, INDEX, ALTER, "
        "SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, BINLOG MONITOR, "
        "CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, TRIGGER"
    )

    def __init__(self, server: MariaDBServer) -> None:
        self.server = server
        self.info = server.info
        self.module = functions.load("mysql")
        # The engine's mysql_native_password hashes join the secrets the log scan looks for
        # (every module of the function calls it as mysql_statements.native_password_hash).
        statements = self.module.sql
        hash_password = statements.native_password_hash

        def remembering(password: Any) -> str:
            return leaks.remember(hash_password(password), "hash")

        statements.native_password_hash = remembering
        # An RDS-like master: the privileges above, not ALL.
        self.master_user = unique("rotation_master")
        self.master_password = new_password()
        self.create_user(self.master_user, self.master_password)
        self.admin_execute(f"GRANT {self.MASTER_PRIVILEGES} ON *.* TO %s@'%%' WITH GRANT OPTION", (self.master_user,))

    def secret(self, username: str, password: str, **extra: Any) -> dict[str, Any]:
        return {
            "engine": "mariadb",
            "host": self.info.host,
            "port": self.info.port,
            "username": username,
            "password": password,
            **extra,
        }

    def master(self) -> dict[str, Any]:
        # A self-managed master secret names its server; the secrets RDS manages (username
        # and password only) are found through their system tags (tests/security).
        return {
            "username": self.master_user,
            "password": self.master_password,
            "host": self.info.host,
            "port": self.info.port,
        }

    def create_user(self, username: str, password: str, host: str = "%") -> None:
        """Create a mysql_native_password account; only its hash reaches the server (its log stays clean)."""
        self.admin_execute(
            "CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (username, host, mysql_native_password_hash(password))
        )

    def logs_in(self, username: str, password: str) -> bool:
        from devtools.servers import import_pymysql

        pymysql = import_pymysql()
        try:
            conn = self.server.connect(username, password)
        except pymysql.err.OperationalError as exc:
            if exc.args[0] in (1045, 1698):
                return False
            raise
        conn.close()
        return True

    def server_log(self) -> str:
        return self.server.log_text()

    def fault_points(self, handler: RotationFunction) -> list[tuple[object, str]]:
        # Copying the user to its clone is many auto-committed statements: a fault after
        # each one proves that a copy interrupted halfway converges.
        # Every statement of the function goes through mysql_statements.execute.
        return [*super().fault_points(handler), (self.module.sql, "execute")]


def redshift_md5(password: str, username: str) -> str:
    """Redshift's md5 password form, computed independently of the engine under test."""
    import hashlib

    return "md5" + hashlib.md5((password + username).encode(), usedforsecurity=False).hexdigest()


class RedshiftHarness(DatabaseHarness):
    """The Redshift engine against an emulated Redshift: a throwaway PostgreSQL with md5
    authentication (PostgresServer(auth="md5")) behind RedshiftShim, which lets the real
    redshift_connector in (tests/support/redshift_shim.py says what it changes, and why).

    The engine connects through the shim; the harness itself (creating users, checking
    logins) talks to the server with psycopg2, which also speaks to a real Redshift.
    TEST_REDSHIFT_URL=postgresql://master:PW@cluster:5439/dev[?sslrootcert=...] points
    both at a real cluster or Serverless workgroup instead (no shim, no server log).
    """

    name = "redshift"
    driver_module = "redshift_connector"
    engine_class = "RedshiftEngine"
    DBNAME = "dev"  # Redshift's default database, created in the emulation

    def __init__(self, server: PostgresServer, shim: Any | None, master_user: str, master_password: str) -> None:
        self.server = server
        self.shim = shim
        self.module = functions.load("redshift")
        # The engine's md5 password forms join the secrets the log scan looks for.
        md5_password = self.module.md5_password

        def remembering(password: Any, username: str) -> str:
            return leaks.remember(md5_password(password, username), "hash")

        if not getattr(md5_password, "remembering", False):
            remembering.remembering = True  # type: ignore[attr-defined]
            self.module.md5_password = remembering
        self.master_user = master_user
        self.master_password = master_password
        info = server.info
        self.dbname = info.dbname if shim is None else self.DBNAME
        if shim is not None:  # the engine sees the shim, as if it were Redshift's endpoint
            info = ServerInfo(
                engine="redshift",
                host=shim.host,
                port=shim.port,
                admin_user=master_user,
                admin_password=master_password,
                ca_file=shim.ca_file,
                log_file=info.log_file,
                dbname=self.DBNAME,
            )
        self.info = info

    @classmethod
    def from_env_or_start(cls, directory: str) -> RedshiftHarness:
        import os

        from psycopg2 import sql

        from tests.support.redshift_shim import RedshiftShim, emulate_catalogs

        url = os.environ.get("TEST_REDSHIFT_URL")
        if url:
            server = PostgresServer.from_url(url)
            return cls(server, None, server.info.admin_user, server.info.admin_password)
        server = PostgresServer(auth="md5")
        server.start()
        try:
            # The Redshift admin user is a superuser; only its md5 form reaches the server.
            master_user, master_password = unique("rotation_master"), new_password()
            admin = server.admin_connect()
            try:
                with admin.cursor() as cur:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(cls.DBNAME)))
                    cur.execute(
                        sql.SQL("CREATE USER {} SUPERUSER PASSWORD %s").format(sql.Identifier(master_user)),
                        (leaks.remember(redshift_md5(master_password, master_user), "hash"),),
                    )
            finally:
                admin.close()
            admin = server.admin_connect(cls.DBNAME)
            try:  # Redshift's system views the engine reads, for PostgreSQL's own objects
                with admin.cursor() as cur:
                    emulate_catalogs(cur)
            finally:
                admin.close()
            shim = RedshiftShim(server.info.host, server.info.port, server.info.ca_file, directory).start()
        except BaseException:
            server.stop()
            raise
        return cls(server, shim, master_user, master_password)

    def stop(self) -> None:
        if self.shim is not None:
            self.shim.stop()
        self.server.stop()

    def env(self) -> dict[str, str]:
        # redshift_connector trusts the system store (OpenSSL's SSL_CERT_FILE) plus its own
        # Redshift CA bundle and takes no CA file: DB_CA_BUNDLE does not apply to it.
        return {"SSL_CERT_FILE": self.info.ca_file} if self.info.ca_file else {}

    def secret(self, username: str, password: str, **extra: Any) -> dict[str, Any]:
        return {
            "engine": "redshift",
            "host": self.info.host,
            "port": self.info.port,
            "username": username,
            "password": password,
            "dbname": self.dbname,
            **extra,
        }

    def master(self) -> dict[str, Any]:
        # A master secret that names its cluster; the secrets Redshift manages (username
        # and password only) are found through their system tags (tests/security).
        return {
            "username": self.master_user,
            "password": self.master_password,
            "host": self.info.host,
            "port": self.info.port,
        }

    def connect(self, username: str, password: str) -> Any:
        """psycopg2 to the server itself (not through the shim), in the secrets' database."""
        return self.server.connect(username, password, self.dbname)

    def admin_connection(self) -> Any:
        return self.connect(self.master_user, self.master_password)

    def create_user(self, username: str, password: str) -> None:
        """Create a user as a Redshift admin would: only the md5 form reaches the server."""
        from psycopg2 import sql

        digest = leaks.remember(redshift_md5(password, username), "hash")
        conn = self.connect(self.master_user, self.master_password)
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE USER {} PASSWORD %s").format(sql.Identifier(username)), (digest,))
        finally:
            conn.close()

    def logs_in(self, username: str, password: str) -> bool:
        import psycopg2

        try:
            conn = self.connect(username, password)
        except psycopg2.OperationalError as exc:
            if "authentication failed" in str(exc) or "does not exist" in str(exc):
                return False
            raise
        conn.close()
        return True

    def server_log(self) -> str:
        return self.server.log_text()

    def mark_external(self, schema: str) -> None:
        """Have the emulation list `schema` as an external (Spectrum) schema (SVV_EXTERNAL_SCHEMAS)."""
        from psycopg2 import sql

        from tests.support.redshift_shim import EXTERNAL_SCHEMA_MARK

        conn = self.admin_connection()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("COMMENT ON SCHEMA {} IS %s").format(sql.Identifier(schema)), (EXTERNAL_SCHEMA_MARK,)
                )
        finally:
            conn.close()

    def fault_points(self, handler: RotationFunction) -> list[tuple[object, str]]:
        # GRANT on external schemas runs outside the transaction, one commit each: a fault
        # after each one proves that a sync interrupted between them converges.
        return [*super().fault_points(handler), (self.module, "_execute_outside_transaction")]
