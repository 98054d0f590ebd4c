"""A registry of every secret value the test session generated, and a scanner for them.

conftest.py records every password the rotation core generates, every SCRAM verifier
the PostgreSQL engine computes, every password the tests create and every RotationToken
they send; then it scans every captured log line of the session for all of them.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_values: dict[str, str] = {}  # value -> kind ("password", "hash", "rotation token")

MIN_LENGTH = 8  # shorter strings would match by chance


def remember(value: str, kind: str) -> str:
    if len(value) >= MIN_LENGTH:
        with _lock:
            _values[value] = kind
    return value


def count() -> int:
    with _lock:
        return len(_values)


def find(text: str) -> list[str]:
    """The kinds of the remembered values found in text (never the values themselves)."""
    with _lock:
        items = list(_values.items())
    return sorted({kind for value, kind in items if value in text})
