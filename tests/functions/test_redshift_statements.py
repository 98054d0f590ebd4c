"""What only a real Amazon Redshift does, at statement level: the exact statements the
engine sends, against a connection double that records each execute(statement, params)
and answers as Redshift's documentation says the server would (rows and errors).

The double (FakeRedshift) holds a small catalog: users, groups, tables, schemas,
databases (local or made from a datashare), external schemas and explicit grants, and
applies what the engine sends to it, so a test states the outcome (who holds what), not
only the text. Each behaviour it models cites the document that defines it. What
PostgreSQL behind the shim can show is tested against it in test_redshift.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from rotation_core import ConfigurationError
from rotation_core.values import Sensitive
from tests.engines import new_password
from tests.support import functions

app = functions.load("redshift")

ORIGINAL, CLONE = "app_user", "app_user_clone"
PAIR = "app_user_pair"
MASTER = "admin"


def folded(name: str) -> str:
    """Redshift, "Names and identifiers": ASCII letters in standard and delimited
    identifiers are case-insensitive and are folded to lowercase in the database."""
    return name.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"))


def identifiers(text: str) -> list[str]:
    return [part.replace('""', '"') for part in re.findall(r'"((?:[^"]|"")*)"', text)]


def server_error(code: str, message: str) -> Exception:
    """An ErrorResponse as redshift_connector raises it (its first argument: the fields)."""
    from redshift_connector.error import ProgrammingError

    return ProgrammingError({"S": "ERROR", "C": code, "M": message})


@dataclass
class Sent:
    statement: str
    params: tuple[Any, ...] | None
    in_transaction: bool


@dataclass
class FakeRedshift:
    """A Redshift cluster's catalog and its answers to the engine's statements."""

    users: dict[str, bool] = field(default_factory=dict)  # name as stored -> CREATEDB
    groups: dict[str, set[str]] = field(default_factory=dict)
    relations: list[tuple[str, str, str]] = field(default_factory=list)  # schema, name, owner
    schemas: list[tuple[str, str]] = field(default_factory=list)  # name, owner
    external: set[str] = field(default_factory=set)
    databases: list[tuple[str, str, str]] = field(default_factory=list)  # name, owner, local|shared
    # (kind, object name parts, privilege, identity type, identity name)
    grants: set[tuple[str, tuple[str, ...], str, str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.users.setdefault(MASTER, True)

    # -- the catalog as the engine's queries read it ------------------------------------
    def answer(self, conn: Connection, statement: str, params: tuple[Any, ...] | None) -> list[tuple[Any, ...]] | None:
        p = params or ()
        reads: dict[str, Any] = {
            app._USER: lambda: [(u, c) for u, c in self.users.items() if u.lower() == p[0].lower()],
            app._POWERS: lambda: [(u, u == MASTER, c) for u, c in self.users.items() if u in p],
            app._GROUPS_OF: lambda: [(g,) for g, members in self.groups.items() if p[0] in members],
            app._MEMBERS_OF: lambda: [(u,) for u in sorted(self.groups.get(p[0], ()))],
            app._GROUP: lambda: [(g,) for g in self.groups if g == p[0]],
            app._EXTERNAL_SCHEMAS: lambda: [(s,) for s in sorted(self.external)],
            app._RELATIONS: lambda: sorted(self.relations),
            app._SCHEMAS: lambda: sorted(self.schemas),
            app._DATABASES: lambda: sorted(self.databases),
            app._RELATION_GRANTS: lambda: [
                (*key, priv, who)
                for kind, key, priv, t, who in self.grants
                if kind == "TABLE" and t == "user" and who in p
            ],
            app._SCHEMA_GRANTS: lambda: [
                (key[0], priv, t, who)
                for kind, key, priv, t, who in self.grants
                if kind == "SCHEMA" and ((t == "user" and who in p[:2]) or (t == "group" and who == p[2]))
            ],
            app._DATABASE_GRANTS: lambda: [
                (key[0], priv, who)
                for kind, key, priv, t, who in self.grants
                if kind == "DATABASE" and t == "user" and who in p
            ],
        }
        if statement in reads:
            return list(reads[statement]())
        if statement == app._CASE_SENSITIVE:
            conn.case_sensitive = True
            return None
        self.change(conn, statement)
        return None

    # -- what the engine changes --------------------------------------------------------
    def name(self, conn: Connection, quoted: str) -> str:
        """A delimited identifier of a database, schema or table as the server resolves it
        (enable_case_sensitive_identifier: with it on, the case is preserved)."""
        return quoted if conn.case_sensitive else folded(quoted)

    def change(self, conn: Connection, statement: str) -> None:
        if statement.startswith(("GRANT ", "REVOKE ")):
            self.grant(conn, statement)
        else:
            self.change_users(statement)

    def change_users(self, statement: str) -> None:
        if statement.startswith(("CREATE USER ", "ALTER USER ", "ALTER DEFAULT PRIVILEGES ")):
            if statement.startswith("CREATE USER "):
                self.users[identifiers(statement)[0]] = False  # user names keep their case
            return
        if statement.startswith("CREATE GROUP "):
            group = folded(identifiers(statement)[0])
            if group in self.groups:
                raise server_error("42710", f'group "{group}" already exists')
            self.groups[group] = set()
            return
        if statement.startswith("ALTER GROUP "):
            group, *users = identifiers(statement)
            if folded(group) not in self.groups:
                raise server_error("42704", f'group "{folded(group)}" does not exist')
            members = self.groups[folded(group)]
            if " ADD USER " in statement:
                members.update(users)
            else:
                members.difference_update(users)
            return
        raise server_error("42601", f"syntax error: the double does not know {statement[:60]!r}")

    def grant(self, conn: Connection, statement: str) -> None:
        match = re.fullmatch(
            r'(GRANT|REVOKE) ([A-Z, ]+) ON (TABLE|SCHEMA|DATABASE) (.+) (TO|FROM) (GROUP )?("(?:[^"]|"")*")', statement
        )
        if match is None:
            raise server_error("42601", f"syntax error: the double does not know {statement[:60]!r}")
        verb, privileges, kind, names, _, group, grantee = match.groups()
        parts = identifiers(names)
        keys = [tuple(parts[i : i + 2]) for i in range(0, len(parts), 2)] if kind == "TABLE" else [(n,) for n in parts]
        keys = [tuple(self.name(conn, part) for part in key) for key in keys]
        self.check_target(conn, kind, keys, privileges)
        identity = ("group", folded(identifiers(grantee)[0])) if group else ("user", identifiers(grantee)[0])
        for key in keys:
            for privilege in self.expand(kind, key, privileges):
                entry = (kind, key, privilege, *identity)
                if verb == "GRANT":
                    self.grants.add(entry)
                else:
                    self.grants.discard(entry)

    def check_target(self, conn: Connection, kind: str, keys: Sequence[tuple[str, ...]], privileges: str) -> None:
        if kind == "TABLE":
            known = {(s, n) for s, n, _ in self.relations}
            for key in keys:
                if key not in known:
                    raise server_error("42P01", f'relation "{".".join(key)}" does not exist')
        elif kind == "SCHEMA":
            for (name,) in keys:
                if name not in {s for s, _ in self.schemas}:
                    raise server_error("3F000", f'schema "{name}" does not exist')
                # GRANT reference, usage notes: "You can't run GRANT (on an external
                # resource) within a transaction block (BEGIN ... END)."
                if name in self.external and conn.in_transaction:
                    raise server_error("25001", "GRANT on an external resource cannot run inside a transaction block")
                # GRANT reference: only USAGE on an external schema, to users and groups.
                if name in self.external and privileges != "USAGE":
                    raise server_error("0A000", f"{privileges} is not supported for external schemas")
        else:
            types = {n: t for n, _, t in self.databases}
            if any(key[0] not in types for key in keys):
                raise server_error("3D000", "database does not exist")
            # aws-samples/aws-secrets-manager-rotation-lambdas pull request 141, the
            # server's message when one GRANT names both kinds.
            if len({types[key[0]] for key in keys}) > 1:
                raise server_error(
                    "XX000",
                    "Cannot grant privilege to databases created from datashares and normal databases "
                    "in one statement.",
                )
            # GRANT reference: "GRANT USAGE ON { DATABASE shared_database_name ..." is the
            # data-sharing form; CREATE and TEMP are local databases' privileges.
            if any(types[key[0]] == "shared" for key in keys) and privileges not in ("USAGE", "ALTER"):
                raise server_error("0A000", f"{privileges} cannot be granted on a database created from a datashare")

    def expand(self, kind: str, key: tuple[str, ...], privileges: str) -> list[str]:
        if privileges != "ALL":
            return [p.strip() for p in privileges.split(",")]
        if kind == "TABLE":
            return list(app._TABLE_PRIVILEGES)
        if kind == "SCHEMA":
            return ["CREATE", "USAGE", "ALTER"]
        return ["CREATE", "TEMP"]

    def holds(self, who: str) -> set[tuple[str, tuple[str, ...], str]]:
        return {(kind, key, priv) for kind, key, priv, t, name in self.grants if t == "user" and name == who}


class Connection:
    """Records what the engine sends, with redshift_connector's transaction rule: with
    autocommit off, the first statement opens a transaction that lasts until commit or
    rollback (redshift_connector Cursor.execute sends "begin transaction")."""

    def __init__(self, server: FakeRedshift) -> None:
        self.server = server
        self.autocommit = False
        self.in_transaction = False
        self.case_sensitive = False
        self.sent: list[Sent] = []

    def cursor(self) -> Cursor:
        return Cursor(self)

    def commit(self) -> None:
        self.in_transaction = False

    def rollback(self) -> None:
        self.in_transaction = False

    def close(self) -> None:
        pass

    def statements(self, prefix: str = "") -> list[str]:
        return [s.statement for s in self.sent if s.statement.startswith(prefix)]


class Cursor:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.description: list[tuple[str]] | None = None
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, statement: str, params: Sequence[Any] | None = None) -> None:
        conn = self.conn
        if not conn.autocommit:
            conn.in_transaction = True
        conn.sent.append(Sent(statement, tuple(params) if params is not None else None, conn.in_transaction))
        rows = conn.server.answer(conn, statement, tuple(params) if params is not None else None)
        self.description = [("column",)] if rows is not None else None
        self._rows = rows or []

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def close(self) -> None:
        pass


def pair_of_users(**catalog: Any) -> FakeRedshift:
    """A cluster where the original exists and the clone does too (a rotation already made it)."""
    server = FakeRedshift(users={ORIGINAL: False, CLONE: False}, **catalog)
    server.groups[PAIR] = {ORIGINAL, CLONE}
    return server


def sync(server: FakeRedshift, original: str = ORIGINAL, clone: str = CLONE, *, create: bool = False) -> Connection:
    conn = Connection(server)
    password = Sensitive(new_password()) if create else None
    app.RedshiftEngine().sync_clone(conn, original, clone, password)
    return conn


# -- 7. databases: one per statement; datashare databases take USAGE --------------------
def test_databases_are_granted_one_per_statement_and_datashare_databases_take_usage() -> None:
    # SVV_REDSHIFT_DATABASES: database_type "local" or "shared" (made from a datashare);
    # SVV_DATABASE_PRIVILEGES: privilege_type USAGE, CREATE, TEMPORARY, TEMP or ALTER.
    server = pair_of_users(
        databases=[
            ("dev", MASTER, "local"),
            ("sales", MASTER, "local"),
            ("orders_share", MASTER, "shared"),
            ("lakehouse", MASTER, "other"),  # a type this function does not know: left alone
        ],
        grants={
            ("DATABASE", ("dev",), "CREATE", "user", ORIGINAL),
            ("DATABASE", ("sales",), "CREATE", "user", ORIGINAL),
            ("DATABASE", ("sales",), "TEMPORARY", "user", ORIGINAL),
            ("DATABASE", ("orders_share",), "USAGE", "user", ORIGINAL),
            ("DATABASE", ("dev",), "TEMP", "user", CLONE),  # drift
            # Not a privilege of a datashare database, should a catalog list it: never sent.
            ("DATABASE", ("orders_share",), "TEMP", "user", ORIGINAL),
            ("DATABASE", ("lakehouse",), "USAGE", "user", ORIGINAL),
        },
    )
    conn = sync(server)
    assert [s for s in conn.statements() if " ON DATABASE " in s] == [
        'GRANT CREATE ON DATABASE "dev" TO "app_user_clone"',
        'REVOKE TEMP ON DATABASE "dev" FROM "app_user_clone"',
        'GRANT USAGE ON DATABASE "orders_share" TO "app_user_clone"',
        'GRANT CREATE ON DATABASE "sales" TO "app_user_clone"',
        'GRANT TEMP ON DATABASE "sales" TO "app_user_clone"',
    ]
    held = {(key[0], priv) for kind, key, priv in server.holds(CLONE) if kind == "DATABASE"}
    assert held == {("dev", "CREATE"), ("sales", "CREATE"), ("sales", "TEMP"), ("orders_share", "USAGE")}


def test_databases_either_user_owns_go_to_the_pair_group_one_per_statement() -> None:
    server = pair_of_users(databases=[("mine", ORIGINAL, "local"), ("shared_mine", CLONE, "shared")])
    conn = sync(server)
    assert [s for s in conn.statements() if " ON DATABASE " in s] == [
        'GRANT ALL ON DATABASE "mine" TO GROUP "app_user_pair"',
        'GRANT USAGE ON DATABASE "shared_mine" TO GROUP "app_user_pair"',
    ]


# -- 8. names: the pair group as Redshift stores it; mixed-case tables -------------------
def test_the_pair_group_of_a_mixed_case_user_is_found_again_on_the_next_rotation() -> None:
    # "Names and identifiers": delimited identifiers are folded to lower case (group
    # names too); CREATE USER: a quoted user name keeps its case.
    server = FakeRedshift(users={"MyApp": False})
    sync(server, "MyApp", "MyApp_clone", create=True)
    again = sync(server, "MyApp", "MyApp_clone")  # the next rotation: the group is found
    assert server.groups == {"myapp_pair": {"MyApp", "MyApp_clone"}}
    assert again.statements("CREATE GROUP") == []
    assert 'TO GROUP "myapp_pair"' in again.statements("ALTER DEFAULT PRIVILEGES")[0]


def test_mixed_case_tables_and_schemas_are_granted_by_their_own_names() -> None:
    # enable_case_sensitive_identifier: "The case of name identifiers is preserved when you
    # enclose identifiers within double quotation marks and set enable_case_sensitive_identifier
    # to true"; otherwise "converted to lowercase". Both tables exist here; only one is meant.
    server = pair_of_users(
        relations=[("Sales", "Q1Orders", MASTER), ("sales", "q1orders", MASTER)],
        schemas=[("Sales", MASTER), ("sales", MASTER)],
        grants={
            ("TABLE", ("Sales", "Q1Orders"), "SELECT", "user", ORIGINAL),
            ("SCHEMA", ("Sales",), "USAGE", "user", ORIGINAL),
        },
    )
    conn = sync(server)
    assert server.holds(CLONE) == {("TABLE", ("Sales", "Q1Orders"), "SELECT"), ("SCHEMA", ("Sales",), "USAGE")}
    # The setting is on, in the same transaction, before the first statement naming an object.
    first_grant = next(i for i, s in enumerate(conn.sent) if s.statement.startswith("GRANT"))
    setting = conn.statements().index(app._CASE_SENSITIVE)
    assert setting < first_grant and all(s.in_transaction for s in conn.sent[setting : first_grant + 1])


# -- 9. privileges mirrored: DROP, ALTER, TRUNCATE on tables, ALTER on schemas -----------
def test_every_table_and_schema_privilege_of_the_original_is_mirrored_and_drift_revoked() -> None:
    # GRANT reference: tables SELECT | INSERT | UPDATE | DELETE | DROP | REFERENCES | ALTER |
    # TRUNCATE; SVV_RELATION_PRIVILEGES and SVV_SCHEMA_PRIVILEGES (privilege_scope SCHEMA:
    # CREATE, USAGE, ALTER) list the explicit grants to users, roles and groups.
    table = ("mart", "facts")
    server = pair_of_users(
        relations=[(*table, MASTER)],
        schemas=[("mart", MASTER)],
        grants={
            *(("TABLE", table, p, "user", ORIGINAL) for p in ("SELECT", "DROP", "ALTER", "TRUNCATE")),
            ("TABLE", table, "DELETE", "user", CLONE),  # drift
            ("TABLE", table, "RULE", "user", ORIGINAL),  # not a Redshift privilege: never sent
            ("SCHEMA", ("mart",), "ALTER", "user", ORIGINAL),
            ("SCHEMA", ("mart",), "USAGE", "user", ORIGINAL),
        },
    )
    conn = sync(server)
    assert server.holds(CLONE) == server.holds(ORIGINAL) - {("TABLE", table, "RULE")}
    assert 'REVOKE DELETE ON TABLE "mart"."facts" FROM "app_user_clone"' in conn.statements()
    assert not [s for s in conn.statements() if "RULE" in s]
    assert sync(server).statements("GRANT ") == [], "nothing left to mirror: the next rotation sends no GRANT"


def test_what_either_user_owns_goes_to_the_pair_group_and_is_not_mirrored() -> None:
    server = pair_of_users(
        relations=[("mart", "by_original", ORIGINAL), ("mart", "by_clone", CLONE)],
        schemas=[("mart", ORIGINAL)],
    )
    conn = sync(server)
    assert conn.statements("GRANT") == [
        'GRANT ALL ON TABLE "mart"."by_clone", "mart"."by_original" TO GROUP "app_user_pair"',
        'GRANT ALL ON SCHEMA "mart" TO GROUP "app_user_pair"',
    ]
    assert server.holds(CLONE) == set(), "nothing of the pair's own is granted to the clone directly"


# -- 10. external (Spectrum) schemas: outside the transaction, USAGE only ---------------
def test_external_schemas_are_granted_outside_any_transaction_one_commit_each() -> None:
    # GRANT reference: "You can't run GRANT (on an external resource) within a transaction
    # block"; external schemas take USAGE only (CREATE ON SCHEMA isn't supported for them).
    server = pair_of_users(
        schemas=[("spectrum_a", MASTER), ("spectrum_b", MASTER), ("spectrum_c", ORIGINAL), ("local", ORIGINAL)],
        external={"spectrum_a", "spectrum_b", "spectrum_c"},
        grants={
            ("SCHEMA", ("spectrum_a",), "USAGE", "user", ORIGINAL),
            ("SCHEMA", ("spectrum_b",), "USAGE", "user", CLONE),  # drift
        },
    )
    conn = sync(server)
    outside = [s.statement for s in conn.sent if not s.in_transaction]
    assert outside == [
        'GRANT USAGE ON SCHEMA "spectrum_c" TO GROUP "app_user_pair"',
        'GRANT USAGE ON SCHEMA "spectrum_a" TO "app_user_clone"',
        'REVOKE USAGE ON SCHEMA "spectrum_b" FROM "app_user_clone"',
    ]
    assert conn.autocommit is False, "the session is back to transactions"
    assert [s for s in conn.statements() if "spectrum" in s and s not in outside] == []
    assert ("SCHEMA", ("spectrum_a",), "USAGE") in server.holds(CLONE)
    assert ("SCHEMA", ("spectrum_b",), "USAGE") not in server.holds(CLONE)
    # Already in place: the next rotation sends nothing outside the transaction.
    server.grants.add(("SCHEMA", ("spectrum_c",), "USAGE", "group", PAIR))
    assert [s.statement for s in sync(server).sent if not s.in_transaction] == []


# -- 11. a user name that differs only in letter case ------------------------------------
ORIGINAL_CASE = "field 'username' and the name of the user Redshift stores differ only in letter case"
CLONE_CASE = "the name '<username>_clone' and the name of the alternate user Redshift stores differ only in letter case"


@pytest.mark.parametrize(
    ("stored", "message", "steps"),
    [
        ({"app_user": False}, ORIGINAL_CASE, ("sync_clone", "alternate_standing", "set_password")),
        ({"App_User": False, "app_user_clone": False}, CLONE_CASE, ("sync_clone", "alternate_standing")),
    ],
)
def test_a_name_differing_only_in_letter_case_is_refused_before_anything_changes(
    stored: dict[str, bool], message: str, steps: tuple[str, ...]
) -> None:
    # CREATE USER / enable_case_sensitive_identifier: "The case of a username enclosed in
    # double quotation marks is always preserved": "App_User" and "app_user" are two names,
    # and an md5 form made for one never matches the other.
    engine = app.RedshiftEngine()
    calls = {
        "sync_clone": lambda conn: engine.sync_clone(conn, "App_User", "App_User_clone", Sensitive(new_password())),
        "alternate_standing": lambda conn: engine.alternate_standing(conn, "App_User", "App_User_clone"),
        "set_password": lambda conn: engine.set_password(conn, "App_User", Sensitive(new_password())),
    }
    for step in steps:
        conn = Connection(FakeRedshift(users=dict(stored)))
        with pytest.raises(ConfigurationError, match=re.escape(message)) as info:
            calls[step](conn)
        assert "field 'username'" in str(info.value), step
        assert [s for s in conn.statements() if not s.startswith("SELECT")] == [], f"{step} sent only look-ups"


def test_an_exact_name_is_used_even_when_another_differs_only_in_case() -> None:
    """Two users whose names differ in case are two users: the exact one is rotated."""
    server = pair_of_users()
    server.users["App_User"] = False
    server.users["APP_USER_CLONE"] = False
    sync(server)
    assert server.groups[PAIR] == {ORIGINAL, CLONE}
