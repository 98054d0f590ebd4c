"""bench/fleet.py (`make bench`'s fleet) keeps working: a small fleet under a write quota of 1
per second, so that the functions are throttled, absorb it and still rotate every secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_throttled_fleet_rotates_every_secret() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fleet.py"), "--secrets", "4", "--workers", "2", "--quota-scale", "0.02"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "every secret rotated, none left pending, every AWSCURRENT logs in" in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("| 4 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2] == "4 of 4" and cells[8] == "0" and cells[9] == "4 of 4", row
    assert int(cells[6].split()[0]) > 0, "the write quota (1 per second) throttled the functions"


def test_a_bad_size_is_one_line_and_exit_code_2() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fleet.py"), "--secrets", "many"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "whole numbers" in out.stderr
