"""Local password generation with a CSPRNG (no GetRandomPassword call).

Semantics follow Secrets Manager's GetRandomPassword, whose parameters AWS's rotation
functions take from the environment: four character classes (lower case, upper case,
digits, punctuation), exclusions, and optionally at least one character of each
included class. Each engine adds its own rules on top (characters it can never take,
length bounds, classes it always requires), whatever the environment asks.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field

from rotation_core.errors import ConfigurationError
from rotation_core.settings import PasswordPolicy
from rotation_core.values import Sensitive

LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
DIGITS = string.digits
PUNCTUATION = string.punctuation  # the set GetRandomPassword draws from
WHITESPACE_AND_CONTROL = "".join(chr(c) for c in range(33)) + "\x7f"


@dataclass(frozen=True)
class PasswordRules:
    """An engine's password rules."""

    default_exclude: str = ""  # used when EXCLUDE_CHARACTERS is not set
    always_exclude: str = WHITESPACE_AND_CONTROL  # never allowed, whatever the environment says
    min_length: int = 1
    max_length: int = 4096
    require_classes: frozenset[str] = field(default_factory=frozenset)  # e.g. {"lower", "upper", "digits"}


_CLASSES: dict[str, str] = {"lower": LOWER, "upper": UPPER, "digits": DIGITS, "punctuation": PUNCTUATION}


def _included_classes(policy: PasswordPolicy, rules: PasswordRules) -> dict[str, str]:
    excluded = set(rules.always_exclude)
    excluded.update(rules.default_exclude if policy.exclude_characters is None else policy.exclude_characters)
    wanted = {
        "lower": not policy.exclude_lowercase,
        "upper": not policy.exclude_uppercase,
        "digits": not policy.exclude_numbers,
        "punctuation": not policy.exclude_punctuation,
    }
    for name in rules.require_classes:
        wanted[name] = True
    classes = {}
    for name, chars in _CLASSES.items():
        if not wanted[name]:
            continue
        remaining = "".join(c for c in chars if c not in excluded)
        if remaining:
            classes[name] = remaining
        elif name in rules.require_classes:
            raise ConfigurationError(
                f"password policy: EXCLUDE_CHARACTERS removes every character of a class this engine requires ({name})"
            )
    return classes


def validate(policy: PasswordPolicy, rules: PasswordRules) -> None:
    """Raise ConfigurationError if no password can satisfy the policy and the engine's rules."""
    generate(policy, rules)


def generate(policy: PasswordPolicy, rules: PasswordRules) -> Sensitive:
    if not rules.min_length <= policy.length <= rules.max_length:
        raise ConfigurationError(
            "password policy: PASSWORD_LENGTH must be between "
            f"{rules.min_length} and {rules.max_length} for this engine"
        )
    classes = _included_classes(policy, rules)
    if not classes:
        raise ConfigurationError("password policy: the EXCLUDE_* settings leave no character to build a password from")
    required = set(rules.require_classes)
    if policy.require_each_included_type:
        required.update(classes)
    if len(required) > policy.length:
        raise ConfigurationError(
            "password policy: PASSWORD_LENGTH is shorter than the number of character types each password must include"
        )
    pool = "".join(classes.values())
    chars = [secrets.choice(classes[name]) for name in sorted(required)]
    chars += [secrets.choice(pool) for _ in range(policy.length - len(chars))]
    # Fisher-Yates with the CSPRNG, so the required characters are not at fixed places.
    for i in range(len(chars) - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        chars[i], chars[j] = chars[j], chars[i]
    return Sensitive("".join(chars))
