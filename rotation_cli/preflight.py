"""Check a secret and the function's configuration before a rotation changes anything.

`rotate --local` would otherwise label a new AWSPENDING version and turn rotation on
(RotateSecret), or store the next credential (PutSecretValue), before the function ever
looked at the secret; a malformed secret then fails in createSecret and leaves an
unfinished rotation behind. So the function's own parsing runs first, on what the steps
will read:

- database engines: rotation_core.credentials.parse with the engine's defaults (the
  secret's fields), rotation_core.settings.load and password_policy on the environment
  (and the password rules of the engine), and for alternating users the `masterarn`
  field and the alternate user's name;
- the API key function: its own `parse`, called through a small adapter that tolerates a
  changed signature or module layout (the function is being reworked);
- any other function: nothing beyond the secret having a value.

The master (or admin) secret is never read here: its existence is checked with
DescribeSecret (metadata only), so that a missing one is reported as "not found" before
anything changes. Where the master credential may connect is the function's business.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rotation_cli.aws import error_code
from rotation_cli.driver import CURRENT, PENDING, DriverError
from rotation_cli.errors import UsageError
from rotation_core import ConfigurationError, Rotation

#: Names the API key function's parser has had, or may have, for its arguments.
_TEXT_NAMES = ("text", "secret_text", "value", "raw", "document", "doc")
_ROLE_NAMES = ("role",)
_ARN_NAMES = ("secret_arn", "arn", "secret_id")


@dataclass
class Preflight:
    """What was checked, for the command's output."""

    checks: list[str] = field(default_factory=list)


def read_value(client: Any, arn: str, **which: str) -> str | None:
    """A version's SecretString (None when it has none: moto and AWS answer not found)."""
    try:
        return client.get_secret_value(SecretId=arn, **which).get("SecretString")  # type: ignore[no-any-return]
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


# -- the API key function's parser, through an adapter -------------------------------------
def secret_parser(rotation: Rotation) -> Callable[[str, str, str], Any] | None:
    """The rotation's own secret parser as parse(text, role, secret_arn), or None.

    Looked up as `parse` (or `parse_secret`) in the module of the rotation's class, then
    in the modules next to it (a function that became a package); its parameters are
    matched by name (text, role, secret_arn and their likely spellings) or position, so a
    reworked signature keeps working."""
    module = sys.modules.get(type(rotation).__module__)
    if module is None:
        return None
    modules = [module]
    home = getattr(module, "__file__", None)
    if home:
        folder = Path(home).parent
        for other in list(sys.modules.values()):
            path = getattr(other, "__file__", None)
            if other is not module and isinstance(path, str) and Path(path).parent == folder:
                modules.append(other)
    candidates = [getattr(m, name, None) for m in modules for name in ("parse", "parse_secret")]
    for candidate in candidates:
        if callable(candidate):
            adapted = _adapt(candidate)
            if adapted is not None:
                return adapted
    return None


def _adapt(parse: Callable[..., Any]) -> Callable[[str, str, str], Any] | None:
    try:
        signature = inspect.signature(parse)
    except (TypeError, ValueError):
        return None
    plan: list[tuple[str, str, bool]] = []  # (parameter, which value, by keyword)
    positional = ["text", "role", "arn"]
    for index, parameter in enumerate(signature.parameters.values()):
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        name = parameter.name.lower()
        if name in _TEXT_NAMES:
            which = "text"
        elif name in _ROLE_NAMES:
            which = "role"
        elif name in _ARN_NAMES:
            which = "arn"
        elif parameter.default is not parameter.empty:
            continue
        elif index < len(positional) and parameter.kind is not parameter.KEYWORD_ONLY:
            which = positional[index]
        else:
            return None  # a required argument this adapter cannot supply
        plan.append((parameter.name, which, parameter.kind is parameter.KEYWORD_ONLY))
    if not any(which == "text" for _, which, _ in plan):
        return None

    def call(text: str, role: str, arn: str) -> Any:
        values = {"text": text, "role": role, "arn": arn}
        args = [values[which] for _, which, keyword in plan if not keyword]
        kwargs = {name: values[which] for name, which, keyword in plan if keyword}
        return parse(*args, **kwargs)

    return call


