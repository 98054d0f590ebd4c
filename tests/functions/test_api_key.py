"""What only the API key function has: keys issued and revoked by an HTTP provider (the test
issuer on loopback), generated keys in a chosen format, provider errors classified and
retried within the step's time budget, no key left alive at the provider that is neither
AWSCURRENT nor AWSPREVIOUS whatever fails and is retried, the secrets' formats (the rotated
secret, the admin and verify secrets that describe the provider, the older format), the
urllib3 guard and answers that are never decompressed.

tests/security/test_api_key_attacks.py replays the attacks of a rotated secret's writer."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import re
import secrets
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rotation_core import AuthenticationError, ConfigurationError, RotationError, UnreachableError, settings
from tests.api_key_target import ApiKeyTarget, load_module
from tests.conftest import RotationCase
from tests.contract.test_protocol import FaultPlan, InjectedFault, instrument
from tests.engines import unique
from tests.support import leaks, rotations
from tests.support.issuer import Issuer


@pytest.fixture
def api(api_key_target: ApiKeyTarget, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> Iterator[ApiKeyTarget]:
    for key, value in api_key_target.env().items():
        monkeypatch.setenv(key, value)
    api_key_target.issuer.clear_faults()
    yield api_key_target
    api_key_target.issuer.clear_faults()  # no injected answer outlives its test


@pytest.fixture
def issuer(api: ApiKeyTarget) -> Issuer:
    return api.issuer


def new_case(
    api: ApiKeyTarget, sm: Any, doc: dict[str, Any] | None = None, strategy: str = "issued", **store: Any
) -> RotationCase:
    """A RotationCase, optionally for a secret JSON of the test's own (stored by api.store)."""
    if doc is None:
        return RotationCase(api, sm, strategy)
    api.new_secret = lambda client, _: (api.store(client, doc, **store), doc)  # type: ignore[method-assign]
    try:
        return RotationCase(api, sm, strategy)
    finally:
        del api.new_secret


def prefix_of(case: RotationCase, prefix: str = "sm") -> str:
    return case.target.label_prefix(case.arn, prefix)  # type: ignore[attr-defined, no-any-return]


def alive(issuer: Issuer, prefix: str) -> set[str]:
    return {key.id for key in issuer.live(prefix)}


def pending_value(case: RotationCase, token: str) -> str | None:
    try:
        return rotations.value(case.sm, case.arn, "AWSPENDING", token)
    except case.sm.exceptions.ResourceNotFoundException:
        return None


def step(case: RotationCase, token: str, name: str) -> None:
    case.handler(rotations.event(case.arn, token, name), None)


def assert_clean(message: str, *values: str) -> None:
    for value in values:
        assert value not in message, "an error message shows a key or the admin credential"


# -- rotations --------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["generated", "issued"])
def test_each_key_lives_for_two_rotations_exactly(api: ApiKeyTarget, sm: Any, strategy: str) -> None:
    case = new_case(api, sm, strategy=strategy)
    held = [case.current()]
    for _ in range(4):
        case.rotate()
        held.append(case.current())
        assert api.works(held[-1]) and api.works(held[-2]), "AWSCURRENT and AWSPREVIOUS work"
        if len(held) >= 3:
            assert not api.works(held[-3]), "the key two rotations old no longer works"
        if strategy == "issued":
            assert alive(api.issuer, prefix_of(case)) == {held[-1]["key_id"], held[-2]["key_id"]}
    assert len({doc["key"] for doc in held}) == 5


@pytest.mark.parametrize("strategy", ["generated", "issued"])
def test_a_client_that_follows_awscurrent_is_never_refused(api: ApiKeyTarget, sm: Any, strategy: str) -> None:
    """An application re-reads AWSCURRENT every 150 ms and calls the service in between with
    the key it read. Each rotation starts just after the application read the current key,
    so the application still holds it when the rotation moves AWSCURRENT and revokes."""
    case = new_case(api, sm, strategy=strategy)
    reader = api.service_sm
    stop, refreshed = threading.Event(), threading.Condition()
    held, refreshes, calls = [""], [0], [0]
    refused: list[int] = []

    def client() -> None:
        deadline = time.monotonic() + 30  # stops by itself
        while not stop.is_set() and time.monotonic() < deadline:
            doc = json.loads(rotations.value(reader, case.arn))
            with refreshed:
                held[0] = doc["key"]
                refreshes[0] += 1
                refreshed.notify_all()
            until = time.monotonic() + 0.15
            while time.monotonic() < until and not stop.is_set():
                calls[0] += 1
                if not api.works(doc):
                    refused.append(calls[0])
                time.sleep(0.005)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        for _ in range(3):
            key = case.current()["key"]
            with refreshed:
                seen = refreshes[0]
                assert refreshed.wait_for(lambda seen=seen, key=key: refreshes[0] > seen and held[0] == key, 10)
            case.rotate()
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert calls[0] >= 10, "the client kept calling throughout"
    assert refused == [], "the client was refused during a rotation"


