"""`make build ARCH=arm64`: the sam command line make would run (make -n: nothing is built
here, an arm64 build is too slow for the suite; tests/test_packaging builds for real), and
one clear message without Python 3.13 or with an unknown ARCH."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from rotation_cli import paths


def _make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=paths.ROOT,
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _sam_line(out: str) -> list[str]:
    lines = [line for line in out.splitlines() if "sam build" in line]
    assert len(lines) == 1, out
    return shlex.split(lines[0])


def _build_output() -> float | None:
    build = paths.ROOT / ".aws-sam" / "build"
    return build.stat().st_mtime if build.exists() else None


@pytest.mark.parametrize(("args", "arch"), [(["ARCH=arm64"], "arm64"), ([], "x86_64")])
def test_make_build_passes_the_architecture_to_sam_with_python313_on_path(args: list[str], arch: str) -> None:
    before = _build_output()
    done = _make("build", *args)
    assert done.returncode == 0, done.stderr
    words = _sam_line(done.stdout)
    assert words[0].startswith("PATH=") and words[1].endswith(".venv-sam/bin/sam") and words[2] == "build"
    assert words[words.index("--parameter-overrides") + 1] == f"Architecture={arch}"
    first_on_path = words[0].removeprefix("PATH=").split(":")[0]
    python = Path(first_on_path) / "python3.13"
    version = subprocess.run([python, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("Python 3.13"), "sam build finds python3.13 first on PATH"
    # the other build steps stay: the RDS CA bundle into the built layer, then the lock check
    assert "scripts/fetch_rds_ca.py" in done.stdout and "scripts/deploy_lock.py verify" in done.stdout
    assert done.stdout.index("sam build") < done.stdout.index("fetch_rds_ca.py") < done.stdout.index("deploy_lock")
    assert _build_output() == before, "make -n built nothing"


def test_an_unknown_architecture_is_one_clear_message() -> None:
    done = _make("build", "ARCH=sparc")
    assert done.returncode == 2 and "sam build" not in done.stdout
    assert done.stderr.count("ARCH must be x86_64 or arm64, not 'sparc'") == 1, done.stderr


def test_without_python313_one_message_once(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYENV_ROOT": str(tmp_path / "no-pyenv"),
        "LANG": "C",
    }
    if Path("/usr/bin/python3.13").exists() or Path("/usr/local/bin/python3.13").exists():
        pytest.skip("a system Python 3.13 is installed here")
    done = _make("build", "ARCH=arm64", env=env)
    assert done.returncode == 2
    assert done.stdout == "", "nothing would run"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].count("Python 3.13 not found") == 1 and "pyenv install 3.13" in lines[0]
    assert "Traceback" not in done.stderr and "sam" not in done.stderr
