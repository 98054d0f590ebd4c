"""API key rotation function: keys the function generates, or keys an HTTP provider issues.

The whole engine, top to bottom: the secret's format, the HTTP calls to a provider, and the
four steps. The rotation protocol (events, stages, Secrets Manager) lives in rotation_core.

The secret (JSON; fields this function does not know are kept and written back untouched)
-----------------------------------------------------------------------------------------
Every secret has ``"mode"`` (``"generated"`` or ``"issued"``) and ``"key"`` (the API key).

generated: the function makes the next key with the ``secrets`` module::

    {"mode": "generated", "key": "sk_live_...",
     "generate": {"prefix": "sk_live_", "length": 40, "alphabet": "base62"},
     "verify": {"url": "https://billing.example.com/v1/ping", "auth": {"type": "bearer"}}}

  ``generate`` is optional (defaults: no prefix, 40 characters of base62); alphabets:
  base62, hex, base64url, base32; the random part must carry at least 128 bits. The
  services that accept the key read it from Secrets Manager and accept AWSCURRENT,
  AWSPENDING and AWSPREVIOUS, so no client is refused during a rotation. ``verify`` is
  optional: testSecret calls it with the pending key; without it, testSecret checks the
  pending key's format only.

issued: a provider's admin API issues and revokes keys; the provider is described by data::

    {"mode": "issued", "key": "...", "key_id": "k_123",
     "provider": {
       "admin_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:acme-admin-AbCdEf",
       "admin_auth": {"type": "bearer"},
       "label_prefix": "orders-api-",
       "issue":  {"method": "POST", "url": "https://api.acme.example/v1/keys",
                  "body": {"name": "{label}"}, "key_path": "data.secret", "id_path": "data.id",
                  "idempotency_header": "Idempotency-Key"},
       "list":   {"method": "GET", "url": "https://api.acme.example/v1/keys?prefix={label_prefix}",
                  "items_path": "data", "id_path": "id", "label_path": "name"},
       "revoke": {"method": "DELETE", "url": "https://api.acme.example/v1/keys/{key_id}"},
       "verify": {"method": "GET", "url": "https://api.acme.example/v1/me",
                  "auth": {"type": "header", "name": "X-Api-Key"}}}}

  - ``key_id``: the provider's id of the key (required: it is how the key is revoked later).
    The function also writes ``previous_key_id``: the id of the key this version replaced.
  - Endpoints: ``method`` (GET, POST, PUT, PATCH, DELETE; defaults POST for issue, DELETE for
    revoke, GET otherwise), ``url``, optional ``body`` (JSON, sent as application/json) and
    ``headers`` (static, non-secret). Placeholders, in the path, query and body only: issue
    ``{label}``, list ``{label_prefix}``, revoke and verify ``{key_id}``. The key itself never
    goes in a URL. Responses are JSON; ``*_path`` fields are dotted paths (``data.0.id``;
    ``items_path`` may be ``""`` for a top-level array).
  - ``auth`` (of verify: how the key is presented; default bearer) and ``admin_auth``:
    ``{"type": "bearer"}``, ``{"type": "header", "name": "X-Api-Key", "prefix": ""}`` or
    ``{"type": "basic", "username": "api"}`` (the credential is the password; without
    ``username`` it is the user name, with an empty password).
  - The admin credential lives in another secret, ``admin_secret_arn``, never in the rotated
    one: ``{"token": "...", "hosts": ["api.acme.example"]}`` (or ``"username"`` and
    ``"password"`` for basic). ``hosts`` lists where the credential may be sent, so that
    whoever can write the rotated secret cannot send the admin credential elsewhere.
  - URLs are https; http only to loopback addresses (127.0.0.0/8, ::1, localhost), for tests.
    Redirects are not followed.

Issued keys: idempotency and cleanup
------------------------------------
Every key the function issues is labelled ``<label_prefix><ClientRequestToken>``; the
default prefix, ``sm-<10 hex digits of the secret ARN's SHA-256>-``, is unique per secret
(a custom ``label_prefix`` must be too: keys under it are this secret's).

- createSecret, retried with the same token after a key was issued but not stored: with
  ``idempotency_header`` the label goes in that header and the provider answers the retry
  with the key it issued the first time (no second key); without it, createSecret first
  lists the keys, revokes those carrying this rotation's label (issued, never stored, so
  held by no one), then issues one.
- testSecret checks that the provider lists the pending key under its label (so the
  cleanup below can see this rotation's keys), then calls ``verify`` with the pending key.
- finishSecret, after AWSCURRENT moved: revokes the key two rotations old (the new
  AWSPREVIOUS version's ``previous_key_id``) and every key labelled with this secret's
  prefix that is neither AWSCURRENT, AWSPREVIOUS nor a rotation in progress (orphans of
  failed or abandoned attempts). A revoke answered 404 or 410 is a success. The key
  applications held until a moment ago (now AWSPREVIOUS) stays valid until the next rotation.
- finishSecret invoked again once the token is AWSCURRENT (a retry after a failed revoke)
  runs the same cleanup, from the stages as they are now: revocation is retried until it
  succeeds, and only ever touches keys that are neither AWSCURRENT nor AWSPREVIOUS.

HTTP
----
urllib3 (shipped with botocore in the Lambda runtime) with one connection pool per execution
environment; TLS verified against the system trust store. 500, 502, 503, 504, 429,
timeouts and broken connections are retried by urllib3's Retry (up to 5 attempts, backoff
0, 1, 2, 4 s), honouring Retry-After; any other status fails the step at once (401 and 403
as an authentication error), naming the endpoint, method, host and status. Each
step has a time budget for all its provider calls (HTTP_TIME_BUDGET, default 20 s, below the
function's 30 s timeout): no attempt, backoff or Retry-After wait goes past it, and a
Retry-After beyond it fails the step at once. Each request also has a connect timeout
(CONNECT_TIMEOUT, 5 s) and a read timeout (HTTP_READ_TIMEOUT, 10 s). Response bodies, keys
and the admin credential are never logged and never appear in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import math
import re
import secrets
import string
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InvalidHeader,
    LocationParseError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)
from urllib3.util import Retry, Timeout, parse_url

from rotation_core import (
    AuthenticationError,
    ConfigurationError,
    Rotation,
    Sensitive,
    StepContext,
    UnreachableError,
    rotation_handler,
)
from rotation_core import settings as config
from rotation_core.credentials import load_document
from rotation_core.observability import logger
from rotation_core.protocol import PENDING, PREVIOUS
from rotation_core.settings import HttpSettings

if TYPE_CHECKING:  # urllib3 2.x names; the code also runs on the 1.26 line
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

GENERATED = "generated"
ISSUED = "issued"
ALPHABETS = {
    "base62": string.digits + string.ascii_letters,
    "hex": string.digits + "abcdef",
    "base64url": string.ascii_letters + string.digits + "-_",
    "base32": string.ascii_uppercase + "234567",
}
DEFAULT_LENGTH = 40
DEFAULT_ALPHABET = "base62"
MIN_ENTROPY_BITS = 128
MAX_LENGTH = 1024
MAX_PREFIX = 64
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# Which placeholders each endpoint's URL and body may use.
PLACEHOLDERS = {
    "issue": frozenset({"label"}),
    "list": frozenset({"label_prefix"}),
    "revoke": frozenset({"key_id"}),
    "verify": frozenset({"key_id"}),
}
DEFAULT_METHODS = {"issue": "POST", "list": "GET", "revoke": "DELETE", "verify": "GET"}
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
GONE = frozenset({404, 410})  # a revoke answered with these: the key no longer exists
MAX_ATTEMPTS = 5
BACKOFF_FACTOR = 0.5  # urllib3: no wait before the first retry, then 1 s, 2 s, 4 s...
MAX_RESPONSE_BYTES = 1024 * 1024
USER_AGENT = "secrets-manager-rotation/api-key"
SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[^\s]+")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
_TOKEN_LENGTHS = range(32, 65)  # a ClientRequestToken: 32 to 64 characters


# -- the secret ------------------------------------------------------------------------------
def _has_control(value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


def _visible(value: str, *, spaces: bool = False) -> bool:
    """Printable ASCII only: what can go in an HTTP header as it is."""
    return all(33 <= ord(c) <= 126 or (spaces and c == " ") for c in value)


class _Fields:
    """Typed reads of one JSON object of a secret; errors name the field, never a value."""

    def __init__(self, doc: object, path: str, role: str) -> None:
        if not isinstance(doc, dict):
            raise ConfigurationError(f"field '{path}' of the {role} secret must be a JSON object")
        self.doc: dict[str, Any] = doc
        self.path = path
        self.role = role

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"field '{self.name(key)}' of the {self.role} secret {problem}")

    def text(self, key: str, default: str | None = None, *, required: bool = True, empty: bool = False) -> str:
        value = self.doc.get(key)
        if value is None:
            if default is not None or not required:
                return default or ""
            raise ConfigurationError(f"the {self.role} secret is missing the field '{self.name(key)}'")
        if not isinstance(value, str):
            raise self.error(key, "must be a string")
        if not value and not empty:
            raise self.error(key, "is empty")
        if _has_control(value):
            raise self.error(key, "contains a control character")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key, required=False) or None

    def header_text(self, key: str, *, required: bool = True, empty: bool = False) -> str:
        """Text that is sent in an HTTP header: printable ASCII (spaces only where empty is allowed)."""
        value = self.text(key, required=required, empty=empty)
        if not _visible(value, spaces=empty):
            raise self.error(key, "must be printable ASCII (it is sent in an HTTP header)")
        return value

    def integer(self, key: str, default: int) -> int:
        value = self.doc.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "must be a whole number")
        return value

    def child(self, key: str) -> _Fields:
        if self.doc.get(key) is None:
            raise ConfigurationError(f"the {self.role} secret is missing the field '{self.name(key)}'")
        return _Fields(self.doc[key], self.name(key), self.role)

    def optional_child(self, key: str) -> _Fields | None:
        return None if self.doc.get(key) is None else self.child(key)


@dataclass(frozen=True)
class KeyFormat:
    prefix: str = ""
    length: int = DEFAULT_LENGTH
    alphabet: str = DEFAULT_ALPHABET

    def generate(self) -> Sensitive:
        chars = ALPHABETS[self.alphabet]
        return Sensitive(self.prefix + "".join(secrets.choice(chars) for _ in range(self.length)))

    def matches(self, key: Sensitive) -> bool:
        value = key.reveal()
        body = value[len(self.prefix) :]
        chars = set(ALPHABETS[self.alphabet])
        return value.startswith(self.prefix) and len(body) == self.length and set(body) <= chars


def _key_format(fields: _Fields | None) -> KeyFormat:
    if fields is None:
        return KeyFormat()
    prefix = fields.text("prefix", required=False, empty=True)
    if len(prefix) > MAX_PREFIX or not _visible(prefix):
        raise fields.error("prefix", f"must be at most {MAX_PREFIX} visible ASCII characters")
    alphabet = fields.text("alphabet", DEFAULT_ALPHABET)
    if alphabet not in ALPHABETS:
        raise fields.error("alphabet", f"must be one of: {', '.join(ALPHABETS)}")
    length = fields.integer("length", DEFAULT_LENGTH)
    if not 1 <= length <= MAX_LENGTH:
        raise fields.error("length", f"must be between 1 and {MAX_LENGTH}")
    if length * math.log2(len(ALPHABETS[alphabet])) < MIN_ENTROPY_BITS:
        raise fields.error("length", f"is too short: the random part must carry at least {MIN_ENTROPY_BITS} bits")
    return KeyFormat(prefix, length, alphabet)


@dataclass(frozen=True)
class Auth:
    """Where a credential goes: bearer, a named header (with a prefix), or HTTP Basic."""

    kind: str
    header: str = "Authorization"
    prefix: str = ""
    username: str | None = None

    def headers(self, credential: Credential) -> dict[str, str]:
        secret = credential.secret.reveal()
        if self.kind == "basic":
            if credential.username is not None:
                user, password = credential.username, secret
            elif self.username is not None:
                user, password = self.username, secret
            else:
                user, password = secret, ""
            pair = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        if self.kind == "bearer":
            return {"Authorization": f"Bearer {secret}"}
        return {self.header: self.prefix + secret}


def _auth(fields: _Fields) -> Auth:
    kind = fields.text("type")
    if kind == "bearer":
        return Auth("bearer")
    if kind == "header":
        name = fields.text("name")
        if not HEADER_NAME.fullmatch(name):
            raise fields.error("name", "is not a valid HTTP header name")
        return Auth("header", header=name, prefix=fields.header_text("prefix", required=False, empty=True))
    if kind == "basic":
        username = fields.optional_text("username")
        if username is not None and ":" in username:
            raise fields.error("username", "must not contain ':'")
        return Auth("basic", username=username)
    raise fields.error("type", "must be one of: bearer, header, basic")


@dataclass(frozen=True)
class Credential:
    """A key or an admin token; or, for basic, an admin user name and its password."""

    secret: Sensitive
    username: str | None = None


def _dig(doc: Any, path: str) -> Any:
    """The value at a dotted path ("data.0.id"), or None."""
    for part in path.split(".") if path else ():
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _substitute(text: str, values: Mapping[str, str], encode: bool) -> str:
    return _PLACEHOLDER.sub(lambda m: quote(values[m.group(1)], safe="") if encode else values[m.group(1)], text)


def _template_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _template_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _template_strings(item)


def _fill(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return _substitute(node, values, encode=False)
    if isinstance(node, dict):
        return {_fill(k, values): _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    return node


@dataclass(frozen=True)
class Endpoint:
    """One call of the provider's API, as the secret describes it."""

    name: str  # issue, list, revoke, verify
    source: str  # the field that describes it: "provider.issue", "verify"...
    method: str
    url: str  # a template
    host: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: Auth = Auth("bearer")  # verify: how the key is presented
    paths: Mapping[str, str] = field(default_factory=dict)  # key_path, id_path, items_path, label_path
    idempotency_header: str | None = None

    def where(self) -> str:
        return f"the provider's '{self.name}' endpoint ({self.method} {self.host})"

    def url_for(self, values: Mapping[str, str]) -> str:
        return _substitute(self.url, values, encode=True)

    def body_for(self, values: Mapping[str, str]) -> bytes | None:
        return None if self.body is None else json.dumps(_fill(self.body, values)).encode()