def test_keys_of_other_secrets_and_unlabelled_keys_are_left_alone(api: ApiKeyTarget, sm: Any, issuer: Issuer) -> None:
    mine, other = new_case(api, sm), new_case(api, sm)
    unrelated = issuer.issue("unrelated-key")
    looks_like_ours = issuer.issue(prefix_of(mine) + "manual")  # the prefix, but not a rotation's label
    other.rotate()
    other_alive = alive(issuer, prefix_of(other))
    for _ in range(3):
        mine.rotate()
    assert alive(issuer, prefix_of(other)) == other_alive
    assert {unrelated.id, looks_like_ours.id} <= alive(issuer, "")


def test_the_default_label_prefix_is_unique_to_the_secret(api: ApiKeyTarget, sm: Any, issuer: Issuer) -> None:
    doc = api.issued_secret()
    case = new_case(api, sm, doc, label_initial=False)
    expected = "sm-" + hashlib.sha256(case.arn.encode()).hexdigest()[:10] + "-"
    token = case.rotate()
    assert {k.label for k in issuer.live(expected)} == {expected + token}
    case.rotate()
    assert len(issuer.live(expected)) == 2
    assert api.works(doc), "a first key not created under the secret's label is never revoked by the function"


def test_a_label_prefix_of_the_admin_secret_is_combined_with_the_secret_hash(
    api: ApiKeyTarget, sm: Any, issuer: Issuer
) -> None:
    admin = api.admin_secret(provider={**api.description(), "label_prefix": "orders_api"})
    first = new_case(api, sm, api.issued_secret(admin_arn=admin), prefix="orders_api")
    second = new_case(api, sm, api.issued_secret(admin_arn=admin), prefix="orders_api")
    for case in (first, second):
        expected = "orders_api-" + hashlib.sha256(case.arn.encode()).hexdigest()[:10] + "-"
        assert prefix_of(case, "orders_api") == expected
        token = case.rotate()
        case.rotate()
        assert len(issuer.live(expected)) == 2 and issuer.live(expected + token)
        assert not api.works(case.initial)
    assert prefix_of(first, "orders_api") != prefix_of(second, "orders_api")


@pytest.mark.parametrize(
    ("admin_auth", "admin_secret"),
    [
        ({"type": "header", "name": "X-Admin-Token"}, {}),
        ({"type": "basic", "username": "admin"}, {}),
        ({"type": "basic"}, {"username": "admin", "password": "<token>", "token": None}),
    ],
    ids=["header", "basic-token-as-password", "basic-username-password"],
)
def test_admin_credential_placements(
    api: ApiKeyTarget, sm: Any, admin_auth: dict[str, Any], admin_secret: dict[str, Any]
) -> None:
    change = {k: (api.issuer.admin_token if v == "<token>" else v) for k, v in admin_secret.items()}
    admin = api.admin_secret(provider={**api.description(), "admin_auth": admin_auth}, **change)
    case = new_case(api, sm, api.issued_secret(admin_arn=admin))
    case.rotate()
    assert api.works(case.current())


def test_generated_key_format_and_no_verification_url(api: ApiKeyTarget, sm: Any) -> None:
    doc = {"mode": "generated", "key": "initial-" + "0" * 32, "generate": {"prefix": "whk_", "alphabet": "hex"}}
    case = new_case(api, sm, doc, strategy="generated")
    case.rotate()
    key = case.current()["key"]
    assert key.startswith("whk_") and len(key) == 44 and set(key[4:]) <= set("0123456789abcdef")
    assert case.current()["generate"] == doc["generate"]


# -- idempotency and cleanup after failures -----------------------------------------------------
def fail_put_once(case: RotationCase) -> None:
    failed: list[bool] = []

    def fail(**_: Any) -> None:
        if not failed:
            failed.append(True)
            raise InjectedFault("PutSecretValue failed")

    case.handler.client.meta.events.register("before-call.secrets-manager.PutSecretValue", fail)


def test_a_retried_create_secret_does_not_issue_a_second_key(api: ApiKeyTarget, sm: Any, issuer: Issuer) -> None:
    case = new_case(api, sm)  # the issue endpoint honours an Idempotency-Key
    prefix = prefix_of(case)
    fail_put_once(case)
    token = rotations.start_rotation(sm, case.arn)
    with pytest.raises(InjectedFault):
        step(case, token, "createSecret")
    assert issuer.issued(prefix) == 2  # the initial key and this rotation's
    step(case, token, "createSecret")
    assert issuer.issued(prefix) == 2, "the retry got the key already issued, not a second one"
    for name in rotations.STEPS[1:]:
        step(case, token, name)
    assert alive(issuer, prefix) == {case.current()["key_id"], case.initial["key_id"]}


def test_without_idempotency_a_retried_create_secret_revokes_the_unstored_key(
    api: ApiKeyTarget, sm: Any, issuer: Issuer
) -> None:
    case = new_case(api, sm, api.issued_secret(idempotent=False))
    prefix = prefix_of(case)
    fail_put_once(case)
    token = rotations.start_rotation(sm, case.arn)
    with pytest.raises(InjectedFault):
        step(case, token, "createSecret")
    step(case, token, "createSecret")
    assert issuer.issued(prefix + token) == 2
    assert len(issuer.live(prefix + token)) == 1, "the key issued but never stored is revoked"
    assert json.loads(pending_value(case, token) or "{}")["key_id"] == issuer.live(prefix + token)[0].id
    for name in rotations.STEPS[1:]:
        step(case, token, name)
    assert alive(issuer, prefix) == {case.current()["key_id"], case.initial["key_id"]}


