"""`make bench`: what a rotation costs, measured against a real PostgreSQL and moto's server.

The parent process plays Secrets Manager (it starts each rotation with RotateSecret); a
child process plays the Lambda execution environment (it imports the function once, then
runs the four steps of each rotation it is told about), so the child's numbers are the
function's alone. Prints a Markdown table:

- Secrets Manager API calls per full rotation (by operation),
- database connections opened per rotation,
- whether createSecret and finishSecret imported the database driver,
- import time of the handler module in a fresh process (median),
- wall time of a full rotation (median),
- peak RSS of the function process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "rotation_core"
FUNCTION = ROOT / "functions" / "postgres"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: on Linux that
    keeps the high-water mark of the parent the process was forked from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child() -> int:
    """The function's process: one handler; each stdin line names a rotation and its steps."""
    sys.path[:0] = [str(LAYER), str(FUNCTION)]
    import app  # the deployed handler module, as Lambda imports it

    handler = app.lambda_handler
    calls: Counter[str] = Counter()
    handler.client.meta.events.register("before-call.secrets-manager", lambda model, **_: calls.update([model.name]))
    engine = handler.rotation.engine
    connects = []
    original = engine.connect

    def counting_connect(login: Any, settings: Any) -> Any:
        connects.append(1)
        return original(login, settings)

    engine.connect = counting_connect
    for line in sys.stdin:
        arn, token, steps = line.split()
        calls.clear()
        connects.clear()
        driver_seen = {}
        started = time.perf_counter()
        for step in steps.split(","):
            handler({"Step": step, "SecretId": arn, "ClientRequestToken": token}, None)
            if step in ("createSecret", "finishSecret"):
                driver_seen[step] = "psycopg2" in sys.modules
        elapsed = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "calls": dict(calls),
                    "connections": len(connects),
                    "seconds": elapsed,
                    "driver": driver_seen,
                    "peak_kb": peak_rss_kb(),
                }
            ),
            flush=True,
        )
    return 0


