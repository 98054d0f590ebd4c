"""Demo: rotate PostgreSQL users' secrets exactly as Secrets Manager would, on this machine.

Starts a throwaway PostgreSQL (TLS, scram-sha-256) and a local Secrets Manager emulation
(moto's server), creates two users and their secrets, then drives the four rotation steps
through the real function code, printing each step and proving the new password logs in.
Run it with `make demo`; `--verbose` also prints the function's JSON logs and metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "rotation_core"), str(ROOT)]

os.environ.update(
    AWS_ACCESS_KEY_ID="demo",
    AWS_SECRET_ACCESS_KEY="demo",  # the emulator's dummy credential
    AWS_DEFAULT_REGION="us-east-1",
    AWS_CONFIG_FILE=os.devnull,
    AWS_SHARED_CREDENTIALS_FILE=os.devnull,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="print the function's JSON logs and EMF metrics")
    parser.add_argument("--rotations", type=int, default=2, help="rotations per secret (default 2)")
    args = parser.parse_args()
    if not args.verbose:
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

    import boto3
    import psycopg2
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the emulator's request log
    from psycopg2.extensions import encrypt_password

    from tests.support import driver, functions
    from tests.support.servers import PostgresServer

    print("Secrets Manager rotation demo (PostgreSQL)")
    server = PostgresServer()
    info = server.start()
    print(f"  PostgreSQL 15, throwaway, on {info.host}:{info.port} (TLS with a generated CA, scram-sha-256)")
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = endpoint
    os.environ["DB_CA_BUNDLE"] = info.ca_file
    print(f"  Secrets Manager emulation (moto) on {endpoint}")
    sm = boto3.client("secretsmanager")
    app = functions.load("postgres")

    def create_role(name: str, password: str, attributes: str = "") -> None:
        conn = server.admin_connect()
        try:
            verifier = encrypt_password(password, name, conn, "scram-sha-256")
            with conn.cursor() as cur:
                cur.execute(f'CREATE ROLE "{name}" WITH LOGIN {attributes} PASSWORD %s', (verifier,))
        finally:
            conn.close()

    def logs_in(doc: dict[str, Any]) -> bool:
        try:
            server.connect(doc["username"], doc["password"]).close()
        except psycopg2.OperationalError:
            return False
        return True

    def secret_doc(username: str, password: str, **extra: Any) -> dict[str, Any]:
        return {
            "engine": "postgres",
            "host": info.host,
            "port": info.port,
            "username": username,
            "password": password,
            "dbname": "postgres",
            **extra,
        }

    ok = True
    try:
        master_password = secrets.token_urlsafe(24)
        create_role("demo_master", master_password, "CREATEROLE")
        master = sm.create_secret(
            Name="demo/master", SecretString=json.dumps({"username": "demo_master", "password": master_password})
        )
        for title, user, extra in (
            ("Single user: the user changes its own password", "app_user", {}),
            (
                "Alternating users: the master secret switches between app_alt and app_alt_clone",
                "app_alt",
                {"masterarn": master["ARN"]},
            ),
        ):
            password = secrets.token_urlsafe(24)
            create_role(user, password)
            arn = sm.create_secret(Name=f"demo/{user}", SecretString=json.dumps(secret_doc(user, password, **extra)))[
                "ARN"
            ]
            print(f"\n{title}\n  secret demo/{user}")
            handler = app.lambda_handler
            for number in range(1, args.rotations + 1):
                before = json.loads(driver.value(sm, arn))
                token = driver.start_rotation(sm, arn)
                print(f"  rotation {number}  (ClientRequestToken {token})")
                for step in driver.STEPS:
                    started = time.perf_counter()
                    try:
                        handler(driver.event(arn, token, step), None)
                    except Exception as exc:
                        print(f"    {step:<13} FAILED  {type(exc).__name__}: {exc}")
                        raise
                    print(f"    {step:<13} ok  {(time.perf_counter() - started) * 1000:7.1f} ms")
                after = json.loads(driver.value(sm, arn))
                new_ok, old_refused = logs_in(after), not logs_in(before)
                stages = driver.stages(sm, arn)
                current = next(v for v, s in stages.items() if "AWSCURRENT" in s)
                print(f"    AWSCURRENT is now version {current} (user {after['username']})")
                print(f"    new password logs in: {'yes' if new_ok else 'NO'}")
                if extra:
                    print(f"    previous user {before['username']} still logs in: {'yes' if not old_refused else 'NO'}")
                    ok = ok and new_ok and not old_refused
                else:
                    print(f"    old password refused: {'yes' if old_refused else 'NO'}")
                    ok = ok and new_ok and old_refused
    finally:
        moto.stop()
        server.stop()
    print("\nDemo " + ("passed: every rotated password logs in." if ok else "FAILED."))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