def _url(fields: _Fields, allowed: frozenset[str]) -> tuple[str, str]:
    url = fields.text("url")
    if set(_PLACEHOLDER.findall(url)) - allowed:
        names = ", ".join(f"{{{n}}}" for n in sorted(allowed)) or "none"
        raise fields.error("url", f"uses an unknown placeholder (allowed here: {names})")
    authority = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0]
    if "{" in authority:
        raise fields.error("url", "may have placeholders only in its path and query")
    try:
        parsed = parse_url(_PLACEHOLDER.sub("x", url))
    except LocationParseError:
        raise fields.error("url", "is not a valid URL") from None
    if not parsed.host or parsed.scheme not in ("https", "http"):
        raise fields.error("url", "must be an absolute https URL")
    if parsed.auth or parsed.fragment is not None:
        raise fields.error("url", "must not contain a user name, password or fragment")
    if parsed.scheme == "http" and not _is_loopback(parsed.host):
        raise fields.error("url", "must be an https URL (http is accepted only for loopback addresses)")
    return url, parsed.host.strip("[]").lower()


def _headers(fields: _Fields) -> dict[str, str]:
    raw = fields.optional_child("headers")
    if raw is None:
        return {}
    for name in raw.doc:
        if not HEADER_NAME.fullmatch(name):
            raise raw.error(name, "is not a valid HTTP header name")
        raw.header_text(name, empty=True)
    return dict(raw.doc)


