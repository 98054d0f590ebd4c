"""The four step events Secrets Manager sends, as files for `sam local invoke -e`.

Each file is exactly what the service invokes the function with for one step:
{"Step": ..., "SecretId": ..., "ClientRequestToken": ...}. The function refuses a token
that is not a version of the secret staged AWSPENDING, so prepare that version first
(`rotate SECRET --local --engine E --fail-at createSecret` leaves one, or RotateSecret).
"""

from __future__ import annotations

import json
from pathlib import Path

from rotation_cli.aws import parse_arn
from rotation_cli.driver import STEPS, event, new_token
from rotation_cli.errors import UsageError


def write_events(secret_id: str, token: str | None, out_dir: Path) -> tuple[str, list[Path], list[str]]:
    """Write <out_dir>/<Step>.json for the four steps; returns (token, files, notes)."""
    notes = []
    if not secret_id.strip():
        raise UsageError("the secret id must not be empty")
    if parse_arn(secret_id).get("service") != "secretsmanager":
        notes.append("the SecretId is not a Secrets Manager ARN: the service always sends the secret's full ARN")
    if token is None:
        token = new_token()
        notes.append(
            f"generated the token {token}: the function accepts it only once a version with this id is staged "
            "AWSPENDING (RotateSecret --client-request-token, or pass --token with the pending version's id)"
        )
    if not 32 <= len(token) <= 64:
        raise UsageError("--token must be 32 to 64 characters long (a ClientRequestToken)")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for step in STEPS:
        path = out_dir / f"{step}.json"
        path.write_text(json.dumps(event(secret_id, token, step), indent=2) + "\n", encoding="utf-8")
        files.append(path)
    return token, files, notes
