"""The secrets' formats: the rotated secret, the admin secret and the verify secret, parsed
into typed objects. Errors name the field and the secret's role, never a value.

Trust: everything that decides where the admin credential or a key is sent, and what the
admin calls do, comes from a secret that only the provider's owners write (the admin
secret, or for generated keys the verify secret), never from the rotated secret, which
holds only ``mode``, ``key``, ``key_id``, ``previous_key_id`` and the reference to that
other secret. The formats are described in app.py and docs/api-keys.md.

Rules checked here:

- URLs: ``https``, or ``http`` to a loopback address (127.0.0.0/8, ``::1``, ``localhost``)
  for tests; no user name, password or fragment; placeholders only in the path, query and
  body. The scheme, host and port of every URL must be listed in the trusted secret's
  ``hosts`` (``host`` means the scheme's default port, ``host:port`` that port).
- Static ``headers``, auth header names and ``idempotency_header``: never ``Host``,
  ``Content-Length``, ``Transfer-Encoding``, ``Connection`` (any case), nor
  ``Accept-Encoding`` (the function asks for uncompressed answers); static headers cannot
  reuse the auth or idempotency header's name.
- The label of every key the function issues is ``<label_prefix>-<10 hex digits of the
  SHA-256 of the rotated secret's ARN>-<ClientRequestToken>``: ``label_prefix`` (admin
  secret, default ``sm``) has no ``-``, so two secrets never share a label prefix.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from key_format import ALPHABETS, DEFAULT_ALPHABET, DEFAULT_LENGTH, MAX_LENGTH, MAX_PREFIX, MIN_ENTROPY_BITS, KeyFormat
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from rotation_core import ConfigurationError, Sensitive
from rotation_core.credentials import load_document

GENERATED = "generated"
ISSUED = "issued"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
DEFAULT_METHODS = {"issue": "POST", "list": "GET", "revoke": "DELETE", "verify": "GET"}
# Which placeholders each endpoint's URL and body may use (a generated key's verify: none).
PLACEHOLDERS = {
    "issue": frozenset({"label"}),
    "list": frozenset({"label_prefix"}),
    "revoke": frozenset({"key_id"}),
    "verify": frozenset({"key_id"}),
}
# Never sent from a static value: they would redirect the request (Host, to another virtual
# host of the same address) or change how the body is framed (request smuggling).
FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Set by the function itself: the answers are never compressed (nothing is decompressed).
FUNCTION_HEADERS = frozenset({"accept-encoding"})
DEFAULT_PORTS = {"https": 443, "http": 80}
DEFAULT_LABEL_PREFIX = "sm"
LABEL_PREFIX = re.compile(r"[A-Za-z0-9_]{1,32}")
SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[^\s]+")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
_TOKEN_LENGTHS = range(32, 65)  # a ClientRequestToken: 32 to 64 characters
# The one field of the rotated secret's "provider" (an issued key): the admin secret's ARN.
PROVIDER_REFERENCE = "admin_secret_arn"


# -- typed reads ------------------------------------------------------------------------------
def _has_control(value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


def visible(value: str, *, spaces: bool = False) -> bool:
    """Printable ASCII only: what can go in an HTTP header as it is."""
    return all(33 <= ord(c) <= 126 or (spaces and c == " ") for c in value)


class Fields:
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

    def missing(self, key: str, why: str = "") -> ConfigurationError:
        return ConfigurationError(f"the {self.role} secret is missing the field '{self.name(key)}'{why}")

    def text(self, key: str, default: str | None = None, *, required: bool = True, empty: bool = False) -> str:
        value = self.doc.get(key)
        if value is None:
            if default is not None or not required:
                return default or ""
            raise self.missing(key)
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
        if not visible(value, spaces=empty):
            raise self.error(key, "must be printable ASCII (it is sent in an HTTP header)")
        return value

    def integer(self, key: str, default: int) -> int:
        value = self.doc.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "must be a whole number")
        return value

    def child(self, key: str, why: str = "") -> Fields:
        if self.doc.get(key) is None:
            raise self.missing(key, why)
        return Fields(self.doc[key], self.name(key), self.role)

    def optional_child(self, key: str) -> Fields | None:
        return None if self.doc.get(key) is None else self.child(key)


def dig(doc: Any, path: str) -> Any:
    """The value at a dotted path ("data.0.id"), or None."""
    for part in path.split(".") if path else ():
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def key_id_of(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


# -- generated keys ---------------------------------------------------------------------------
def _key_format(fields: Fields | None) -> KeyFormat:
    if fields is None:
        return KeyFormat()
    prefix = fields.text("prefix", required=False, empty=True)
    if len(prefix) > MAX_PREFIX or not visible(prefix):
        raise fields.error("prefix", f"must be at most {MAX_PREFIX} visible ASCII characters")
    alphabet = fields.text("alphabet", DEFAULT_ALPHABET)
    if alphabet not in ALPHABETS:
        raise fields.error("alphabet", f"must be one of: {', '.join(ALPHABETS)}")
    length = fields.integer("length", DEFAULT_LENGTH)
    if not 1 <= length <= MAX_LENGTH:
        raise fields.error("length", f"must be between 1 and {MAX_LENGTH}")
    key_format = KeyFormat(prefix, length, alphabet)
    if key_format.entropy_bits() < MIN_ENTROPY_BITS:
        raise fields.error("length", f"is too short: the random part must carry at least {MIN_ENTROPY_BITS} bits")
    return key_format


# -- credentials and where they go ------------------------------------------------------------
@dataclass(frozen=True)
class Credential:
    """A key or an admin token; or, for basic, an admin user name and its password."""

    secret: Sensitive
    username: str | None = None


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


def _header_name(fields: Fields, key: str, name: str) -> str:
    """A header name the secret chooses (key: the field that holds it, or the header itself)."""
    if not HEADER_NAME.fullmatch(name):
        raise fields.error(key, "is not a valid HTTP header name")
    if name.lower() in FORBIDDEN_HEADERS | FUNCTION_HEADERS:
        raise fields.error(
            key,
            "names a header the function never takes from configuration "
            "(Host, Content-Length, Transfer-Encoding, Connection, Accept-Encoding)",
        )
    return name


def _auth(fields: Fields) -> Auth:
    kind = fields.text("type")
    if kind == "bearer":
        return Auth("bearer")
    if kind == "header":
        name = _header_name(fields, "name", fields.text("name"))
        return Auth("header", header=name, prefix=fields.header_text("prefix", required=False, empty=True))
    if kind == "basic":
        username = fields.optional_text("username")
        if username is not None and ":" in username:
            raise fields.error("username", "must not contain ':'")
        return Auth("basic", username=username)
    raise fields.error("type", "must be one of: bearer, header, basic")


# -- hosts and URLs ---------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Hosts:
    """The trusted secret's ``hosts``: (host, port) pairs; port None is the scheme's default."""

    entries: frozenset[tuple[str, int | None]]

    def allow(self, scheme: str, host: str, port: int) -> bool:
        return (host, port) in self.entries or (port == DEFAULT_PORTS[scheme] and (host, None) in self.entries)


def _hosts(fields: Fields, what: str) -> Hosts:
    raw = fields.doc.get("hosts")
    if not isinstance(raw, list) or not raw or not all(isinstance(h, str) and h.strip() for h in raw):
        raise fields.error("hosts", f"must list the hosts (host or host:port) {what} may be sent to")
    entries = set()
    for entry in raw:
        text = entry.strip().lower()
        try:
            parsed = parse_url("https://" + text) if "/" not in text and "@" not in text else None
        except LocationParseError:
            parsed = None
        if parsed is None or not parsed.host or parsed.path not in (None, "") or parsed.query is not None:
            raise fields.error("hosts", "must list host or host:port entries (no scheme, user name or path)")
        entries.add((parsed.host.strip("[]"), parsed.port))
    return Hosts(frozenset(entries))


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int


def destination(url: str) -> Destination | None:
    """Scheme, host and port of an absolute http(s) URL without credentials; else None."""
    try:
        parsed = parse_url(url)
    except LocationParseError:
        return None
    if not parsed.host or parsed.scheme not in DEFAULT_PORTS or parsed.auth:
        return None
    return Destination(parsed.scheme, parsed.host.strip("[]").lower(), parsed.port or DEFAULT_PORTS[parsed.scheme])


def _url(fields: Fields, allowed: frozenset[str], hosts: Hosts) -> tuple[str, Destination]:
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
    if not parsed.host or parsed.scheme not in DEFAULT_PORTS:
        raise fields.error("url", "must be an absolute https URL")
    if parsed.auth or parsed.fragment is not None:
        raise fields.error("url", "must not contain a user name, password or fragment")
    if parsed.scheme == "http" and not is_loopback(parsed.host):
        raise fields.error("url", "must be an https URL (http is accepted only for loopback addresses)")
    target = destination(_PLACEHOLDER.sub("x", url))
    if target is None:  # pragma: no cover - parsed above
        raise fields.error("url", "is not a valid URL")
    if not hosts.allow(target.scheme, target.host, target.port):
        raise fields.error("url", f"names a host and port that field 'hosts' of the {fields.role} secret does not list")
    return url, target


# -- endpoints --------------------------------------------------------------------------------
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
    """One call of the provider's API, as a trusted secret describes it."""

    name: str  # issue, list, revoke, verify
    source: str  # the field that describes it: "provider.issue", "verify"...
    role: str  # the secret that describes it: "admin" or "verify"
    method: str
    url: str  # a template
    target: Destination
    hosts: Hosts
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: Auth = Auth("bearer")  # verify: how the key is presented
    paths: Mapping[str, str] = field(default_factory=dict)  # key_path, id_path, items_path, label_path
    idempotency_header: str | None = None

    @property
    def host(self) -> str:
        return self.target.host

    def where(self) -> str:
        return f"the provider's '{self.name}' endpoint ({self.method} {self.host})"

    def url_for(self, values: Mapping[str, str]) -> str:
        """The URL to call; raises if it would leave the destination the trusted secret allows."""
        url = _substitute(self.url, values, encode=True)
        target = destination(url)
        if target != self.target or not self.hosts.allow(target.scheme, target.host, target.port):
            raise ConfigurationError(
                f"{self.where()} was not called: its URL leaves the hosts of field 'hosts' of the {self.role} secret"
            )
        return url

    def body_for(self, values: Mapping[str, str]) -> bytes | None:
        return None if self.body is None else json.dumps(_fill(self.body, values)).encode()


