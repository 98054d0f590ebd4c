"""rotation_cli: drive, inspect and repair Secrets Manager rotations from a terminal.

    python -m rotation_cli rotate SECRET --local --engine postgres
    python -m rotation_cli status SECRET

The commands are thin: the rotation-driving logic is a library (rotation_cli.driver,
rotation_cli.remote, rotation_cli.recover, ...) that the tests, the demo and the
packaging proof use too. Nothing here ever prints or logs a secret value: output shows
version ids, staging labels, dates and user names at most.
"""

from __future__ import annotations

from rotation_cli.paths import ensure_audit_on_path, ensure_layers_on_path

ensure_layers_on_path()
ensure_audit_on_path()

__all__ = ["ensure_audit_on_path", "ensure_layers_on_path"]
