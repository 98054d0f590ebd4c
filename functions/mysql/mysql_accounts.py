"""Copying one MySQL or MariaDB account onto another (alternating users): what the original
holds, read from the catalogs as data, and the statements that make the clone hold exactly that.

The master creates `<username>_clone` for every host part of the original and, on every
rotation, copies onto it: TLS requirement and resource limits (mysql.user); privileges at
every level with their grant option (information_schema.*_PRIVILEGES, mysql.procs_priv;
MySQL 8 dynamic privileges keep their grant option one by one); MySQL 8 partial revokes
(mysql.user.User_attributes $.Restrictions); roles with their admin option and the default
roles. What the clone holds and the original does not is revoked. Statements are built
from those catalogs, never from SHOW GRANTS text: identifiers backtick-quoted, privilege
names checked against a pattern, account and role names bound parameters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mysql_statements as sql
from aws_lambda_powertools.metrics import MetricUnit
from mysql_statements import (
    CACHING_SHA2,
    MARIADB_PLUGINS,
    MYSQL_PLUGINS,
    NATIVE,
    PLUGIN_GONE_MESSAGE,
    PRIVILEGE_REFUSED,
    UNKNOWN_VARIABLE,
    Server,
    catalog_text,
    error_code,
    ident,
)

from rotation_core import ConfigurationError, Sensitive
from rotation_core.observability import logger, metrics
from rotation_core.settings import SKIP_UNGRANTABLE_PRIVILEGES

if TYPE_CHECKING:
    from pymysql.cursors import Cursor

# A GRANT on an object that no longer exists: DROP TABLE (and ALTER TABLE ... DROP COLUMN)
# keep the grants on it (MySQL 8.4 reference, GRANT: "MySQL does not automatically revoke
# any privileges when you drop a database or table"; MariaDB the same, checked here).
_NO_SUCH_TABLE, _NO_SUCH_COLUMN, _NO_SUCH_ROUTINE = 1146, 1054, 1305
_OBJECT_GONE = frozenset({_NO_SUCH_TABLE, _NO_SUCH_COLUMN, _NO_SUCH_ROUTINE})


# Privilege names as the server reports them: upper-case words (MySQL 8 dynamic
# privileges and MariaDB's READ_ONLY ADMIN have underscores), separated by spaces.
_PRIVILEGE_NAME = re.compile(r"[A-Z][A-Z_]*(?: [A-Z][A-Z_]*)*")
# MySQL's static privileges (MySQL 8.0 reference, GRANT, "Permissible Static Privileges");
# every other global privilege a MySQL 8 server reports is dynamic, and carries its own
# grant option: "GRANT OPTION granted for any static global privilege applies to all static
# global privileges. GRANT OPTION granted for any dynamic privilege applies only to that
# dynamic privilege" (same page, "Global Privileges"). MariaDB has no dynamic privileges.
_MYSQL_STATIC = frozenset(
    {
        "ALTER", "ALTER ROUTINE", "CREATE", "CREATE ROLE", "CREATE ROUTINE", "CREATE TABLESPACE",
        "CREATE TEMPORARY TABLES", "CREATE USER", "CREATE VIEW", "DELETE", "DROP", "DROP ROLE", "EVENT",
        "EXECUTE", "FILE", "GRANT OPTION", "INDEX", "INSERT", "LOCK TABLES", "PROCESS", "PROXY", "REFERENCES",
        "RELOAD", "REPLICATION CLIENT", "REPLICATION SLAVE", "SELECT", "SHOW DATABASES", "SHOW VIEW", "SHUTDOWN",
        "SUPER", "TRIGGER", "UPDATE", "USAGE",
    }
)  # fmt: skip
_ROUTINE_TYPES = frozenset({"FUNCTION", "PROCEDURE", "PACKAGE", "PACKAGE BODY"})
_SSL_TYPES = {"": "REQUIRE NONE", "ANY": "REQUIRE SSL", "X509": "REQUIRE X509"}
_LIMITS = ("MAX_QUERIES_PER_HOUR", "MAX_UPDATES_PER_HOUR", "MAX_CONNECTIONS_PER_HOUR", "MAX_USER_CONNECTIONS")
_MARIADB_LIMITS = (*_LIMITS, "MAX_STATEMENT_TIME")
GLOBAL = "*.*"


def _privilege(name: str) -> str:
    if not _PRIVILEGE_NAME.fullmatch(name):
        raise ConfigurationError("the server reported a privilege name this function does not recognise")
    return name


Role = tuple[str, ...]  # MariaDB: (name,); MySQL 8: (user, host)
Restriction = tuple[str, str]  # MySQL 8 partial revoke: (database, privilege)


@dataclass(frozen=True)
class Account:
    user: str
    host: str
    plugin: str = NATIVE
    require: tuple[str, str, str, str] = ("", "", "", "")  # ssl_type, issuer, subject, cipher
    limits: tuple[Any, ...] = ()
    default_roles: frozenset[Role] = frozenset()
    restrictions: frozenset[Restriction] = frozenset()

    @property
    def name(self) -> tuple[str, str]:
        return (self.user, self.host)

    @property
    def grantee(self) -> str:
        """How information_schema names the account: 'user'@'host', unescaped. Servers refuse
        '@' in a host name, so the last "'@'" splits it: the string names one account."""
        if "@" in self.host:
            raise ConfigurationError("an account of the user has '@' in its host name: refusing to copy privileges")
        return f"'{self.user}'@'{self.host}'"


@dataclass
class Grant:
    """What an account holds at one level (one GRANT target)."""

    items: set[str] = field(default_factory=set)  # static privileges: "SELECT", "SELECT (`col`)"
    grantable: bool = False  # the level's GRANT OPTION, shared by all its static privileges
    dynamic: dict[str, bool] = field(default_factory=dict)  # MySQL 8 dynamic privilege -> its own grant option


Privileges = dict[str, Grant]  # by GRANT target: *.*, `db`.*, `db`.`table`, PROCEDURE `db`.`name`


@dataclass
class Copy:
    """What copying the privileges left out, for the log, the metric and the error."""

    skip: frozenset[str]  # SKIP_UNGRANTABLE_PRIVILEGES
    gone: list[tuple[str, str]] = field(default_factory=list)  # (target, item) on an object that no longer exists
    skipped: list[tuple[str, str]] = field(default_factory=list)  # refused, and listed in skip
    refused: list[tuple[str, str]] = field(default_factory=list)  # refused: setSecret fails naming them

    def record(self, on: str, item: str, code: int | None) -> None:
        if code in _OBJECT_GONE:
            self.gone.append((on, item))
        elif item.split(" (", 1)[0] in self.skip:
            self.skipped.append((on, item))
        else:
            self.refused.append((on, item))

    def left_out(self, on: str) -> set[str]:
        return {item for target, item in (*self.skipped, *self.refused) if target == on}


# -- reading the catalogs ----------------------------------------------------------------
def _restrictions(value: Any) -> frozenset[Restriction]:
    """MySQL 8 partial revokes, as mysql.user.User_attributes stores them under $.Restrictions:
    [{"Database": "mysql", "Privileges": ["SELECT", ...]}, ...] (MySQL 8.4 reference, 8.2.12
    Privilege Restriction Using Partial Revokes)."""
    text = catalog_text(value)
    if not text:
        return frozenset()
    try:
        entries = json.loads(text)
        return frozenset(
            (str(entry["Database"]), _privilege(str(name).upper()))
            for entry in entries or ()
            for name in entry["Privileges"]
        )
    except (ValueError, TypeError, KeyError):
        raise ConfigurationError("the server reported partial revokes this function does not recognise") from None


def read_accounts(cur: Cursor, server: Server, users: Sequence[str]) -> list[Account]:
    placeholders = ", ".join(["%s"] * len(users))
    columns = (
        "User, Host, plugin, ssl_type, x509_issuer, x509_subject, ssl_cipher, "
        "max_questions, max_updates, max_connections, max_user_connections"
    )
    if server.mariadb:
        sql.execute(
            cur,
            f"SELECT {columns}, max_statement_time, default_role FROM mysql.user "
            f"WHERE is_role = 'N' AND User IN ({placeholders}) ORDER BY Host",
            tuple(users),
        )
    elif server.has_partial_revokes:
        sql.execute(
            cur,
            f"SELECT {columns}, JSON_EXTRACT(User_attributes, '$.Restrictions') FROM mysql.user "
            f"WHERE User IN ({placeholders}) ORDER BY Host",
            tuple(users),
        )
    else:
        sql.execute(cur, f"SELECT {columns} FROM mysql.user WHERE User IN ({placeholders}) ORDER BY Host", tuple(users))
    limit_count = len(_MARIADB_LIMITS if server.mariadb else _LIMITS)
    rows = list(cur.fetchall())
    defaults: dict[tuple[str, str], set[Role]] = {}
    if server.mariadb:
        for row in rows:
            if catalog_text(row[-1]):
                defaults[(row[0], row[1])] = {(catalog_text(row[-1]),)}
    elif server.has_roles:
        sql.execute(
            cur,
            "SELECT USER, HOST, DEFAULT_ROLE_USER, DEFAULT_ROLE_HOST FROM mysql.default_roles "
            f"WHERE USER IN ({placeholders})",
            tuple(users),
        )
        for user, host, role_user, role_host in cur.fetchall():
            defaults.setdefault((user, host), set()).add((catalog_text(role_user), catalog_text(role_host)))
    rows = [row for row in rows if row[0] in users]  # exact names (comparisons ignore trailing spaces)
    return [
        Account(
            user=row[0],
            host=row[1],
            plugin=catalog_text(row[2]),
            require=(catalog_text(row[3]), catalog_text(row[4]), catalog_text(row[5]), catalog_text(row[6])),
            limits=tuple(row[7 : 7 + limit_count]),
            default_roles=frozenset(defaults.get((row[0], row[1]), ())),
            restrictions=_restrictions(row[11]) if server.has_partial_revokes else frozenset(),
        )
        for row in rows
    ]


_PRIVILEGES_SQL = (
    "SELECT GRANTEE, 'column', TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, PRIVILEGE_TYPE, IS_GRANTABLE"
    " FROM information_schema.COLUMN_PRIVILEGES WHERE GRANTEE IN (%s, %s)"
    " UNION ALL SELECT GRANTEE, 'table', TABLE_SCHEMA, TABLE_NAME, '', PRIVILEGE_TYPE, IS_GRANTABLE"
    " FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE IN (%s, %s)"
    " UNION ALL SELECT GRANTEE, 'schema', TABLE_SCHEMA, '', '', PRIVILEGE_TYPE, IS_GRANTABLE"
    " FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE IN (%s, %s)"
    " UNION ALL SELECT GRANTEE, 'global', '', '', '', PRIVILEGE_TYPE, IS_GRANTABLE"
    " FROM information_schema.USER_PRIVILEGES WHERE GRANTEE IN (%s, %s)"
)


def read_privileges(cur: Cursor, server: Server, source: Account, target: Account) -> tuple[Privileges, Privileges]:
    """The privileges of source and of target, by GRANT target."""
    found: dict[str, Privileges] = {source.grantee: {}, target.grantee: {}}
    sql.execute(cur, _PRIVILEGES_SQL, (source.grantee, target.grantee) * 4)
    for grantee, level, schema, table, column, name, grantable in cur.fetchall():
        if grantee not in found:  # information_schema compares names case-insensitively
            continue
        if level == "global":
            on = GLOBAL
        elif level == "schema":
            on = f"{ident(schema)}.*"
        else:
            on = f"{ident(schema)}.{ident(table)}"
        grant = found[grantee].setdefault(on, Grant())
        privilege = _privilege(name)
        if level == "global" and not server.mariadb and privilege not in _MYSQL_STATIC:
            grant.dynamic[privilege] = grantable == "YES"
            continue
        grant.grantable |= grantable == "YES"
        if privilege != "USAGE":
            grant.items.add(f"{privilege} ({ident(column)})" if level == "column" else privilege)
    by_user = {source.user: found[source.grantee], target.user: found[target.grantee]}
    _routine_privileges(cur, source, by_user)
    return by_user[source.user], by_user[target.user]


def _routine_privileges(cur: Cursor, source: Account, by_user: dict[str, Privileges]) -> None:
    """Add the routine-level privileges (mysql.procs_priv) of the users of by_user, on source's host."""
    users = list(by_user)
    sql.execute(
        cur,
        "SELECT User, Routine_type, Db, Routine_name, Proc_priv FROM mysql.procs_priv "
        "WHERE Host = %s AND User IN (%s, %s)",
        (source.host, *users),
    )
    for user, kind, schema, routine, names in cur.fetchall():
        if user not in by_user:
            continue
        if catalog_text(kind) not in _ROUTINE_TYPES:
            raise ConfigurationError("the server reported a routine type this function does not recognise")
        grant = by_user[user].setdefault(f"{catalog_text(kind)} {ident(schema)}.{ident(routine)}", Grant())
        for name in names if isinstance(names, set) else catalog_text(names).split(","):
            if name.upper() == "GRANT":
                grant.grantable = True
            elif name:
                grant.items.add(_privilege(name.upper()))


