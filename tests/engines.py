"""One harness per engine: what the contract suite needs to know about a real server.

The contract suite (tests/contract) is written once against this small interface and
runs against every engine listed in HARNESSES, as HashiCorp Vault's shared database
plugin tests do. A new engine gets the whole suite by adding its harness here.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any, Protocol

from rotation_core import RotationFunction, rotation_handler
from tests.support import functions, leaks
from tests.support.servers import PostgresServer, ServerInfo


def new_password() -> str:
    return leaks.remember("Pw-" + secrets.token_urlsafe(24), "password")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


class Harness(Protocol):
    name: str
    info: ServerInfo

    def make_handler(self) -> RotationFunction: ...
    def secret(self, username: str, password: str, **extra: Any) -> dict[str, Any]: ...
    def master(self) -> dict[str, Any]: ...
    def create_user(self, username: str, password: str) -> None: ...
    def logs_in(self, username: str, password: str) -> bool: ...
    def server_log(self) -> str: ...
    def env(self) -> dict[str, str]: ...


class PostgresHarness:
    name = "postgres"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.info = server.info
        self.module = functions.load("postgres")
        # An RDS-like master: CREATEROLE, not a superuser.
        self.master_user = unique("rotation_master")
        self.master_password = new_password()
        self.create_user(self.master_user, self.master_password, "CREATEROLE")

    def admin_execute(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.server.admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def make_handler(self) -> RotationFunction:
        return rotation_handler(self.module.PostgresEngine())

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
        # As RDS-managed master secrets are: username and password only.
        return {"username": self.master_user, "password": self.master_password}

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

    def env(self) -> dict[str, str]:
        return {"DB_CA_BUNDLE": self.info.ca_file} if self.info.ca_file else {}