def _headers(fields: Fields, taken: set[str]) -> dict[str, str]:
    """Static, non-secret headers; taken: lower-case names the function sets itself."""
    raw = fields.optional_child("headers")
    if raw is None:
        return {}
    for name in raw.doc:
        _header_name(raw, name, name)
        if name.lower() in taken:
            raise raw.error(name, "is the header that carries the credential or the idempotency key: remove it")
        raw.header_text(name, empty=True)
    return dict(raw.doc)


def _path(fields: Fields, key: str, *, empty: bool = False) -> str:
    path = fields.text(key, empty=empty)
    if path and any(not part for part in path.split(".")):
        raise fields.error(key, "must be a dotted path such as 'data.id'")
    return path


def _endpoint(
    fields: Fields, name: str, hosts: Hosts, *, placeholders: frozenset[str], admin_auth: Auth | None = None
) -> Endpoint:
    method = fields.text("method", DEFAULT_METHODS[name]).upper()
    if method not in METHODS:
        raise fields.error("method", f"must be one of: {', '.join(sorted(METHODS))}")
    url, target = _url(fields, placeholders, hosts)
    body = fields.doc.get("body")
    for text in _template_strings(body):
        if set(_PLACEHOLDER.findall(text)) - placeholders:
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
    if idempotency is not None:
        _header_name(fields, "idempotency_header", idempotency)
    auth_fields = fields.optional_child("auth") if name == "verify" else None
    auth = _auth(auth_fields) if auth_fields is not None else Auth("bearer")
    credential_header = (admin_auth or Auth("bearer")) if name != "verify" else auth
    taken = {credential_header.header.lower()} | ({idempotency.lower()} if idempotency else set())
    return Endpoint(
        name=name,
        source=fields.path,
        role=fields.role,
        method=method,
        url=url,
        target=target,
        hosts=hosts,
        body=body,
        headers=_headers(fields, taken),
        auth=auth,
        paths=paths,
        idempotency_header=idempotency,
    )


