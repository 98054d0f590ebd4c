"""Configuration: every environment variable the functions read, parsed once at the edge.

Engines and strategies never read the environment; they receive these typed objects.
The variable names are AWS's own (their rotation functions read the same ones), so a
function of this project can replace AWS's without touching its configuration.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from rotation_core import trust
from rotation_core.errors import ConfigurationError

# Password policy, as AWS's rotation functions read it (GetRandomPassword's parameters).
PASSWORD_LENGTH = "PASSWORD_LENGTH"  # noqa: S105 - a variable name
EXCLUDE_CHARACTERS = "EXCLUDE_CHARACTERS"
EXCLUDE_NUMBERS = "EXCLUDE_NUMBERS"
EXCLUDE_PUNCTUATION = "EXCLUDE_PUNCTUATION"
EXCLUDE_UPPERCASE = "EXCLUDE_UPPERCASE"
EXCLUDE_LOWERCASE = "EXCLUDE_LOWERCASE"
REQUIRE_EACH_INCLUDED_TYPE = "REQUIRE_EACH_INCLUDED_TYPE"
# Strategy override: single-user | alternating-users | auto (masterarn decides).
ROTATION_STRATEGY = "ROTATION_STRATEGY"
# TLS and connections.
DB_CA_BUNDLE = "DB_CA_BUNDLE"
CONNECT_TIMEOUT = "CONNECT_TIMEOUT"
# The master credential travels over verified TLS only. An operator (never a secret) may
# let a master secret's own `"ssl": false` turn TLS off, for a server without TLS.
ALLOW_PLAINTEXT_MASTER = "ALLOW_PLAINTEXT_MASTER"
# A secret naming a read replica: how long setSecret waits for the replica to accept the new
# password (seconds, within the function's 30 s timeout).
REPLICA_WAIT = "REPLICA_WAIT"
DEFAULT_REPLICA_WAIT = 15
# The other secrets a rotated secret may name (masterarn, an API provider's admin or verify
# secret), comma-separated ARNs. When set, any other is refused, so that a rotated secret
# cannot name, say, another secret this function rotates. The stack sets it from the same
# parameters that grant the function read access to them.
TRUSTED_SECRET_ARNS = "TRUSTED_SECRET_ARNS"  # noqa: S105 - a variable name
# MySQL alternating users: privileges (comma-separated names, e.g. BACKUP_ADMIN,FILE) the
# master user may not grant that the clone is copied without, instead of failing setSecret.
SKIP_UNGRANTABLE_PRIVILEGES = "SKIP_UNGRANTABLE_PRIVILEGES"
# HTTP providers (API keys): the read timeout of each request, and the time budget of one
# step for all its provider calls, retries and Retry-After waits included (connecting is
# bounded by CONNECT_TIMEOUT). The budget stays below the function's 30 s timeout.
HTTP_READ_TIMEOUT = "HTTP_READ_TIMEOUT"
HTTP_TIME_BUDGET = "HTTP_TIME_BUDGET"
# Secrets Manager endpoint: AWS's variable. boto3 itself also honours
# AWS_ENDPOINT_URL_SECRETS_MANAGER and AWS_ENDPOINT_URL, which take precedence.
SECRETS_MANAGER_ENDPOINT = "SECRETS_MANAGER_ENDPOINT"
STANDARD_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL")
# Powertools' own variables, read by Powertools (listed here so they are in one place).
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
POWERTOOLS_TRACE_DISABLED = "POWERTOOLS_TRACE_DISABLED"

# Where the system CA store is, when DB_CA_BUNDLE is not set: SSL_CERT_FILE (OpenSSL's
# variable), then the usual files (Amazon Linux 2023, which Lambda runs, first). The default
# trust is that store plus the Amazon RDS CA bundle when the built layer carries one
# (trust.default_trust: `make build` puts it there; docs/tls.md).
SSL_CERT_FILE = "SSL_CERT_FILE"
SYSTEM_CA_FILES = (
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/cert.pem",
)

DEFAULT_PASSWORD_LENGTH = 32
DEFAULT_CONNECT_TIMEOUT = 5
DEFAULT_HTTP_READ_TIMEOUT = 10
DEFAULT_HTTP_TIME_BUDGET = 20
DEFAULT_SERVICE_NAME = "secrets-manager-rotation"
DEFAULT_METRICS_NAMESPACE = "SecretsManagerRotation"
MAX_PASSWORD_LENGTH = 4096  # GetRandomPassword's own limit

_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n", ""})


class Strategy(enum.Enum):
    AUTO = "auto"
    SINGLE_USER = "single-user"
    ALTERNATING_USERS = "alternating-users"


@dataclass(frozen=True)
class PasswordPolicy:
    """What the user asked for through the environment (engine rules are applied on top)."""

    length: int = DEFAULT_PASSWORD_LENGTH
    exclude_characters: str | None = None  # None: the engine's default exclusions
    exclude_numbers: bool = False
    exclude_punctuation: bool = False
    exclude_uppercase: bool = False
    exclude_lowercase: bool = False
    require_each_included_type: bool = True


@dataclass(frozen=True)
class ConnectionSettings:
    ca_bundle: str | None = None  # a PEM file; None: no system store was found (driver default)
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    skip_privileges: frozenset[str] = frozenset()  # SKIP_UNGRANTABLE_PRIVILEGES, upper case
    ca_source: str = ""  # what ca_bundle holds, for messages (trust.describe_tls_failure)


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts of the calls to an HTTP provider, in seconds."""

    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    read_timeout: int = DEFAULT_HTTP_READ_TIMEOUT
    time_budget: int = DEFAULT_HTTP_TIME_BUDGET