@pytest.mark.slow
@pytest.mark.parametrize("environment", ["warm", "fresh"])
def test_a_fault_after_every_call_of_a_second_finish_then_retry(
    api: ApiKeyTarget, sm: Any, issuer: Issuer, environment: str
) -> None:
    """The revocation of the key two rotations old survives a failure anywhere in finishSecret:
    Secrets Manager retries the rotation, the token is AWSCURRENT by then, and the core runs
    the function's already_finished, which retries the cleanup. finishSecret runs in the
    execution environment of the earlier steps (warm: the versions and the admin secret they
    read are kept, rotation_core.memo) or in a fresh one (it reads them all)."""
    count = None
    n = 1
    while count is None or n <= count:
        case = new_case(api, sm)
        case.rotate()
        plan = FaultPlan()
        token = rotations.start_rotation(sm, case.arn)
        rotations.run_steps(case.handler, case.arn, token, rotations.STEPS[:3])
        if environment == "fresh":
            case.handler = api.make_handler()
        instrument(case, plan)
        plan.calls = 0
        if count is None:  # first round: count the calls of finishSecret
            step(case, token, "finishSecret")
            count = plan.calls
            # describe, move, list, revoke; fresh: and the 2 versions and the admin secret
            assert count == (4 if environment == "warm" else 7)
        else:
            plan.armed_at = n
            with pytest.raises(InjectedFault):
                step(case, token, "finishSecret")
            plan.armed_at = None
            rotations.run_steps(case.handler, case.arn, token)
            n += 1
        previous = json.loads(rotations.value(sm, case.arn, "AWSPREVIOUS"))
        assert alive(issuer, prefix_of(case)) == {case.current()["key_id"], previous["key_id"]}
        assert not api.works(case.initial)


def test_a_revoke_refused_after_the_move_is_retried_by_the_next_finish(
    api: ApiKeyTarget, sm: Any, issuer: Issuer
) -> None:
    case = new_case(api, sm)
    case.rotate()
    issuer.inject("revoke", 403)
    token = rotations.start_rotation(sm, case.arn)
    rotations.run_steps(case.handler, case.arn, token, rotations.STEPS[:3])
    with pytest.raises(AuthenticationError, match=r"'revoke' endpoint \(DELETE 127\.0\.0\.1\) answered 403"):
        step(case, token, "finishSecret")
    assert "AWSCURRENT" in rotations.stages(sm, case.arn)[token]
    assert api.works(case.initial), "the revoke failed"
    rotations.run_steps(case.handler, case.arn, token)  # Secrets Manager retries the rotation
    assert not api.works(case.initial)
    assert len(issuer.live(prefix_of(case))) == 2


def test_a_late_finish_of_the_last_rotation_spares_the_one_in_progress(api: ApiKeyTarget, sm: Any) -> None:
    case = new_case(api, sm, api.issued_secret(idempotent=False))
    first = case.rotate()
    second = rotations.start_rotation(sm, case.arn)
    step(case, second, "createSecret")
    step(case, first, "finishSecret")  # a duplicate invocation, arriving late
    for name in rotations.STEPS[1:]:
        step(case, second, name)
    assert api.works(case.current())


# -- provider errors -----------------------------------------------------------------------------
def test_5xx_and_429_with_retry_after_are_retried(
    api: ApiKeyTarget, sm: Any, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = new_case(api, sm)
    issuer.inject("issue", 500)
    issuer.inject("list", 503)
    issuer.inject("verify", 429, retry_after="1")
    issuer.inject("revoke", 502)
    before = dict(issuer.calls)
    started = time.monotonic()
    case.rotate()
    case.rotate()
    assert time.monotonic() - started >= 1, "Retry-After was honoured"
    assert issuer.calls["issue"] - before.get("issue", 0) == 3  # a failure, then 1 per rotation
    assert issuer.calls["verify"] - before.get("verify", 0) == 3
    assert not api.works(case.initial)


def test_retry_after_beyond_the_time_budget_fails_at_once(
    api: ApiKeyTarget, sm: Any, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_TIME_BUDGET", "3")
    case = new_case(api, sm)
    issuer.inject("issue", 429, retry_after="60")
    token = rotations.start_rotation(sm, case.arn)
    started = time.monotonic()
    with pytest.raises(UnreachableError, match="answered 429; its Retry-After goes beyond the step's time budget"):
        step(case, token, "createSecret")
    assert time.monotonic() - started < 2
    assert pending_value(case, token) is None


def test_the_admin_secret_kept_across_steps_is_read_again_after_a_failure(
    api: ApiKeyTarget, sm: Any, issuer: Issuer
) -> None:
    """createSecret reads the admin secret and keeps it for the rotation's later steps
    (rotation_core.memo). The provider's owners rotate the admin token meanwhile: testSecret
    fails once with the kept one (401), which drops it, and Secrets Manager's retry reads the
    new one."""
    admin_arn = api.admin_secret()
    case = new_case(api, sm, api.issued_secret(admin_arn=admin_arn))
    token = rotations.start_rotation(sm, case.arn)
    step(case, token, "createSecret")
    step(case, token, "setSecret")
    original = issuer.admin_token
    try:
        issuer.admin_token = leaks.remember("adm_" + secrets.token_urlsafe(24), "admin token")
        sm.put_secret_value(SecretId=admin_arn, SecretString=json.dumps(api.admin_doc()))
        with pytest.raises(AuthenticationError, match="the admin credential was refused"):
            step(case, token, "testSecret")
        rotations.run_steps(case.handler, case.arn, token)  # Secrets Manager retries the rotation
    finally:
        issuer.admin_token = original
    assert api.works(case.current())


@pytest.mark.parametrize(
    ("strategy", "warm", "fresh"),
    [
        # DescribeSecret guards createSecret, setSecret and finishSecret; the verify or admin
        # secret is read once per rotation in a warm environment (rotation_core.memo)
        ("generated", 9, 11),  # with a verify secret (without one: 8 and 9)
        ("issued", 10, 14),  # createSecret reads the pending value before issuing a key
    ],
)
def test_secrets_manager_calls_per_rotation(api: ApiKeyTarget, sm: Any, strategy: str, warm: int, fresh: int) -> None:
    counted = {}
    for environment in ("warm", "fresh"):
        case = new_case(api, sm, strategy=strategy)
        case.rotate()
        calls: list[str] = []
        token = rotations.start_rotation(sm, case.arn)
        for name in rotations.STEPS:
            if environment == "fresh" or name == "createSecret":
                case.handler = api.make_handler()
                case.handler.client.meta.events.register(
                    "before-call.secrets-manager", lambda model, _calls=calls, **_: _calls.append(model.name)
                )
            step(case, token, name)
        counted[environment] = len(calls)
        assert calls.count("DescribeSecret") == 3
        assert calls.count("PutSecretValue") == calls.count("UpdateSecretVersionStage") == 1
        assert api.works(case.current())
    assert counted == {"warm": warm, "fresh": fresh}


class ShortInvocation:
    """Lambda's context object, for an invocation with `seconds` left."""

    aws_request_id = "short-invocation"

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, self.deadline - time.monotonic()) * 1000)


