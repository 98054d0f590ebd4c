"""`make bench FLEET=N`: a fleet of N secrets rotated at once, under Secrets Manager's quotas.

N PostgreSQL users on the test suite's throwaway server, one single-user secret each, in
moto's Secrets Manager. Several function processes (warm Lambda execution environments:
each imports the deployed handler once and then runs rotation after rotation, every step
with a Lambda context of 30 s) rotate them all concurrently. The functions reach moto
through devtools/quota_gate.py, which enforces the request quotas the service documents
and answers ThrottlingException beyond them, as the service does.

This process plays Secrets Manager: it starts each rotation (RotateSecret, sent to moto
directly, as the service's scheduler starts a scheduled rotation: not through the quotas of
your API calls), hands it to a free function process, which runs the four steps, and when a
step fails it retries the whole rotation with the same token after a pause, as the service
does. At the end it checks every secret: no AWSPENDING left beside AWSCURRENT, and the
AWSCURRENT credential of every user logs in.

Prints one Markdown row per fleet size (`--secrets 100,1000,5000` runs each in turn) and
the quota groups' peak rates; exits 1 if a rotation did not complete or a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "rotation_core"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
RESULT = "FLEET-RESULT "
STEP_SECONDS = 30.0  # the functions' Timeout (template.yaml)
MAX_ATTEMPTS = 5  # rotation attempts before the benchmark calls it failed
RETRY_PAUSE = 1.0  # between a failed attempt and Secrets Manager's retry of the rotation
DEFAULT_WORKERS = 6


# -- a function process (one warm execution environment) --------------------------------------
class Invocation:
    """Lambda's context object: the time an invocation has left."""

    aws_request_id = "fleet-bench"

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, self.deadline - time.monotonic()) * 1000)