# -- the admin secret: the admin credential, its hosts, the provider's description ------------
@dataclass(frozen=True)
class Provider:
    admin_auth: Auth
    label_prefix: str  # "<label_prefix>-<hash of the rotated secret's ARN>-"
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


def label_prefix(prefix: str, secret_arn: str) -> str:
    return f"{prefix}-{hashlib.sha256(secret_arn.encode()).hexdigest()[:10]}-"


def _legacy_error(legacy: tuple[str, ...], where: str) -> ConfigurationError:
    names = ", ".join(f"'{name}'" for name in legacy)
    return ConfigurationError(
        f"the rotated secret describes the provider (fields {names}), which the function no longer reads "
        f"from it: whoever can write the rotated secret could steer the admin credential. Move that "
        f"description into {where}, then remove those fields (docs/api-keys.md, migration)"
    )


def parse_admin(text: str, secret_arn: str, legacy: tuple[str, ...] = ()) -> tuple[Provider, Credential]:
    """The admin secret: {"token" (or "username" and "password"), "hosts", "provider"}.

    legacy: fields of the older format that the rotated secret still carries; without a
    description here they are refused, never used."""
    role = "admin"
    fields = Fields(load_document(text, role), "", role)
    hosts = _hosts(fields, "the admin credential")
    if fields.doc.get("provider") is None:
        if legacy:
            raise _legacy_error(legacy, "field 'provider' of the admin secret")
        raise fields.missing("provider", " (the provider's description: docs/api-keys.md)")
    description = fields.child("provider")
    admin_auth = _auth(description.child("admin_auth"))
    prefix = description.text("label_prefix", DEFAULT_LABEL_PREFIX)
    if not LABEL_PREFIX.fullmatch(prefix):
        raise description.error(
            "label_prefix",
            "must be 1 to 32 letters, digits or '_' (labels are <label_prefix>-<hash of the secret's ARN>-<token>)",
        )
    endpoints = [
        _endpoint(description.child(name), name, hosts, placeholders=PLACEHOLDERS[name], admin_auth=admin_auth)
        for name in ("issue", "list", "revoke", "verify")
    ]
    issue, listing, revoke, verify = endpoints
    if "{key_id}" not in revoke.url and "{key_id}" not in json.dumps(revoke.body):
        raise description.error("revoke", "must name the key with the placeholder {key_id} in its url or body")
    provider = Provider(admin_auth, label_prefix(prefix, secret_arn), issue, listing, revoke, verify)
    username = fields.optional_text("username")
    if admin_auth.kind == "basic" and username is not None and fields.doc.get("password") is not None:
        if ":" in username:
            raise fields.error("username", "must not contain ':'")
        return provider, Credential(Sensitive(fields.text("password")), username)
    if fields.doc.get("token") is None:
        raise fields.missing("token", " (needed by 'provider.admin_auth')")
    return provider, Credential(Sensitive(fields.header_text("token")))