@pytest.mark.parametrize("route", ["issue", "list", "verify", "revoke"])
def test_a_provider_429_on_any_call_is_absorbed(api: ApiKeyTarget, sm: Any, issuer: Issuer, route: str) -> None:
    """Throttled by the provider (429, twice in a row) on each kind of call a rotation makes:
    retried with backoff inside the step, and the rotation completes in one pass."""
    case = new_case(api, sm)
    case.rotate()  # so that finishSecret has a key two rotations old to revoke
    issuer.inject(route, 429, times=2)
    before = dict(issuer.calls)
    case.rotate()
    assert issuer.calls[route] - before.get(route, 0) >= 3, "the throttled call was retried"
    assert api.works(case.current())
    assert not api.works(case.initial), "the key two rotations old is revoked"


def test_a_provider_429_never_outlives_the_invocation(api: ApiKeyTarget, sm: Any, issuer: Issuer) -> None:
    """HTTP_TIME_BUDGET (10 s here) allows a 5 s Retry-After; an invocation with 4 s left does
    not: the step fails at once, having stored nothing, and Secrets Manager's retry converges."""
    case = new_case(api, sm)
    token = rotations.start_rotation(sm, case.arn)
    issuer.inject("issue", 429, retry_after="5")
    with pytest.raises(UnreachableError, match="answered 429; its Retry-After goes beyond the step's time budget"):
        case.handler(rotations.event(case.arn, token, "createSecret"), ShortInvocation(4.0))
    assert pending_value(case, token) is None
    rotations.run_steps(case.handler, case.arn, token)
    assert api.works(case.current())
    assert alive(issuer, prefix_of(case)) == {case.current()["key_id"], case.initial["key_id"]}


def test_a_timeout_is_retried_and_the_key_issued_meanwhile_is_revoked(
    api: ApiKeyTarget, sm: Any, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_READ_TIMEOUT", "1")
    case = new_case(api, sm, api.issued_secret(idempotent=False))
    issuer.inject("issue", None, delay=1.5)  # issued, then answered too late: the client gives up
    token = case.rotate()
    label = prefix_of(case) + token
    assert issuer.issued(label) == 2, "the issue call timed out and was retried"
    assert [k.id for k in issuer.live(label)] == [case.current()["key_id"]], "the first key is revoked"
    assert api.works(case.current())


def test_the_time_budget_bounds_a_step(
    api: ApiKeyTarget, sm: Any, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_TIME_BUDGET", "1")
    case = new_case(api, sm)
    issuer.inject("issue", 503, times=20)
    before = issuer.calls["issue"]
    token = rotations.start_rotation(sm, case.arn)
    started = time.monotonic()
    with pytest.raises(UnreachableError, match=r"'issue' endpoint .* answered 503, still, after retries"):
        step(case, token, "createSecret")
    assert time.monotonic() - started < 1.5
    assert issuer.calls["issue"] - before == 2, "retried at once, then the next backoff (1 s) did not fit"
    assert pending_value(case, token) is None


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthenticationError), (403, AuthenticationError), (404, ConfigurationError), (302, ConfigurationError)],
)
def test_a_4xx_on_issue_fails_at_once(
    api: ApiKeyTarget, sm: Any, issuer: Issuer, status: int, error: type[RotationError]
) -> None:
    case = new_case(api, sm)
    before = issuer.calls["issue"]
    issuer.inject("issue", status)
    token = rotations.start_rotation(sm, case.arn)
    with pytest.raises(error) as caught:
        step(case, token, "createSecret")
    message = str(caught.value)
    assert f"createSecret: the provider's 'issue' endpoint (POST 127.0.0.1) answered {status}" in message
    assert_clean(message, case.initial["key"], issuer.admin_token)
    assert issuer.calls["issue"] - before == 1, "not retried"
    assert pending_value(case, token) is None


