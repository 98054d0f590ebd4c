"""`make sandbox` (python -m devtools.sandbox), as a user runs it: start it, copy the printed
environment, run a printed command, check the database, press Ctrl-C.

One test, end to end: the sandbox's servers and emulator are real, its users log in, the printed
`bin/rotate rotate ... --local` command rotates with nothing but the printed environment, the new
password logs in and the old one is refused, and SIGINT ends the process with exit code 0, no
traceback, the servers' ports closed and their directories removed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import boto3
import psycopg2

from devtools.servers import import_pymysql, port_accepts_connections

ROOT = Path(__file__).resolve().parents[1]
READY = "Sandbox ready."
START_TIMEOUT = 60.0


def _lines(stream: Any, queue: Queue[str | None]) -> None:
    for line in stream:
        queue.put(line)
    queue.put(None)


def _read_until_ready(proc: subprocess.Popen[str], queue: Queue[str | None]) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            line = queue.get(timeout=max(0.1, deadline - time.monotonic()))
        except Empty:
            raise AssertionError("the sandbox did not get ready in time:\n" + "".join(lines)) from None
        if line is None:
            raise AssertionError(f"the sandbox exited early ({proc.wait()}):\n" + "".join(lines))
        lines.append(line)
        if line.startswith(READY):
            return lines


def _value(sm: Any, name: str) -> dict[str, Any]:
    return dict(json.loads(sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"]))


def _pg_logs_in(doc: dict[str, Any], ca_bundle: str) -> bool:
    try:
        psycopg2.connect(
            host=doc["host"],
            port=doc["port"],
            user=doc["username"],
            password=doc["password"],
            dbname="postgres",
            sslmode="verify-full",
            sslrootcert=ca_bundle,
            connect_timeout=5,
        ).close()
    except psycopg2.OperationalError:
        return False
    return True


def _mariadb_logs_in(doc: dict[str, Any], ca_bundle: str) -> bool:
    import ssl

    pymysql = import_pymysql()
    try:
        pymysql.connect(
            host=doc["host"],
            port=doc["port"],
            user=doc["username"],
            password=doc["password"],
            ssl=ssl.create_default_context(cafile=ca_bundle),
            connect_timeout=5,
        ).close()
    except pymysql.err.OperationalError:
        return False
    return True


def test_sandbox_serves_a_printed_rotation_and_stops_cleanly_on_ctrl_c() -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DB_CA_BUNDLE", "TEST_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.sandbox"],
        cwd=ROOT,
        env=base_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # our SIGINT reaches it alone, as Ctrl-C reaches `make sandbox`
    )
    queue: Queue[str | None] = Queue()
    threading.Thread(target=_lines, args=(proc.stdout, queue), daemon=True).start()
    try:
        out = "".join(_read_until_ready(proc, queue))
        exports = dict(re.findall(r"^export (\w+)=(.*)$", out, re.MULTILINE))
        env = {key: shlex.split(value)[0] for key, value in exports.items()}
        assert set(env) == {
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "DB_CA_BUNDLE",
        }
        servers = [
            (int(port), directory) for port, directory in re.findall(r"on 127\.0\.0\.1:(\d+) .*files in (\S+)", out)
        ]
        assert len(servers) == 2 and all(
            Path(d).is_dir() and port_accepts_connections("127.0.0.1", p) for p, d in servers
        )
        commands = re.findall(r"^\s+(bin/rotate rotate \S+ --local --engine \w+)$", out, re.MULTILINE)
        assert len(commands) == 3, out

        sm = boto3.client(
            "secretsmanager",
            endpoint_url=env["AWS_ENDPOINT_URL_SECRETS_MANAGER"],
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        ca = env["DB_CA_BUNDLE"]
        # Every user the secrets name really exists and logs in, the master secret too.
        for name in ("sandbox/postgres/single", "sandbox/postgres/alternating", "sandbox/postgres/master"):
            assert _pg_logs_in(_value(sm, name), ca), name
            assert _value(sm, name)["password"] not in out  # no credential is printed
        assert _mariadb_logs_in(_value(sm, "sandbox/mariadb/single"), ca)

        command = next(c for c in commands if "sandbox/postgres/single" in c)
        argv = shlex.split(command)
        before = _value(sm, "sandbox/postgres/single")
        done = subprocess.run(
            [str(ROOT / argv[0]), *argv[1:]],
            cwd=ROOT,
            env={**base_env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        after = _value(sm, "sandbox/postgres/single")
        assert after["password"] != before["password"]
        assert _pg_logs_in(after, ca), "the new password logs in"
        assert not _pg_logs_in(before, ca), "the old password is refused"

        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        stderr = proc.stderr.read() if proc.stderr else ""
        assert code == 0, stderr
        assert "Traceback" not in stderr
        for port, directory in servers:
            assert not port_accepts_connections("127.0.0.1", port), f"a server still listens on {port}"
            assert not Path(directory).exists(), f"{directory} was not removed"
        assert not Path(ca).exists()
        assert not port_accepts_connections("127.0.0.1", int(env["AWS_ENDPOINT_URL_SECRETS_MANAGER"].rsplit(":", 1)[1]))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_a_server_that_cannot_start_gets_one_line_and_exit_code_1() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TEST_"))}
    done = subprocess.run(
        [sys.executable, "-m", "devtools.sandbox"],
        cwd=ROOT,
        env={**env, "TEST_PG_BINDIR": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "sandbox: a server did not start: TEST_PG_BINDIR='/nonexistent' has no initdb"