def _path(fields: _Fields, key: str, *, empty: bool = False) -> str:
    path = fields.text(key, empty=empty)
    if path and any(not part for part in path.split(".")):
        raise fields.error(key, "must be a dotted path such as 'data.id'")
    return path


def _endpoint(fields: _Fields, name: str) -> Endpoint:
    method = fields.text("method", DEFAULT_METHODS[name]).upper()
    if method not in METHODS:
        raise fields.error("method", f"must be one of: {', '.join(sorted(METHODS))}")
    url, host = _url(fields, PLACEHOLDERS[name])
    body = fields.doc.get("body")
    for text in _template_strings(body):
        if set(_PLACEHOLDER.findall(text)) - PLACEHOLDERS[name]:
            raise fields.error("body", "uses an unknown placeholder")
    paths: dict[str, str] = {}
    if name == "issue":
        paths = {"key_path": _path(fields, "key_path"), "id_path": _path(fields, "id_path")}
        if paths["key_path"] == paths["id_path"]:
            raise fields.error("id_path", "must differ from 'key_path' (the id goes in URLs and logs)")
    elif name == "list":
        paths = {key: _path(fields, key) for key in ("id_path", "label_path")}
        paths["items_path"] = _path(fields, "items_path", empty=True)
    idempotency = fields.optional_text("idempotency_header") if name == "issue" else None
    if idempotency is not None and not HEADER_NAME.fullmatch(idempotency):
        raise fields.error("idempotency_header", "is not a valid HTTP header name")
    auth_fields = fields.optional_child("auth") if name == "verify" else None
    return Endpoint(
        name=name,
        source=fields.path,
        method=method,
        url=url,
        host=host,
        body=body,
        headers=_headers(fields),
        auth=_auth(auth_fields) if auth_fields is not None else Auth("bearer"),
        paths=paths,
        idempotency_header=idempotency,
    )


