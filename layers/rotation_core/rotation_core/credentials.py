"""The secret JSON of a database credential, parsed into a typed object and validated.

The format is AWS's (the same fields their rotation functions read), so existing secrets
work unchanged. Fields this project does not know are kept and written back untouched.
Errors name the field and the credential's role, never a value.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from rotation_core.errors import ConfigurationError
from rotation_core.values import Sensitive

_KNOWN = frozenset({"engine", "host", "port", "username", "password", "dbname", "masterarn", "ssl"})


@dataclass(frozen=True)
class Defaults:
    """An engine's defaults and limits for the secret's fields."""

    engines: frozenset[str]
    port: int
    dbname: str | None
    #: longest user name, in bytes of UTF-8 (PostgreSQL) or in characters (MySQL)
    max_username: int
    #: a different limit for some values of the "engine" field (MySQL 32, MariaDB 80)
    max_username_by_engine: Mapping[str, int] = field(default_factory=dict)
    username_unit: Literal["bytes", "characters"] = "bytes"

    def username_limit(self, engine: str) -> int:
        return self.max_username_by_engine.get(engine, self.max_username)

    def username_fits(self, username: str, engine: str) -> bool:
        size = len(username.encode()) if self.username_unit == "bytes" else len(username)
        return size <= self.username_limit(engine)

    def describe_limit(self, engine: str) -> str:
        return f"{self.username_limit(engine)} {self.username_unit}"


@dataclass(frozen=True)
class DatabaseSecret:
    engine: str
    host: str
    port: int
    username: str
    password: Sensitive
    dbname: str | None
    masterarn: str | None = None
    ssl: bool | None = None  # None: not set in the secret (TLS with verification, the default)
    # fields this project does not know: written back untouched, never shown by repr
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def with_login(self, username: str, password: Sensitive) -> DatabaseSecret:
        return replace(self, username=username, password=password)

    def to_json(self) -> str:
        """The secret JSON, with every field the source had (and only those, plus the login)."""
        doc: dict[str, Any] = dict(self.extra)
        doc.update(engine=self.engine, host=self.host, port=self.port, username=self.username)
        doc["password"] = self.password.reveal()
        if self.dbname is not None:
            doc["dbname"] = self.dbname
        if self.masterarn is not None:
            doc["masterarn"] = self.masterarn
        if self.ssl is not None:
            doc["ssl"] = self.ssl
        return json.dumps(doc)

    def same_target(self, other: DatabaseSecret) -> bool:
        return (self.host, self.port, self.dbname) == (other.host, other.port, other.dbname)

    def same_server(self, host: str, port: int) -> bool:
        """Whether this secret names the server at host:port (DNS names ignore case)."""
        return (self.host.rstrip(".").lower(), self.port) == (host.rstrip(".").lower(), port)


def writer_of(secret: DatabaseSecret) -> tuple[str, int] | None:
    """The primary of a read replica the secret names, from its optional fields
    'writer_host' and 'writer_port' (single user: where the password changes)."""
    host = _text(secret.extra, "writer_host", "current", required=False)
    if not host:
        if secret.extra.get("writer_port") is not None:
            raise ConfigurationError("field 'writer_port' of the current secret needs field 'writer_host'")
        return None
    try:
        port = _port({"port": secret.extra.get("writer_port")}, "current", secret.port)
    except ConfigurationError as exc:
        raise ConfigurationError(str(exc).replace("field 'port'", "field 'writer_port'")) from None
    return None if secret.same_server(host, port) else (host, port)


def load_document(text: str | None, role: str) -> dict[str, Any]:
    """The secret's JSON object, or a ConfigurationError naming the role (never the text)."""
    if text is None:
        raise ConfigurationError(f"the {role} secret has no SecretString (binary secrets are not supported)")
    try:
        doc = json.loads(text)
    except ValueError:
        raise ConfigurationError(f"the {role} secret is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ConfigurationError(f"the {role} secret must be a JSON object")
    return doc


def _text(doc: Mapping[str, Any], name: str, role: str, *, required: bool) -> str | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise ConfigurationError(f"the {role} secret is missing the field '{name}'")
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"field '{name}' of the {role} secret must be a string")
    if required and not value:
        raise ConfigurationError(f"field '{name}' of the {role} secret is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigurationError(f"field '{name}' of the {role} secret contains a control character")
    return value


def _port(doc: Mapping[str, Any], role: str, default: int) -> int:
    value = doc.get("port")
    if value is None:
        return default
    if isinstance(value, bool):
        raise ConfigurationError(f"field 'port' of the {role} secret must be a number")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise ConfigurationError(f"field 'port' of the {role} secret must be a number")
    if not 1 <= value <= 65535:
        raise ConfigurationError(f"field 'port' of the {role} secret must be between 1 and 65535")
    return value


def _ssl(doc: Mapping[str, Any], role: str) -> bool | None:
    value = doc.get("ssl")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigurationError(f"field 'ssl' of the {role} secret must be true or false")


def _username(doc: Mapping[str, Any], role: str, defaults: Defaults, engine: str) -> str:
    username = _text(doc, "username", role, required=True) or ""
    if not defaults.username_fits(username, engine):
        raise ConfigurationError(
            f"field 'username' of the {role} secret is longer than this engine allows "
            f"({defaults.describe_limit(engine)})"
        )
    return username


def _password(doc: Mapping[str, Any], role: str) -> Sensitive:
    value = doc.get("password")
    if value is None:
        raise ConfigurationError(f"the {role} secret is missing the field 'password'")
    if not isinstance(value, str):
        raise ConfigurationError(f"field 'password' of the {role} secret must be a string")
    if not value:
        raise ConfigurationError(f"field 'password' of the {role} secret is empty")
    return Sensitive(value)


def _engine(doc: Mapping[str, Any], role: str, engines: Collection[str]) -> str:
    engine = _text(doc, "engine", role, required=True) or ""
    if engine not in engines:
        allowed = ", ".join(sorted(engines))
        raise ConfigurationError(f"field 'engine' of the {role} secret must be one of: {allowed}")
    return engine


def parse(text: str | None, role: str, defaults: Defaults) -> DatabaseSecret:
    """Parse the rotated secret (role: current, pending or previous)."""
    doc = load_document(text, role)
    engine = _engine(doc, role, defaults.engines)
    masterarn = _text(doc, "masterarn", role, required=False)
    dbname = _text(doc, "dbname", role, required=False)
    return DatabaseSecret(
        engine=engine,
        host=_text(doc, "host", role, required=True) or "",
        port=_port(doc, role, defaults.port),
        username=_username(doc, role, defaults, engine),
        password=_password(doc, role),
        dbname=dbname or defaults.dbname,
        masterarn=masterarn or None,
        ssl=_ssl(doc, role),
        extra={k: v for k, v in doc.items() if k not in _KNOWN},
    )


@dataclass(frozen=True)
class MasterSecret:
    """The master (superuser) secret that `masterarn` names, as it is written: where it
    says its database is (host, port; None when it does not say, as the secrets RDS and
    Redshift manage hold only username and password) and whether it turns TLS off."""

    username: str
    password: Sensitive
    host: str | None
    port: int | None
    ssl: bool | None
    engine: str | None

    def login(self, host: str, port: int, dbname: str | None, *, ssl: bool | None) -> DatabaseSecret:
        """The master's login to host:port (a trusted target: see rotation_core.targets)."""
        return DatabaseSecret(
            engine=self.engine or "",
            host=host,
            port=port,
            username=self.username,
            password=self.password,
            dbname=dbname,
            ssl=ssl,
        )


def parse_master(text: str | None, defaults: Defaults, engine: str) -> MasterSecret:
    """Parse the master (superuser) secret that masterarn names. Nothing in it comes from
    the rotated secret: where the master connects is decided by rotation_core.targets."""
    role = "master"
    doc = load_document(text, role)
    master_engine = _engine(doc, role, defaults.engines) if doc.get("engine") is not None else None
    return MasterSecret(
        username=_username(doc, role, defaults, master_engine or engine),
        password=_password(doc, role),
        host=_text(doc, "host", role, required=False) or None,
        port=_port(doc, role, defaults.port) if doc.get("port") is not None else None,
        ssl=_ssl(doc, role),
        engine=master_engine or engine,
    )
