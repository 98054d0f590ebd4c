"""The few kinds of error a rotation can end with.

Every message names the step, the field or the credential's role (current, pending,
previous, master) and the cause, and never a value: callers build messages from
field names and fixed text only, so an exception can be logged, returned to
Secrets Manager and shown in the console without leaking anything.
"""

from __future__ import annotations


class RotationError(Exception):
    """Base class: the rotation cannot go on."""


class ConfigurationError(RotationError):
    """Bad configuration (environment) or a bad secret (missing or malformed field)."""


class EventError(RotationError):
    """A malformed event, or secret versions in a state that forbids this step."""


class AuthenticationError(RotationError):
    """A credential was refused by the target (wrong password, unknown user)."""


class UnreachableError(RotationError):
    """The target could not be reached, or not securely (network, TLS, timeout)."""


def printable(text: str, limit: int = 300) -> str:
    """A server's or driver's text made safe to log or print: control characters (a
    forged message could carry terminal escapes or fake log lines) become spaces, and
    the text is cut to `limit` characters."""
    cleaned = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def aws_error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError ("ThrottlingException"), else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def aws_error_text(exc: BaseException) -> str:
    """ "Code: message" of a botocore ClientError, else the exception's type and text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip().rstrip(":")
    return f"{type(exc).__name__}: {exc}"