@dataclass(frozen=True)
class Provider:
    admin_secret_arn: str
    admin_auth: Auth
    label_prefix: str
    issue: Endpoint
    listing: Endpoint
    revoke: Endpoint
    verify: Endpoint

    def label(self, token: str) -> str:
        return self.label_prefix + token

    def owns(self, label: str | None) -> bool:
        """Whether a key with this label was issued by a rotation of this secret."""
        if label is None or not label.startswith(self.label_prefix):
            return False
        return len(label) - len(self.label_prefix) in _TOKEN_LENGTHS

    def admin_endpoints(self) -> tuple[Endpoint, ...]:
        return (self.issue, self.listing, self.revoke)


def _provider(fields: _Fields, secret_arn: str) -> Provider:
    arn = fields.text("admin_secret_arn")
    if not SECRET_ARN.fullmatch(arn):
        raise fields.error("admin_secret_arn", "must be the ARN of a Secrets Manager secret")
    if arn in (secret_arn, secret_arn[:-7]):
        raise fields.error("admin_secret_arn", "must name another secret: the admin credential is never kept here")
    default_prefix = f"sm-{hashlib.sha256(secret_arn.encode()).hexdigest()[:10]}-"
    label_prefix = fields.text("label_prefix", default_prefix)
    if len(label_prefix) > MAX_PREFIX:
        raise fields.error("label_prefix", f"must be at most {MAX_PREFIX} characters")
    issue, listing, revoke, verify = (_endpoint(fields.child(n), n) for n in ("issue", "list", "revoke", "verify"))
    if "{key_id}" not in revoke.url and "{key_id}" not in json.dumps(revoke.body):
        raise fields.error("revoke", "must name the key with the placeholder {key_id} in its url or body")
    return Provider(arn, _auth(fields.child("admin_auth")), label_prefix, issue, listing, revoke, verify)