def test_a_pending_key_the_provider_refuses_fails_test_secret(api: ApiKeyTarget, sm: Any, issuer: Issuer) -> None:
    case = new_case(api, sm)
    token = rotations.start_rotation(sm, case.arn)
    rotations.run_steps(case.handler, case.arn, token, rotations.STEPS[:2])
    issuer.inject("verify", 401)
    with pytest.raises(AuthenticationError, match=r"'verify' endpoint .* answered 401: the pending key was refused"):
        step(case, token, "testSecret")
    assert case.current() == case.initial
    rotations.run_steps(case.handler, case.arn, token)
    assert api.works(case.current())


# -- bad secrets: refused at createSecret, nothing written, nothing issued ----------------------
def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        if value is None:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)

    return change


def issued(change: Callable[[dict[str, Any]], None]) -> Callable[[ApiKeyTarget], dict[str, Any]]:
    """A rotated secret of an issued key, changed."""

    def build(api: ApiKeyTarget) -> dict[str, Any]:
        doc = api.issued_secret()
        change(doc)
        return doc

    return build


def admin(change: Callable[[dict[str, Any]], None]) -> Callable[[ApiKeyTarget], dict[str, Any]]:
    """A rotated secret of an issued key whose admin secret is changed."""

    def build(api: ApiKeyTarget) -> dict[str, Any]:
        doc = api.admin_doc()
        change(doc)
        arn = str(api.sm.create_secret(Name=unique("api-admin"), SecretString=json.dumps(doc))["ARN"])
        return api.issued_secret(admin_arn=arn)

    return build


def generated(change: dict[str, Any]) -> Callable[[ApiKeyTarget], dict[str, Any]]:
    def build(api: ApiKeyTarget) -> dict[str, Any]:
        doc = api.generated_secret(unique("svc"))
        doc.update(copy.deepcopy(change))
        return {k: v for k, v in doc.items() if v is not None}

    return build


def verify(change: Callable[[dict[str, Any]], None]) -> Callable[[ApiKeyTarget], dict[str, Any]]:
    """A generated key's secret whose verify secret is changed."""

    def build(api: ApiKeyTarget) -> dict[str, Any]:
        doc = api.generated_secret(unique("svc"))
        verify_doc = json.loads(rotations.value(api.sm, doc["verify_secret_arn"]))
        change(verify_doc)
        arn = str(api.sm.create_secret(Name=unique("api-verify"), SecretString=json.dumps(verify_doc))["ARN"])
        return {**doc, "verify_secret_arn": arn}

    return build


OTHER_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf"
BAD_SECRETS = {
    # the rotated secret
    "no mode": (generated({"mode": None}), "missing the field 'mode'"),
    "unknown mode": (generated({"mode": "rotated"}), "field 'mode' of the current secret must be one of"),
    "short key format": (generated({"generate": {"alphabet": "hex", "length": 16}}), "'generate.length'"),
    "unknown alphabet": (generated({"generate": {"alphabet": "emoji"}}), "'generate.alphabet'"),
    "verify secret arn not an arn": (generated({"verify_secret_arn": "billing"}), "'verify_secret_arn'"),
    "verify secret missing": (generated({"verify_secret_arn": OTHER_ARN}), "the verify secret has no AWSCURRENT"),
    "no provider": (issued(_set("provider", None)), "missing the field 'provider'"),
    "no key_id": (issued(_set("key_id", None)), "'key_id'"),
    "no admin secret arn": (issued(_set("provider.admin_secret_arn", None)), "'provider.admin_secret_arn'"),
    "admin secret missing": (
        issued(_set("provider.admin_secret_arn", OTHER_ARN)),
        "the admin secret has no AWSCURRENT value",
    ),
    # the admin secret
    "no description": (admin(_set("provider", None)), "the admin secret is missing the field 'provider'"),
    "no hosts": (admin(_set("hosts", None)), "field 'hosts' of the admin secret must list"),
    "a url in hosts": (admin(_set("hosts", ["https://127.0.0.1/"])), "must list host or host:port entries"),
    "no token": (admin(_set("token", None)), "the admin secret is missing the field 'token'"),
    "no list endpoint": (admin(_set("provider.list", None)), "missing the field 'provider.list'"),
    "key_path not a string": (admin(_set("provider.issue.key_path", 3)), "'provider.issue.key_path'"),
    "unknown method": (admin(_set("provider.revoke.method", "PURGE")), "'provider.revoke.method'"),
    "http to another host": (
        admin(_set("provider.issue.url", "http://api.example.com/admin/keys")),
        "field 'provider.issue.url' of the admin secret must be an https URL",
    ),
    "host not listed": (
        admin(_set("provider.list.url", "https://api.example.com/keys?p={label_prefix}")),
        "field 'provider.list.url' of the admin secret names a host and port that field 'hosts'",
    ),
    "port not listed": (
        admin(_set("hosts", ["127.0.0.1"])),  # the issuer's port is not 80
        "field 'provider.issue.url' of the admin secret names a host and port that field 'hosts'",
    ),
    "key in a url": (admin(_set("provider.verify.url", "https://api.example.com/{key}")), "'provider.verify.url'"),
    "credentials in a url": (
        admin(_set("provider.list.url", "https://user:pw@api.example.com/keys")),
        "'provider.list.url'",
    ),
    "bad admin auth": (admin(_set("provider.admin_auth", {"type": "cookie"})), "'provider.admin_auth.type'"),
    "revoke without key_id": (
        admin(lambda doc: doc["provider"]["revoke"].update(url=doc["provider"]["revoke"]["url"][: -len("/{key_id}")])),
        "field 'provider.revoke' of the admin secret must name the key",
    ),
    "label prefix with a dash": (admin(_set("provider.label_prefix", "orders-")), "'provider.label_prefix'"),
    "static auth header": (
        admin(_set("provider.list.headers", {"authorization": "Bearer x"})),
        "'provider.list.headers.authorization'",
    ),
    # the verify secret of a generated key
    "no verify": (verify(_set("verify", None)), "the verify secret is missing the field 'verify'"),
    "http verify url": (verify(_set("verify.url", "http://verify.example.com/ping")), "'verify.url'"),
    "verify url not listed": (verify(_set("hosts", ["verify.example.com"])), "'verify.url' of the verify secret"),
    "verify url with key_id": (verify(_set("verify.url", "http://127.0.0.1/{key_id}")), "'verify.url'"),
}