@dataclass(frozen=True)
class Settings:
    strategy: Strategy
    connection: ConnectionSettings
    secrets_manager_endpoint: str | None
    allow_plaintext_master: bool = False
    replica_wait: int = DEFAULT_REPLICA_WAIT
    trusted_secret_arns: frozenset[str] | None = None  # None: not set (IAM alone decides)


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"environment variable {name} must be true or false")


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigurationError(f"environment variable {name} must be a whole number") from None
    if not low <= value <= high:
        raise ConfigurationError(f"environment variable {name} must be between {low} and {high}")
    return value


_PRIVILEGE_NAME = re.compile(r"[A-Z][A-Z_]*(?: [A-Z][A-Z_]*)*")


def _privilege_names(env: Mapping[str, str], name: str) -> frozenset[str]:
    """A comma-separated list of privilege names (MySQL's spelling: BACKUP_ADMIN, SHOW VIEW)."""
    names = set()
    for part in env.get(name, "").split(","):
        privilege = " ".join(part.split()).upper()
        if not privilege:
            continue
        if not _PRIVILEGE_NAME.fullmatch(privilege):
            raise ConfigurationError(
                f"environment variable {name} must be a comma-separated list of privilege names, e.g. BACKUP_ADMIN,FILE"
            )
        names.add(privilege)
    return frozenset(names)


def password_policy(env: Mapping[str, str]) -> PasswordPolicy:
    """Read the password policy; called by createSecret only, before anything is written."""
    return PasswordPolicy(
        length=_integer(env, PASSWORD_LENGTH, DEFAULT_PASSWORD_LENGTH, 1, MAX_PASSWORD_LENGTH),
        exclude_characters=env.get(EXCLUDE_CHARACTERS),
        exclude_numbers=_flag(env, EXCLUDE_NUMBERS, default=False),
        exclude_punctuation=_flag(env, EXCLUDE_PUNCTUATION, default=False),
        exclude_uppercase=_flag(env, EXCLUDE_UPPERCASE, default=False),
        exclude_lowercase=_flag(env, EXCLUDE_LOWERCASE, default=False),
        require_each_included_type=_flag(env, REQUIRE_EACH_INCLUDED_TYPE, default=True),
    )