def parse_verify(text: str) -> Endpoint:
    """The verify secret of generated keys: {"hosts", "verify"}."""
    role = "verify"
    fields = Fields(load_document(text, role), "", role)
    hosts = _hosts(fields, "the key")
    return _endpoint(fields.child("verify"), "verify", hosts, placeholders=frozenset())


# -- the rotated secret -----------------------------------------------------------------------
@dataclass(frozen=True)
class ApiKeySecret:
    mode: str
    key: Sensitive
    # the whole JSON (the key included): written back untouched, never shown by repr
    doc: Mapping[str, Any] = field(repr=False)
    key_id: str | None = None
    previous_key_id: str | None = None
    key_format: KeyFormat = field(default_factory=KeyFormat)
    admin_secret_arn: str | None = None  # issued
    verify_secret_arn: str | None = None  # generated
    legacy: tuple[str, ...] = ()  # fields of the older format: never used

    def with_key(self, key: Sensitive, key_id: str | None = None) -> str:
        """The JSON of the next version: this one with a new key (and its id)."""
        doc = dict(self.doc)
        doc["key"] = key.reveal()
        if self.mode == ISSUED:
            doc["key_id"] = key_id
            doc["previous_key_id"] = self.key_id
        return json.dumps(doc)


def _other_secret(fields: Fields, key: str, secret_arn: str, *, required: bool) -> str | None:
    arn = fields.text(key, required=required) or None
    if arn is None:
        return None
    if not SECRET_ARN.fullmatch(arn):
        raise fields.error(key, "must be the ARN of a Secrets Manager secret")
    if arn in (secret_arn, secret_arn[:-7]):
        raise fields.error(key, "must name another secret: the rotated secret's writers must not be able to write it")
    return arn


def parse(text: str | None, role: str, secret_arn: str) -> ApiKeySecret:
    """Parse and validate the rotated secret (role: current or pending)."""
    doc = load_document(text, role)
    fields = Fields(doc, "", role)
    mode = fields.text("mode")
    key = Sensitive(fields.header_text("key"))
    if mode == GENERATED:
        key_format = _key_format(fields.optional_child("generate"))
        verify_arn = _other_secret(fields, "verify_secret_arn", secret_arn, required=False)
        legacy: tuple[str, ...] = ("verify",) if doc.get("verify") is not None else ()
        if legacy and verify_arn is None:
            raise ConfigurationError(
                f"field 'verify' of the {role} secret describes where the pending key is sent, which the function "
                "no longer reads from the rotated secret: whoever can write it could receive the key. Move it into "
                "a verify secret, name that secret in field 'verify_secret_arn', then remove field 'verify' "
                "(docs/api-keys.md, migration)"
            )
        return ApiKeySecret(mode, key, doc, key_format=key_format, verify_secret_arn=verify_arn, legacy=legacy)
    if mode == ISSUED:
        provider = fields.child("provider")
        admin_arn = _other_secret(provider, PROVIDER_REFERENCE, secret_arn, required=True)
        legacy = tuple(sorted(provider.name(name) for name in provider.doc if name != PROVIDER_REFERENCE))
        key_id = key_id_of(doc.get("key_id"))
        if key_id is None:
            raise fields.error("key_id", "must be the provider's id of the key (a string or a number)")
        previous_key_id = key_id_of(doc.get("previous_key_id"))
        return ApiKeySecret(mode, key, doc, key_id, previous_key_id, admin_secret_arn=admin_arn, legacy=legacy)
    raise fields.error("mode", f"must be one of: {GENERATED}, {ISSUED}")


def key_id_of_version(text: str | None) -> str | None:
    """The key_id of a version, read leniently: it may be in an older format."""
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        return None
    return key_id_of(doc.get("key_id")) if isinstance(doc, dict) else None
