"""A registry of every secret value the test session generated, and a scanner for them.

conftest.py records every password the rotation core generates, every SCRAM verifier
the PostgreSQL engine computes, every password the tests create and every RotationToken
they send. It then scans every output of every test (captured stdout, stderr and log
sections, output a test read itself with capsys/capfd.readouterr(), and the output of
subprocesses), and fails the test whose output holds one of them.

A value is looked for in the forms a log line can carry it in, not only as it is:

- percent-encoded (quote with and without "/" safe, quote_plus, encodeURIComponent's
  safe set, upper- and lower-case hex digits), as in a URL or a form body;
- JSON-escaped (json.dumps(v)[1:-1]), as inside a JSON string;
- escaped by backslashes at any depth (JSON in JSON, repr() of bytes of JSON, as botocore
  logs request and response bodies): each form is also kept without its backslashes, and
  a text with backslashes is scanned without them too;
- base64, standard and URL-safe, alone or anywhere inside a longer blob: the value is
  encoded after 0, 1 and 2 bytes of prefix (its three alignments in a 3-byte group) and
  only the characters that depend on the value's bytes alone are kept;
- hexadecimal of its UTF-8 bytes, lower and upper case.

Nothing here ever returns or prints a value: findings name the kind ("password",
"rotation token"...), the form ("base64") and where it was found.

Cost: the forms are computed once, when a value is remembered; a scan builds the set of
the text's MIN_LENGTH-character windows and intersects it with the index of the forms'
first MIN_LENGTH characters (set operations in C), then confirms each candidate with one
substring test. It does not grow with the number of values remembered.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

MIN_LENGTH = 8  # shorter strings would match by chance; also the length of the index keys

_URLSAFE = str.maketrans("+/", "-_")
_Entry = tuple[str, str, str, int]  # a form's text, the value's kind, the form, the value's number
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


@dataclass(frozen=True, order=True)
class Finding:
    """One remembered value found in a text: what it is, how it was written, and where."""

    kind: str  # "password", "hash", "rotation token", "api key", ...
    form: str  # "plain", "percent-encoded", "JSON-escaped", "backslash-escaped", "base64", "hex"
    where: str = ""  # e.g. "Captured stdout call", "stdout of subprocess sam"

    def __str__(self) -> str:
        shown = self.kind if self.form == "plain" else f"{self.kind} ({self.form})"
        return f"{shown} in {self.where}" if self.where else shown


def _base64_parts(data: bytes) -> set[str]:
    """The base64 characters that depend on data alone, at each alignment it can have
    inside a longer blob, in the standard and the URL-safe alphabet."""
    parts = set()
    for prefix in range(3):
        encoded = base64.b64encode(b"\0" * prefix + data).decode("ascii")
        first = -(-8 * prefix // 6)  # the first character whose 6 bits all come from data
        end = 8 * (prefix + len(data)) // 6  # past the last such character
        part = encoded[first:end]
        parts.update((part, part.translate(_URLSAFE)))
    return parts


def encoded_forms(value: str) -> dict[str, str]:
    """Every text to look for, for one value: {text: form}, each at least MIN_LENGTH long."""
    forms: dict[str, str] = {}

    def add(form: str, *texts: str) -> None:
        for text in texts:
            if len(text) >= MIN_LENGTH and text not in forms:
                forms[text] = form

    raw = value.encode("utf-8")
    json_escaped = json.dumps(value)[1:-1]
    add("plain", value)
    percent = {quote(value, safe=""), quote(value), quote_plus(value), quote(value, safe="~!*'()")}
    add("percent-encoded", *sorted(percent))
    add("percent-encoded", *sorted(_PERCENT_ESCAPE.sub(lambda m: m[0].lower(), p) for p in percent))
    add("JSON-escaped", json_escaped, json.dumps(value, ensure_ascii=False)[1:-1])
    add("backslash-escaped", *sorted({t.replace("\\", "") for t in forms}))
    for data in sorted({raw, json_escaped.encode("ascii")}):
        add("base64", *sorted(_base64_parts(data)))
        add("hex", data.hex(), data.hex().upper())
    return forms


class Registry:
    """Remembered values, indexed for scanning, and what scans of the session's output found."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}  # value -> kind
        # first MIN_LENGTH characters of a form -> [(form's text, kind, form, value's number)]
        self._index: dict[str, list[_Entry]] = {}
        self._keys: set[str] = set()
        self._forms = 0
        self._pending: list[Finding] = []
        self._scanned: Counter[str] = Counter()

    # -- the values ------------------------------------------------------------------
    def remember(self, value: str, kind: str) -> str:
        if len(value) < MIN_LENGTH:
            return value
        forms = encoded_forms(value)
        with self._lock:
            if value in self._values:
                return value
            self._values[value] = kind
            number = len(self._values)
            for text, form in forms.items():
                key = text[:MIN_LENGTH]
                self._index.setdefault(key, []).append((text, kind, form, number))
                self._keys.add(key)
            self._forms += len(forms)
        return value

    def count(self) -> int:
        with self._lock:
            return len(self._values)

    def forms(self) -> int:
        with self._lock:
            return self._forms

    # -- scanning (no side effect) -----------------------------------------------------
    def _matches(self, text: str) -> list[_Entry]:
        """The remembered forms in text; and, when text has backslashes, the values found
        only once they are dropped (escaped at any depth), as "backslash-escaped"."""
        found = self._lookup(text)
        if "\\" in text:
            values = {entry[3] for entry in found}
            for text_found, kind, form, number in self._lookup(text.replace("\\", "")):
                if number not in values:
                    escaped = (
                        "backslash-escaped" if form in ("plain", "backslash-escaped") else f"{form}, backslash-escaped"
                    )
                    found.append((text_found, kind, escaped, number))
        return found

    def _lookup(self, text: str) -> list[_Entry]:
        windows = {text[i : i + MIN_LENGTH] for i in range(len(text) - MIN_LENGTH + 1)}
        with self._lock:
            candidates = [entry for key in windows & self._keys for entry in self._index[key]]
        return [entry for entry in candidates if entry[0] in text]

    def scan(self, text: str, where: str = "") -> list[Finding]:
        """What remembered values text holds (kind, form, where), never the values."""
        if len(text) < MIN_LENGTH:
            return []
        return sorted({Finding(kind, form, where) for _, kind, form, _ in self._matches(text)})

    def find(self, text: str) -> list[str]:
        """The kinds of the remembered values found in text (never the values themselves)."""
        return sorted({finding.kind for finding in self.scan(text)})

    def redact(self, text: str) -> str:
        """text with every remembered value (in any of its forms) replaced by its kind.
        Where a value is found only once backslashes are dropped, the backslashes go too."""
        for _ in range(3):  # a replacement can only shorten what is left to find
            matches = self._matches(text)
            if not matches:
                break
            if any(entry[0] not in text for entry in matches):
                text = text.replace("\\", "")
            for found, kind, _, _ in sorted(set(matches), key=lambda entry: -len(entry[0])):
                text = text.replace(found, f"[{kind} redacted]")
        return text

    # -- the session's output ---------------------------------------------------------
    def observe(self, output: str | bytes | None, where: str, source: str) -> list[Finding]:
        """Scan one output of the session (counted under source, e.g. "subprocess output")
        and keep what it holds for the running test to fail on (take_findings)."""
        if not output:
            return []
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
        findings = self.scan(text, where)
        with self._lock:
            self._scanned[source] += 1
            self._pending.extend(findings)
        return findings

    def take_findings(self) -> list[Finding]:
        """What observe() found since the last call, and forget it."""
        with self._lock:
            pending, self._pending = self._pending, []
        return sorted(set(pending))

    def scanned(self) -> dict[str, int]:
        """How many outputs were scanned, by source."""
        with self._lock:
            return dict(self._scanned)


_registry = Registry()

remember = _registry.remember
count = _registry.count
forms = _registry.forms
scan = _registry.scan
find = _registry.find
redact = _registry.redact
observe = _registry.observe
take_findings = _registry.take_findings
scanned = _registry.scanned