def read_roles(
    cur: Cursor, server: Server, source: Account, target: Account
) -> tuple[dict[Role, bool], dict[Role, bool]]:
    """The roles granted to source and to target, with their admin option."""
    found: dict[str, dict[Role, bool]] = {source.user: {}, target.user: {}}
    if server.mariadb:
        sql.execute(
            cur,
            "SELECT User, Role, Admin_option FROM mysql.roles_mapping WHERE Host = %s AND User IN (%s, %s)",
            (source.host, source.user, target.user),
        )
        for user, role, admin in cur.fetchall():
            if user in found:
                found[user][(catalog_text(role),)] = catalog_text(admin) == "Y"
    elif server.has_roles:
        sql.execute(
            cur,
            "SELECT TO_USER, FROM_USER, FROM_HOST, WITH_ADMIN_OPTION FROM mysql.role_edges "
            "WHERE TO_HOST = %s AND TO_USER IN (%s, %s)",
            (source.host, source.user, target.user),
        )
        for user, role_user, role_host, admin in cur.fetchall():
            if user in found:
                found[user][(catalog_text(role_user), catalog_text(role_host))] = catalog_text(admin) == "Y"
    return found[source.user], found[target.user]


def default_plugin(cur: Cursor, server: Server) -> str:
    """The plugin MySQL gives an account created without IDENTIFIED WITH. From 8.0.27, the
    first element of @@authentication_policy when it names one ("name" or, 8.4, "*:name");
    when it is "*" or empty, @@default_authentication_plugin on 8.0 and caching_sha2_password
    from 8.4, which removed that variable (MySQL 8.0 and 8.4 reference, "Pluggable
    Authentication", "The Default Authentication Plugin"). Before 8.0.27 (no such policy),
    @@default_authentication_plugin."""
    import pymysql

    try:
        sql.execute(cur, "SELECT @@authentication_policy")
        row = cur.fetchone()
    except pymysql.MySQLError as exc:
        if error_code(exc) != UNKNOWN_VARIABLE:
            raise
        row = None
    if row is not None:
        first = catalog_text(row[0]).split(",", 1)[0].strip()
        first = first.removeprefix("*:")
        if first not in ("*", ""):
            return first
        if server.version >= (8, 4, 0):
            return CACHING_SHA2
    sql.execute(cur, "SELECT @@default_authentication_plugin")
    row = cur.fetchone()
    return catalog_text(row[0]) if row else CACHING_SHA2


