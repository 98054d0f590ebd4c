"""`make bench`: what a rotation costs, for every database engine and both strategies,
measured against real servers (the test suite's throwaway PostgreSQL and MariaDB, and
PostgreSQL behind the Redshift shim) and moto's Secrets Manager server.

The parent process plays Secrets Manager (it starts each rotation with RotateSecret); a
child process plays the Lambda execution environment (it imports the function once, then
runs the steps it is told about), so the child's numbers are the function's alone. The
first rotation runs createSecret, set+test and finishSecret each in a fresh child, to see
whether createSecret or finishSecret load the database driver. Prints a Markdown table:

- Secrets Manager API calls per full rotation (by operation),
- database connections opened per rotation,
- whether createSecret and finishSecret imported the database driver,
- wall time of a full rotation (median, warm), and with each step in a fresh process,
- peak RSS of the function process,
- import time of each handler module in a fresh process (median).

Exits 1 when a budget is exceeded: at most 9 calls and 2 connections for a single-user
rotation, the driver never loaded by createSecret or finishSecret, under 128 MB.

moto's PutSecretValue is made to keep a version's first value, as the service does
(devtools/moto_service.py). The fleet benchmark is bench/fleet.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "rotation_core"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
DRIVERS = {"postgres": "psycopg2", "mysql": "pymysql", "redshift": "redshift_connector"}
STRATEGIES = ("single-user", "alternating-users")
BUDGET_CALLS, BUDGET_CONNECTIONS, BUDGET_RSS_MB = 9, 2, 128


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: on Linux that
    keeps the high-water mark of the parent the process was forked from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(engine: str) -> int:
    """The function's process: one handler; each stdin line names a rotation and its steps."""
    sys.path[:0] = [str(LAYER), str(ROOT / "functions" / engine)]
    import app  # the deployed handler module, as Lambda imports it

    handler = app.lambda_handler
    calls: Counter[str] = Counter()
    handler.client.meta.events.register("before-call.secrets-manager", lambda model, **_: calls.update([model.name]))
    engine_object = handler.rotation.engine
    connects = []
    original = engine_object.connect

    def counting_connect(login: Any, settings: Any, **kw: Any) -> Any:
        connects.append(1)
        return original(login, settings, **kw)

    engine_object.connect = counting_connect
    for line in sys.stdin:
        arn, token, steps = line.split()
        calls.clear()
        connects.clear()
        driver_seen = {}
        started = time.perf_counter()
        for step in steps.split(","):
            handler({"Step": step, "SecretId": arn, "ClientRequestToken": token}, None)
            if step in ("createSecret", "finishSecret"):
                driver_seen[step] = DRIVERS[engine] in sys.modules
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

    def __init__(self, engine: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", engine],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )

    def run(self, arn: str, token: str, steps: tuple[str, ...]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{arn} {token} {','.join(steps)}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the function process failed (see its output above)")
        return dict(json.loads(line))

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


def import_time(engine: str, runs: int = 7) -> float:
    function = ROOT / "functions" / engine
    code = (
        f"import sys, time; sys.path[:0] = [{str(LAYER)!r}, {str(function)!r}]; t = time.perf_counter(); "
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


@contextlib.contextmanager
def harnesses(workdir: str) -> Iterator[dict[str, Any]]:
    """The test suite's own harnesses: throwaway servers, users and secrets."""
    from devtools.servers import mariadb_from_env_or_start, postgres_from_env_or_start
    from tests.engines import MySQLHarness, PostgresHarness, RedshiftHarness

    with contextlib.ExitStack() as stack:
        postgres = postgres_from_env_or_start()
        stack.callback(postgres.stop)
        mariadb = mariadb_from_env_or_start()
        stack.callback(mariadb.stop)
        redshift = RedshiftHarness.from_env_or_start(workdir)
        stack.callback(redshift.stop)
        yield {"postgres": PostgresHarness(postgres), "mysql": MySQLHarness(mariadb), "redshift": redshift}


def measure(engine: str, arn: str, start_rotation: Callable[[], str], rotations: int) -> list[dict[str, Any]]:
    # First rotation: createSecret and finishSecret each in a fresh execution environment.
    token = start_rotation()
    parts = []
    for steps in (STEPS[:1], STEPS[1:3], STEPS[3:]):
        fresh = Function(engine)
        parts.append(fresh.run(arn, token, steps))
        fresh.close()
    runs = [merge(parts)]
    warm = Function(engine)
    warm.run(arn, start_rotation(), STEPS)  # this environment's cold start
    runs += [warm.run(arn, start_rotation(), STEPS) for _ in range(rotations)]
    warm.close()
    return runs


def parent(rotations: int, engines: list[str]) -> int:
    sys.path[:0] = [str(LAYER), str(ROOT)]
    from devtools import moto_service

    moto_service.local_environment("WARNING")
    import boto3

    from tests.support.rotations import start_rotation as begin_rotation

    moto_service.apply()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with moto_service.local_server() as endpoint:
        os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = endpoint
        sm = boto3.client("secretsmanager")
        with tempfile.TemporaryDirectory() as workdir, harnesses(workdir) as chosen:
            for engine in engines:
                harness = chosen[engine]
                saved = dict(os.environ)
                os.environ.update(harness.env())
                try:
                    for strategy in STRATEGIES:
                        arn, _ = harness.new_secret(sm, strategy)
                        results[(engine, strategy)] = measure(
                            engine, arn, lambda arn=arn: begin_rotation(sm, arn), rotations
                        )
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
    imports = {engine: import_time(engine) for engine in engines}
    print(table(results, imports, rotations))
    problems = budget_problems(results)
    print("\nbudgets: " + ("all met" if not problems else "EXCEEDED: " + "; ".join(problems)))
    return 0 if not problems else 1


def budget_problems(results: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    problems = []
    for (engine, strategy), runs in results.items():
        if strategy == "single-user":
            calls = max(sum(r["calls"].values()) for r in runs)
            connections = max(r["connections"] for r in runs)
            if calls > BUDGET_CALLS:
                problems.append(f"{engine}: {calls} Secrets Manager calls")
            if connections > BUDGET_CONNECTIONS:
                problems.append(f"{engine}: {connections} connections")
        if any(runs[0]["driver"].values()):
            problems.append(f"{engine} {strategy}: the driver was imported by createSecret or finishSecret")
        if max(r["peak_kb"] for r in runs) >= BUDGET_RSS_MB * 1024:
            problems.append(f"{engine} {strategy}: peak RSS over {BUDGET_RSS_MB} MB")
    return problems


def table(results: dict[tuple[str, str], list[dict[str, Any]]], imports: dict[str, float], rotations: int) -> str:
    header = (
        "| engine | strategy | Secrets Manager calls | DB connections | driver in create/finish "
        f"| rotation, warm (median of {rotations}) | rotation, each step in a fresh process | peak RSS "
        "| handler import (fresh process) |"
    )
    lines = [
        header,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (engine, strategy), runs in results.items():
        counts = Counter(runs[-1]["calls"])
        detail = ", ".join(f"{n} {op}" for op, n in sorted(counts.items()))
        seen = ", ".join(step for step, loaded in runs[0]["driver"].items() if loaded) or "never"
        warm = statistics.median(r["seconds"] for r in runs[1:]) * 1000
        lines.append(
            f"| {engine} | {strategy} | {sum(counts.values())} ({detail}) | {max(r['connections'] for r in runs)} "
            f"| {seen} | {warm:.0f} ms | {runs[0]['seconds'] * 1000:.0f} ms "
            f"| {max(r['peak_kb'] for r in runs) / 1024:.0f} MB | {imports[engine] * 1000:.0f} ms |"
        )
    lines.append(
        f"\nBudgets (DESIGN.md): single user at most {BUDGET_CALLS} Secrets Manager calls and "
        f"{BUDGET_CONNECTIONS} connections (AWS's functions: about 14 and 3); the driver never imported "
        f"by createSecret or finishSecret (AWS's: always); works at {BUDGET_RSS_MB} MB."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Measure a rotation's calls, connections, time and memory.")
    parser.add_argument("--child", metavar="ENGINE", help=argparse.SUPPRESS)
    parser.add_argument("--rotations", type=int, default=9, help="warm rotations per engine and strategy")
    parser.add_argument("--engine", action="append", choices=sorted(DRIVERS), help="engines (default: all)")
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    return parent(max(1, args.rotations), args.engine or list(DRIVERS))


if __name__ == "__main__":
    sys.exit(main())
