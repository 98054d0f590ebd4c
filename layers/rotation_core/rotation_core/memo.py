"""What one execution environment keeps between invocations, to read less from Secrets Manager.

- Values of versions of a secret, by ARN and version id: a version's value never changes
  (PutSecretValue refuses to modify an existing version; see protocol.py), so a value read
  once by any step serves a later read of that version by id, always correctly.
- For the rest of one rotation (its ClientRequestToken), and a few minutes at most, the
  other secrets a rotation asked to keep across its steps (an API provider's admin secret,
  read by createSecret, testSecret and finishSecret): which version of them is AWSCURRENT
  may change, so they are kept for one rotation only, and dropped as soon as one of its
  steps fails, so that Secrets Manager's retry reads them again.

Nothing here is ever logged. The protocol reads and writes the Memo; the rotations never
see it.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_VERSIONS = 64
MAX_OTHERS = 16
OTHER_SECONDS = 300.0


class Memo:
    def __init__(self) -> None:
        self._versions: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._others: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()

    # -- versions: immutable, kept until pushed out --------------------------------------
    def version(self, arn: str, version_id: str) -> str | None:
        key = (arn, version_id)
        text = self._versions.get(key)
        if text is not None:
            self._versions.move_to_end(key)
        return text

    def keep_version(self, arn: str, version_id: str, text: str) -> None:
        self._versions[(arn, version_id)] = text
        self._versions.move_to_end((arn, version_id))
        while len(self._versions) > MAX_VERSIONS:
            self._versions.popitem(last=False)

    # -- other secrets: for one rotation ---------------------------------------------------
    def other(self, token: str, secret_id: str, now: float) -> str | None:
        kept = self._others.get((token, secret_id))
        if kept is None:
            return None
        if now - kept[0] > OTHER_SECONDS:
            del self._others[(token, secret_id)]
            return None
        return kept[1]

    def keep_other(self, token: str, secret_id: str, text: str, now: float) -> None:
        self._others[(token, secret_id)] = (now, text)
        self._others.move_to_end((token, secret_id))
        for key in [k for k, (when, _) in self._others.items() if now - when > OTHER_SECONDS]:
            del self._others[key]
        while len(self._others) > MAX_OTHERS:
            self._others.popitem(last=False)

    def forget_rotation(self, token: str) -> None:
        for key in [k for k in self._others if k[0] == token]:
            del self._others[key]