# -- writing -------------------------------------------------------------------------------
def check_plugin(server: Server, account: Account) -> None:
    supported = MARIADB_PLUGINS if server.mariadb else MYSQL_PLUGINS
    if account.plugin not in supported:
        plugin = account.plugin if account.plugin.isidentifier() else "another"
        raise ConfigurationError(
            f"the user named by field 'username' authenticates with the {plugin} plugin; this function rotates "
            f"passwords of {', '.join(sorted(p for p in supported if p))} accounts only"
        )
    if not server.mariadb and server.major >= 9 and account.plugin == NATIVE:
        raise ConfigurationError(f"the user named by field 'username': {PLUGIN_GONE_MESSAGE}")


def identified(server: Server, plugin: str, password: Sensitive) -> tuple[str, str]:
    """The IDENTIFIED clause for an account using `plugin`, and its parameter."""
    if server.mariadb:
        return "IDENTIFIED BY PASSWORD %s", sql.native_password_hash(password)
    if plugin == NATIVE:
        return "IDENTIFIED WITH mysql_native_password AS %s", sql.native_password_hash(password)
    if plugin == CACHING_SHA2:
        return "IDENTIFIED WITH caching_sha2_password BY %s", password.reveal()
    return "IDENTIFIED WITH sha256_password BY %s", password.reveal()