@dataclass(frozen=True)
class ApiKeySecret:
    mode: str
    key: Sensitive
    # the whole JSON (the key included): written back untouched, never shown by repr
    doc: Mapping[str, Any] = field(repr=False)
    key_id: str | None = None
    previous_key_id: str | None = None
    key_format: KeyFormat = KeyFormat()
    verify: Endpoint | None = None
    provider: Provider | None = None

    def with_key(self, key: Sensitive, key_id: str | None = None) -> str:
        """The JSON of the next version: this one with a new key (and its id)."""
        doc = dict(self.doc)
        doc["key"] = key.reveal()
        if self.mode == ISSUED:
            doc["key_id"] = key_id
            doc["previous_key_id"] = self.key_id
        return json.dumps(doc)


def parse(text: str | None, role: str, secret_arn: str) -> ApiKeySecret:
    """Parse and validate the rotated secret (role: current or pending)."""
    doc = load_document(text, role)
    fields = _Fields(doc, "", role)
    mode = fields.text("mode")
    key = Sensitive(fields.header_text("key"))
    if mode == GENERATED:
        verify = fields.optional_child("verify")
        return ApiKeySecret(
            mode,
            key,
            doc,
            key_format=_key_format(fields.optional_child("generate")),
            verify=_endpoint(verify, "verify") if verify is not None else None,
        )
    if mode == ISSUED:
        provider = _provider(fields.child("provider"), secret_arn)
        key_id = _key_id(doc.get("key_id"))
        if key_id is None:
            raise fields.error("key_id", "must be the provider's id of the key (a string or a number)")
        previous_key_id = _key_id(doc.get("previous_key_id"))
        return ApiKeySecret(mode, key, doc, key_id, previous_key_id, verify=provider.verify, provider=provider)
    raise fields.error("mode", f"must be one of: {GENERATED}, {ISSUED}")


def _key_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


def _ids(text: str | None) -> tuple[str | None, str | None]:
    """(key_id, previous_key_id) of a version, read leniently: it may be in an older format."""
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    return _key_id(doc.get("key_id")), _key_id(doc.get("previous_key_id"))