class Function:
    """A child process playing one Lambda execution environment."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )

    def run(self, arn: str, token: str, steps: tuple[str, ...]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{arn} {token} {','.join(steps)}\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    calls: Counter[str] = Counter()
    for part in parts:
        calls.update(part["calls"])
    return {
        "calls": dict(calls),
        "connections": sum(p["connections"] for p in parts),
        "seconds": sum(p["seconds"] for p in parts),
        "peak_kb": max(p["peak_kb"] for p in parts),
        "driver": {k: v for p in parts for k, v in p["driver"].items()},
    }


def import_time(runs: int = 7) -> float:
    code = (
        f"import sys, time; sys.path[:0] = [{str(LAYER)!r}, {str(FUNCTION)!r}]; t = time.perf_counter(); "
        "import app; print(time.perf_counter() - t)"
    )
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "POWERTOOLS_METRICS_DISABLED": "true"},
        )
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parent(rotations: int) -> int:
    sys.path[:0] = [str(LAYER), str(ROOT)]
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        POWERTOOLS_LOG_LEVEL="WARNING",
        POWERTOOLS_METRICS_DISABLED="true",
    )
    import logging

    import boto3
    from moto.server import ThreadedMotoServer
    from psycopg2.extensions import encrypt_password

    from tests.support import driver
    from tests.support.servers import PostgresServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = PostgresServer()
    info = server.start()
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = f"http://127.0.0.1:{port}"
    os.environ["DB_CA_BUNDLE"] = info.ca_file
    sm = boto3.client("secretsmanager")

    def create_role(name: str, attributes: str = "") -> str:
        password = secrets.token_urlsafe(24)
        conn = server.admin_connect()
        try:
            verifier = encrypt_password(password, name, conn, "scram-sha-256")
            with conn.cursor() as cur:
                cur.execute(f'CREATE ROLE "{name}" WITH LOGIN {attributes} PASSWORD %s', (verifier,))
        finally:
            conn.close()
        return password

    results: dict[str, list[dict[str, Any]]] = {}
    try:
        master = sm.create_secret(
            Name="bench/master",
            SecretString=json.dumps(
                {"username": "bench_master", "password": create_role("bench_master", "CREATEROLE")}
            ),
        )["ARN"]
        for strategy in ("single-user", "alternating-users"):
            user = "bench_" + strategy.replace("-", "_")
            doc = {
                "engine": "postgres",
                "host": info.host,
                "port": info.port,
                "username": user,
                "password": create_role(user),
                "dbname": "postgres",
            }
            if strategy == "alternating-users":
                doc["masterarn"] = master
            arn = sm.create_secret(Name=f"bench/{strategy}", SecretString=json.dumps(doc))["ARN"]
            # First rotation: createSecret and finishSecret each in a fresh execution
            # environment, to see whether they import the database driver.
            token = driver.start_rotation(sm, arn)
            parts = []
            for steps in (STEPS[:1], STEPS[1:3], STEPS[3:]):
                fresh = Function()
                parts.append(fresh.run(arn, token, steps))
                fresh.close()
            runs = [merge(parts)]
            warm = Function()
            warm.run(arn, driver.start_rotation(sm, arn), STEPS)  # the cold start of this environment
            for _ in range(rotations):
                runs.append(warm.run(arn, driver.start_rotation(sm, arn), STEPS))
            warm.close()
            results[strategy] = runs
    finally:
        moto.stop()
        server.stop()

    startup = import_time()
    print(table(results, startup, rotations))
    single = results["single-user"]
    ok = max(sum(r["calls"].values()) for r in single) <= 11 and max(r["connections"] for r in single) <= 2
    ok = ok and not any(any(runs[0]["driver"].values()) for runs in results.values())
    ok = ok and max(r["peak_kb"] for runs in results.values() for r in runs) < 128 * 1024
    print("\nbudgets: " + ("all met" if ok else "EXCEEDED"))
    return 0 if ok else 1


def table(results: dict[str, list[dict[str, Any]]], startup: float, rotations: int) -> str:
    def col(strategy: str, what: str) -> str:
        runs = results[strategy]
        steady = runs[1:]  # runs[0] ran each step in a fresh process
        if what == "calls":
            counts = Counter(runs[-1]["calls"])
            detail = ", ".join(f"{n} {op}" for op, n in sorted(counts.items()))
            return f"{sum(counts.values())} ({detail})"
        if what == "connections":
            return str(max(r["connections"] for r in runs))
        if what == "driver":
            first = runs[0]["driver"]  # the only rotation whose steps ran in fresh processes
            return ", ".join(step for step, seen in first.items() if seen) or "never"
        if what == "wall":
            return f"{statistics.median(r['seconds'] for r in steady) * 1000:.0f} ms"
        if what == "cold":
            return f"{runs[0]['seconds'] * 1000:.0f} ms"
        return f"{max(r['peak_kb'] for r in runs) / 1024:.0f} MB"

    rows = [
        ("Secrets Manager API calls per rotation", "calls", "≤ 11 (single user)", "about 14"),
        ("database connections per rotation", "connections", "≤ 2 (single user)", "3"),
        ("driver imported by createSecret / finishSecret", "driver", "never", "always"),
        (f"full rotation, warm (median of {rotations})", "wall", "", ""),
        ("full rotation, each step in a fresh process", "cold", "", ""),
        ("peak RSS of the function process", "rss", "works at 128 MB", ""),
    ]
    lines = ["| what | single user | alternating users | budget | AWS's function |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {label} | {col('single-user', key)} | {col('alternating-users', key)} | {budget} | {aws} |"
        for label, key, budget, aws in rows
    ]
    lines.append(f"| handler module import, fresh process (median of 7) | {startup * 1000:.0f} ms | | | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Measure a rotation's calls, connections, time and memory.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rotations", type=int, default=11, help="rotations per strategy (default 11)")
    args = parser.parse_args()
    return child() if args.child else parent(max(2, args.rotations))


if __name__ == "__main__":
    sys.exit(main())
