"""The audit's policy: what the fleet must satisfy, from options, a policy file or the
function's environment. Every mistake is one PolicyError naming the option and the problem.

A policy file is JSON, or TOML when its name ends in .toml, holding the same options as the
command line (underscores for dashes)::

    max_age = "90d"              # rotated at least every 90 days (SecretsManager.4)
    unused_for = "90d"           # read at least once in 90 days (SecretsManager.3; default 90d)
    require_cmk = true           # a customer managed key, not aws/secretsmanager
    kms_keys = ["arn:aws:kms:us-east-1:111122223333:key/..."]  # and one of these (optional)
    require_tags = ["app", "env", "owner"]                     # SecretsManager.5
    name_pattern = "^(prod|staging|dev)/[a-z0-9-]+/"
    replica_regions = ["us-west-2"]   # every primary secret replicated there
    check_replicas = true             # replicas must be InSync (implied by replica_regions)
    trusted_accounts = ["444455556666"]  # may be granted read access by a resource policy
    engine_tag = "engine"             # the tag naming the kind of secret (its value is never read)
    skip = ["name-pattern"]
    fail_on = "high"                  # the command's exit code
    notify_on = "high"                # the scheduled function's notification
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet_audit.model import CHECKS, Severity

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhw])\s*$")
_UNITS = {"h": 1 / 24, "d": 1.0, "w": 7.0}
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
DEFAULT_UNUSED_DAYS = 90.0  # Security Hub's default for SecretsManager.3
DEFAULT_ENGINE_TAG = "engine"


class PolicyError(ValueError):
    """A bad option, policy file or environment setting: one line, exit code 2."""


def parse_duration(text: str, source: str, *, days_only: bool = False) -> float:
    """'90d' (days), '12h' (hours) or '2w' (weeks), as days; more than zero."""
    match = _DURATION.match(str(text))
    if not match:
        units = "days, e.g. 90d" if days_only else "a unit: 90d (days), 12h (hours) or 2w (weeks)"
        raise PolicyError(f"{source}: '{text}' is not a duration; write it with {units}")
    amount, unit = float(match.group(1)), match.group(2)
    if days_only and unit == "h":
        raise PolicyError(f"{source}: '{text}': give whole days (the service records access by day), e.g. 90d")
    days = amount * _UNITS[unit]
    if days <= 0:
        raise PolicyError(f"{source}: '{text}' must be more than zero")
    return days


def _strings(value: Any, source: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        raise PolicyError(f"{source}: expected a list of names or a comma-separated string")
    return tuple(item for item in items if item)


def _bool(value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise PolicyError(f"{source}: expected true or false, not {value!r}")


@dataclass(frozen=True)
class Policy:
    max_age_days: float | None = None
    unused_days: float = DEFAULT_UNUSED_DAYS
    require_cmk: bool = False
    kms_keys: tuple[str, ...] = ()
    require_tags: tuple[str, ...] = ()
    name_pattern: str | None = None
    replica_regions: tuple[str, ...] = ()
    check_replicas: bool = False
    trusted_accounts: tuple[str, ...] = ()
    engine_tag: str = DEFAULT_ENGINE_TAG
    skip: frozenset[str] = field(default_factory=frozenset)
    fail_on: Severity = Severity.HIGH
    notify_on: Severity = Severity.HIGH

    def __post_init__(self) -> None:
        if self.name_pattern is not None:
            try:
                re.compile(self.name_pattern)
            except re.error as exc:
                raise PolicyError(
                    f"name_pattern: '{self.name_pattern}' is not a valid regular expression: {exc}"
                ) from None
        for account in self.trusted_accounts:
            if not _ACCOUNT.match(account):
                raise PolicyError(f"trusted_accounts: '{account}' is not a 12-digit account id")
        for region in self.replica_regions:
            if not _REGION.match(region):
                raise PolicyError(f"replica_regions: '{region}' is not a Region name, e.g. us-west-2")
        unknown = sorted(self.skip - set(CHECKS))
        if unknown:
            raise PolicyError(f"skip: unknown check '{unknown[0]}' (checks: {', '.join(CHECKS)})")
        for key in self.kms_keys:
            if not key.startswith("arn:") or ":kms:" not in key:
                raise PolicyError(f"kms_keys: '{key}' is not a KMS key ARN")

    def runs(self, check: str) -> bool:
        return check not in self.skip

    @property
    def wants_replication(self) -> bool:
        return bool(self.replica_regions) or self.check_replicas

    def matches_name(self, name: str) -> bool:
        return self.name_pattern is None or re.search(self.name_pattern, name) is not None

    def with_overrides(self, **changes: Any) -> Policy:
        """This policy with the options given (None: keep the policy's)."""
        return dataclasses.replace(self, **{key: value for key, value in changes.items() if value is not None})

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_age_days": self.max_age_days,
            "unused_days": self.unused_days,
            "require_cmk": self.require_cmk,
            "kms_keys": list(self.kms_keys),
            "require_tags": list(self.require_tags),
            "name_pattern": self.name_pattern,
            "replica_regions": list(self.replica_regions),
            "check_replicas": self.wants_replication,
            "trusted_accounts": list(self.trusted_accounts),
            "engine_tag": self.engine_tag,
            "skip": sorted(self.skip),
            "fail_on": self.fail_on.label,
            "notify_on": self.notify_on.label,
        }


