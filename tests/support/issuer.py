"""A small API key provider for the tests: a real HTTP server on 127.0.0.1, on a free port.

Admin API (authenticated by the admin token: ``Authorization: Bearer <token>``,
``X-Admin-Token: <token>`` or Basic ``admin:<token>``):

    POST   /admin/keys          {"name": label} -> 201 {"data": {"id", "secret", "name", "token"}}
                                ("token" is "<id>.<secret>", a ready-made credential as some
                                providers return); honours Idempotency-Key: a repeated key
                                answers the first response
    GET    /admin/keys?prefix=  -> 200 {"data": [{"id", "name"}...]}  (live keys; never secrets)
    DELETE /admin/keys/<id>     -> 204, or 404 when the key is unknown or already revoked

Endpoints that accept a key (``X-Api-Key: <key>`` or ``Authorization: Bearer <key>``):

    GET /v1/me                  -> 200 for a live issued key, else 401
    GET /services/<realm>/me    -> 200 for a key the realm accepts (generated keys: the
                                   realm reads them from Secrets Manager), else 401

Switches for the tests: `inject` queues answers for a route (a status, a Retry-After, a
delay before answering, or raw headers and body); `relabel` renames a key (as the user
who created a secret's first key under the secret's label). Counters: `live`, `issued`,
`calls`; `requests` records (method, path, Host header) of every request. Every key and the
admin token are remembered for the session's log scan. The server stops when told, and by
itself once no request came for `max_idle` seconds (a whole test session on a busy machine
may take far longer than that, with long stretches of database tests between API key ones).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support import leaks

HOST = "127.0.0.1"
MAX_DELAY = 10.0  # an injected slow answer never holds a server thread longer


@dataclass
class IssuedKey:
    id: str
    secret: str
    label: str
    alive: bool = True


@dataclass
class Fault:
    status: int | None  # None: answer normally, after the delay
    retry_after: str | None
    delay: float
    headers: dict[str, str] | None = None  # with body: sent as they are (raw answer)
    body: bytes | None = None


class Issuer:
    def __init__(self, *, max_idle: float = 3600.0) -> None:
        self.admin_token = leaks.remember("adm_" + secrets.token_urlsafe(24), "admin token")
        self._lock = threading.Lock()
        self._keys: dict[str, IssuedKey] = {}
        self._replies: dict[str, tuple[int, dict[str, Any]]] = {}  # Idempotency-Key -> first answer
        self._faults: dict[str, collections.deque[Fault]] = collections.defaultdict(collections.deque)
        self._realms: dict[str, Callable[[], Iterable[str]]] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Host header
        self._server = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.handle_error = _quiet  # type: ignore[method-assign]
        self.port = int(self._server.server_address[1])
        self.url = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._max_idle = max_idle
        self._last_request = time.monotonic()
        self._watchdog = threading.Thread(target=self._stop_when_idle, daemon=True)
        self._stopped = threading.Event()

    def start(self) -> Issuer:
        self._thread.start()
        self._watchdog.start()
        return self

    def _stop_when_idle(self) -> None:
        while not self._stopped.wait(timeout=min(60.0, self._max_idle)):
            if time.monotonic() - self._last_request > self._max_idle:
                self.stop()

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- state, for the tests -----------------------------------------------------------
    def issue(self, label: str) -> IssuedKey:
        key = IssuedKey(
            id="key_" + secrets.token_hex(6),
            secret=leaks.remember("ak_" + secrets.token_urlsafe(30), "api key"),
            label=label,
        )
        with self._lock:
            self._keys[key.id] = key
        return key

    def live(self, prefix: str = "") -> list[IssuedKey]:
        with self._lock:
            return [k for k in self._keys.values() if k.alive and k.label.startswith(prefix)]

    def issued(self, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for k in self._keys.values() if k.label.startswith(prefix))

    def all_keys(self) -> list[IssuedKey]:
        """Every key ever issued, revoked or not."""
        with self._lock:
            return list(self._keys.values())

    def key(self, key_id: str) -> IssuedKey | None:
        with self._lock:
            return self._keys.get(key_id)

    def relabel(self, key_id: str, label: str) -> None:
        with self._lock:
            self._keys[key_id].label = label

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            key = self._keys.get(key_id)
            if key is None or not key.alive:
                return False
            key.alive = False
            return True

    def add_realm(self, realm: str, accepted: Callable[[], Iterable[str]]) -> None:
        self._realms[realm] = accepted

    def inject(
        self,
        route: str,
        status: int | None = 500,
        *,
        times: int = 1,
        retry_after: str | None = None,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> None:
        """The next `times` requests to route (issue, list, revoke, verify, service) get this
        answer; with body, the status, headers and body exactly as given."""
        for _ in range(times):
            self._faults[route].append(Fault(status, retry_after, min(delay, MAX_DELAY), headers, body))

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- requests -------------------------------------------------------------------------
    def _admin_ok(self, headers: Any) -> bool:
        token = self.admin_token
        basic = "Basic " + base64.b64encode(f"admin:{token}".encode()).decode()
        return headers.get("Authorization") in (f"Bearer {token}", basic) or headers.get("X-Admin-Token") == token

    @staticmethod
    def _presented_key(headers: Any) -> str | None:
        auth = headers.get("Authorization", "")
        return headers.get("X-Api-Key") or (auth[len("Bearer ") :] if auth.startswith("Bearer ") else None)

    def answer(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        route = _route(method, path)
        with self._lock:
            self._last_request = time.monotonic()
            self.calls[route] += 1
            self.requests.append((method, path, headers.get("Host")))
        fault = self._faults[route].popleft() if self._faults.get(route) else None
        if fault is not None and fault.status is not None:
            time.sleep(fault.delay)
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            if fault.body is not None:
                return fault.status, {**extra, **(fault.headers or {})}, fault.body
            return fault.status, extra, {"error": "injected"}
        status, payload = self._handle(route, path, headers, body)
        if fault is not None:
            time.sleep(fault.delay)  # a slow answer, after the work is done
        return status, {}, payload

    def _handle(self, route: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        if route in ("issue", "list", "revoke") and not self._admin_ok(headers):
            return 401, {"error": "admin credential required"}
        if route == "issue":
            return self._issue(headers, body)
        if route == "list":
            prefix = parse_qs(urlsplit(path).query).get("prefix", [""])[0]
            return 200, {"data": [{"id": k.id, "name": k.label} for k in self.live(prefix)], "has_more": False}
        if route == "revoke":
            return (204, None) if self.revoke(path.rsplit("/", 1)[-1]) else (404, {"error": "no such key"})
        if route in ("verify", "service"):
            key = self._presented_key(headers)
            ok = key is not None and key in self._accepted(route, path)
            return (200, {"ok": True}) if ok else (401, {"error": "invalid key"})
        return 404, {"error": "not found"}

    def _accepted(self, route: str, path: str) -> set[str]:
        if route == "verify":
            return {k.secret for k in self.live()}
        accepted = self._realms.get(path.split("/")[2])
        return set(accepted()) if accepted is not None else set()

    def _issue(self, headers: Any, body: bytes) -> tuple[int, Any]:
        try:
            label = json.loads(body)["name"]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "name required"}
        if not isinstance(label, str) or not label:
            return 400, {"error": "name required"}
        idempotency = headers.get("Idempotency-Key")
        with self._lock:
            if idempotency and idempotency in self._replies:
                return self._replies[idempotency]
        key = self.issue(label)
        data = {"id": key.id, "secret": key.secret, "name": key.label, "token": f"{key.id}.{key.secret}"}
        reply = (201, {"data": data})
        if idempotency:
            with self._lock:
                self._replies[idempotency] = reply
        return reply


def _quiet(request: object, client_address: object) -> None:
    """A client that gave up (a timeout test) is not an error worth a traceback."""


def _route(method: str, path: str) -> str:
    parts = urlsplit(path).path.strip("/").split("/")
    if parts[:2] == ["admin", "keys"]:
        if len(parts) == 2:
            return {"POST": "issue", "GET": "list"}.get(method, "unknown")
        return "revoke" if method == "DELETE" and len(parts) == 3 else "unknown"
    if parts == ["v1", "me"] and method == "GET":
        return "verify"
    if len(parts) == 3 and parts[0] == "services" and parts[2] == "me" and method == "GET":
        return "service"
    return "unknown"


def _handler_for(issuer: Issuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are written apart: no 40 ms delayed ACK
        timeout = 15  # a stuck client never holds a server thread for ever

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, extra, payload = issuer.answer(self.command, self.path, self.headers, body)
            raw = isinstance(payload, bytes)  # an injected answer, sent as it is
            data = payload if isinstance(payload, bytes) else b"" if payload is None else json.dumps(payload).encode()
            with contextlib.suppress(OSError):  # the client gave up (a timeout test)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                if data and not raw:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            """Quiet: the tests read the counters instead."""

    return Handler
