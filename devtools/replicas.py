"""Read replicas of the throwaway test servers: a PostgreSQL streaming standby and a MariaDB replica.

Both are started only when a test asks (``primary.start_standby()`` / ``primary.start_replica()``,
or :func:`devtools.servers.postgres_standby_of` / :func:`~devtools.servers.mariadb_replica_of`),
and have the API of the servers they copy (``info``, ``connect``, ``admin_connect``, ``log_text``,
``stop``, ``directory``, ``pid``, context manager). Each has its own temporary directory, free port
and server certificate, signed by the primary's CA: ``replica.info.ca_file`` and the primary's
``ca.pem`` are the same certificate. The admin account and password are the primary's (copied
by replication). A replica is stopped by its own :meth:`stop`, by its primary's, or at exit.

PostgreSQL: ``pg_basebackup -R -X stream`` over a TLS-verified replication connection as the
primary's ``replicator`` role (LOGIN REPLICATION, created on the first standby; pg_hba.conf lets
only it, only over TLS, open replication connections), then ``hot_standby``. Writes fail with
"read-only transaction"; :meth:`PostgresStandby.wait_replayed` waits until the standby has
replayed everything committed on the primary so far.

MariaDB: the primary must be started with ``MariaDBServer(replication=True)`` (binary log from
its first statement). The replica is a fresh ``mariadb-install-db`` (identical to the primary's
before its first statement), ``read_only=ON``, that replicates over TLS (certificate verified)
with ``MASTER_USE_GTID=slave_pos`` from the start of the primary's binary log, so it is
consistent whenever it is started. :meth:`MariaDBReplica.wait_caught_up` waits with
``MASTER_GTID_WAIT`` for the primary's ``gtid_binlog_pos``. Writes fail with error 1290
(``--read-only``), for the admin too: its READ_ONLY ADMIN privilege is revoked on the replica.
"""

from __future__ import annotations

import os
import pwd
import secrets
import time
from typing import TYPE_CHECKING, Any

from .servers import (
    _BIND_ERRORS,
    DEFAULT_START_TIMEOUT,
    HOST,
    MariaDBServer,
    MySQLConnection,
    PostgresServer,
    ServerInfo,
    ServerStartError,
    _child_env,
    _chown_tree,
    _find_pg_bindir,
    _free_port,
    _pg_quote,
    _ProcessDiedError,
    _run_as_kwargs,
    _run_checked,
    _tail,
    _wait_until,
    _write_private,
    mysql_native_password_hash,
)

if TYPE_CHECKING:
    from .tls import TLSFiles

__all__ = ["DEFAULT_WAIT_TIMEOUT", "MariaDBReplica", "PostgresStandby"]

DEFAULT_WAIT_TIMEOUT = 10.0
_POLL_INTERVAL = 0.01


def _conninfo_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


# --------------------------------------------------------------------------- PostgreSQL