_KEYS: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    "max_age": lambda v, s: {"max_age_days": parse_duration(v, s)},
    "unused_for": lambda v, s: {"unused_days": parse_duration(v, s, days_only=True)},
    "require_cmk": lambda v, s: {"require_cmk": _bool(v, s)},
    "kms_keys": lambda v, s: {"kms_keys": _strings(v, s)},
    "require_tags": lambda v, s: {"require_tags": _strings(v, s)},
    "name_pattern": lambda v, s: {"name_pattern": _text(v, s)},
    "replica_regions": lambda v, s: {"replica_regions": _strings(v, s)},
    "check_replicas": lambda v, s: {"check_replicas": _bool(v, s)},
    "trusted_accounts": lambda v, s: {"trusted_accounts": _strings(v, s)},
    "engine_tag": lambda v, s: {"engine_tag": _text(v, s)},
    "skip": lambda v, s: {"skip": frozenset(_strings(v, s))},
    "fail_on": lambda v, s: {"fail_on": Severity.parse(_text(v, s), s)},
    "notify_on": lambda v, s: {"notify_on": Severity.parse(_text(v, s), s)},
}


def _text(value: Any, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"{source}: expected a non-empty string")
    return value


def from_mapping(doc: Mapping[str, Any], source: str) -> Policy:
    """The policy a file or the function's AUDIT_POLICY holds; source names it in errors."""
    if not isinstance(doc, Mapping):
        raise PolicyError(f'{source}: expected an object of options, e.g. {{"max_age": "90d"}}')
    values: dict[str, Any] = {}
    for key, value in doc.items():
        parse = _KEYS.get(str(key).replace("-", "_"))
        if parse is None:
            raise PolicyError(f"{source}: unknown option '{key}' (options: {', '.join(_KEYS)})")
        values.update(parse(value, f"{source}: {key}"))
    try:
        return Policy(**values)
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc}") from None


def from_text(text: str, source: str, *, toml: bool = False) -> Policy:
    if toml:
        import tomllib

        try:
            doc: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    else:
        try:
            doc = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise PolicyError(f"{source}: not valid JSON: {exc}") from None
    return from_mapping(doc, source)


def load_file(path: str) -> Policy:
    """The policy in a file (JSON, or TOML for *.toml)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PolicyError(f"the policy file {path} is not UTF-8 text") from None
    return from_text(text, f"policy file {path}", toml=path.lower().endswith(".toml"))
