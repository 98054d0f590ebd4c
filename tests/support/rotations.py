"""Drive a rotation the way Secrets Manager does, against moto's server.

The driver itself lives in rotation_cli.driver (the command line's library); this module
keeps the tests' API and adds one thing: every RotationToken a test sends is remembered,
so the session's log scan fails if one ever reaches a log line.

RotateSecret labels a new version (VersionId = the token) AWSPENDING with no value, then
invokes the function for each step. moto prepares that state too, then fails to invoke the
function (no Docker), which we ignore before driving the steps ourselves.
"""

from __future__ import annotations

from typing import Any

from rotation_cli.driver import (
    FAKE_FUNCTION_ARN,
    STEPS,
    Handler,
    new_token,
    rotate,
    run_steps,
    stages,
    start_rotation,
    stuck_pending,
    value,
)
from rotation_cli.driver import event as _event
from tests.support import leaks

__all__ = [
    "FAKE_FUNCTION_ARN",
    "STEPS",
    "Handler",
    "event",
    "new_token",
    "rotate",
    "run_steps",
    "stages",
    "start_rotation",
    "stuck_pending",
    "value",
]


def event(secret_id: str, token: str, step: str, rotation_token: str | None = None) -> dict[str, Any]:
    if rotation_token is not None:
        leaks.remember(rotation_token, "rotation token")
    return _event(secret_id, token, step, rotation_token)
