"""The fleet audit's tests run against moto's server (the session's), each in an account of
its own: MOTO_ACCOUNT_ID makes moto serve every request of the test from that account, so the
secrets other tests leave in the default account are not in the fleet audited here."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from devtools.audit_fleet import Fleet

KEY = "arn:aws:kms:us-east-1:111122223333:key/0b6a9c1e-1111-2222-3333-444455556666"
OTHER_KEY = "arn:aws:kms:us-east-1:111122223333:key/9f8e7d6c-1111-2222-3333-444455556666"


def new_account() -> str:
    return str(100_000_000_000 + secrets.randbelow(899_999_999_999))


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    chosen = new_account()
    monkeypatch.setenv("MOTO_ACCOUNT_ID", chosen)
    return chosen


@pytest.fixture
def fleet(account: str, moto_endpoint: str) -> Fleet:
    return Fleet(moto_endpoint, account)


def findings(doc: dict[str, Any] | None) -> set[tuple[str, str]]:
    """(secret, check) of every finding of an audit --json document."""
    assert doc is not None
    return {(f["secret"], f["check"]) for f in doc["findings"]}
