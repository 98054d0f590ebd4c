"""Types that carry secret values without ever showing them."""

from __future__ import annotations

import hmac
from typing import Any, NoReturn


class Sensitive:
    """A secret string whose repr and str hide it.

    The value is only reachable through :meth:`reveal`, so it cannot end up in a
    log line, an f-string or an exception message by accident.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Sensitive wraps a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Sensitive('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sensitive):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("Sensitive values are not picklable")

    def __deepcopy__(self, memo: dict[int, Any]) -> Sensitive:
        return self
