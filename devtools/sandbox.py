"""`make sandbox`: throwaway PostgreSQL and MariaDB and a local Secrets Manager, kept running for experiments.

Starts both servers from the installed binaries (TLS on, free ports, as the test suite starts
them: devtools/servers.py) and moto's Secrets Manager server, creates real database users and
one ready secret per case (PostgreSQL single user, PostgreSQL alternating users with a master
secret that names its host and port, MariaDB single user), prints the environment to export
and the `bin/rotate` commands to try, then waits. Ctrl-C (or SIGTERM) stops everything: the
servers are killed and their temporary directories removed. No password is printed: read the
secrets with `bin/rotate status` or the AWS CLI against the printed endpoint.

    python -m devtools.sandbox        # what `make sandbox` runs
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from devtools.servers import HOST, MariaDBServer, PostgresServer, ServerStartError, mysql_native_password_hash

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
DUMMY = "sandbox"  # the emulator accepts any credentials: these are not real ones
PREFIX = "sandbox"  # secret names: sandbox/postgres/single, ...


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _password() -> str:
    return secrets.token_urlsafe(24)


def _stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _create_pg_role(server: PostgresServer, name: str, password: str, attributes: str = "") -> None:
    """A LOGIN role whose password reaches the server only as a SCRAM verifier."""
    from psycopg2 import sql
    from psycopg2.extensions import encrypt_password

    conn = server.admin_connect()
    try:
        verifier = encrypt_password(password, name, conn, "scram-sha-256")
        with conn.cursor() as cur:
            statement = sql.SQL("CREATE ROLE {} WITH LOGIN " + attributes + " PASSWORD %s")
            cur.execute(statement.format(sql.Identifier(name)), (verifier,))
    finally:
        conn.close()


def _create_mariadb_user(server: MariaDBServer, name: str, password: str) -> None:
    """A mysql_native_password account; only its hash reaches the server."""
    conn = server.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE USER %s@'%%' IDENTIFIED BY PASSWORD %s",
                (name, mysql_native_password_hash(password)),
            )
    finally:
        conn.close()


def _ca_bundle(directory: str, *ca_files: str) -> str:
    """One file with every server's CA (each throwaway server has its own): DB_CA_BUNDLE."""
    path = os.path.join(directory, "ca-bundle.pem")
    with open(path, "w", encoding="ascii") as bundle:
        for ca_file in ca_files:
            bundle.write(Path(ca_file).read_text(encoding="ascii"))
    return path


def _populate(sm: Any, pg: PostgresServer, mdb: MariaDBServer) -> list[tuple[str, str, str]]:
    """Users and secrets; returns (what, secret name, engine) per ready secret."""
    pg_info, mdb_info = pg.info, mdb.info

    def secret(name: str, doc: dict[str, Any]) -> str:
        return str(sm.create_secret(Name=f"{PREFIX}/{name}", SecretString=json.dumps(doc))["ARN"])

    def pg_doc(user: str, password: str, **extra: Any) -> dict[str, Any]:
        return {
            "engine": "postgres",
            "host": pg_info.host,
            "port": pg_info.port,
            "username": user,
            "password": password,
            "dbname": "postgres",
            **extra,
        }

    password = _password()
    _create_pg_role(pg, "sandbox_app", password)
    secret("postgres/single", pg_doc("sandbox_app", password))

    master_password = _password()
    _create_pg_role(pg, "sandbox_master", master_password, "CREATEROLE")
    # The master secret names its server: the master logs in nowhere else (docs/security.md).
    master_arn = secret(
        "postgres/master",
        {"username": "sandbox_master", "password": master_password, "host": pg_info.host, "port": pg_info.port},
    )
    password = _password()
    _create_pg_role(pg, "sandbox_alt", password)
    secret("postgres/alternating", pg_doc("sandbox_alt", password, masterarn=master_arn))

    password = _password()
    _create_mariadb_user(mdb, "sandbox_app", password)
    secret(
        "mariadb/single",
        {
            "engine": "mariadb",
            "host": mdb_info.host,
            "port": mdb_info.port,
            "username": "sandbox_app",
            "password": password,
        },
    )
    return [
        ("PostgreSQL, single user (changes its own password)", f"{PREFIX}/postgres/single", "postgres"),
        (
            "PostgreSQL, alternating users (sandbox_master switches sandbox_alt / sandbox_alt_clone)",
            f"{PREFIX}/postgres/alternating",
            "postgres",
        ),
        ("MariaDB, single user", f"{PREFIX}/mariadb/single", "mysql"),
    ]


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the emulator's request log
    fake_aws = {
        "AWS_ACCESS_KEY_ID": DUMMY,
        "AWS_SECRET_ACCESS_KEY": DUMMY,
        "AWS_DEFAULT_REGION": REGION,
    }
    os.environ.update({**fake_aws, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    pg, mdb = PostgresServer(), MariaDBServer()
    moto: Any = None
    workdir = tempfile.mkdtemp(prefix="rotation-sandbox-")
    try:
        print("Starting the sandbox (PostgreSQL, MariaDB, local Secrets Manager) ...", flush=True)
        import boto3
        from moto.server import ThreadedMotoServer

        from devtools import moto_service

        moto_service.apply()  # PutSecretValue keeps a version's first value, as the service does
        pg_info, mdb_info = pg.start(), mdb.start()
        port = _free_port()
        moto = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
        moto.start()
        endpoint = f"http://{HOST}:{port}"
        sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION)
        cases = _populate(sm, pg, mdb)
        env = {
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
            **fake_aws,
            "DB_CA_BUNDLE": _ca_bundle(workdir, pg_info.ca_file, mdb_info.ca_file),
        }
        print(f"  PostgreSQL on {pg_info.host}:{pg_info.port} (TLS, scram-sha-256), files in {pg.directory}")
        print(f"  MariaDB on {mdb_info.host}:{mdb_info.port} (TLS), files in {mdb.directory}")
        print(f"  Secrets Manager emulation (moto) on {endpoint}")
        print("\nIn another terminal, from this directory, export (fake credentials: the emulator takes any):\n")
        for key, value in env.items():
            print(f"export {key}={shlex.quote(value)}")
        print("\nThen try (each rotation prints its steps; run one again to rotate again):")
        for what, name, engine in cases:
            print(f"\n  # {what}")
            print(f"  bin/rotate rotate {name} --local --engine {engine}")
        print(f"\n  bin/rotate status {cases[0][1]}")
        print(f"  bin/rotate rotate {cases[0][1]} --local --engine postgres --fail-at setSecret   # then: recover")
        print("\nSandbox ready. Ctrl-C stops it and removes the servers and their files.", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    except ServerStartError as exc:  # e.g. the server packages are missing: `make system-deps`
        print(f"sandbox: a server did not start: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        if moto is not None:
            moto.stop()
        mdb.stop()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("\nSandbox stopped: servers stopped, temporary files removed.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