class PostgresStandby(PostgresServer):
    """A hot standby of a throwaway :class:`PostgresServer`, streaming its WAL over TLS."""

    def __init__(self, primary: PostgresServer) -> None:
        super().__init__(auth=primary.auth)
        self.primary = primary
        self.application_name = ""  # how the primary's pg_stat_replication names this standby

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> ServerInfo:
        """Base backup, start, and wait until the standby has replayed the primary's WAL."""
        if self._info is None:
            self.primary._throwaway_primary_check("start_standby()")
        return super().start(timeout)

    def stop(self) -> None:
        super().stop()
        if self in self.primary._dependents:
            self.primary._dependents.remove(self)

    def start_standby(self, timeout: float = DEFAULT_START_TIMEOUT) -> PostgresStandby:
        raise NotImplementedError("a standby of a standby (cascading replication) is not supported")

    # -- queries ------------------------------------------------------------
    def is_in_recovery(self) -> bool:
        """``pg_is_in_recovery()`` on this server (True for as long as it is a standby)."""
        return bool(self._query_one(self, "SELECT pg_is_in_recovery()")[0])

    def wait_replayed(self, timeout: float = DEFAULT_WAIT_TIMEOUT) -> str:
        """Wait until this standby has replayed all the WAL the primary has committed so far.

        The primary runs with ``synchronous_commit = off``: a commit just made may not be
        written yet, and the walsender ships only flushed WAL. So a transaction that writes
        a WAL record (``pg_logical_emit_message``) commits with ``synchronous_commit = on``,
        which flushes everything before it, and the primary's ``pg_current_wal_flush_lsn()``
        (here equal to or past ``pg_current_wal_lsn()`` as it was before) is the target; on the
        standby, ``pg_last_wal_replay_lsn()`` is polled until it reaches it. Returns the target LSN;
        raises TimeoutError (naming both LSNs and the WAL receiver's state) after ``timeout``.
        """
        conn = self.primary.admin_connect()
        try:
            with conn.cursor() as cur:
                # A transaction that writes WAL, committed synchronously, flushes all WAL before it
                # (one that only takes an xid, as txid_current() does, would not be flushed).
                cur.execute("SET synchronous_commit = on")
                cur.execute("SELECT pg_logical_emit_message(true, 'tests.wait_replayed', '')")
                cur.execute("SELECT pg_current_wal_flush_lsn()::text")
                row = cur.fetchone()
        finally:
            conn.close()
        assert row is not None
        target = str(row[0])
        deadline = time.monotonic() + timeout
        conn = self.admin_connect()
        try:
            with conn.cursor() as cur:
                while True:
                    cur.execute(
                        "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn, pg_last_wal_replay_lsn()::text", (target,)
                    )
                    reached = cur.fetchone()
                    assert reached is not None
                    if reached[0]:
                        return target
                    if time.monotonic() > deadline:
                        cur.execute("SELECT status FROM pg_stat_wal_receiver")
                        receiver = cur.fetchone()
                        raise TimeoutError(
                            f"standby on port {self.info.port} replayed WAL up to {reached[1]}, not yet the "
                            f"primary's {target}, after {timeout:.1f}s "
                            f"(WAL receiver: {receiver[0] if receiver else 'not running'})"
                        )
                    time.sleep(_POLL_INTERVAL)
        finally:
            conn.close()

    def replication_status(self) -> dict[str, Any]:
        """This standby's row of the primary's ``pg_stat_replication`` (state, *_lsn, ...),
        with ``ssl`` and ``ssl_version`` of its replication connection; {} if not connected."""
        conn = self.primary.admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT r.*, s.ssl, s.version AS ssl_version FROM pg_stat_replication r"
                    " LEFT JOIN pg_stat_ssl s ON s.pid = r.pid WHERE r.application_name = %s",
                    (self.application_name,),
                )
                row = cur.fetchone()
                names = [d[0] for d in cur.description or ()]
        finally:
            conn.close()
        return dict(zip(names, row, strict=True)) if row else {}

    @staticmethod
    def _query_one(server: PostgresServer, statement: str) -> tuple[Any, ...]:
        conn = server.admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                row = cur.fetchone()
        finally:
            conn.close()
        assert row is not None
        return tuple(row)

    # -- start ----------------------------------------------------------------
    def _tmpdir_prefix(self) -> str:
        return "pgs-"

    def _write_tls(self, tmpdir: str) -> TLSFiles:
        ca = self.primary._ca
        if ca is None:
            raise ServerStartError("start_standby(): the primary stopped")
        return ca.write_server_tls(tmpdir)

    def _start(self, tmpdir: str, account: pwd.struct_passwd | None, timeout: float) -> ServerInfo:
        import psycopg2

        primary = self.primary
        primary._dependents.append(self)  # stopped with the primary, even if this start fails
        primary_info = primary.info
        bindir = _find_pg_bindir()
        tls = self._write_tls(tmpdir)
        _chown_tree(tmpdir, account)
        password = _ensure_pg_replication_role(primary)
        passfile = os.path.join(tmpdir, "pgpass")
        _write_private(
            passfile,
            f"{HOST}:{primary_info.port}:*:{_pgpass_field(primary.REPLICATION_ROLE)}:{_pgpass_field(password)}\n",
            account,
        )
        datadir = os.path.join(tmpdir, "data")
        log_path = os.path.join(tmpdir, "postgres.log")
        self.application_name = f"standby_{os.path.basename(tmpdir).replace('-', '_')}"
        # -R writes standby.signal and primary_conninfo (these settings, the password stays in passfile).
        conninfo = " ".join(
            f"{k}={_conninfo_value(v)}"
            for k, v in {
                "host": HOST,
                "port": str(primary_info.port),
                "user": primary.REPLICATION_ROLE,
                "sslmode": "verify-full",
                "sslrootcert": tls.ca_file,
                "passfile": passfile,
                "application_name": self.application_name,
            }.items()
        )
        _run_checked(
            [
                os.path.join(bindir, "pg_basebackup"),
                "--dbname",
                conninfo,
                "--pgdata",
                datadir,
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
                "--no-sync",
                "--no-password",
            ],
            log_path=os.path.join(tmpdir, "basebackup.log"),
            what="pg_basebackup",
            cwd=tmpdir,
            env=_child_env(tmpdir),
            **_run_as_kwargs(account),
        )
        # The copied postgresql.conf names the primary's directory: later lines win.
        settings = {
            "unix_socket_directories": _pg_quote(tmpdir),
            "ssl_cert_file": _pg_quote(tls.cert_file),
            "ssl_key_file": _pg_quote(tls.key_file),
            "ssl_ca_file": _pg_quote(tls.ca_file),
            "hot_standby": "on",
            "wal_receiver_status_interval": _pg_quote("1s"),
        }
        with open(os.path.join(datadir, "postgresql.conf"), "a", encoding="utf-8") as conf:
            conf.write("\n# --- streaming standby (devtools/replicas.py) ---\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())

        for attempt in range(3):
            port = _free_port()
            info = ServerInfo(
                engine="postgres",
                host=HOST,
                port=port,
                admin_user=primary_info.admin_user,
                admin_password=primary_info.admin_password,
                ca_file=tls.ca_file,
                log_file=log_path,
                dbname=primary_info.dbname,
            )
            self._info = info
            proc = self._spawn(
                [os.path.join(bindir, "postgres"), "-D", datadir, "-p", str(port)],
                log_path=log_path,
                tmpdir=tmpdir,
                account=account,
            )
            try:
                _wait_until(
                    lambda: self.admin_connect().close(),
                    retry_on=(psycopg2.OperationalError,),
                    proc=proc,
                    timeout=timeout,
                    what="postgres standby",
                    log_path=log_path,
                )
                self.wait_replayed(timeout)
            except _ProcessDiedError:
                self._info = None
                self._proc = None
                if attempt < 2 and any(e in _tail(log_path) for e in _BIND_ERRORS):
                    continue
                raise
            except BaseException:
                self._info = None
                raise
            return info
        raise AssertionError("unreachable")


def _ensure_pg_replication_role(primary: PostgresServer) -> str:
    """Create (once per primary) the LOGIN REPLICATION role; only its SCRAM verifier is sent."""
    if primary._replication_password is not None:
        return primary._replication_password
    from psycopg2 import sql
    from psycopg2.extensions import encrypt_password

    password = secrets.token_urlsafe(24)
    conn = primary.admin_connect()
    try:
        verifier = encrypt_password(password, primary.REPLICATION_ROLE, conn, "scram-sha-256")
        with conn.cursor() as cur:
            cur.execute("SET log_statement = 'none'")  # the test's statement log stays about the test
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (primary.REPLICATION_ROLE,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(
                sql.SQL(verb + " ROLE {} WITH LOGIN REPLICATION PASSWORD %s").format(
                    sql.Identifier(primary.REPLICATION_ROLE)
                ),
                (verifier,),
            )
    finally:
        conn.close()
    primary._replication_password = password
    return password


# --------------------------------------------------------------------------- MariaDB


class MariaDBReplica(MariaDBServer):
    """A read-only replica of a throwaway ``MariaDBServer(replication=True)``, over TLS with GTID."""

    def __init__(self, primary: MariaDBServer) -> None:
        super().__init__()
        self.primary = primary
        self._start_timeout = DEFAULT_START_TIMEOUT

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> ServerInfo:
        """Install, start, replicate from the primary's first binlog event, and catch up."""
        if self._info is None:
            self.primary._throwaway_primary_check("start_replica()")
            if not self.primary.replication:
                raise RuntimeError(
                    "start_replica(): the primary has no binary log; start it with MariaDBServer(replication=True)"
                )
        return super().start(timeout)

    def stop(self) -> None:
        super().stop()
        if self in self.primary._dependents:
            self.primary._dependents.remove(self)

    def start_replica(self, timeout: float = DEFAULT_START_TIMEOUT) -> MariaDBReplica:
        raise NotImplementedError("a replica of a replica (chained replication) is not supported")

    # -- queries ------------------------------------------------------------
    def replica_status(self) -> dict[str, Any]:
        """``SHOW SLAVE STATUS`` as a dict (Master_Server_Id, Slave_IO_Running, Slave_SQL_Running,
        Last_IO_Error, Last_SQL_Error, Gtid_IO_Pos, Master_SSL_Verify_Server_Cert, ...)."""
        conn = self.admin_connect()
        try:
            with conn.cursor() as cur:
                return _slave_status(cur)
        finally:
            conn.close()

    def wait_caught_up(self, timeout: float = DEFAULT_WAIT_TIMEOUT) -> str:
        """Wait until this replica has applied everything in the primary's binary log so far.

        The target is the primary's ``@@gtid_binlog_pos`` (a commit is in the binary log when
        it returns to the client); the replica waits with ``MASTER_GTID_WAIT``. Returns the
        target; raises ServerStartError at once if replication stopped on an error, and
        TimeoutError after ``timeout`` (also while the replica is paused with STOP SLAVE).
        """
        conn = self.primary.admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.gtid_binlog_pos")
                target = str(cur.fetchone()[0])
        finally:
            conn.close()
        conn = self.admin_connect()
        try:
            with conn.cursor() as cur:
                self._wait_for_gtid(cur, target, timeout)
        finally:
            conn.close()
        return target

    def _wait_for_gtid(self, cur: Any, target: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            cur.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (target, 0.1))
            if cur.fetchone()[0] == 0:
                return
            status = _slave_status(cur)
            if status.get("Last_SQL_Errno"):  # stopped on an error (a plain STOP SLAVE only pauses)
                raise ServerStartError(
                    f"replica on port {self._port_text()} stopped replicating: SQL thread "
                    f"{status.get('Slave_SQL_Running')}, error {status.get('Last_SQL_Errno')}: "
                    f"{_without_query(str(status.get('Last_SQL_Error', '')))}"
                )
            if time.monotonic() > deadline:
                cur.execute("SELECT @@GLOBAL.gtid_slave_pos")
                applied = cur.fetchone()[0]
                raise TimeoutError(
                    f"replica on port {self._port_text()} applied GTID {applied!r}, not yet the primary's "
                    f"{target!r}, after {timeout:.1f}s (SQL thread {status.get('Slave_SQL_Running')}, "
                    f"IO thread {status.get('Slave_IO_Running')}, "
                    f"error {status.get('Last_IO_Errno')}: {status.get('Last_IO_Error')})"
                )

    def _port_text(self) -> str:
        return str(self._info.port) if self._info else "(starting)"

    # -- start ----------------------------------------------------------------
    def _tmpdir_prefix(self) -> str:
        return "mdr-"

    def _write_tls(self, tmpdir: str) -> TLSFiles:
        ca = self.primary._ca
        if ca is None:
            raise ServerStartError("start_replica(): the primary stopped")
        return ca.write_server_tls(tmpdir)

    def _start(self, tmpdir: str, account: pwd.struct_passwd | None, timeout: float) -> ServerInfo:
        primary = self.primary
        primary._dependents.append(self)  # stopped with the primary, even if this start fails
        primary._replica_ids += 1
        self.server_id = primary.PRIMARY_SERVER_ID + primary._replica_ids
        self._start_timeout = timeout
        return super()._start(tmpdir, account, timeout)

    def _server_args(self, tmpdir: str) -> list[str]:
        return [
            f"--server-id={self.server_id}",
            "--read-only=ON",
            "--relay-log=relay-bin",  # in the data directory
            "--skip-slave-start",
        ]

    def _admin_password_for_start(self) -> str:
        return self.primary.info.admin_password  # the admin account arrives by replication

    def _bootstrap_accounts(self, socket_path: str, password: str) -> None:
        """Replicate from the start of the primary's binary log, and wait until caught up.

        The fresh replica's root@localhost has no password yet (as the primary's had before its
        own bootstrap, which arrives by replication and sets it). The replication password is
        kept out of the general log (sql_log_off).
        """
        primary = self.primary
        repl_password = _ensure_mariadb_replication_user(primary)
        assert self._tmpdir is not None
        conn = self._socket_root_connect(socket_path)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_off = 1")
                cur.execute("SET GLOBAL gtid_slave_pos = ''")  # from the primary's first event
                cur.execute(
                    "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, MASTER_PASSWORD = %s,"
                    " MASTER_SSL = 1, MASTER_SSL_CA = %s, MASTER_SSL_VERIFY_SERVER_CERT = 1,"
                    " MASTER_CONNECT_RETRY = 1, MASTER_USE_GTID = slave_pos",
                    (
                        primary.info.host,
                        primary.info.port,
                        primary.REPLICATION_USER,
                        repl_password,
                        os.path.join(self._tmpdir, "ca.pem"),
                    ),
                )
                cur.execute("START SLAVE")
                self._wait_for_gtid(cur, _primary_gtid_pos(primary), self._start_timeout)
                # read_only binds every account without READ_ONLY ADMIN: the admin too, on the
                # replica only (the replication thread is never bound by read_only).
                cur.execute("REVOKE READ_ONLY ADMIN ON *.* FROM %s@'%%'", (self.ADMIN_USER,))
        finally:
            conn.close()


def _primary_gtid_pos(primary: MariaDBServer) -> str:
    conn = primary.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.gtid_binlog_pos")
            return str(cur.fetchone()[0])
    finally:
        conn.close()


def _slave_status(cur: Any) -> dict[str, Any]:
    cur.execute("SHOW SLAVE STATUS")
    row = cur.fetchone()
    names = [d[0] for d in cur.description or ()]
    return dict(zip(names, row, strict=True)) if row else {}


def _without_query(error: str) -> str:
    """A replication error without the statement it quotes (which may hold a password hash)."""
    return error.split(" Query: ", 1)[0]


def _ensure_mariadb_replication_user(primary: MariaDBServer) -> str:
    """Create (once per primary) replicator@127.0.0.1: REPLICATION SLAVE, TLS required; only its
    hash is sent, and the statements stay out of the general log. They are in the binary log,
    so every replica has the account too, as the primary does."""
    if primary._replication_password is not None:
        return primary._replication_password
    password = secrets.token_urlsafe(24)
    conn: MySQLConnection = primary.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_off = 1")
            cur.execute(
                "CREATE OR REPLACE USER %s@%s IDENTIFIED BY PASSWORD %s REQUIRE SSL",
                (primary.REPLICATION_USER, HOST, mysql_native_password_hash(password)),
            )
            cur.execute("GRANT REPLICATION SLAVE ON *.* TO %s@%s", (primary.REPLICATION_USER, HOST))
    finally:
        conn.close()
    primary._replication_password = password
    return password
