"""docs/audit.md shows a sample report: the real output of `bin/rotate audit` against moto
(devtools/audit_fleet.py builds the fleet). It must be what the command prints today, apart
from dates, version ids and account ids; `make audit-sample` rewrites it."""

from __future__ import annotations

from devtools.audit_fleet import comparable, document_block, sample_block, sample_report
from rotation_cli import paths
from tests.audit.conftest import new_account

DOC = paths.ROOT / "docs" / "audit.md"


def test_the_sample_report_is_what_the_command_prints(moto_endpoint: str) -> None:
    block = sample_block(*sample_report(moto_endpoint, account=new_account()))
    assert comparable(document_block(DOC)) == comparable(block), "docs/audit.md is stale: run `make audit-sample`"


def test_the_comparison_ignores_only_what_changes_from_run_to_run() -> None:
    text = "prod/x  the rotation due by 2026-11-27 (AWSPENDING on 62388ab2-4ccc-4d5f-bbc4-f738363ff809) 111122223333"
    assert comparable(text) == "prod/x  the rotation due by YYYY-MM-DD (AWSPENDING on VERSION-ID) ACCOUNT"
    assert comparable("5 days late") != comparable("6 days late")