def parse_admin(text: str, provider: Provider) -> Credential:
    """The admin secret: {"token": ..., "hosts": [...]} or {"username", "password", "hosts"}."""
    role = "admin"
    fields = _Fields(load_document(text, role), "", role)
    hosts = fields.doc.get("hosts")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise fields.error("hosts", "must list the host names the admin credential may be sent to")
    allowed = {h.strip().lower() for h in hosts}
    for endpoint in provider.admin_endpoints():
        if endpoint.host not in allowed:
            raise ConfigurationError(
                f"field '{endpoint.source}.url' of the current secret names a host that "
                "field 'hosts' of the admin secret does not list"
            )
    username = fields.optional_text("username")
    if provider.admin_auth.kind == "basic" and username is not None and fields.doc.get("password") is not None:
        if ":" in username:
            raise fields.error("username", "must not contain ':'")
        return Credential(Sensitive(fields.text("password")), username)
    if fields.doc.get("token") is None:
        raise ConfigurationError("the admin secret is missing the field 'token' (needed by 'provider.admin_auth')")
    return Credential(Sensitive(fields.header_text("token")))


# -- HTTP --------------------------------------------------------------------------------------
class _StepRetry(Retry):
    """urllib3's Retry, bounded by the step's deadline: no backoff or Retry-After wait ends
    after it, and a wait that would is not started (the last response or error stands)."""

    deadline: float = math.inf

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.deadline = self.deadline
        return retry

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait(self, response: BaseHTTPResponse | None) -> float:
        if response is not None and self.respect_retry_after_header:
            try:
                after = self.get_retry_after(response)
            except InvalidHeader:
                after = None
            if after:
                return after
        return self.get_backoff_time()

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if retry.wait(response) >= retry.remaining():
            reason = error or ResponseError("the step's time budget would run out before the next attempt")
            raise MaxRetryError(_pool, url, reason)  # type: ignore[arg-type]
        return retry

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        time.sleep(max(0.0, min(self.wait(response), self.remaining())))


class _StepTimeout(Timeout):
    """Each attempt's timeouts (urllib3 clones the Timeout per attempt), cut to what is
    left of the step's time budget."""

    def __init__(self, settings: HttpSettings, deadline: float) -> None:
        super().__init__(connect=settings.connect_timeout, read=settings.read_timeout)
        self.limits = (settings.connect_timeout, settings.read_timeout)
        self.deadline = deadline

    def clone(self) -> Timeout:
        left = max(self.deadline - time.monotonic(), 0.01)
        connect, read = self.limits
        return Timeout(connect=min(connect, left), read=min(read, left), total=left)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)  # an "issue" answer holds the new key


class Http:
    """urllib3 with one connection pool per execution environment."""

    def __init__(self) -> None:
        self._pool: urllib3.PoolManager | None = None

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        settings: HttpSettings,
        deadline: float,
    ) -> Reply:
        if self._pool is None:
            self._pool = urllib3.PoolManager(num_pools=4, maxsize=1, cert_reqs="CERT_REQUIRED")
        retries = _StepRetry(
            total=MAX_ATTEMPTS - 1,
            other=0,  # TLS and other errors: not retried
            redirect=0,
            raise_on_redirect=False,
            raise_on_status=False,  # retries exhausted: the last response is returned
            status_forcelist=RETRIED_STATUSES,
            allowed_methods=None,  # every method: issue is safe with a label (see the docstring)
            backoff_factor=BACKOFF_FACTOR,
        )
        retries.deadline = deadline
        response = self._pool.urlopen(
            method,
            url,
            body=body,
            headers=dict(headers),
            retries=retries,
            redirect=False,
            timeout=_StepTimeout(settings, deadline),
            preload_content=False,
        )
        try:
            data = response.read(MAX_RESPONSE_BYTES + 1)
            if len(data) > MAX_RESPONSE_BYTES:
                response.close()  # not read to its end: the connection must not be reused
        finally:
            response.release_conn()
        return Reply(response.status, response.headers, data)


_CAUSES: tuple[tuple[type[Exception], str], ...] = (
    (NewConnectionError, "the connection failed"),  # a subclass of ConnectTimeoutError
    (ConnectTimeoutError, "connecting timed out"),
    (ReadTimeoutError, "the response timed out"),
    (SSLError, "TLS with certificate verification failed"),
    (ProtocolError, "the connection broke"),
    (ResponseError, "no attempt fits in the step's time budget"),
)


def _cause(error: object) -> str:
    """A fixed description of a urllib3 error (their text carries URLs and addresses)."""
    return next((text for kind, text in _CAUSES if isinstance(error, kind)), type(error).__name__)


