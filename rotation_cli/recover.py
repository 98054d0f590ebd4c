"""Clear a stuck rotation without ever losing the only working credential.

A rotation that stopped half-way leaves AWSPENDING on a version that is not AWSCURRENT,
and Secrets Manager then refuses every new rotation ("A previous rotation isn't
complete"). Removing that label unblocks it, but the pending version may hold the only
credential that still logs in: a single-user rotation that failed after setSecret has
already changed the password in the database, so AWSCURRENT no longer works and the new
password exists only in AWSPENDING. The rule:

1. The pending version has no value (createSecret never completed): remove the label.
   Nothing can be lost.
2. Otherwise, find out which credentials work, with the function's own testSecret logic
   (for a database: log in with the version's credential and run a harmless query):
   a. AWSCURRENT works: remove the label from the pending version. Its value stays in its
      (now unlabelled) version; nothing that logs in is lost and applications keep
      working.
   b. AWSCURRENT is refused and the pending credential works: the pending version holds
      the only working credential, so removing its label would strand it. Promote it
      instead, exactly as the interrupted rotation would have: invoke the function's own
      finishSecret for that version, which moves AWSCURRENT to it (AWSPREVIOUS follows
      to the old version). Applications then get the credential that works.
   c. Neither works: the label protects nothing that logs in; remove it, and say that
      AWSCURRENT does not log in (and whether AWSPREVIOUS does: a single-user rotation
      logs in with AWSPREVIOUS, so the next rotation repairs it).
   d. Any credential whose state decides the case cannot be tried (the target is
      unreachable, TLS fails, the engine is unknown): refuse and change nothing. Safety
      cannot be proven, so nothing is done.

A dry run (the default) prints the plan and changes nothing; --apply carries it out and
checks the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from rotation_cli.driver import (
    CURRENT,
    PENDING,
    PREVIOUS,
    Probe,
    Verdict,
    bind,
    describe_error,
    event,
    function_output,
    probe_version,
    stages,
)
from rotation_core import RotationError, RotationFunction
from rotation_core.protocol import Rotation

REMOVE = "remove-pending-label"
PROMOTE = "promote-pending"


@dataclass
class Plan:
    secret_arn: str
    name: str
    pending: str | None = None
    current: str | None = None
    previous: str | None = None
    probes: dict[str, Probe] = field(default_factory=dict)
    action: str | None = None  # REMOVE, PROMOTE, or None (nothing to do / refused)
    reason: str = ""
    refused: str | None = None
    notes: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    applied: bool = False

    def describe_action(self) -> str:
        if self.action == REMOVE:
            return (
                f"remove the label AWSPENDING from version {self.pending} "
                f"(UpdateSecretVersionStage VersionStage=AWSPENDING RemoveFromVersionId={self.pending})"
            )
        if self.action == PROMOTE:
            return (
                f"promote version {self.pending}: the function's finishSecret moves AWSCURRENT to it "
                f"(from {self.current}, which becomes AWSPREVIOUS)"
            )
        return "nothing"

    def as_dict(self) -> dict[str, Any]:
        return {
            "secret": self.secret_arn,
            "pending": self.pending,
            "current": self.current,
            "previous": self.previous,
            "probes": {role: probe.as_dict() for role, probe in self.probes.items()},
            "action": self.action,
            "plan": self.describe_action(),
            "reason": self.reason,
            "refused": self.refused,
            "notes": self.notes,
            "applied": self.applied,
            "done": self.done,
        }


def _holding(versions: dict[str, list[str]], stage: str) -> str | None:
    return next((v for v, s in versions.items() if stage in s), None)


def _has_value(client: Any, secret_id: str, version: str) -> bool:
    try:
        return client.get_secret_value(SecretId=secret_id, VersionId=version).get("SecretString") is not None
    except client.exceptions.ResourceNotFoundException:
        return False


def plan(  # noqa: PLR0911 - one return per case
    client: Any, secret_id: str, rotation: Rotation | None, *, function_log: TextIO | None = None
) -> Plan:
    described = client.describe_secret(SecretId=secret_id)
    arn = str(described["ARN"])
    versions = {v: list(s) for v, s in described.get("VersionIdsToStages", {}).items()}
    result = Plan(arn, str(described.get("Name", secret_id)))
    result.current = _holding(versions, CURRENT)
    result.previous = _holding(versions, PREVIOUS)
    stuck = [v for v, s in versions.items() if PENDING in s and CURRENT not in s]
    if not stuck:
        result.reason = "no unfinished rotation: AWSPENDING is on no version other than AWSCURRENT"
        return result
    result.pending = stuck[0]
    if not _has_value(client, arn, result.pending):
        result.probes["pending"] = Probe(result.pending, Verdict.NO_VALUE, "the version has no value")
        result.action = REMOVE
        result.reason = "the pending version has no value (createSecret never completed): nothing can be lost"
        return result
    if rotation is None:
        result.refused = (
            "the pending version has a value, and whether it holds the only working credential can only be "
            "told by trying it: pass --engine with the function that rotates this secret"
        )
        return result

    def probe(role: str, version: str | None) -> Probe | None:
        if version is None:
            return None
        found = probe_version(rotation, client, arn, version)
        result.probes[role] = found
        return found

    with function_output(function_log):
        current = probe("current", result.current)
        if current is not None and current.verdict is Verdict.WORKS:
            result.action = REMOVE
            result.reason = (
                "AWSCURRENT works, so the pending version is not the only working credential; its value stays "
                "in its version, unlabelled"
            )
            return result
        if current is not None and current.verdict is Verdict.UNKNOWN:
            result.refused = f"cannot tell whether AWSCURRENT works ({current.detail}); fix that and run again"
            return result
        pending = probe_version(rotation, client, arn, result.pending)
        result.probes["pending"] = pending
        if pending.verdict is Verdict.WORKS:
            result.action = PROMOTE
            result.reason = (
                "AWSCURRENT does not work and the pending credential does: it is the only working credential, "
                "so its label is not removed; the interrupted rotation is finished instead"
            )
            return result
        if pending.verdict is Verdict.UNKNOWN:
            result.refused = (
                f"AWSCURRENT does not work and whether the pending credential does cannot be told ({pending.detail}); "
                "it may be the only working credential, so nothing is changed"
            )
            return result
        previous = probe("previous", result.previous)
    result.action = REMOVE
    result.reason = "neither AWSCURRENT nor the pending credential works: the label protects nothing that logs in"
    result.notes.append("AWSCURRENT does not log in: applications reading the secret fail until it is repaired")
    if previous is not None and previous.verdict is Verdict.WORKS:
        result.notes.append("AWSPREVIOUS works: the next single-user rotation logs in with it and sets a new password")
    return result


def apply(
    client: Any,
    result: Plan,
    handler: RotationFunction | None,
    aws_client: Callable[[str], Any] | None = None,
    *,
    function_log: TextIO | None = None,
) -> Plan:
    """Carry out the plan, then check that the rotation is unblocked. aws_client: the
    factory of other services' clients the function may use (see driver.bind)."""
    if result.action is None or result.pending is None:
        return result
    if result.action == REMOVE:
        client.update_secret_version_stage(
            SecretId=result.secret_arn, VersionStage=PENDING, RemoveFromVersionId=result.pending
        )
        result.done.append(f"removed AWSPENDING from version {result.pending}")
    else:
        _promote(client, result, handler, aws_client, function_log)
    result.applied = True
    versions = stages(client, result.secret_arn)
    left = [v for v, s in versions.items() if PENDING in s and CURRENT not in s]
    if left:
        raise RotationError(f"AWSPENDING is still on version {', '.join(left)} after recovery")
    result.done.append("no AWSPENDING is left on a version that is not AWSCURRENT: the next rotation can start")
    return result


def _promote(
    client: Any,
    result: Plan,
    handler: RotationFunction | None,
    aws_client: Callable[[str], Any] | None,
    function_log: TextIO | None,
) -> None:
    if result.pending is None:
        return
    if handler is not None:
        bound = bind(handler, client, aws_client)
        try:
            with function_output(function_log):
                bound(event(result.secret_arn, result.pending, "finishSecret"), None)
        except RotationError as exc:
            result.notes.append(
                f"the function's finishSecret refused ({describe_error(exc)}); moving the label directly"
            )
        else:
            result.done.append(
                f"the function's finishSecret moved AWSCURRENT to version {result.pending} "
                f"(AWSPREVIOUS is now on {result.current})"
            )
            return
    kwargs: dict[str, Any] = {
        "SecretId": result.secret_arn,
        "VersionStage": CURRENT,
        "MoveToVersionId": result.pending,
    }
    if result.current is not None:
        kwargs["RemoveFromVersionId"] = result.current
    client.update_secret_version_stage(**kwargs)
    result.done.append(f"moved AWSCURRENT to version {result.pending} (AWSPREVIOUS is now on {result.current})")