def _require(require: tuple[str, str, str, str]) -> tuple[str, tuple[str, ...]]:
    ssl_type, issuer, subject, cipher = require
    if ssl_type in _SSL_TYPES:
        return _SSL_TYPES[ssl_type], ()
    if ssl_type != "SPECIFIED":
        raise ConfigurationError("the server reported a TLS requirement this function does not recognise")
    given = [
        (keyword, value) for keyword, value in (("ISSUER", issuer), ("SUBJECT", subject), ("CIPHER", cipher)) if value
    ]
    if not given:
        return "REQUIRE SSL", ()
    return "REQUIRE " + " AND ".join(f"{keyword} %s" for keyword, _ in given), tuple(v for _, v in given)


def _sync_attributes(cur: Cursor, server: Server, source: Account, target: Account) -> None:
    if source.require == target.require and source.limits == target.limits:
        return
    clause, values = _require(source.require)
    names = _MARIADB_LIMITS if server.mariadb else _LIMITS
    limits = " ".join(f"{name} %s" for name in names)
    sql.execute(cur, f"ALTER USER %s@%s {clause} WITH {limits}", (*target.name, *values, *source.limits))


def _grant(cur: Cursor, on: str, items: Iterable[str], account: tuple[str, str], *, option: bool, copy: Copy) -> None:
    """GRANT items ON on, with or without GRANT OPTION. When the server refuses for want of a
    privilege or because the object is gone, find out which items it refuses by granting
    them one by one (a gone table refuses them all), and record those in copy."""
    import pymysql

    ordered = sorted(items)
    suffix = " WITH GRANT OPTION" if option else ""
    try:
        sql.execute(cur, f"GRANT {', '.join(ordered)} ON {on} TO %s@%s{suffix}", account)
        return
    except pymysql.MySQLError as exc:
        code = error_code(exc)
        if code not in PRIVILEGE_REFUSED | _OBJECT_GONE:
            raise
        if len(ordered) == 1 or code in (_NO_SUCH_TABLE, _NO_SUCH_ROUTINE):
            for item in ordered:
                copy.record(on, item, code)
            return
    for item in ordered:
        try:
            sql.execute(cur, f"GRANT {item} ON {on} TO %s@%s{suffix}", account)
        except pymysql.MySQLError as exc:
            code = error_code(exc)
            if code not in PRIVILEGE_REFUSED | _OBJECT_GONE:
                raise
            copy.record(on, item, code)