class ProviderCalls:
    """The provider calls of one step, sharing the step's time budget (HTTP_TIME_BUDGET)."""

    def __init__(self, http: Http, step: str, settings: HttpSettings) -> None:
        self.http = http
        self.step = step
        self.settings = settings
        self.deadline = time.monotonic() + settings.time_budget

    def call(
        self, endpoint: Endpoint, values: Mapping[str, str], auth: dict[str, str], *, gone_ok: bool = False
    ) -> bytes | None:
        """The response body of a 2xx; None for a 404/410 when gone_ok; raises otherwise."""
        where = f"{self.step}: {endpoint.where()}"
        if time.monotonic() >= self.deadline:
            raise UnreachableError(
                f"{where} was not called: the step's time budget ({config.HTTP_TIME_BUDGET}) is spent"
            )
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **endpoint.headers, **auth}
        body = endpoint.body_for(values)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if endpoint.idempotency_header is not None:
            headers[endpoint.idempotency_header] = values["label"]
        try:
            reply = self.http.request(
                endpoint.method,
                endpoint.url_for(values),
                headers=headers,
                body=body,
                settings=self.settings,
                deadline=self.deadline,
            )
        except MaxRetryError as exc:
            raise UnreachableError(f"{where} could not be reached: {_cause(exc.reason)}") from None
        except HTTPError as exc:
            raise UnreachableError(f"{where} could not be reached: {_cause(exc)}") from None
        status = reply.status
        logger.debug("provider call", extra={"endpoint": endpoint.name, "host": endpoint.host, "status": status})
        if 200 <= status < 300:
            if len(reply.body) > MAX_RESPONSE_BYTES:
                raise ConfigurationError(f"{where} answered with more than {MAX_RESPONSE_BYTES} bytes")
            return reply.body
        if gone_ok and status in GONE:
            return None
        raise self._failure(where, status, reply, endpoint)

    def _failure(self, where: str, status: int, reply: Reply, endpoint: Endpoint) -> Exception:
        text = f"{where} answered {status}"
        if status in (401, 403):
            whose = "the pending key" if endpoint.name == "verify" else "the admin credential"
            return AuthenticationError(f"{text}: {whose} was refused")
        if status in RETRIED_STATUSES:
            after = reply.headers.get("Retry-After")
            try:
                wait = Retry().parse_retry_after(after) if after else 0.0
            except InvalidHeader:
                wait = 0.0
            if wait > self.deadline - time.monotonic():
                return UnreachableError(f"{text}; its Retry-After goes beyond the step's time budget")
            return UnreachableError(f"{text}, still, after retries within the step's time budget")
        if 300 <= status < 400:
            return ConfigurationError(f"{text} (a redirect; redirects are not followed: give the final URL)")
        return ConfigurationError(f"{text}: check field '{endpoint.source}' of the secret")

    def parse_json(self, endpoint: Endpoint, body: bytes | None) -> Any:
        try:
            return json.loads(body or b"")
        except ValueError:
            raise ConfigurationError(f"{self.step}: the '{endpoint.name}' response is not JSON") from None

    # -- the provider's operations -------------------------------------------------------
    def issue(self, provider: Provider, admin: dict[str, str], label: str) -> tuple[Sensitive, str]:
        endpoint = provider.issue
        data = self.parse_json(endpoint, self.call(endpoint, {"label": label}, admin))
        key, key_id = _dig(data, endpoint.paths["key_path"]), _key_id(_dig(data, endpoint.paths["id_path"]))
        if not isinstance(key, str) or not key or not _visible(key):
            raise ConfigurationError(
                f"{self.step}: the 'issue' response has no key at field 'provider.issue.key_path' of the secret"
            )
        if key_id is None:
            raise ConfigurationError(
                f"{self.step}: the 'issue' response has no id at field 'provider.issue.id_path' of the secret"
            )
        logger.info("the provider issued a key", extra={"key_id": key_id, "label": label})
        return Sensitive(key), key_id

    def listed(self, provider: Provider, admin: dict[str, str]) -> list[tuple[str, str | None]]:
        """(key id, label) of every key the provider lists."""
        endpoint = provider.listing
        data = self.parse_json(endpoint, self.call(endpoint, {"label_prefix": provider.label_prefix}, admin))
        items = _dig(data, endpoint.paths["items_path"])
        if not isinstance(items, list):
            raise ConfigurationError(
                f"{self.step}: the 'list' response has no list at field 'provider.list.items_path' of the secret"
            )
        keys = []
        for item in items:
            key_id = _key_id(_dig(item, endpoint.paths["id_path"]))
            if key_id is None:
                raise ConfigurationError(
                    f"{self.step}: a key in the 'list' response has no id at field 'provider.list.id_path'"
                )
            label = _dig(item, endpoint.paths["label_path"])
            keys.append((key_id, label if isinstance(label, str) else None))
        return keys

    def revoke(self, provider: Provider, admin: dict[str, str], key_id: str) -> None:
        gone = self.call(provider.revoke, {"key_id": key_id}, admin, gone_ok=True) is None
        logger.info("revoked a key at the provider", extra={"key_id": key_id, "already_gone": gone})

    def verify(self, endpoint: Endpoint, key: Sensitive, key_id: str | None) -> None:
        self.call(endpoint, {"key_id": key_id or ""}, endpoint.auth.headers(Credential(key)))


