"""Demo: rotate PostgreSQL users' secrets with the `rotate` command, on this machine.

Starts a throwaway PostgreSQL (TLS, scram-sha-256) and a local Secrets Manager emulation
(moto's server), creates two users and their secrets, then runs the command line the
README documents (bin/rotate): `rotate --local` for a single-user and an alternating-users
secret, which prints every step with its duration and checks the final state; then a
rehearsed failure (`--fail-at setSecret`), `status`, and `recover`. After each rotation the
demo proves, with its own database connection, that the new password logs in (and that the
single user's old one no longer does). Run it with `make demo`; `--verbose` also shows the
function's JSON logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "rotation_core"), str(ROOT)]

DUMMY = "demo"  # the emulator's dummy credentials
ENV = {
    "AWS_ACCESS_KEY_ID": DUMMY,
    "AWS_SECRET_ACCESS_KEY": DUMMY,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
os.environ.update(ENV)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Demo:
    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.ok = True
        self.env: dict[str, str] = {}

    def rotate_command(self, *argv: str, expect: int = 0) -> int:
        """Run `bin/rotate ARGV` (python -m rotation_cli), showing the command and its output."""
        extra = ["--verbose"] if self.verbose and argv[0] in ("rotate", "recover") else []
        print(f"\n$ bin/rotate {' '.join(argv)}")
        done = subprocess.run(
            [sys.executable, "-m", "rotation_cli", *argv, *extra],
            cwd=ROOT,
            env=self.env,
            stdout=sys.stdout,
            stderr=sys.stderr,
            check=False,
        )
        if done.returncode != expect:
            print(f"  (exit code {done.returncode}, expected {expect})")
            self.ok = False
        return done.returncode

    def check(self, label: str, passed: bool) -> None:
        print(f"  demo check: {label}: {'yes' if passed else 'NO'}")
        self.ok = self.ok and passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show the function's JSON logs")
    parser.add_argument("--rotations", type=int, default=2, help="rotations per secret (default 2)")
    args = parser.parse_args()
    started = time.perf_counter()

    import boto3
    import psycopg2
    from moto.server import ThreadedMotoServer
    from psycopg2.extensions import encrypt_password

    from devtools import moto_service
    from devtools.servers import PostgresServer

    moto_service.apply()  # PutSecretValue keeps a version's first value, as the service does
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the emulator's request log
    demo = Demo(args.verbose)
    print("Secrets Manager rotation demo (PostgreSQL), with the rotate command")
    server = PostgresServer()
    info = server.start()
    print(f"  PostgreSQL 15, throwaway, on {info.host}:{info.port} (TLS with a generated CA, scram-sha-256)")
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    print(f"  Secrets Manager emulation (moto) on {endpoint}")
    demo.env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        **ENV,
        "PYTHONPATH": str(ROOT),
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,  # the command and the function both honour it
        "DB_CA_BUNDLE": info.ca_file,  # the function's variable: our CA signs the server's certificate
    }
    sm = boto3.client("secretsmanager", endpoint_url=endpoint)

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

    def value(name: str, stage: str = "AWSCURRENT") -> dict[str, Any]:
        return dict(json.loads(sm.get_secret_value(SecretId=name, VersionStage=stage)["SecretString"]))

    def new_secret(user: str, **extra: Any) -> str:
        password = secrets.token_urlsafe(24)
        create_role(user, password)
        doc = {
            "engine": "postgres",
            "host": info.host,
            "port": info.port,
            "username": user,
            "password": password,
            "dbname": "postgres",
            **extra,
        }
        sm.create_secret(Name=f"demo/{user}", SecretString=json.dumps(doc))
        return f"demo/{user}"

    try:
        master_password = secrets.token_urlsafe(24)
        create_role("demo_master", master_password, "CREATEROLE")
        # The master secret names its server: the master logs in nowhere else (docs/security.md).
        master_doc = {"username": "demo_master", "password": master_password, "host": info.host, "port": info.port}
        master = sm.create_secret(Name="demo/master", SecretString=json.dumps(master_doc))
        cases = (
            ("Single user: the user changes its own password", new_secret("app_user"), False),
            (
                "Alternating users: the master secret switches between app_alt and app_alt_clone",
                new_secret("app_alt", masterarn=master["ARN"]),
                True,
            ),
        )
        for title, name, alternating in cases:
            print(f"\n== {title}")
            for _ in range(args.rotations):
                before = value(name)
                demo.rotate_command("rotate", name, "--local", "--engine", "postgres")
                after = value(name)
                demo.check(f"the new password of {after['username']} logs in", logs_in(after))
                if alternating:
                    demo.check(f"the previous user {before['username']} still logs in", logs_in(before))
                else:
                    demo.check("the old password is refused", not logs_in(before))

        name = cases[0][1]
        print("\n== Rehearse a failure: stop after setSecret, see it, recover")
        demo.rotate_command("rotate", name, "--local", "--engine", "postgres", "--fail-at", "setSecret", expect=1)
        demo.check("AWSCURRENT no longer logs in (the database has the pending password)", not logs_in(value(name)))
        demo.rotate_command("status", name, expect=1)
        demo.rotate_command("recover", name)
        demo.rotate_command("recover", name, "--apply")
        demo.check("after recovery, AWSCURRENT logs in", logs_in(value(name)))
        demo.rotate_command("rotate", name, "--local", "--engine", "postgres")
        demo.check("the next rotation's password logs in", logs_in(value(name)))
    finally:
        moto.stop()
        server.stop()
    seconds = time.perf_counter() - started
    print("\nDemo " + (f"passed in {seconds:.0f} s: every rotated password logs in." if demo.ok else "FAILED."))
    return 0 if demo.ok else 1


if __name__ == "__main__":
    sys.exit(main())