@pytest.mark.parametrize("name", BAD_SECRETS)
def test_bad_secrets_are_refused_at_create_secret(api: ApiKeyTarget, sm: Any, issuer: Issuer, name: str) -> None:
    build, message = BAD_SECRETS[name]
    doc = build(api)
    case = new_case(api, sm, doc, strategy=doc.get("mode") or "generated")
    issued_before, calls_before = issuer.issued(), sum(issuer.calls.values())
    token = rotations.start_rotation(sm, case.arn)
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        step(case, token, "createSecret")
    assert_clean(str(caught.value), doc.get("key") or "-" * 8, issuer.admin_token)
    assert pending_value(case, token) is None
    assert case.current() == doc
    assert issuer.issued() == issued_before
    assert sum(issuer.calls.values()) == calls_before, "no call reached the provider"


def test_the_admin_secret_cannot_be_the_rotated_secret(api: ApiKeyTarget, sm: Any) -> None:
    case = new_case(api, sm)
    doc = case.current()
    doc["provider"]["admin_secret_arn"] = case.arn
    sm.put_secret_value(SecretId=case.arn, SecretString=json.dumps(doc), VersionStages=["AWSCURRENT"])
    token = rotations.start_rotation(sm, case.arn)
    with pytest.raises(ConfigurationError, match=r"'provider\.admin_secret_arn' .* must name another secret"):
        step(case, token, "createSecret")


def test_an_issue_response_without_the_key_and_the_orphan_it_leaves(api: ApiKeyTarget, sm: Any, issuer: Issuer) -> None:
    admin_doc = api.admin_doc()
    good_path = admin_doc["provider"]["issue"]["key_path"]
    admin_doc["provider"]["issue"]["key_path"] = "data.missing"
    admin_arn = str(sm.create_secret(Name=unique("api-admin"), SecretString=json.dumps(admin_doc))["ARN"])
    case = new_case(api, sm, api.issued_secret(admin_arn=admin_arn))
    abandoned = rotations.start_rotation(sm, case.arn)
    with pytest.raises(ConfigurationError, match=r"no key at field 'provider\.issue\.key_path' of the admin secret"):
        step(case, abandoned, "createSecret")
    assert pending_value(case, abandoned) is None
    orphans = issuer.live(prefix_of(case) + abandoned)
    assert len(orphans) == 1, "issued, but the key could not be read from the response"
    # The rotation is abandoned; the admin secret is fixed; the next rotation revokes the orphan.
    sm.update_secret_version_stage(SecretId=case.arn, VersionStage="AWSPENDING", RemoveFromVersionId=abandoned)
    admin_doc["provider"]["issue"]["key_path"] = good_path
    sm.put_secret_value(SecretId=admin_arn, SecretString=json.dumps(admin_doc))
    case.rotate()
    assert issuer.live(prefix_of(case) + abandoned) == []
    assert alive(issuer, prefix_of(case)) == {case.current()["key_id"], case.initial["key_id"]}


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://api.example.com/v1/keys", True),
        ("https://api.example.com:8443/v1/keys", True),
        ("http://127.0.0.1:8080/v1/keys", True),
        ("http://127.8.9.10/v1/keys", True),
        ("http://localhost/v1/keys", True),
        ("http://[::1]:8443/v1/keys", True),
        ("http://10.0.0.1/v1/keys", False),
        ("http://api.example.com/v1/keys", False),
        ("http://127.0.0.1.example.com/v1/keys", False),
        ("ftp://api.example.com/v1/keys", False),
        ("https://{label}.example.com/v1/keys", False),
        ("/v1/keys", False),
    ],
)
def test_only_https_except_loopback(api: ApiKeyTarget, url: str, accepted: bool) -> None:
    listed = url.split("://", 1)[-1].split("/", 1)[0] or "api.example.com"
    doc = {"hosts": [listed], "verify": {"url": url}}
    if accepted:
        assert api.config.parse_verify(json.dumps(doc)).host in url
    else:
        with pytest.raises(ConfigurationError, match=r"field 'verify\.url' of the verify secret"):
            api.config.parse_verify(json.dumps(doc))


