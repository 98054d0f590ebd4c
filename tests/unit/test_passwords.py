"""Password generation: AWS's GetRandomPassword semantics plus each engine's rules."""

from __future__ import annotations

import string

import pytest

from rotation_core import settings
from rotation_core.errors import ConfigurationError
from rotation_core.passwords import WHITESPACE_AND_CONTROL, PasswordRules, generate
from rotation_core.settings import PasswordPolicy

PG_RULES = PasswordRules(default_exclude=":/@\"'\\")


def test_default_policy_matches_aws_defaults() -> None:
    policy = settings.password_policy({})
    assert policy == PasswordPolicy(length=32, require_each_included_type=True)
    password = generate(policy, PG_RULES).reveal()
    assert len(password) == 32
    assert not set(password) & set(":/@\"'\\" + WHITESPACE_AND_CONTROL)
    for chars in (string.ascii_lowercase, string.ascii_uppercase, string.digits, string.punctuation):
        assert set(password) & set(chars), "each included type appears at least once"


def test_passwords_differ_and_use_the_whole_alphabet() -> None:
    policy = PasswordPolicy(length=64)
    seen = {generate(policy, PG_RULES).reveal() for _ in range(200)}
    assert len(seen) == 200
    used = set("".join(seen))
    allowed = set(string.ascii_letters + string.digits + string.punctuation) - set(":/@\"'\\")
    assert used == allowed


@pytest.mark.parametrize(
    ("env", "forbidden"),
    [
        ({"EXCLUDE_NUMBERS": "true"}, string.digits),
        ({"EXCLUDE_PUNCTUATION": "true"}, string.punctuation),
        ({"EXCLUDE_UPPERCASE": "yes"}, string.ascii_uppercase),
        ({"EXCLUDE_LOWERCASE": "1"}, string.ascii_lowercase),
        ({"EXCLUDE_CHARACTERS": "abcXYZ019"}, "abcXYZ019"),
    ],
)
def test_exclusions_are_honoured(env: dict[str, str], forbidden: str) -> None:
    policy = settings.password_policy(env)
    for _ in range(50):
        assert not set(generate(policy, PG_RULES).reveal()) & set(forbidden)


def test_user_exclusions_replace_the_engine_default_but_never_the_hard_rules() -> None:
    policy = settings.password_policy({"EXCLUDE_CHARACTERS": "x", "PASSWORD_LENGTH": "200"})
    rules = PasswordRules(default_exclude="@", always_exclude=" /")
    passwords = "".join(generate(policy, rules).reveal() for _ in range(50))
    assert "@" in passwords  # the engine's default exclusion was replaced by the user's
    assert "x" not in passwords
    assert " " not in passwords and "/" not in passwords


def test_engine_required_classes_apply_whatever_the_environment_says() -> None:
    rules = PasswordRules(require_classes=frozenset({"lower", "upper", "digits"}), min_length=8, max_length=64)
    policy = settings.password_policy({"EXCLUDE_NUMBERS": "true", "REQUIRE_EACH_INCLUDED_TYPE": "false"})
    for _ in range(50):
        password = generate(policy, rules).reveal()
        assert set(password) & set(string.digits)
        assert set(password) & set(string.ascii_uppercase)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PASSWORD_LENGTH": "0"}, "PASSWORD_LENGTH"),
        ({"PASSWORD_LENGTH": "ten"}, "PASSWORD_LENGTH"),
        ({"PASSWORD_LENGTH": "3"}, "PASSWORD_LENGTH is shorter"),
        ({"EXCLUDE_NUMBERS": "maybe"}, "EXCLUDE_NUMBERS"),
        (
            {
                "EXCLUDE_NUMBERS": "true",
                "EXCLUDE_PUNCTUATION": "true",
                "EXCLUDE_UPPERCASE": "true",
                "EXCLUDE_LOWERCASE": "true",
            },
            "no character",
        ),
        ({"EXCLUDE_CHARACTERS": string.printable}, "no character"),
    ],
)
def test_invalid_settings_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        generate(settings.password_policy(env), PG_RULES)


def test_engine_length_bounds() -> None:
    rules = PasswordRules(min_length=8, max_length=64)
    with pytest.raises(ConfigurationError, match="between 8 and 64"):
        generate(PasswordPolicy(length=65), rules)
    assert len(generate(PasswordPolicy(length=64), rules)) == 64