def worker() -> int:
    sys.path[:0] = [str(LAYER), str(ROOT / "functions" / "postgres")]
    import app  # the deployed handler module, as Lambda imports it

    from rotation_core.errors import printable
    from rotation_core.protocol import THROTTLING_CODES

    handler = app.lambda_handler
    sent: Counter[str] = Counter()
    throttled: Counter[str] = Counter()

    def on_send(request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        sent.update([(target.decode() if isinstance(target, bytes) else str(target)).rsplit(".", 1)[-1]])

    def on_answer(parsed: Any, model: Any, **_: Any) -> None:
        if parsed.get("Error", {}).get("Code") in THROTTLING_CODES:
            throttled.update([model.name])

    handler.client.meta.events.register("before-send.secrets-manager", on_send)
    handler.client.meta.events.register("after-call.secrets-manager", on_answer)
    for line in sys.stdin:
        arn, token = line.split()
        sent.clear()
        throttled.clear()
        failed, error = None, None
        started = time.perf_counter()
        for step in STEPS:
            try:
                handler({"Step": step, "SecretId": arn, "ClientRequestToken": token}, Invocation(STEP_SECONDS))
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which retries the rotation
                failed, error = step, f"{type(exc).__name__}: {printable(str(exc), 160)}"
                break
        report = {
            "ok": failed is None,
            "failed_step": failed,
            "error": error,
            "sent": dict(sent),
            "throttled": dict(throttled),
            "seconds": time.perf_counter() - started,
        }
        print(RESULT + json.dumps(report), flush=True)
    return 0


class Function:
    """A function process; its results are read by a thread of its own, so that a process
    that stops answering fails the benchmark instead of hanging it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.results: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the function's own log lines (errors) too: skipped
            if line.startswith(RESULT):
                self.results.put(dict(json.loads(line[len(RESULT) :])))
        self.results.put(None)

    def rotate(self, arn: str, token: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{arn} {token}\n")
        self.proc.stdin.flush()
        try:
            result = self.results.get(timeout=len(STEPS) * STEP_SECONDS + 60)
        except queue.Empty:
            raise RuntimeError("a function process stopped answering") from None
        if result is None:
            raise RuntimeError("a function process ended")
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# -- one fleet --------------------------------------------------------------------------------
@dataclass
class Outcome:
    secrets: int
    workers: int
    scale: float = 1.0
    completed: int = 0
    failed: int = 0
    attempts_failed: int = 0
    window: float = 0.0
    sent: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    stray_pending: int = 0
    logs_in: int = 0
    peaks: dict[str, int] = field(default_factory=dict)
    gate_throttled: int = 0


def new_fleet(harness: Any, sm: Any, n: int) -> list[tuple[str, str]]:
    """N login roles (one admin connection; only SCRAM verifiers reach the server) and
    their secrets. Returns (ARN, user)."""
    from psycopg2 import sql
    from psycopg2.extensions import encrypt_password

    run = secrets.token_hex(3)
    fleet = []
    conn = harness.server.admin_connect()
    try:
        for i in range(n):
            user, password = f"fleet_{run}_{i:05d}", secrets.token_urlsafe(24)
            verifier = encrypt_password(password, user, conn, "scram-sha-256")
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD %s").format(sql.Identifier(user)), (verifier,))
            doc = harness.secret(user, password)
            arn = sm.create_secret(Name=f"fleet-{run}-{i:05d}", SecretString=json.dumps(doc))["ARN"]
            fleet.append((str(arn), user))
    finally:
        conn.close()
    return fleet


def start_rotation(sm: Any, arn: str) -> str:
    """RotateSecret as the service's scheduler does it: AWSPENDING on a new version."""
    from rotation_cli.driver import FAKE_FUNCTION_ARN

    token = str(uuid_token())
    with contextlib.suppress(sm.exceptions.ResourceNotFoundException):  # moto cannot invoke the function
        sm.rotate_secret(
            SecretId=arn,
            ClientRequestToken=token,
            RotationLambdaARN=FAKE_FUNCTION_ARN,
            RotationRules={"AutomaticallyAfterDays": 30},
        )
    return token


def uuid_token() -> str:
    import uuid

    return str(uuid.uuid4())


def rotate_fleet(fleet: list[tuple[str, str]], sm: Any, env: dict[str, str], workers: int) -> Outcome:
    outcome = Outcome(len(fleet), workers)
    work: queue.Queue[tuple[str, str | None, int]] = queue.Queue()
    for arn, _ in fleet:
        work.put((arn, None, 1))
    remaining = [len(fleet)]
    lock = threading.Lock()
    functions = [Function(env) for _ in range(workers)]

    def serve(function: Function) -> None:
        while True:
            try:
                arn, token, attempt = work.get(timeout=0.2)
            except queue.Empty:
                with lock:
                    if remaining[0] == 0:
                        return
                continue
            token = token or start_rotation(sm, arn)
            result = function.rotate(arn, token)
            with lock:
                outcome.sent.update(result["sent"])
                outcome.throttled.update(result["throttled"])
                if result["ok"]:
                    outcome.completed += 1
                    remaining[0] -= 1
                    continue
                outcome.attempts_failed += 1
                outcome.failures[f"{result['failed_step']}: {result['error']}"] += 1
                if attempt >= MAX_ATTEMPTS:
                    outcome.failed += 1
                    remaining[0] -= 1
                    continue
            time.sleep(RETRY_PAUSE)  # then Secrets Manager retries the rotation, same token
            work.put((arn, token, attempt + 1))

    started = time.perf_counter()
    threads = [threading.Thread(target=serve, args=(f,), daemon=True) for f in functions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcome.window = time.perf_counter() - started
    for function in functions:
        function.close()
    return outcome


def check_fleet(fleet: list[tuple[str, str]], sm: Any, harness: Any, outcome: Outcome) -> None:
    def check(item: tuple[str, str]) -> tuple[bool, bool]:
        arn, _ = item
        versions = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
        stray = any("AWSPENDING" in s and "AWSCURRENT" not in s for s in versions.values())
        current = json.loads(sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])
        return stray, harness.logs_in(current["username"], current["password"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        for stray, works in pool.map(check, fleet):
            outcome.stray_pending += stray
            outcome.logs_in += works


# -- the report -------------------------------------------------------------------------------
def row(o: Outcome) -> str:
    rotations = max(o.completed, 1)
    calls = sum(o.sent.values()) - sum(o.throttled.values())
    answered = {op: o.sent[op] - o.throttled[op] for op in sorted(o.sent)}
    by_op = ", ".join(f"{n / rotations:.1f} {op}" for op, n in answered.items() if n)
    return (
        f"| {o.secrets} | {o.workers} | {o.completed} of {o.secrets} | {o.window:.1f} s | "
        f"{o.completed / o.window:.1f} | {calls / rotations:.2f} ({by_op}) | {sum(o.throttled.values())} "
        f"({', '.join(f'{n} {op}' for op, n in sorted(o.throttled.items())) or 'none'}) | "
        f"{o.attempts_failed} | {o.stray_pending} | {o.logs_in} of {o.secrets} | "
        f"{o.peaks.get('writes', 0)}/s of {50 * o.scale:,g}, {o.peaks.get('reads', 0)}/s of {10_000 * o.scale:,g} |"
    )


HEADER = (
    "| secrets | function processes | rotations completed | window (all rotated) | rotations/s "
    "| Secrets Manager calls per rotation | throttled answers, absorbed by the step "
    "| steps failed (rotation retried) | stray AWSPENDING | AWSCURRENT logs in | peak rate: writes, reads |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


# -- the parent -------------------------------------------------------------------------------


def reset_moto() -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.secretsmanager.models import secretsmanager_backends

    secretsmanager_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].reset()


def parent(sizes: list[int], workers: int, scale: float) -> int:
    sys.path[:0] = [str(LAYER), str(ROOT)]
    from devtools import moto_service

    moto_service.local_environment("ERROR")
    import boto3
    from botocore.config import Config

    from devtools.quota_gate import QuotaGateServer
    from devtools.servers import postgres_from_env_or_start
    from tests.engines import PostgresHarness

    moto_service.apply()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    outcomes = []
    postgres = postgres_from_env_or_start()
    try:
        harness = PostgresHarness(postgres)
        with moto_service.local_server() as direct_url:
            config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 5})
            sm = boto3.client("secretsmanager", endpoint_url=direct_url, config=config)
            for n in sizes:
                reset_moto()
                fleet = new_fleet(harness, sm, n)
                gate = QuotaGateServer(scale=scale).start()
                env = {**os.environ, **harness.env(), "AWS_ENDPOINT_URL_SECRETS_MANAGER": gate.url}
                try:
                    outcome = rotate_fleet(fleet, sm, env, workers)
                finally:
                    gate.stop()
                stats = gate.gate.stats
                outcome.peaks = {group: stats.peak(group) for group in ("writes", "reads")}
                outcome.scale = scale
                outcome.gate_throttled = sum(stats.throttled.values())
                check_fleet(fleet, sm, harness, outcome)
                outcomes.append(outcome)
                print(f"fleet of {n}: done in {outcome.window:.1f} s", file=sys.stderr, flush=True)
    finally:
        postgres.stop()
    print(f"\nFleet (PostgreSQL, single user; quotas x{scale:g} of those documented; devtools/quota_gate.py):\n")
    print(HEADER)
    for outcome in outcomes:
        print(row(outcome))
    for outcome in outcomes:
        for failure, count in outcome.failures.most_common(5):
            print(f"  {outcome.secrets}: {count} x {failure}")
    ok = all(
        o.completed == o.secrets and o.stray_pending == 0 and o.logs_in == o.secrets and o.failed == 0 for o in outcomes
    )
    print("\nfleet: " + ("every secret rotated, none left pending, every AWSCURRENT logs in" if ok else "FAILED"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description="Rotate a fleet of secrets at once under Secrets Manager's quotas.")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--secrets", default="100", help="fleet sizes, comma-separated (default: 100)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="function processes (default: 6)")
    parser.add_argument("--quota-scale", type=float, default=1.0, help="multiply every quota (default: 1)")
    args = parser.parse_args()
    if args.worker:
        return worker()
    try:
        sizes = [int(part) for part in args.secrets.split(",") if part.strip()]
    except ValueError:
        print("fleet: --secrets takes whole numbers, comma-separated (e.g. 100,1000,5000)", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 1 or args.workers < 1 or args.quota_scale <= 0:
        print("fleet: --secrets, --workers and --quota-scale must be positive", file=sys.stderr)
        return 2
    return parent(sizes, args.workers, args.quota_scale)


if __name__ == "__main__":
    sys.exit(main())