@pytest.mark.parametrize(
    ("hosts", "url", "accepted"),
    [
        (["api.example.com"], "https://api.example.com/v1", True),
        (["api.example.com"], "https://api.example.com:443/v1", True),
        (["api.example.com"], "https://api.example.com:8443/v1", False),
        (["api.example.com:8443"], "https://api.example.com:8443/v1", True),
        (["api.example.com:8443"], "https://api.example.com/v1", False),
        (["API.Example.com"], "https://api.example.COM/v1", True),
        (["127.0.0.1"], "http://127.0.0.1/v1", True),
        (["127.0.0.1"], "http://127.0.0.1:8080/v1", False),
        (["[::1]:8443"], "http://[::1]:8443/v1", True),
        (["other.example.com"], "https://api.example.com/v1", False),
    ],
)
def test_hosts_allow_a_host_on_its_default_port_or_a_host_and_port(
    api: ApiKeyTarget, hosts: list[str], url: str, accepted: bool
) -> None:
    doc = json.dumps({"hosts": hosts, "verify": {"url": url}})
    if accepted:
        api.config.parse_verify(doc)
    else:
        with pytest.raises(ConfigurationError, match="names a host and port that field 'hosts' of the verify secret"):
            api.config.parse_verify(doc)


# -- the older format: the provider described in the rotated secret -----------------------------
def test_an_older_format_secret_rotates_with_the_admin_description_and_a_warning(
    api: ApiKeyTarget, sm: Any, issuer: Issuer, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = api.issued_secret()
    doc["provider"] = api.legacy_provider()
    case = new_case(api, sm, doc)
    case.rotate()
    case.rotate()
    assert alive(issuer, prefix_of(case)) == {case.current()["key_id"], case.current()["previous_key_id"]}
    assert not api.works(case.initial)
    assert case.current()["provider"] == doc["provider"], "the fields are kept until their owner removes them"
    warnings = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "deprecated" in line]
    assert warnings, "a deprecation warning is logged"
    assert set(warnings[0]["fields"]) == {f"provider.{n}" for n in ("admin_auth", "issue", "list", "revoke", "verify")}


def test_an_older_format_secret_is_refused_until_the_admin_secret_has_the_description(
    api: ApiKeyTarget, sm: Any, issuer: Issuer
) -> None:
    doc = api.issued_secret()
    doc["provider"] = api.legacy_provider()
    doc["provider"]["admin_secret_arn"] = api.admin_secret(provider=None)  # the admin secret as it was
    case = new_case(api, sm, doc)
    calls_before = sum(issuer.calls.values())
    token = rotations.start_rotation(sm, case.arn)
    with pytest.raises(ConfigurationError, match=r"describes the provider \(fields 'provider\.admin_auth', ") as caught:
        step(case, token, "createSecret")
    assert "Move that description into field 'provider' of the admin secret" in str(caught.value)
    assert pending_value(case, token) is None
    assert sum(issuer.calls.values()) == calls_before


def test_an_older_format_generated_secret(api: ApiKeyTarget, sm: Any, issuer: Issuer) -> None:
    """Its verify description is refused alone, and ignored beside verify_secret_arn."""
    realm = unique("svc")
    doc = api.generated_secret(realm)
    inline = {"url": f"{issuer.url}/services/{realm}/me", "auth": {"type": "header", "name": "X-Api-Key"}}
    old = {k: v for k, v in doc.items() if k != "verify_secret_arn"} | {"verify": inline}
    case = new_case(api, sm, old, strategy="generated")
    token = rotations.start_rotation(sm, case.arn)
    with pytest.raises(ConfigurationError, match="field 'verify' of the current secret describes where"):
        step(case, token, "createSecret")
    assert pending_value(case, token) is None
    migrating = {**old, "verify_secret_arn": doc["verify_secret_arn"]}
    case = new_case(api, sm, migrating, strategy="generated")
    api.issuer.add_realm(realm, lambda: api.held_keys(case.arn))
    case.rotate()
    assert api.works(case.current()) and case.current()["key"] != migrating["key"]


# -- answers: size, compression, the urllib3 in use ---------------------------------------------
def _gzip_bomb(size: int) -> bytes:
    return gzip.compress(b"0" * size, compresslevel=9)


@pytest.mark.parametrize(
    "encoding", ["gzip", "gzip, gzip, gzip, gzip, gzip, gzip, gzip, gzip", "deflate", "br", "x-unknown"]
)
def test_a_compressed_answer_is_refused_and_never_decompressed(
    api: ApiKeyTarget, sm: Any, issuer: Issuer, encoding: str
) -> None:
    case = new_case(api, sm, strategy="generated")
    token = rotations.start_rotation(sm, case.arn)
    step(case, token, "createSecret")
    bomb = _gzip_bomb(200 * 1024 * 1024)  # 200 MB of zeros in about 200 kB
    assert len(bomb) < 1024 * 1024
    issuer.inject("service", 200, headers={"Content-Encoding": encoding, "Content-Length": str(len(bomb))}, body=bomb)
    tracemalloc.start()
    try:
        with pytest.raises(UnreachableError, match="answered 200 with a compressed body"):
            step(case, token, "testSecret")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, "the answer was never decompressed"
    assert "AWSCURRENT" not in rotations.stages(sm, case.arn)[token]