def _sync_privileges(cur: Cursor, want: Privileges, have: Privileges, account: tuple[str, str], copy: Copy) -> None:
    """Make the account hold exactly `want`, level by level: first take away what it has
    beyond (grant options, then privileges), then grant what it lacks, grouped by grant
    option: the level's static privileges, then dynamic ones with, then without, their own."""
    for on in sorted(want.keys() | have.keys()):
        wanted, held = want.get(on, Grant()), have.get(on, Grant())
        held_option, held_dynamic = held.grantable, dict(held.dynamic)
        lower = {name for name, option in held.dynamic.items() if option and not wanted.dynamic.get(name)}
        if (held.grantable and not wanted.grantable) or (lower & wanted.dynamic.keys()):
            # On MySQL this takes the grant option off every dynamic privilege as well
            # (sql_authorization.cc, mysql_grant: revoke_grant_option_for_all_dynamic_privileges);
            # the ones that keep it are granted it again below.
            sql.execute(cur, f"REVOKE GRANT OPTION ON {on} FROM %s@%s", account)
            held_option, held_dynamic = False, dict.fromkeys(held.dynamic, False)
        extra = (held.items - wanted.items) | (held.dynamic.keys() - wanted.dynamic.keys())
        if extra:
            sql.execute(cur, f"REVOKE {', '.join(sorted(extra))} ON {on} FROM %s@%s", account)
        missing = wanted.items - held.items
        if missing or (wanted.grantable and not held_option):
            _grant(cur, on, missing or wanted.items or {"USAGE"}, account, option=wanted.grantable, copy=copy)
        for option in (True, False):
            dynamic = {
                name
                for name, grantable in wanted.dynamic.items()
                if grantable == option and (name not in held_dynamic or (option and not held_dynamic[name]))
            }
            if dynamic:
                _grant(cur, on, dynamic, account, option=option, copy=copy)


