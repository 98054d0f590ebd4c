"""The interface a database engine implements: small on purpose (HashiCorp Vault's
database plugins are the model). Everything engine-specific lives behind it: connecting
(TLS, timeouts), changing a password, creating and re-syncing the alternate user, and
the engine's password rules. The strategies and the protocol are written once against it.

An engine never calls Secrets Manager and never reads the environment: it receives the
parsed secret and the parsed connection settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

from rotation_core.credentials import DatabaseSecret, Defaults
from rotation_core.passwords import PasswordRules
from rotation_core.settings import ConnectionSettings
from rotation_core.values import Sensitive


class Connection(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Connection)


@dataclass(frozen=True)
class Standing:
    """What the database says of an existing alternate user, before the master touches it."""

    #: the database ties it to the original user (PostgreSQL: it is a member of the
    #: original role); None where the engine has no such tie (MySQL, Redshift)
    related: bool | None
    #: what it holds that the original user does not: attributes, roles, groups, global
    #: privileges, by name (never a value)
    beyond: tuple[str, ...] = ()


class DatabaseEngine(Protocol[C]):
    #: short name used in logs and metrics ("postgres", "mysql", ...)
    name: str
    #: accepted values of the secret's "engine" field, default port and database, name limit
    defaults: Defaults
    #: characters the engine can never take in a password, length bounds, required classes
    password_rules: PasswordRules

    def connect(self, login: DatabaseSecret, settings: ConnectionSettings, *, master: bool = False) -> C:
        """Open a connection as login.username, TLS as login.ssl and settings say.

        With master=True (the master credential), refuse any password exchange that would
        show the password to the server (clear-text requests; for PostgreSQL md5 too).

        Raises AuthenticationError when the credential is refused, UnreachableError when
        the server cannot be reached or not securely. Messages carry the cause only.
        """
        ...

    def set_own_password(self, conn: C, username: str, password: Sensitive) -> None:
        """Single user: the logged-in user changes its own password."""
        ...

    def set_password(self, conn: C, username: str, password: Sensitive) -> None:
        """As the master user: change the password of an existing user."""
        ...

    def sync_clone(self, conn: C, original: str, clone: str, password: Sensitive | None) -> None:
        """As the master user: create `clone` if missing, give it the privileges of
        `original` again (every rotation, so nothing drifts), and set its password when
        one is given."""
        ...

    def alternate_standing(self, conn: C, original: str, clone: str) -> Standing | None:
        """As the master user, read-only: None when `clone` does not exist, else what the
        database says of it (see Standing). Nothing is changed."""
        ...

    def is_replica(self, conn: C) -> bool:
        """Whether the connected server is a read-only replica (a standby, an Aurora reader)."""
        ...

    def same_cluster(self, primary: C, replica: C) -> bool | None:
        """Whether the server of `replica` (a connection as the rotated user) replicates from
        the server of `primary` (the master's connection): True, False, or None when the
        database cannot tell (privileges, an engine without replicas)."""
        ...

    def check(self, conn: C) -> None:
        """Run a harmless query proving the session works."""
        ...
