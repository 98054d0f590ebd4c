"""`make bench-audit` (part of `make bench`): the fleet audit over 10,000 secrets in moto.

The parent starts moto's server and fills one account and Region with a fleet: every secret
made with CreateSecret (through the API), then, on moto's model in this process
because moto cannot date things in the past or be fast enough at this size through its API,
a realistic mix: rotation on 70% of them across 10 rotation functions, a few unfinished or
failed rotations, resource policies on 5% (public or shared with another account), tags on
90%, reads recorded on 80%. A child process then runs the audit as the scheduled function
does (fleet_audit, boto3 with adaptive retries) and reports its calls by operation, findings,
wall time and peak memory:

- unpaced: no client-side rate limit (the emulator has no quota): the audit's own cost;
- paced: the default rates, those `bin/rotate audit` and the function use against AWS
  (GetResourcePolicy at 40 per second, under its fixed quota of 50): the wall time to expect.

Prints a Markdown table and exits 1 when a budget is exceeded:
- calls: one ListSecrets per 100 secrets, one GetResourcePolicy per secret and two Lambda
  reads per distinct function, at most (1.02 per secret at 10,000 secrets); never
  GetSecretValue;
- paced wall time at most 300 s per 10,000 secrets (the quota's floor is 250 s at 40/s);
- peak memory of the audit process under 200 MB (the function has 256 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT, REGION = "123456789012", "us-east-1"
BUDGET_CALLS_PER_SECRET = 1.02
BUDGET_PACED_SECONDS_PER_10K = 300.0
BUDGET_RSS_MB = 200
FUNCTIONS = 10


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(endpoint: str, paced: bool) -> int:
    """The audit, as the scheduled function runs it (one account and Region)."""
    sys.path[:0] = [str(ROOT / "functions" / "audit"), str(ROOT / "layers" / "rotation_core")]
    import boto3
    from botocore.config import Config

    from fleet_audit import Policy, Rates, Target, audit

    config = Config(retries={"mode": "adaptive", "max_attempts": 10}, max_pool_connections=32)
    target = Target(
        REGION,
        boto3.client("secretsmanager", endpoint_url=endpoint, config=config),
        boto3.client("lambda", endpoint_url=endpoint, config=config),
    )
    started, cpu = time.perf_counter(), time.process_time()
    report = audit([target], Policy(), rates=Rates() if paced else Rates.unlimited())
    summary = report.summary()
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - started,
                "cpu": time.process_time() - cpu,
                "peak_mb": peak_rss_mb(),
                "secrets": summary["secrets"],
                "calls": summary["api_calls"],
                "retries": summary["retries"],
                "findings": summary["findings"],
            }
        ),
        flush=True,
    )
    return 0


def build_fleet(endpoint: str, count: int) -> None:
    import boto3
    from moto.secretsmanager.models import secretsmanager_backends

    from devtools.audit_fleet import DAY, Fleet, remember_last_access

    sm = boto3.client("secretsmanager", endpoint_url=endpoint)

    def create(n: int) -> None:
        tags = [{"Key": "app", "Value": f"app{n % 50}"}] if n % 10 else []
        sm.create_secret(Name=f"fleet/{n // 1000:02d}/secret-{n:05d}", SecretString='{"key": "placeholder"}', Tags=tags)

    for n in range(count):  # one at a time: moto's store is not safe for concurrent writes
        create(n)
    fleet = Fleet(endpoint, ACCOUNT)
    functions = [fleet.function(f"rotation-{n}", engine="postgres") for n in range(FUNCTIONS)]
    remember_last_access()
    now = int(time.time())
    secrets = secretsmanager_backends[ACCOUNT][REGION].secrets
    for n, secret in enumerate(sorted(secrets.values(), key=lambda s: s.name)):
        if n % 10 < 7:  # rotation on, across the functions
            secret.rotation_requested = secret.rotation_enabled = True
            secret.rotation_lambda_arn = functions[(n // 10) % FUNCTIONS]
            secret.auto_rotate_after_days = 30
            secret.last_rotation_date = now - 10 * DAY
            secret.next_rotation_date = now + (20 if n % 100 else -5) * DAY  # 1% failed
            if n % 50 == 1:  # 2% left unfinished
                secret.versions[f"pending-{n}"] = {"version_id": f"pending-{n}", "version_stages": ["AWSPENDING"]}
        if n % 20 == 3:
            principal = "*" if n % 40 == 3 else {"AWS": "999988887777"}
            statement = {"Effect": "Allow", "Principal": principal, "Action": "secretsmanager:GetSecretValue"}
            secret.policy = json.dumps({"Version": "2012-10-17", "Statement": [{**statement, "Resource": "*"}]})
        if n % 5:
            secret.audit_last_accessed = now - (n % 30) * DAY


def run_child(endpoint: str, paced: bool) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", endpoint, *(["--paced"] if paced else [])],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if done.returncode != 0:
        raise SystemExit(f"the audit failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def table(count: int, runs: dict[str, dict[str, Any]], created: float) -> str:
    header = "| wall time | CPU | peak memory | API calls by operation | calls per secret | retries |"
    lines = [
        f"| {count:,} secrets, 1 Region {header}",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, run in runs.items():
        calls = run["calls"]
        detail = ", ".join(f"{n:,} {op.split(':', 1)[1]}" for op, n in sorted(calls.items(), key=lambda i: -i[1]))
        lines.append(
            f"| {label} | {run['seconds']:.1f} s | {run['cpu']:.1f} s | {run['peak_mb']:.0f} MB | {detail} "
            f"| {sum(calls.values()) / run['secrets']:.3f} | {run['retries']} |"
        )
    findings = next(iter(runs.values()))["findings"]
    lines.append(
        "\nfindings: "
        + ", ".join(f"{n:,} {severity}" for severity, n in findings.items() if n)
        + f" (fleet made in {created:.0f} s)"
    )
    return "\n".join(lines)


def problems(count: int, runs: dict[str, dict[str, Any]]) -> list[str]:
    found = []
    for label, run in runs.items():
        calls = run["calls"]
        per_secret = sum(calls.values()) / run["secrets"]
        if run["secrets"] != count:
            found.append(f"{label}: audited {run['secrets']} of {count} secrets")
        # the structure: one ListSecrets per 100 secrets, one GetResourcePolicy each, two reads per function
        allowed = -(-count // 100) + count + 2 * FUNCTIONS
        if sum(calls.values()) > allowed or (count >= 10_000 and per_secret > BUDGET_CALLS_PER_SECRET):
            found.append(f"{label}: {sum(calls.values())} calls, {per_secret:.3f} per secret (budget {allowed})")
        if any("SecretValue" in op for op in calls):
            found.append(f"{label}: read a secret value")
        if run["peak_mb"] >= BUDGET_RSS_MB:
            found.append(f"{label}: peak memory {run['peak_mb']:.0f} MB")
    paced = runs.get("paced (default rates)")
    if paced and paced["seconds"] > BUDGET_PACED_SECONDS_PER_10K * count / 10_000:
        found.append(f"paced: {paced['seconds']:.0f} s for {count} secrets")
    return found


def parent(count: int, paced: bool) -> int:
    import logging

    sys.path[:0] = [str(ROOT)]
    from devtools import moto_service

    moto_service.local_environment("ERROR")
    os.environ.pop("AWS_PROFILE", None)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with moto_service.local_server() as endpoint:
        started = time.perf_counter()
        build_fleet(endpoint, count)
        created = time.perf_counter() - started
        runs = {"unpaced (emulator, no rate limit)": run_child(endpoint, paced=False)}
        if paced:
            runs["paced (default rates)"] = run_child(endpoint, paced=True)
    print(table(count, runs, created))
    print(
        f"\nBudgets: at most {BUDGET_CALLS_PER_SECRET} calls per secret and never GetSecretValue; paced, at most "
        f"{BUDGET_PACED_SECONDS_PER_10K:.0f} s per 10,000 secrets per Region (GetResourcePolicy's quota of 50 per "
        f"second, not adjustable, sets the floor: 200 s; the audit takes 40); under {BUDGET_RSS_MB} MB."
    )
    found = problems(count, runs)
    print("\naudit budgets: " + ("all met" if not found else "EXCEEDED: " + "; ".join(found)))
    return 0 if not found else 1


def main() -> int:
    parser = argparse.ArgumentParser(description="Measure the fleet audit on a large fleet in moto.")
    parser.add_argument("--child", metavar="ENDPOINT", help=argparse.SUPPRESS)
    parser.add_argument("--paced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--secrets", type=int, default=10_000, help="secrets in the fleet (default 10,000)")
    parser.add_argument("--no-paced", action="store_true", help="skip the run at the default rates (about 4 minutes)")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.paced)
    return parent(max(1, args.secrets), not args.no_paced)


if __name__ == "__main__":
    sys.exit(main())
