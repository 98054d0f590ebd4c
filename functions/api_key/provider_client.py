"""HTTP calls to a provider: urllib3, bounded in time, size and trust.

- urllib3 2.6.0 or later only (bundled with the function: requirements.txt): earlier
  versions decompress without bound (CVE-2025-66471: the streaming API decoded a whole
  compressed chunk whatever the amount asked for; CVE-2025-66418: an unbounded chain of
  Content-Encodings). Each step refuses to run on an earlier version. On top of that, the
  function asks for uncompressed answers (``Accept-Encoding: identity``), reads raw bytes
  only (``decode_content=False``: nothing is ever decompressed) and refuses an answer that
  is compressed anyway. At most MAX_RESPONSE_BYTES are read; redirects are not followed.
- One connection pool per execution environment; TLS verified against the system trust
  store. 500, 502, 503, 504, 429, timeouts and broken connections are retried (up to 5
  attempts, backoff 0, 1, 2, 4 s), honouring Retry-After; any other status fails the step
  at once (401 and 403 as an authentication error), naming the endpoint, method, host and
  status. Each step has a time budget for all its provider calls (HTTP_TIME_BUDGET, default
  20 s, and never more than the Lambda invocation has left): no attempt, backoff or
  Retry-After wait goes past it. Each request also has a
  connect timeout (CONNECT_TIMEOUT, 5 s) and a read timeout (HTTP_READ_TIMEOUT, 10 s).
- Every URL is checked again, once filled in, against the trusted secret's ``hosts``.
- Response bodies, keys and the admin credential are never logged and never appear in an
  error message; an issued key whose id contains the key is refused (ids are logged).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import urllib3
from provider_config import Credential, Endpoint, Provider, dig, key_id_of, visible
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)
from urllib3.util import Retry, Timeout

from rotation_core import AuthenticationError, ConfigurationError, Sensitive, UnreachableError
from rotation_core import settings as config
from rotation_core.observability import logger
from rotation_core.settings import HttpSettings

if TYPE_CHECKING:
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

FIXED_URLLIB3 = (2, 6, 0)  # CVE-2025-66471 and CVE-2025-66418 fixed
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
GONE = frozenset({404, 410})  # a revoke answered with these: the key no longer exists
MAX_ATTEMPTS = 5
BACKOFF_FACTOR = 0.5  # urllib3: no wait before the first retry, then 1 s, 2 s, 4 s...
MAX_RESPONSE_BYTES = 1024 * 1024
USER_AGENT = "secrets-manager-rotation/api-key"
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?(.*)")


# -- the urllib3 in use -----------------------------------------------------------------------
def urllib3_problem(version: str) -> str | None:
    """Why this urllib3 version must not be used, or None."""
    match = _VERSION.fullmatch(version.strip())
    if match is None:
        return f"urllib3's version ({version!r}) cannot be read"
    numbers = tuple(int(n or 0) for n in match.group(1, 2, 3))
    suffix = match.group(4)
    prerelease = bool(suffix) and not suffix.startswith(("+", ".post"))
    if numbers > FIXED_URLLIB3 or (numbers == FIXED_URLLIB3 and not prerelease):
        return None
    return (
        f"urllib3 {version} is installed: versions before 2.6.0 decompress answers without bound "
        "(CVE-2025-66471, CVE-2025-66418), so the function refuses to run. Bundle urllib3>=2.6 "
        "with the function (functions/api_key/requirements.txt) and deploy again"
    )


def require_safe_urllib3(version: str | None = None) -> None:
    installed = str(getattr(urllib3, "__version__", ""))  # the copy actually imported
    problem = urllib3_problem(installed if version is None else version)
    if problem is not None:
        raise ConfigurationError(problem)


# -- one request ------------------------------------------------------------------------------
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

    @property
    def compressed(self) -> bool:
        return _compressed(self.headers)


def _compressed(headers: Mapping[str, str]) -> bool:
    return headers.get("Content-Encoding", "").strip().lower() not in ("", "identity")


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
            allowed_methods=None,  # every method: issue is safe with a label (see app.py)
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
            decode_content=False,  # raw bytes: nothing is ever decompressed
        )
        try:
            if _compressed(response.headers):
                # Never read (urllib3 would set up its decoders): the caller refuses it.
                response.close()  # not read to its end: the connection must not be reused
                return Reply(response.status, response.headers, b"")
            data = response.read(MAX_RESPONSE_BYTES + 1, decode_content=False)
            if len(data) > MAX_RESPONSE_BYTES:
                response.close()
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


def _headers(
    endpoint: Endpoint, body: bytes | None, values: Mapping[str, str], auth: Mapping[str, str]
) -> dict[str, str]:
    """The request's headers: the function's defaults, the endpoint's static headers, then
    what the function alone decides (encoding, idempotency key, credential)."""
    headers: dict[str, str] = {}

    def put(name: str, value: str) -> None:
        for existing in [h for h in headers if h.lower() == name.lower()]:
            del headers[existing]
        headers[name] = value

    put("Accept", "application/json")
    put("User-Agent", USER_AGENT)
    if body is not None:
        put("Content-Type", "application/json")
    for name, value in endpoint.headers.items():
        put(name, value)
    put("Accept-Encoding", "identity")
    if endpoint.idempotency_header is not None:
        put(endpoint.idempotency_header, values["label"])
    for name, value in auth.items():
        put(name, value)
    return headers


class ProviderCalls:
    """The provider calls of one step, sharing the step's time budget: HTTP_TIME_BUDGET, or
    less when the Lambda invocation has less time left (step_seconds: the protocol's budget,
    rotation_core.budget), so that a 429's retries never outlive the invocation."""

    def __init__(self, http: Http, step: str, settings: HttpSettings, step_seconds: float | None = None) -> None:
        self.http = http
        self.step = step
        self.settings = settings
        budget = float(settings.time_budget) if step_seconds is None else min(settings.time_budget, step_seconds)
        self.deadline = time.monotonic() + budget

    def call(
        self, endpoint: Endpoint, values: Mapping[str, str], auth: Mapping[str, str], *, gone_ok: bool = False
    ) -> bytes | None:
        """The response body of a 2xx; None for a 404/410 when gone_ok; raises otherwise."""
        where = f"{self.step}: {endpoint.where()}"
        url = endpoint.url_for(values)  # checked against the trusted hosts once more
        if time.monotonic() >= self.deadline:
            raise UnreachableError(
                f"{where} was not called: the step's time budget ({config.HTTP_TIME_BUDGET}) is spent"
            )
        body = endpoint.body_for(values)
        try:
            reply = self.http.request(
                endpoint.method,
                url,
                headers=_headers(endpoint, body, values, auth),
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
        if reply.compressed:
            raise UnreachableError(
                f"{where} answered {status} with a compressed body (Content-Encoding), although the function "
                "asks for 'identity': it never decompresses an answer"
            )
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
        return ConfigurationError(f"{text}: check field '{endpoint.source}' of the {endpoint.role} secret")

    def parse_json(self, endpoint: Endpoint, body: bytes | None) -> Any:
        try:
            return json.loads(body or b"")
        except ValueError:
            raise ConfigurationError(f"{self.step}: the '{endpoint.name}' response is not JSON") from None

    def _path_error(self, endpoint: Endpoint, path: str, problem: str) -> ConfigurationError:
        return ConfigurationError(
            f"{self.step}: the '{endpoint.name}' response {problem} at field "
            f"'{endpoint.source}.{path}' of the {endpoint.role} secret"
        )

    # -- the provider's operations -------------------------------------------------------
    def issue(self, provider: Provider, admin: Mapping[str, str], label: str) -> tuple[Sensitive, str]:
        endpoint = provider.issue
        data = self.parse_json(endpoint, self.call(endpoint, {"label": label}, admin))
        key, key_id = dig(data, endpoint.paths["key_path"]), key_id_of(dig(data, endpoint.paths["id_path"]))
        if not isinstance(key, str) or not key or not visible(key):
            raise self._path_error(endpoint, "key_path", "has no key")
        if key_id is None:
            raise self._path_error(endpoint, "id_path", "has no id")
        if key in key_id:
            # The id goes in URLs, in the secret's key_id and in logs: it must never hold the key.
            raise self._path_error(endpoint, "id_path", "has an id that contains the key (refused: ids are logged)")
        logger.info("the provider issued a key", extra={"key_id": key_id, "label": label})
        return Sensitive(key), key_id

    def listed(self, provider: Provider, admin: Mapping[str, str]) -> list[tuple[str, str | None]]:
        """(key id, label) of every key the provider lists."""
        endpoint = provider.listing
        data = self.parse_json(endpoint, self.call(endpoint, {"label_prefix": provider.label_prefix}, admin))
        items = dig(data, endpoint.paths["items_path"])
        if not isinstance(items, list):
            raise self._path_error(endpoint, "items_path", "has no list")
        keys = []
        for item in items:
            key_id = key_id_of(dig(item, endpoint.paths["id_path"]))
            if key_id is None:
                raise self._path_error(endpoint, "id_path", "has a key without an id")
            label = dig(item, endpoint.paths["label_path"])
            keys.append((key_id, label if isinstance(label, str) else None))
        return keys

    def revoke(self, provider: Provider, admin: Mapping[str, str], key_id: str) -> None:
        gone = self.call(provider.revoke, {"key_id": key_id}, admin, gone_ok=True) is None
        logger.info("revoked a key at the provider", extra={"key_id": key_id, "already_gone": gone})

    def verify(self, endpoint: Endpoint, key: Sensitive, key_id: str | None) -> None:
        self.call(endpoint, {"key_id": key_id or ""}, endpoint.auth.headers(Credential(key)))