def test_an_answer_larger_than_the_limit_is_refused(api: ApiKeyTarget, sm: Any, issuer: Issuer) -> None:
    case = new_case(api, sm)
    limit = sys.modules["provider_client"].MAX_RESPONSE_BYTES
    body = json.dumps({"data": [], "padding": "x" * limit}).encode()
    issuer.inject("list", 200, headers={"Content-Type": "application/json"}, body=body)
    token = rotations.start_rotation(sm, case.arn)
    rotations.run_steps(case.handler, case.arn, token, rotations.STEPS[:2])
    with pytest.raises(ConfigurationError, match=f"answered with more than {limit} bytes"):
        step(case, token, "testSecret")


@pytest.mark.parametrize(
    ("version", "refused"),
    [
        ("1.26.19", True),  # the Lambda Python runtime's own copy, as of 2025
        ("2.5.0", True),
        ("2.6.0rc1", True),
        ("2.6.0.dev0", True),
        ("nonsense", True),
        ("2.6.0", False),
        ("2.6.3", False),
        ("2.10.1", False),
        ("3.0", False),
    ],
)
def test_urllib3_versions_with_the_decompression_flaws_are_refused(version: str, refused: bool) -> None:
    client = sys.modules["provider_client"]
    problem = client.urllib3_problem(version)
    assert (problem is not None) == refused
    if refused and version[0].isdigit():
        assert "CVE-2025-66471" in problem and "CVE-2025-66418" in problem and version in problem


@pytest.mark.parametrize("strategy", ["generated", "issued"])
def test_the_function_refuses_to_run_on_an_old_urllib3(
    api: ApiKeyTarget, sm: Any, issuer: Issuer, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib3

    case = new_case(api, sm, strategy=strategy)
    monkeypatch.setattr(urllib3, "__version__", "2.5.0")
    calls_before = sum(issuer.calls.values())
    token = rotations.start_rotation(sm, case.arn)
    with pytest.raises(ConfigurationError, match=r"urllib3 2\.5\.0 is installed: versions before 2\.6\.0"):
        step(case, token, "createSecret")
    assert pending_value(case, token) is None
    assert sum(issuer.calls.values()) == calls_before
    monkeypatch.undo()
    rotations.run_steps(case.handler, case.arn, token)
    assert api.works(case.current())


# -- the examples in events/api_key/secrets ------------------------------------------------------
EXAMPLES = Path(__file__).resolve().parents[2] / "events" / "api_key" / "secrets"
EXAMPLE_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/api-key-AbCdEf"


def test_the_example_secrets_are_in_the_current_format(api: ApiKeyTarget) -> None:
    config = api.config
    issued_doc = (EXAMPLES / "rotated-issued.json").read_text()
    rotated = config.parse(issued_doc, "current", EXAMPLE_ARN)
    assert rotated.mode == "issued" and rotated.legacy == () and rotated.admin_secret_arn
    provider, _ = config.parse_admin((EXAMPLES / "admin.json").read_text(), EXAMPLE_ARN)
    assert provider.issue.host == "api.acme.example" and provider.label_prefix.startswith("sm-")
    generated_doc = config.parse((EXAMPLES / "rotated-generated.json").read_text(), "current", EXAMPLE_ARN)
    assert generated_doc.mode == "generated" and generated_doc.verify_secret_arn
    assert config.parse_verify((EXAMPLES / "verify.json").read_text()).name == "verify"


def test_http_settings_are_parsed_at_the_edge() -> None:
    assert settings.http_settings({}) == settings.HttpSettings(connect_timeout=5, read_timeout=10, time_budget=20)
    parsed = settings.http_settings({"CONNECT_TIMEOUT": "2", "HTTP_READ_TIMEOUT": "3", "HTTP_TIME_BUDGET": "7"})
    assert parsed == settings.HttpSettings(connect_timeout=2, read_timeout=3, time_budget=7)
    for name, value in [("HTTP_READ_TIMEOUT", "0"), ("HTTP_TIME_BUDGET", "soon"), ("CONNECT_TIMEOUT", "-1")]:
        with pytest.raises(ConfigurationError, match=f"environment variable {name} must be"):
            settings.http_settings({name: value})


def test_reprs_never_show_a_key() -> None:
    app = load_module()
    key = "sk_live_" + "Q" * 40
    secret = app.parse(
        json.dumps({"mode": "generated", "key": key, "generate": {"prefix": "sk_live_", "length": 40}}),
        "current",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:repr-AbCdEf",
    )
    reply = sys.modules["provider_client"].Reply(
        status=201, headers={"x-key": key}, body=json.dumps({"key": key}).encode()
    )
    for shown in (repr(secret), str(secret), repr(reply)):
        assert key not in shown
    assert "201" in repr(reply)
