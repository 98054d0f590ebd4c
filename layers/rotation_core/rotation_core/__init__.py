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
from rotation_core.protocol import RotationFunction
from rotation_core.settings import ConnectionSettings
from rotation_core.values import Sensitive


def rotation_handler(engine: DatabaseEngine[Any]) -> RotationFunction:
    """The Lambda handler for a database engine (single user or alternating users)."""
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
    "RotationError",
    "RotationFunction",
    "Sensitive",
    "UnreachableError",
    "rotation_handler",
]
