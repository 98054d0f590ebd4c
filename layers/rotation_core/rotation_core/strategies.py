"""The two ways a database credential rotates, written once against DatabaseEngine.

single user
    The user changes its own password. setSecret logs in with AWSCURRENT; when that is
    refused it checks whether the pending password already works (a step run twice), then
    falls back to AWSPREVIOUS, as AWS's functions do. Normal path: one connection in
    setSecret, one in testSecret.

alternating users
    Chosen when the secret has `masterarn` (AWS's field) or ROTATION_STRATEGY says so. The
    master credential creates or updates `<username>_clone`, and each rotation switches the
    secret to the other user, so the credential applications hold keeps working until it
    is replaced. Whoever can write the rotated secret must not be able to steer the master
    credential, so before the master logs in:
    - its server comes from the master secret (or the RDS/Redshift API), never from the
      rotated secret, which must name that same server (rotation_core.targets);
    - the current credential logs in there (AWS's confused-deputy check);
    - the other user of the pair, which the master is about to change, is proven to be
      this secret's (a credential of this secret for it logs in, or the database ties the
      clone to the original), and the clone holds nothing the original does not.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from rotation_core import credentials, passwords, targets
from rotation_core import settings as config
from rotation_core.credentials import DatabaseSecret, Defaults
from rotation_core.engine import DatabaseEngine
from rotation_core.errors import AuthenticationError, ConfigurationError, UnreachableError
from rotation_core.observability import logger
from rotation_core.protocol import Rotation, StepContext
from rotation_core.settings import Strategy

CLONE_SUFFIX = "_clone"


def original_username(username: str) -> str:
    return username[: -len(CLONE_SUFFIX)] if username.endswith(CLONE_SUFFIX) else username


def alternate_username(secret: DatabaseSecret, defaults: Defaults) -> str:
    """The other user of the pair: `name` <-> `name_clone`."""
    username = secret.username
    if username.endswith(CLONE_SUFFIX):
        return username[: -len(CLONE_SUFFIX)]
    clone = username + CLONE_SUFFIX
    if not defaults.username_fits(clone, secret.engine):
        raise ConfigurationError(
            f"field 'username' is too long for alternating users: with '{CLONE_SUFFIX}' appended it would "
            f"exceed this engine's limit of {defaults.describe_limit(secret.engine)}"
        )
    return clone


class DatabaseRotation(Rotation):
    """Adapts a DatabaseEngine to the protocol, choosing the strategy from the secret."""

    def __init__(self, engine: DatabaseEngine[Any]) -> None:
        self.engine = engine
        self.name = engine.name

    # -- parsing -----------------------------------------------------------------
    def _parse(self, text: str, role: str) -> DatabaseSecret:
        return credentials.parse(text, role, self.engine.defaults)

    def _strategy(self, ctx: StepContext, secret: DatabaseSecret) -> Strategy:
        chosen = ctx.settings.strategy
        if chosen is Strategy.AUTO:
            chosen = Strategy.ALTERNATING_USERS if secret.masterarn else Strategy.SINGLE_USER
        logger.append_keys(strategy=chosen.value)
        return chosen

    # -- connecting ----------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, ctx: StepContext, login: DatabaseSecret, role: str, *, master: bool = False) -> Iterator[Any]:
        try:
            conn = self.engine.connect(login, ctx.settings.connection, master=master)
        except AuthenticationError as exc:
            raise AuthenticationError(f"{ctx.step}: the {role} credential could not log in: {exc}") from None
        try:
            yield conn
        finally:
            conn.close()

    def _logs_in(self, ctx: StepContext, login: DatabaseSecret, role: str) -> Any | None:
        """A connection if the credential is accepted, None if it is refused."""
        try:
            return self.engine.connect(login, ctx.settings.connection)
        except AuthenticationError:
            logger.info("credential refused", extra={"credential": role})
            return None

    # -- steps -------------------------------------------------------------------
    def create(self, ctx: StepContext) -> str:
        current = self._parse(ctx.current(), "current")
        policy = config.password_policy(ctx.env)
        password = passwords.generate(policy, self.engine.password_rules)
        username = current.username
        if self._strategy(ctx, current) is Strategy.ALTERNATING_USERS:
            if not current.masterarn:
                raise ConfigurationError(
                    "createSecret: alternating users need the field 'masterarn' in the current secret"
                )
            username = alternate_username(current, self.engine.defaults)
        return current.with_login(username, password).to_json()

    def set(self, ctx: StepContext) -> None:
        current = self._parse(ctx.current(), "current")
        pending = self._parse(ctx.pending(), "pending")
        if not pending.same_target(current):
            raise ConfigurationError(
                "setSecret: fields 'host', 'port' and 'dbname' of the pending secret must match the current secret"
            )
        if self._strategy(ctx, current) is Strategy.ALTERNATING_USERS:
            self._set_alternating(ctx, current, pending)
        else:
            self._set_single(ctx, current, pending)

    def _set_single(self, ctx: StepContext, current: DatabaseSecret, pending: DatabaseSecret) -> None:
        if pending.username != current.username:
            raise ConfigurationError(
                "setSecret: field 'username' of the pending secret differs from the current secret"
            )
        # A secret naming a read replica says where its primary is ('writer_host'): the
        # password changes there, and the replica is waited for.
        writer = credentials.writer_of(current)

        def on_writer(secret: DatabaseSecret) -> DatabaseSecret:
            return replace(secret, host=writer[0], port=writer[1]) if writer else secret

        conn = self._logs_in(ctx, on_writer(current), "current")
        if conn is None:
            already = self._logs_in(ctx, on_writer(pending), "pending")
            if already is not None:
                already.close()
                logger.info("the pending credential already logs in: nothing to set")
                if writer:
                    self._wait_for_replica(ctx, pending)
                return
            previous_text = ctx.previous()
            if previous_text is not None:
                previous = self._parse(previous_text, "previous")
                if previous.username == current.username and previous.same_target(current):
                    conn = self._logs_in(ctx, on_writer(previous), "previous")
            if conn is None:
                conn = self._abandoned_login(ctx, current, on_writer)
            if conn is None:
                raise AuthenticationError(
                    "setSecret: neither the current, the pending, the previous nor an abandoned earlier "
                    "credential can log in"
                )
        try:
            if writer:
                self._prove_replica_single(ctx, conn, current, writer[0])
            elif self.engine.is_replica(conn):
                raise ConfigurationError(
                    "setSecret: the secret's host is a read-only replica, where a password cannot change: add the "
                    "field 'writer_host' (and 'writer_port' if it differs) naming its primary, or rotate with "
                    "alternating users (masterarn)"
                )
            self.engine.set_own_password(conn, current.username, pending.password)
        finally:
            conn.close()
        if writer:
            self._wait_for_replica(ctx, pending)

    def _prove_replica_single(
        self, ctx: StepContext, writer_conn: Any, current: DatabaseSecret, writer_host: str
    ) -> None:
        """'writer_host' must be the primary of the secret's host where anything can tell."""
        replica = self._logs_in(ctx, current, "current")
        if replica is None:
            return  # the current password is already replaced on both (a step run again): nothing to prove
        try:
            verdict = self.engine.same_cluster(writer_conn, replica)
        finally:
            replica.close()
        if verdict is None:
            verdict = targets.rds_replica_of(ctx, current.host, writer_host)
        if verdict is False:
            raise ConfigurationError(
                "setSecret: the secret's host is not a replica of the server field 'writer_host' names; nothing changed"
            )

    def _wait_for_replica(self, ctx: StepContext, pending: DatabaseSecret) -> None:
        """Wait, within REPLICA_WAIT seconds, until the replica the secret names accepts the
        new password (it changed on the primary), so that testSecret and the applications
        find it there."""
        wait = ctx.settings.replica_wait
        deadline = time.monotonic() + wait
        while True:
            conn = self._logs_in(ctx, pending, "pending")
            if conn is not None:
                conn.close()
                return
            if time.monotonic() >= deadline:
                raise UnreachableError(
                    f"setSecret: the replica the secret names did not accept the new password within {wait} s "
                    f"({config.REPLICA_WAIT}): replication lags; the password is set on the primary, and Secrets "
                    "Manager's next try of the rotation waits again"
                )
            time.sleep(0.25)

    def _abandoned_login(
        self,
        ctx: StepContext,
        current: DatabaseSecret,
        on_writer: Callable[[DatabaseSecret], DatabaseSecret] | None = None,
    ) -> Any | None:
        """The lockout AWS's functions leave behind: a rotation set a new password, then was
        abandoned and its AWSPENDING label moved on (a new RotateSecret, or a manual clean-up),
        so the only password that logs in sits in a version without labels. Find it."""
        for text in ctx.abandoned():
            try:
                candidate = self._parse(text, "earlier")
            except ConfigurationError:
                continue
            if candidate.username != current.username or not candidate.same_target(current):
                continue
            conn = self._logs_in(ctx, on_writer(candidate) if on_writer else candidate, "earlier")
            if conn is not None:
                logger.warning("recovered: an abandoned rotation's password logs in; rotating from it")
                return conn
        return None

    def _set_alternating(self, ctx: StepContext, current: DatabaseSecret, pending: DatabaseSecret) -> None:
        if pending.username != alternate_username(current, self.engine.defaults):
            raise ConfigurationError(
                "setSecret: field 'username' of the pending secret is not the alternate of the current user"
            )
        if not current.masterarn:
            raise ConfigurationError("setSecret: alternating users need the field 'masterarn' in the current secret")
        master_secret = credentials.parse_master(
            ctx.other_secret(current.masterarn, "master"), self.engine.defaults, current.engine
        )
        original = original_username(current.username)
        clone = original + CLONE_SUFFIX
        if master_secret.username in (original, clone):
            raise ConfigurationError("setSecret: the master secret's user cannot be one of the rotated users")
        # Where the master logs in comes from the master secret (or RDS/Redshift); the rotated
        # secret must name that server, or a replica of it proven before the master acts.
        target = targets.master_login(ctx, current.masterarn, master_secret, current, self.engine.defaults)
        master = target.login
        # Every login before the master acts goes to the master's own server: a host the
        # rotated secret names only ever receives this secret's own credentials.
        on_writer = replace(current, host=master.host, port=master.port)
        # Confused-deputy check: only a caller who holds a working current credential, on
        # the master's own server, may have the master credential change a user's password.
        probe = self._logs_in(ctx, on_writer, "current")
        if probe is None:
            raise AuthenticationError(
                "setSecret: the current credential could not log in; refusing to use the master credential"
            )
        probe.close()
        with self._session(ctx, master, "master", master=True) as conn:
            if target.replica:
                self._prove_replica(ctx, conn, current, master, target.source)
            self._check_pair(ctx, conn, on_writer, replace(pending, host=master.host, port=master.port))
            if pending.username == clone:
                self.engine.sync_clone(conn, original, clone, pending.password)
            else:
                self.engine.set_password(conn, original, pending.password)
                self.engine.sync_clone(conn, original, clone, None)
        if target.replica:
            self._wait_for_replica(ctx, pending)

    def _prove_replica(
        self, ctx: StepContext, master_conn: Any, current: DatabaseSecret, master: DatabaseSecret, source: str
    ) -> None:
        """The rotated secret names another server than the master's: it must be a replica
        (a standby, an Aurora reader) of the master's database, as the database itself says
        (PostgreSQL: the same system identifier, in recovery; MySQL: a replica the primary
        lists) or else the RDS API. Read-only; raises with nothing changed."""
        replica = self._logs_in(ctx, current, "current")
        if replica is None:
            raise AuthenticationError("setSecret: the current credential could not log in to the secret's host")
        try:
            verdict = self.engine.same_cluster(master_conn, replica)
        finally:
            replica.close()
        if verdict is None:
            verdict = targets.rds_replica_of(ctx, current.host, master.host)
        if verdict is not True:
            why = "it replicates from another server" if verdict is False else "neither the database nor RDS can tell"
            raise targets.not_a_replica(ctx.step, source, why)
        logger.info("the secret names a replica of the master's database")

    def _check_pair(self, ctx: StepContext, conn: Any, current: DatabaseSecret, pending: DatabaseSecret) -> None:
        """Before the master changes the other user of the pair (pending.username), prove
        that this secret controls it. Read-only; raises with nothing changed.

        Whoever writes the rotated secret controls the current user (the login above
        proved it), not necessarily the other one: `"username": "victim_clone"` with a
        login of one's own named so would have the master reset `victim`; and a
        `<user>_clone` that someone else made SUPERUSER would have its password handed to
        whoever reads this secret. The other user is this secret's when:
        - the database ties the pair, the clone holding nothing the original does not
          (PostgreSQL: the clone is a member of the original role, so it can act as the
          original already), in either direction;
        - it is the clone, and it does not exist yet (the master creates it from the
          original), or, where the engine has no such tie (MySQL, Redshift), it holds no
          global privilege, role or group beyond the original's;
        - or a credential of this secret for it logs in: the one AWSPREVIOUS holds (the
          normal case: the user the previous rotation moved away from), the pending one
          (setSecret run again), or an abandoned rotation's (the failure path).
        """
        original = original_username(current.username)
        clone = original + CLONE_SUFFIX
        standing = self.engine.alternate_standing(conn, original, clone)
        if standing is not None and standing.related and not standing.beyond:
            return  # tied by the database (a member of the original: it can act as it already)
        if pending.username == clone and (standing is None or (standing.related is None and not standing.beyond)):
            return
        if self._controls(ctx, current, pending):
            return
        if pending.username == clone and standing is not None and standing.beyond:
            raise ConfigurationError(
                f"setSecret: the alternate user '<username>{CLONE_SUFFIX}' holds what the user does not "
                f"({', '.join(standing.beyond)}) and no credential of this secret for it logs in; the rotation "
                "would hand it to whoever reads this secret. Revoke those from it, or drop it so that the "
                "rotation creates it again"
            )
        raise ConfigurationError(
            "setSecret: the other user of the pair is not proven to be this secret's: "
            + ("the database does not tie it to the user, and " if pending.username == clone else "")
            + "neither the credential this secret's AWSPREVIOUS version holds for it nor the pending one logs in; "
            "refusing to let the master change it. If the pair is really this secret's, put the other user's "
            "working credential in the secret (as AWSCURRENT) and rotate again"
        )

    def _controls(self, ctx: StepContext, current: DatabaseSecret, pending: DatabaseSecret) -> bool:
        """Whether a credential of this secret for pending.username logs in, on the current
        (that is, the master's) server, whatever host an earlier version names: AWSPREVIOUS,
        the pending one, or (failure path) an abandoned rotation's unlabelled version."""
        if self._logs_in_as_other(ctx, current, pending.username, ctx.previous(), "previous"):
            return True
        conn = self._logs_in(ctx, pending, "pending")
        if conn is not None:
            conn.close()
            return True
        return any(self._logs_in_as_other(ctx, current, pending.username, text, "earlier") for text in ctx.abandoned())

    def _logs_in_as_other(
        self, ctx: StepContext, current: DatabaseSecret, username: str, text: str | None, role: str
    ) -> bool:
        if text is None:
            return False
        try:
            version = self._parse(text, role)
        except ConfigurationError:
            return False
        if version.username != username:
            return False
        conn = self._logs_in(ctx, replace(current, username=username, password=version.password), role)
        if conn is None:
            return False
        conn.close()
        return True

    def test(self, ctx: StepContext) -> None:
        pending = self._parse(ctx.pending(), "pending")
        self._strategy(ctx, pending)
        with self._session(ctx, pending, "pending") as conn:
            self.engine.check(conn)
