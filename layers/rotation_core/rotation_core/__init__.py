"""The rotation core: Secrets Manager's rotation protocol, once, for every engine.

Engines wire themselves in with one line::

    lambda_handler = rotation_handler(PostgresEngine())
"""

from __future__ import annotations

from typing import Any

from rotation_core.credentials import DatabaseSecret, Defaults
from rotation_core.engine import DatabaseEngine
from rotation_core.errors import (
    AuthenticationError,
    ConfigurationError,
    EventError,
    RotationError,
    UnreachableError,
)
from rotation_core.passwords import PasswordRules
from rotation_core.protocol import Rotation, RotationFunction, StepContext
from rotation_core.settings import ConnectionSettings
from rotation_core.values import Sensitive


def rotation_handler(engine: DatabaseEngine[Any] | Rotation) -> RotationFunction:
    """The Lambda handler for an engine.

    A DatabaseEngine rotates through the single-user or alternating-users strategy; any
    other kind of credential (API keys) implements the protocol's Rotation directly.
    """
    if isinstance(engine, Rotation):
        return RotationFunction(engine)
    from rotation_core.strategies import DatabaseRotation

    return RotationFunction(DatabaseRotation(engine))


__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConnectionSettings",
    "DatabaseEngine",
    "DatabaseSecret",
    "Defaults",
    "EventError",
    "PasswordRules",
    "Rotation",
    "RotationError",
    "RotationFunction",
    "Sensitive",
    "StepContext",
    "UnreachableError",
    "rotation_handler",
]