# -- the checks ------------------------------------------------------------------------------
def check(
    rotation: Rotation,
    client: Any,
    described: Mapping[str, Any],
    current_text: str | None,
    env: Mapping[str, str],
) -> Preflight:
    """Raise DriverError (the secret) or UsageError (the configuration) before any change."""
    arn = str(described["ARN"])
    result = Preflight()
    if current_text is None:
        raise DriverError("the secret has no AWSCURRENT value to rotate from; nothing was changed")
    versions = {v: list(s) for v, s in described.get("VersionIdsToStages", {}).items()}
    stuck = [v for v, s in versions.items() if PENDING in s and CURRENT not in s]
    pending_text = read_value(client, arn, VersionId=stuck[0]) if stuck else None
    from rotation_core.strategies import DatabaseRotation

    try:
        if isinstance(rotation, DatabaseRotation):
            _check_database(
                rotation=rotation,
                client=client,
                current_text=current_text,
                pending_text=pending_text,
                env=env,
                result=result,
            )
        else:
            _check_other(
                rotation=rotation,
                client=client,
                arn=arn,
                current_text=current_text,
                pending_text=pending_text,
                env=env,
                result=result,
            )
    except _SecretError as problem:
        raise DriverError(f"{problem}; nothing was changed") from None
    return result


class _SecretError(Exception):
    """A problem with the secret itself (as opposed to the configuration)."""


def _secret(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ConfigurationError as exc:
        raise _SecretError(str(exc)) from None


def _configuration(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ConfigurationError as exc:
        raise UsageError(f"the function's configuration: {exc} (set it with --env KEY=VALUE)") from None


def _check_database(
    *,
    rotation: Any,
    client: Any,
    current_text: str,
    pending_text: str | None,
    env: Mapping[str, str],
    result: Preflight,
) -> None:
    from rotation_core import credentials, passwords
    from rotation_core import settings as config
    from rotation_core.settings import Strategy
    from rotation_core.strategies import alternate_username

    engine = rotation.engine
    settings = _configuration(lambda: config.load(env))
    policy = _configuration(lambda: config.password_policy(env))
    _configuration(lambda: passwords.validate(policy, engine.password_rules))
    result.checks.append("configuration and password policy")
    current = _secret(lambda: credentials.parse(current_text, "current", engine.defaults))
    if pending_text is not None:
        _secret(lambda: credentials.parse(pending_text, "pending", engine.defaults))
    result.checks.append(f"the secret's fields ({engine.name})")
    strategy = settings.strategy
    if strategy is Strategy.AUTO:
        strategy = Strategy.ALTERNATING_USERS if current.masterarn else Strategy.SINGLE_USER
    if strategy is Strategy.ALTERNATING_USERS:
        if not current.masterarn:
            raise _SecretError("alternating users (ROTATION_STRATEGY) need the field 'masterarn' in the current secret")
        _secret(lambda: alternate_username(current, engine.defaults))
        _exists(client, current.masterarn, "master", "masterarn")
        result.checks.append("the master secret exists")


def _check_other(
    *,
    rotation: Rotation,
    client: Any,
    arn: str,
    current_text: str,
    pending_text: str | None,
    env: Mapping[str, str],
    result: Preflight,
) -> None:
    parse = secret_parser(rotation)
    if parse is None:
        return
    from rotation_core import settings as config

    http_settings = getattr(config, "http_settings", None)
    if callable(http_settings):
        _configuration(lambda: http_settings(env))
    current = _secret(lambda: parse(current_text, "current", arn))
    if pending_text is not None:
        _secret(lambda: parse(pending_text, "pending", arn))
    result.checks.append(f"the secret's fields ({rotation.name})")
    # The other secrets it names (read by the function only): the admin secret of issued
    # keys, the verify secret of generated ones; older layouts kept them under "provider".
    for owner, role, field_name in (
        (current, "admin", "provider.admin_secret_arn"),
        (getattr(current, "provider", None), "admin", "provider.admin_secret_arn"),
        (current, "verify", "verify_secret_arn"),
    ):
        other = getattr(owner, f"{role}_secret_arn", None)
        if isinstance(other, str) and other:
            _exists(client, other, role, field_name)
            result.checks.append(f"the {role} secret exists")


def _exists(client: Any, secret_id: str, role: str, field_name: str) -> None:
    """DescribeSecret only (never its value): a missing secret is 'not found'."""
    try:
        described = client.describe_secret(SecretId=secret_id)
    except Exception as exc:
        code = error_code(exc)
        if code == "ResourceNotFoundException":
            raise _SecretError(
                f"the {role} secret that field '{field_name}' names was not found (DescribeSecret: "
                "ResourceNotFoundException)"
            ) from None
        if code is not None:
            return  # not allowed to describe it (another account, a narrower role): the function will tell
        raise
    if described.get("DeletedDate"):
        raise _SecretError(f"the {role} secret that field '{field_name}' names is scheduled for deletion")