def _sync_restrictions(
    cur: Cursor, source: Account, target: Account, granted: set[str], account: tuple[str, str]
) -> None:
    """MySQL 8 partial revokes (partial_revokes=ON): information_schema shows a global grant
    without its restrictions, so after the global GRANT, revoke it again on each database
    the user is restricted on; and lift the restrictions the clone has and the user has not
    by granting the privilege on that database, which removes the restriction (MySQL 8.4
    reference, 8.2.12 Privilege Restriction Using Partial Revokes). Only privileges the
    account holds globally can be restricted."""
    add = {(db, name) for db, name in source.restrictions - target.restrictions if name in granted}
    lift = target.restrictions - source.restrictions
    for verb, pairs, direction in (("REVOKE", add, "FROM"), ("GRANT", lift, "TO")):
        for db in sorted({db for db, _ in pairs}):
            names = ", ".join(sorted(name for other, name in pairs if other == db))
            sql.execute(cur, f"{verb} {names} ON {ident(db)}.* {direction} %s@%s", account)


def _role_placeholder(role: Role) -> str:
    return "%s@%s" if len(role) == 2 else "%s"


def _sync_roles(cur: Cursor, want: dict[Role, bool], have: dict[Role, bool], account: tuple[str, str]) -> None:
    for role in sorted(want.keys() | have.keys()):
        if role in have and want.get(role) != have[role]:  # gone, or another admin option
            sql.execute(cur, f"REVOKE {_role_placeholder(role)} FROM %s@%s", (*role, *account))
        if role in want and have.get(role) != want[role]:
            option = " WITH ADMIN OPTION" if want[role] else ""
            sql.execute(cur, f"GRANT {_role_placeholder(role)} TO %s@%s{option}", (*role, *account))


def _sync_default_roles(cur: Cursor, server: Server, source: Account, target: Account) -> None:
    if source.default_roles == target.default_roles:
        return
    roles = sorted(source.default_roles)
    if server.mariadb:
        if roles:
            sql.execute(cur, "SET DEFAULT ROLE %s FOR %s@%s", (*roles[0], *target.name))
        else:
            sql.execute(cur, "SET DEFAULT ROLE NONE FOR %s@%s", target.name)
        return
    listed = ", ".join(_role_placeholder(role) for role in roles) or "NONE"
    sql.execute(cur, f"ALTER USER %s@%s DEFAULT ROLE {listed}", (*target.name, *(part for r in roles for part in r)))


def sync_account(cur: Cursor, server: Server, source: Account, target: Account, copy: Copy) -> None:
    """Make target (an existing clone account) a copy of source, apart from its password."""
    _sync_attributes(cur, server, source, target)
    want, have = read_privileges(cur, server, source, target)
    _sync_privileges(cur, want, have, target.name, copy)
    if server.has_partial_revokes and (source.restrictions or target.restrictions):
        granted = want.get(GLOBAL, Grant()).items - copy.left_out(GLOBAL)
        _sync_restrictions(cur, source, target, granted, target.name)
    if server.has_roles:
        want_roles, have_roles = read_roles(cur, server, source, target)
        _sync_roles(cur, want_roles, have_roles, target.name)
        _sync_default_roles(cur, server, source, target)


def report_left_out(copy: Copy, action: str) -> None:
    """Log and count what the copy left out; fail naming what the master may not grant."""
    left_out = len(copy.gone) + len(copy.skipped)
    if copy.gone:
        logger.warning(
            "grants on objects that no longer exist (dropped tables, columns or routines) were not copied",
            extra={"grants_skipped": len(copy.gone)},
        )
    if copy.skipped:
        logger.warning(
            f"privileges the master user may not grant and {SKIP_UNGRANTABLE_PRIVILEGES} lists were not copied",
            extra={"privileges_skipped": sorted({item.split(" (", 1)[0] for _, item in copy.skipped})},
        )
    if left_out:
        metrics.add_metric(name="GrantsSkipped", unit=MetricUnit.Count, value=left_out)
    if copy.refused:
        names = ", ".join(sorted({f"{item} ON {on}".replace("%%", "%") for on, item in copy.refused}))
        raise ConfigurationError(
            f"{action}: the master user lacks a privilege it must grant to copy the user: it may not grant "
            f"{names}. Every other privilege was copied; the current credential is unchanged. Grant each to the "
            f"master user WITH GRANT OPTION, revoke it from the user, or list its name in environment variable "
            f"{SKIP_UNGRANTABLE_PRIVILEGES} to leave it off the alternate user"
        )
