"""Talking to a MySQL or MariaDB server: its flavour and version, its authentication plugins,
identifiers and statements, and the server's refusals turned into errors that name the action
and the cause, never a value. Shared by the engine (app.py) and the account copy (mysql_accounts.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rotation_core import ConfigurationError, RotationError, Sensitive, UnreachableError
from rotation_core.errors import printable

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

# A statement refused for want of a privilege: 1044 database, 1045 a global privilege not
# held (GRANT), 1142/1143 table/column, 1227 a privilege such as a MySQL 8 dynamic one
# (ER_SPECIFIC_ACCESS_DENIED_ERROR), 1370 routine, 1410 ER_CANT_CREATE_USER_WITH_GRANT.
PRIVILEGE_REFUSED = frozenset({1044, 1045, 1142, 1143, 1227, 1370, 1410, 1698})
PLUGIN_REFUSED = frozenset({1372, 1699})  # a hash the account's plugin does not take
UNKNOWN_VARIABLE = 1193
PLUGIN_NOT_LOADED = 1524  # ER_PLUGIN_IS_NOT_LOADED: mysql_native_password on MySQL 8.4 by default

MARIADB_PLUGINS = frozenset({"mysql_native_password", ""})  # "" is a pre-plugin native account
MYSQL_PLUGINS = frozenset({"mysql_native_password", "caching_sha2_password", "sha256_password"})
NATIVE = "mysql_native_password"
CACHING_SHA2 = "caching_sha2_password"
# Deprecated on MySQL: mysql_native_password since 8.0.34, disabled by default in 8.4,
# removed in 9.0 (MySQL 8.4 reference, 8.4.1.1 Native Pluggable Authentication);
# sha256_password since 8.0.16 (8.4.1.3 SHA-256 Pluggable Authentication).
DEPRECATED_PLUGINS = frozenset({NATIVE, "sha256_password"})
PLUGIN_GONE_MESSAGE = (
    "the account authenticates with mysql_native_password, which MySQL 8.4 no longer loads by default "
    "(--mysql-native-password=ON) and MySQL 9.0 removed; move the account to caching_sha2_password "
    "(ALTER USER ... IDENTIFIED WITH caching_sha2_password BY ...)"
)


def native_password_hash(password: Sensitive) -> str:
    """The mysql_native_password hash: '*' and upper-case hex SHA1(SHA1(password))."""
    # SHA1 is what the mysql_native_password protocol defines; nothing to choose here.
    inner = hashlib.sha1(password.reveal().encode(), usedforsecurity=False).digest()
    return "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()


def ident(name: str) -> str:
    """A backtick-quoted identifier, for SQL text that also takes %s parameters
    (pymysql formats with %, so a literal % is doubled)."""
    return ("`" + name.replace("`", "``") + "`").replace("%", "%%")


def catalog_text(value: Any) -> str:
    """A catalog value that may come back as bytes (BLOB columns on MySQL)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def error_code(exc: Exception) -> int | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


def server_cause(exc: Exception, password: Sensitive | None) -> str:
    """The server's or driver's message, first line, printable. When the statement or login
    carried a password (or its hash), only the server's error code: its text could quote
    the statement."""
    code = error_code(exc)
    if password is not None and code is not None:
        return f"error {code}"
    parts = [str(arg) for arg in exc.args] if exc.args else [type(exc).__name__]
    text = (parts[-1].strip().splitlines() or [type(exc).__name__])[0]
    if password is not None:  # no code: a driver's own text (never a statement); mask anyway
        for secret in (password.reveal(), native_password_hash(password)):
            if len(secret) >= 8:
                text = text.replace(secret, "********")
    return printable(f"error {code}: {text}" if code is not None else text)


def execute(cur: Cursor, statement: str, params: Sequence[Any] = ()) -> None:
    """cur.execute, noting the statement's template (identifiers and placeholders, never a
    value) on a failure, for the error message."""
    try:
        cur.execute(statement, tuple(params))
    except Exception as exc:
        exc.add_note(statement.replace("%%", "%"))
        raise


@contextlib.contextmanager
def statement_errors(action: str, password: Sensitive | None) -> Iterator[None]:
    """Turn the server's refusal of a statement into a RotationError that names the
    action and the cause, never a value."""
    import pymysql

    try:
        yield
    except pymysql.MySQLError as exc:
        code = error_code(exc)
        notes = getattr(exc, "__notes__", [])
        cause = f"{notes[-1]}: {server_cause(exc, password)}" if notes else server_cause(exc, password)
        if code is not None and 2000 <= code < 3000:  # client-side: the connection broke
            raise UnreachableError(f"{action}: the connection to the server failed: {cause}") from None
        if code in PRIVILEGE_REFUSED:
            raise ConfigurationError(f"{action}: the connected user lacks a privilege: {cause}") from None
        if code in PLUGIN_REFUSED:
            raise ConfigurationError(
                f"{action}: the account does not authenticate with mysql_native_password: {cause}"
            ) from None
        if code == PLUGIN_NOT_LOADED:
            raise ConfigurationError(f"{action}: {PLUGIN_GONE_MESSAGE}: {cause}") from None
        raise RotationError(f"{action}: the server refused a statement: {cause}") from None


@dataclass(frozen=True)
class Server:
    mariadb: bool
    major: int
    version: tuple[int, int, int] = (0, 0, 0)

    @property
    def has_roles(self) -> bool:
        return self.mariadb or self.major >= 8

    @property
    def has_partial_revokes(self) -> bool:
        """MySQL 8.0.16+ (mysql.user.User_attributes holds them)."""
        return not self.mariadb and self.version >= (8, 0, 16)

    @property
    def takes_replace(self) -> bool:
        """ALTER USER ... REPLACE 'current': MySQL 8.0.13+ (MariaDB has no such clause)."""
        return not self.mariadb and self.version >= (8, 0, 13)


# Aurora MySQL 3 reports "8.0.mysql_aurora.3.05.2": it is MySQL 8.0.23 or later
# (Aurora user guide, "Aurora MySQL version 3 compatible with MySQL 8.0").
_AURORA_3_MYSQL = 23


def server_of(conn: Connection) -> Server:
    version = str(conn.get_server_info())  # type: ignore[no-untyped-call]  # untyped in types-PyMySQL
    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if not match:
        return Server(mariadb="MariaDB" in version, major=0)
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    patch = int(match.group(3)) if match.group(3) else (_AURORA_3_MYSQL if "mysql_aurora" in version else 0)
    return Server(mariadb="MariaDB" in version, major=major, version=(major, minor, patch))