def http_settings(env: Mapping[str, str]) -> HttpSettings:
    """Read the HTTP provider timeouts; called by the functions that call one (API keys)."""
    return HttpSettings(
        connect_timeout=_integer(env, CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, 1, 300),
        read_timeout=_integer(env, HTTP_READ_TIMEOUT, DEFAULT_HTTP_READ_TIMEOUT, 1, 300),
        time_budget=_integer(env, HTTP_TIME_BUDGET, DEFAULT_HTTP_TIME_BUDGET, 1, 900),
    )


def load(env: Mapping[str, str]) -> Settings:
    raw_strategy = env.get(ROTATION_STRATEGY, "").strip().lower() or Strategy.AUTO.value
    try:
        strategy = Strategy(raw_strategy)
    except ValueError:
        allowed = ", ".join(s.value for s in Strategy)
        raise ConfigurationError(f"environment variable {ROTATION_STRATEGY} must be one of {allowed}") from None
    ca_bundle = env.get(DB_CA_BUNDLE, "").strip() or None
    if ca_bundle is not None and not os.path.isfile(ca_bundle):
        raise ConfigurationError(f"environment variable {DB_CA_BUNDLE} names a file that does not exist")
    if ca_bundle is not None:
        ca_source = f"{DB_CA_BUNDLE}={ca_bundle}"
    else:
        candidates = (env.get(SSL_CERT_FILE, "").strip(), *SYSTEM_CA_FILES)
        system_ca_file = next((path for path in candidates if path and os.path.isfile(path)), None)
        default = trust.default_trust(system_ca_file)
        ca_bundle, ca_source = default.ca_file, default.source
    return Settings(
        strategy=strategy,
        connection=ConnectionSettings(
            ca_bundle=ca_bundle,
            ca_source=ca_source,
            connect_timeout=_integer(env, CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, 1, 300),
            skip_privileges=_privilege_names(env, SKIP_UNGRANTABLE_PRIVILEGES),
        ),
        secrets_manager_endpoint=secrets_manager_endpoint(env),
        allow_plaintext_master=_flag(env, ALLOW_PLAINTEXT_MASTER, default=False),
        replica_wait=_integer(env, REPLICA_WAIT, DEFAULT_REPLICA_WAIT, 0, 25),
        trusted_secret_arns=_arns(env, TRUSTED_SECRET_ARNS),
    )


_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@!-]+(-\?{6})?")


def _arns(env: Mapping[str, str], name: str) -> frozenset[str] | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    arns = frozenset(part.strip() for part in raw.split(",") if part.strip())
    if not all(_SECRET_ARN.fullmatch(arn) for arn in arns):
        raise ConfigurationError(f"environment variable {name} must list secret ARNs, separated by commas")
    return arns


def is_trusted(secret_id: str, trusted: frozenset[str]) -> bool:
    """Whether secret_id names one of the trusted secrets: by the same full ARN, or by that
    ARN without the 6-character suffix Secrets Manager appends (a partial ARN); an entry
    ending in -?????? (the stack's form for "any suffix") stands for both. Nothing looser:
    a partial ARN is resolved by name, so matching suffixes away on both sides would let
    `...:secret:admin-XyZ123` (another secret) pass for `...:secret:admin-AbCdEf`."""
    for arn in trusted:
        if arn.endswith("-??????"):
            name = arn[:-7]
            if secret_id == name or re.fullmatch(re.escape(name) + r"-[A-Za-z0-9]{6}", secret_id):
                return True
        elif secret_id in (arn, re.sub(r"-[A-Za-z0-9]{6}$", "", arn)):
            return True
    return False


def secrets_manager_endpoint(env: Mapping[str, str]) -> str | None:
    """SECRETS_MANAGER_ENDPOINT, unless boto3's own variables name one (None: boto3 decides)."""
    if any(env.get(name) for name in STANDARD_ENDPOINT_VARIABLES):
        return None
    return env.get(SECRETS_MANAGER_ENDPOINT, "").strip() or None
