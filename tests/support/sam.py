"""The SAM CLI of `make test` (.venv-sam), run as a user would but with no AWS credentials: it
reads samconfig.toml, the template and the parameters, asks its questions, then stops at its
first AWS call ("Unable to locate credentials")."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAM = ROOT / ".venv-sam" / "bin" / "sam"
NO_CREDENTIALS = "Unable to locate credentials"


def sam_without_credentials(args: list[str], cwd: Path, answers: str = "") -> subprocess.CompletedProcess[str]:
    """Run `sam ARGS` in `cwd` (a copy of the project's templates and samconfig.toml is put there)."""
    if not SAM.exists():
        pytest.skip("the SAM CLI is installed by `make test` (.venv-sam)")
    for name in ("template.yaml", "attach.yaml", "samconfig.toml"):
        if not (cwd / name).exists():
            shutil.copy(ROOT / name, cwd / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        SAM_CLI_TELEMETRY="0",
        AWS_SHARED_CREDENTIALS_FILE=str(cwd / "no-credentials"),
        AWS_CONFIG_FILE=str(cwd / "no-config"),
        AWS_EC2_METADATA_DISABLED="true",
        HOME=str(cwd),
    )
    return subprocess.run(
        [str(SAM), *args], input=answers, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
