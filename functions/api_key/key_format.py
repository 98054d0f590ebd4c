"""Generated keys: the format a secret asks for (field ``generate``), and the key itself.

The random part comes from the ``secrets`` module and carries at least 128 bits.
"""

from __future__ import annotations

import math
import secrets
import string
from dataclasses import dataclass

from rotation_core import Sensitive

ALPHABETS = {
    "base62": string.digits + string.ascii_letters,
    "hex": string.digits + "abcdef",
    "base64url": string.ascii_letters + string.digits + "-_",
    "base32": string.ascii_uppercase + "234567",
}
DEFAULT_LENGTH = 40
DEFAULT_ALPHABET = "base62"
MIN_ENTROPY_BITS = 128
MAX_LENGTH = 1024
MAX_PREFIX = 64


@dataclass(frozen=True)
class KeyFormat:
    prefix: str = ""
    length: int = DEFAULT_LENGTH
    alphabet: str = DEFAULT_ALPHABET

    def generate(self) -> Sensitive:
        chars = ALPHABETS[self.alphabet]
        return Sensitive(self.prefix + "".join(secrets.choice(chars) for _ in range(self.length)))

    def matches(self, key: Sensitive) -> bool:
        value = key.reveal()
        body = value[len(self.prefix) :]
        chars = set(ALPHABETS[self.alphabet])
        return value.startswith(self.prefix) and len(body) == self.length and set(body) <= chars

    def entropy_bits(self) -> float:
        return self.length * math.log2(len(ALPHABETS[self.alphabet]))