# -- the rotation -----------------------------------------------------------------------------
class ApiKeyRotation(Rotation):
    name = "api_key"

    def __init__(self) -> None:
        self.http = Http()  # reused by every invocation of the execution environment

    def _calls(self, ctx: StepContext) -> ProviderCalls:
        return ProviderCalls(self.http, ctx.step, config.http_settings(ctx.env))

    @staticmethod
    def _admin(ctx: StepContext, provider: Provider) -> dict[str, str]:
        """The admin credential's headers, from the other secret it lives in."""
        credential = parse_admin(ctx.other_secret(provider.admin_secret_arn, "admin"), provider)
        return provider.admin_auth.headers(credential)

    def create(self, ctx: StepContext) -> str:
        current = parse(ctx.current(), "current", ctx.meta.arn)
        if current.provider is None:
            return current.with_key(current.key_format.generate())
        provider = current.provider
        admin = self._admin(ctx, provider)
        calls = self._calls(ctx)
        label = provider.label(ctx.token)
        if provider.issue.idempotency_header is None:
            # A key an earlier attempt of this step issued but could not store: held by no one.
            for key_id, key_label in calls.listed(provider, admin):
                if key_label == label:
                    calls.revoke(provider, admin, key_id)
        key, key_id = calls.issue(provider, admin, label)
        return current.with_key(key, key_id)

    def set(self, ctx: StepContext) -> None:
        """Nothing to set: an issued key is valid from the moment it is issued, and the
        services that accept a generated key read it from Secrets Manager."""

    def test(self, ctx: StepContext) -> None:
        pending = parse(ctx.pending(), "pending", ctx.meta.arn)
        calls = self._calls(ctx)
        provider = pending.provider
        if provider is not None:
            listed = dict(calls.listed(provider, self._admin(ctx, provider)))
            if listed.get(pending.key_id or "") != provider.label(ctx.token):
                raise ConfigurationError(
                    "testSecret: the provider's 'list' response does not show the pending key under its label: "
                    "check fields 'provider.list.items_path', 'id_path' and 'label_path'"
                )
        if pending.verify is not None:
            calls.verify(pending.verify, pending.key, pending.key_id)
        elif not pending.key_format.matches(pending.key):
            raise ConfigurationError("testSecret: the pending key does not match the format in field 'generate'")

    def finished(self, ctx: StepContext, previous_version: str | None) -> None:
        self._revoke_retired(ctx, previous_version)

    def already_finished(self, ctx: StepContext) -> None:
        self._revoke_retired(ctx, ctx.meta.holding(PREVIOUS))

    def _revoke_retired(self, ctx: StepContext, previous_version: str | None) -> None:
        """Revoke the issued keys this secret no longer holds: the one two rotations old, and
        every key labelled for this secret that is neither AWSCURRENT (the token's version),
        AWSPREVIOUS nor a rotation in progress. Idempotent."""
        current = parse(ctx.version(ctx.token), "current", ctx.meta.arn)
        provider = current.provider
        if provider is None:
            return
        keep = {current.key_id, current.previous_key_id}
        retired: set[str | None] = set()
        if previous_version is not None and previous_version != ctx.token:
            previous_key_id, two_back = _ids(ctx.version(previous_version))
            keep.add(previous_key_id)
            retired.add(two_back)
        in_progress = {
            provider.label(version)
            for version, stages in ctx.meta.versions.items()
            if PENDING in stages and version != ctx.token
        }
        admin = self._admin(ctx, provider)
        calls = self._calls(ctx)
        for key_id, label in calls.listed(provider, admin):
            if provider.owns(label) and label not in in_progress:
                retired.add(key_id)
        for key_id in sorted(k for k in retired - keep if k is not None):
            calls.revoke(provider, admin, key_id)


lambda_handler = rotation_handler(ApiKeyRotation())
