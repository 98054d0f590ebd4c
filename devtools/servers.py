"""Throwaway PostgreSQL and MariaDB servers for the test suite, with TLS on.

Each server gets its own temporary directory (data directory, unix socket,
TLS material, logs), listens on a free port on 127.0.0.1 only, and is removed
completely by :meth:`stop`. The system services on 5432/3306 are never used.

Typical use::

    server = postgres_from_env_or_start()   # or PostgresServer().start()
    try:
        conn = server.admin_connect()        # TLS, verify-full against server.info.ca_file
        ...
        assert "secret" not in server.log_text()
    finally:
        server.stop()

If ``TEST_POSTGRES_URL`` / ``TEST_MYSQL_URL`` is set, the ``*_from_env_or_start``
helpers wrap that existing server instead (nothing is started or stopped, and
there is no log to read).

Both kinds of server log every statement (PostgreSQL ``log_statement='all'``,
MariaDB general log), so tests can grep :meth:`log_text` to prove that a
password never reached the server in clear text. The admin password itself is
set without ever appearing in those logs, and is never printed (it is excluded
from ``ServerInfo``'s repr).

When running as root (as on the CI machine), the server processes run as the
``postgres`` / ``mysql`` system users, which own the temporary directory.

Read replicas (devtools/replicas.py), started only when a test asks::

    standby = server.start_standby()          # PostgreSQL: pg_basebackup -R, hot standby
    standby.wait_replayed()                   # after a change on the primary
    primary = MariaDBServer(replication=True)  # binary log on from the start
    replica = primary.start_replica()         # read_only, GTID replication over TLS
    replica.wait_caught_up()

A replica has the same API, a certificate from the primary's CA, and is stopped with its
primary at the latest.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from .tls import TLSFiles, _cert_pem, _make_ca, _make_server_cert, _new_key, _write

if TYPE_CHECKING:
    import psycopg2.extensions
    from cryptography.hazmat.primitives.asymmetric import rsa

    from .replicas import MariaDBReplica, PostgresStandby

__all__ = [
    "MariaDBServer",
    "PostgresServer",
    "ServerInfo",
    "ServerStartError",
    "import_pymysql",
    "mariadb_from_env_or_start",
    "mariadb_replica_of",
    "mysql_native_password_hash",
    "port_accepts_connections",
    "postgres_from_env_or_start",
    "postgres_standby_of",
]

HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT = 30.0
_CONNECT_TIMEOUT = 5
# sockaddr_un.sun_path is 108 bytes; keep well under it.
_MAX_SOCKET_PATH = 100
_LOG_TAIL_LINES = 40

# pymysql ships no type information; connections are typed as Any.
MySQLConnection = Any


class ServerStartError(RuntimeError):
    """A throwaway server could not be set up; the message carries the log tail."""


@dataclass(frozen=True)
class ServerInfo:
    """How to reach a database server (throwaway or external)."""

    engine: str  # "postgres" or "mariadb"
    host: str  # "127.0.0.1"
    port: int
    admin_user: str  # a superuser
    admin_password: str = field(repr=False)  # never shown in repr / tracebacks
    # PEM of the CA that signed the server cert ("" if unknown for an external server)
    ca_file: str
    log_file: str | None  # server log path (None for an external server)
    dbname: str  # "postgres" for PostgreSQL, "mysql" for MariaDB


# --------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_accepts_connections(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: str | None, lines: int = _LOG_TAIL_LINES) -> str:
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _read(path: str | None) -> str:
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _service_account(name: str) -> pwd.struct_passwd | None:
    """The system account to run a server as when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:
        raise ServerStartError(f"running as root but the system user {name!r} does not exist") from exc


def _run_as_kwargs(account: pwd.struct_passwd | None) -> dict[str, Any]:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _chown_tree(path: str, account: pwd.struct_passwd | None) -> None:
    if account is None:
        return
    os.chown(path, account.pw_uid, account.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(
                os.path.join(root, name),
                account.pw_uid,
                account.pw_gid,
                follow_symlinks=False,
            )


def _world_traversable(path: str) -> bool:
    path = os.path.realpath(path)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _make_tmpdir(prefix: str, account: pwd.struct_passwd | None) -> str:
    """A fresh private directory with a short path (unix socket paths are limited)."""
    base = tempfile.gettempdir()
    # A server running as another user must be able to reach the directory.
    if len(base) > 40 or (account is not None and not _world_traversable(base)):
        base = "/tmp"  # noqa: S108 - short and world-traversable; mkdtemp makes a private 0700 dir in it
    path = tempfile.mkdtemp(prefix=prefix, dir=base)
    _chown_tree(path, account)
    return path


def _child_env(tmpdir: str) -> dict[str, str]:
    drop = ("PG", "MYSQL", "MARIADB")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["HOME"] = tmpdir
    env["LC_ALL"] = "C"
    env.pop("LANG", None)
    return env


def _write_private(path: str, text: str, account: pwd.struct_passwd | None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if account is not None:
            os.fchown(fd, account.pw_uid, account.pw_gid)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _run_checked(
    cmd: list[str],
    *,
    log_path: str,
    what: str,
    cwd: str,
    env: Mapping[str, str],
    **kwargs: Any,
) -> None:
    with open(log_path, "ab") as log:
        proc = subprocess.run(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=dict(env),
            check=False,
            timeout=120,
            **kwargs,
        )
    if proc.returncode != 0:
        raise ServerStartError(
            f"{what} failed with exit code {proc.returncode}; last lines of {log_path}:\n{_tail(log_path)}"
        )


def _wait_until(
    probe: Callable[[], object],
    *,
    retry_on: tuple[type[Exception], ...],
    proc: subprocess.Popen[bytes],
    timeout: float,
    what: str,
    log_path: str,
) -> object:
    """Call probe() until it stops raising retry_on; fail early if the server process died."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        if proc.poll() is not None:
            raise _ProcessDiedError(
                f"{what} exited with code {proc.returncode} during startup; "
                f"last lines of {log_path}:\n{_tail(log_path)}"
            )
        try:
            return probe()
        except retry_on as exc:  # not ready yet
            last_error = exc
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"{what} not ready after {timeout:.0f}s (last error: {last_error!r}); "
                f"last lines of {log_path}:\n{_tail(log_path)}"
            )
        time.sleep(0.05)


class _ProcessDiedError(ServerStartError):
    pass


_BIND_ERRORS = ("Address already in use", "could not bind", "Can't start server: Bind")


def _find_pg_bindir() -> str:
    env = os.environ.get("TEST_PG_BINDIR")
    if env:
        if not os.path.exists(os.path.join(env, "initdb")):
            raise ServerStartError(f"TEST_PG_BINDIR={env!r} has no initdb")
        return env
    candidates = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(os.path.join(d, "initdb"))]
    if candidates:
        return max(
            candidates,
            key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0,
        )
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise ServerStartError("PostgreSQL server binaries (initdb/postgres) not found; set TEST_PG_BINDIR")


def _find_binary(name: str, *candidates: str) -> str:
    for path in candidates:
        if os.path.exists(path):
            return path
    found = shutil.which(name)
    if found:
        return found
    raise ServerStartError(f"{name} not found")


class _LocalCA:
    """The throwaway CA of one server, as :func:`devtools.tls.generate_server_tls` makes it,
    except that its private key is kept in memory (never written) for as long as the server
    runs, so that a standby or replica gets its own certificate signed by the same CA: a
    client holding the primary's ``ca.pem`` verifies both."""

    def __init__(self, common_name: str = "Throwaway Test CA") -> None:
        self._key: rsa.RSAPrivateKey
        self._key, self._cert = _make_ca(common_name)

    def write_server_tls(
        self,
        directory: str,
        *,
        dns_names: tuple[str, ...] = ("localhost",),
        ip_addresses: tuple[str, ...] = (HOST,),
    ) -> TLSFiles:
        """Write ``ca.pem``, a fresh ``server.pem`` signed by this CA and its ``server.key`` (0600)."""
        from cryptography.hazmat.primitives import serialization

        key = _new_key()
        cert = _make_server_cert(self._key, self._cert, key, dns_names, ip_addresses)
        files = TLSFiles(
            ca_file=os.path.join(directory, "ca.pem"),
            cert_file=os.path.join(directory, "server.pem"),
            key_file=os.path.join(directory, "server.key"),
        )
        _write(files.ca_file, _cert_pem(self._cert), 0o644)
        _write(files.cert_file, _cert_pem(cert), 0o644)
        _write(
            files.key_file,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            0o600,
        )
        return files


# --------------------------------------------------------------------------- base


class _Server:
    engine = ""
    _service_user = ""

    def __init__(self, *, external: ServerInfo | None = None) -> None:
        self._info: ServerInfo | None = external
        self._external = external is not None
        self._tmpdir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False
        self._ca: _LocalCA | None = None  # signs this server's certificate and its replicas'
        self._dependents: list[_Server] = []  # standbys/replicas: stopped before this server

    # -- public -----------------------------------------------------------
    @property
    def info(self) -> ServerInfo:
        if self._info is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._info

    @property
    def is_external(self) -> bool:
        return self._external

    @property
    def directory(self) -> str | None:
        """The temporary directory of a throwaway server (None when external or stopped)."""
        return self._tmpdir

    @property
    def pid(self) -> int | None:
        """Process id of the server (also its process group id); None when external or stopped."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> ServerInfo:
        if self._info is not None:
            return self._info
        account = _service_account(self._service_user)
        self._tmpdir = _make_tmpdir(self._tmpdir_prefix(), account)
        atexit.register(self.stop)
        self._atexit_registered = True
        try:
            self._info = self._start(self._tmpdir, account, timeout)
        except BaseException:
            self.stop()
            raise
        return self._info

    def stop(self) -> None:
        """Kill the server and remove its directory. A no-op for an external server."""
        if self._external:
            return
        while self._dependents:  # a standby/replica never outlives its primary
            self._dependents.pop().stop()
        if self._proc is not None:
            self._kill(self._proc)
            self._proc = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self._info = None
        self._ca = None
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    def log_text(self) -> str:
        """Content of the server log ("" for an external server)."""
        return _read(self._info.log_file if self._info else None)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for subclasses ---------------------------------------------------
    def _tmpdir_prefix(self) -> str:
        raise NotImplementedError

    def _start(self, tmpdir: str, account: pwd.struct_passwd | None, timeout: float) -> ServerInfo:
        raise NotImplementedError

    def _write_tls(self, tmpdir: str) -> TLSFiles:
        """A new CA (kept in memory for replicas) and this server's certificate; replicas override."""
        self._ca = _LocalCA()
        return self._ca.write_server_tls(tmpdir)

    def _throwaway_primary_check(self, what: str) -> None:
        if self._external:
            raise RuntimeError(f"{what}: the primary is an external server (TEST_*_URL); only a throwaway one has one")
        if self._info is None or self._ca is None:
            raise RuntimeError(f"{what}: start the primary first")

    _stop_signal = signal.SIGTERM

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self._stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        # The server runs in its own session/process group: take down any leftover children.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def _spawn(
        self,
        cmd: list[str],
        *,
        log_path: str,
        tmpdir: str,
        account: pwd.struct_passwd | None,
    ) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=tmpdir,
                env=_child_env(tmpdir),
                start_new_session=True,
                **_run_as_kwargs(account),
            )
        self._proc = proc
        return proc


# --------------------------------------------------------------------------- PostgreSQL


def _pg_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresServer(_Server):
    """A throwaway PostgreSQL cluster (scram-sha-256 auth, TLS, every statement logged).

    ``auth="md5"`` makes pg_hba.conf ask for ``md5`` and sets ``password_encryption = md5``,
    as Amazon Redshift authenticates: roles given an md5 password (``PASSWORD 'md5…'``,
    pre-hashed) then log in with the md5 challenge. Roles that hold a SCRAM verifier
    (the admin, from initdb) still log in with SCRAM, which PostgreSQL uses for ``md5``
    lines whenever the stored password is a SCRAM verifier.
    """

    engine = "postgres"
    _service_user = "postgres"
    _stop_signal = signal.SIGQUIT  # immediate shutdown: the data is thrown away anyway
    AUTH_METHODS = ("scram-sha-256", "md5")
    REPLICATION_ROLE = "replicator"  # created on the first start_standby(), LOGIN REPLICATION

    def __init__(
        self, *, external: ServerInfo | None = None, sslmode: str | None = None, auth: str = "scram-sha-256"
    ) -> None:
        super().__init__(external=external)
        if auth not in self.AUTH_METHODS:
            raise ValueError(f"auth must be one of {self.AUTH_METHODS}")
        self._default_sslmode = sslmode
        self.auth = auth
        self._replication_password: str | None = None

    def start_standby(self, timeout: float = DEFAULT_START_TIMEOUT) -> PostgresStandby:
        """Start a physical streaming standby of this (running, throwaway) primary.

        See :class:`devtools.replicas.PostgresStandby`; it is stopped with this server
        at the latest.
        """
        from .replicas import PostgresStandby

        standby = PostgresStandby(self)
        standby.start(timeout)
        return standby

    def stop(self) -> None:
        super().stop()
        if not self._external:
            self._replication_password = None

    @classmethod
    def from_url(cls, url: str) -> PostgresServer:
        """Wrap an existing server: postgresql://user:pw@host:port/db?sslrootcert=/ca.pem[&sslmode=...]."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ValueError("TEST_POSTGRES_URL must start with postgresql://")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        info = ServerInfo(
            engine="postgres",
            host=parts.hostname or HOST,
            port=parts.port or 5432,
            admin_user=unquote(parts.username or "postgres"),
            admin_password=unquote(parts.password or ""),
            ca_file=query.get("sslrootcert", ""),
            log_file=None,
            dbname=unquote(parts.path.lstrip("/")) or "postgres",
        )
        return cls(external=info, sslmode=query.get("sslmode"))

    def _tmpdir_prefix(self) -> str:
        return "pgt-"

    def _start(self, tmpdir: str, account: pwd.struct_passwd | None, timeout: float) -> ServerInfo:
        import psycopg2

        bindir = _find_pg_bindir()
        tls = self._write_tls(tmpdir)
        _chown_tree(tmpdir, account)
        password = secrets.token_urlsafe(24)
        datadir = os.path.join(tmpdir, "data")
        log_path = os.path.join(tmpdir, "postgres.log")
        env = _child_env(tmpdir)

        pwfile = os.path.join(tmpdir, "pwfile")
        _write_private(pwfile, password + "\n", account)
        try:
            _run_checked(
                [
                    os.path.join(bindir, "initdb"),
                    "-D",
                    datadir,
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                    "--no-instructions",
                ],
                log_path=os.path.join(tmpdir, "initdb.log"),
                what="initdb",
                cwd=tmpdir,
                env=env,
                **_run_as_kwargs(account),
            )
        finally:
            os.unlink(pwfile)

        settings = {
            "listen_addresses": _pg_quote(HOST),
            "unix_socket_directories": _pg_quote(tmpdir),
            "ssl": "on",
            "ssl_cert_file": _pg_quote(tls.cert_file),
            "ssl_key_file": _pg_quote(tls.key_file),
            "ssl_ca_file": _pg_quote(tls.ca_file),
            "password_encryption": _pg_quote(self.auth),
            "logging_collector": "off",
            "log_destination": _pg_quote("stderr"),
            "log_statement": _pg_quote("all"),
            "log_connections": "on",
            "log_min_messages": "info",
            "log_line_prefix": _pg_quote("%m [%p] %q%u@%d "),
            "lc_messages": _pg_quote("C"),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": _pg_quote("16MB"),
            "max_connections": "50",
        }
        with open(os.path.join(datadir, "postgresql.conf"), "a", encoding="utf-8") as conf:
            conf.write("\n# --- throwaway test server (devtools/servers.py) ---\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        with open(os.path.join(datadir, "pg_hba.conf"), "w", encoding="utf-8") as hba:
            hba.write(
                f"local   all all                {self.auth}\n"
                f"hostssl all all 127.0.0.1/32   {self.auth}\n"
                f"host    all all 127.0.0.1/32   {self.auth}\n"
                # Streaming standbys (start_standby): only this role, only over TLS.
                f"hostssl replication {self.REPLICATION_ROLE} 127.0.0.1/32 {self.auth}\n"
            )

        for attempt in range(3):
            port = _free_port()
            info = ServerInfo(
                engine="postgres",
                host=HOST,
                port=port,
                admin_user="postgres",
                admin_password=password,
                ca_file=tls.ca_file,
                log_file=log_path,
                dbname="postgres",
            )
            self._info = info  # admin_connect() needs it while probing
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
                    what="postgres",
                    log_path=log_path,
                )
            except _ProcessDiedError:
                self._info = None
                self._proc = None
                if attempt < 2 and any(e in _tail(log_path) for e in _BIND_ERRORS):
                    continue  # someone grabbed the port in between: try another one
                raise
            except BaseException:
                self._info = None
                raise
            return info
        raise AssertionError("unreachable")

    def admin_connect(self, dbname: str | None = None) -> psycopg2.extensions.connection:
        """Superuser connection (autocommit) over TLS, verify-full against ``info.ca_file``."""
        info = self.info
        return self.connect(info.admin_user, info.admin_password, dbname)

    def connect(
        self,
        user: str,
        password: str,
        dbname: str | None = None,
        sslmode: str | None = None,
        *,
        autocommit: bool = True,
    ) -> psycopg2.extensions.connection:
        """Connect over TCP to ``info.host:info.port``.

        ``sslmode`` defaults to "verify-full" (against ``info.ca_file``) for a throwaway
        server; for an external one, to the URL's sslmode, else "verify-full" when a CA
        was given and "require" (encrypted, unverified) when not. Pass "disable" to
        test plain TCP. The connection is in autocommit mode unless autocommit=False.
        """
        import psycopg2

        info = self.info
        if sslmode is None:
            sslmode = self._default_sslmode or ("verify-full" if info.ca_file else "require")
        kwargs: dict[str, Any] = {}
        if info.ca_file and sslmode in (
            "verify-ca",
            "verify-full",
            "require",
            "prefer",
            "allow",
        ):
            kwargs["sslrootcert"] = info.ca_file
        conn: psycopg2.extensions.connection = psycopg2.connect(
            host=info.host,
            port=info.port,
            user=user,
            password=password,
            dbname=dbname or info.dbname,
            sslmode=sslmode,
            connect_timeout=_CONNECT_TIMEOUT,
            **kwargs,
        )
        conn.autocommit = autocommit
        return conn


# --------------------------------------------------------------------------- MariaDB


def import_pymysql() -> Any:
    """Import pymysql lazily: only the MariaDB code needs it (it ships no type hints)."""
    try:
        import pymysql  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ImportError("pymysql is needed for the MariaDB test server: pip install pymysql") from exc
    return pymysql


def mysql_native_password_hash(password: str) -> str:
    """The mysql_native_password hash ('*' + hex SHA1(SHA1(pw))), for IDENTIFIED BY PASSWORD."""
    # SHA1 is what the mysql_native_password protocol defines; nothing to choose here.
    inner = hashlib.sha1(password.encode(), usedforsecurity=False).digest()
    return "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()


def _tls_client_context(ca_file: str) -> ssl.SSLContext:
    """Verify the certificate chain against ca_file and the host name/IP against the SANs.

    Without a CA (an external server given without ssl_ca), traffic is encrypted but the
    server is not authenticated.
    """
    if ca_file:
        ctx = ssl.create_default_context(cafile=ca_file)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class MariaDBServer(_Server):
    """A throwaway MariaDB server (TLS, general log of every statement)."""

    engine = "mariadb"
    _service_user = "mysql"
    ADMIN_USER = "admin"
    REPLICATION_USER = "replicator"  # created on the first start_replica(), REPLICATION SLAVE, REQUIRE SSL
    PRIMARY_SERVER_ID = 1

    def __init__(self, *, external: ServerInfo | None = None, replication: bool = False) -> None:
        """``replication=True`` turns the binary log on from the first statement (server_id 1,
        row format), which :meth:`start_replica` needs; it is off by default, as the binary
        log costs a little on every write and the suite's servers need none."""
        super().__init__(external=external)
        self._error_log: str | None = None
        self.replication = replication
        self.server_id: int | None = self.PRIMARY_SERVER_ID if replication and external is None else None
        self._replication_password: str | None = None
        self._replica_ids = 0

    def start_replica(self, timeout: float = DEFAULT_START_TIMEOUT) -> MariaDBReplica:
        """Start a read-only replica of this (running, throwaway, ``replication=True``) server.

        See :class:`devtools.replicas.MariaDBReplica`; it is stopped with this server at
        the latest.
        """
        from .replicas import MariaDBReplica

        replica = MariaDBReplica(self)
        replica.start(timeout)
        return replica

    def _server_args(self, tmpdir: str) -> list[str]:
        """Extra mariadbd options: the binary log of a replication primary; replicas override."""
        if not self.replication:
            return []
        return [
            f"--server-id={self.server_id}",
            "--log-bin=binlog",  # in the data directory
            "--binlog-format=ROW",
            # With a binary log MariaDB refuses CREATE FUNCTION from non-SUPER accounts
            # unless this is on; keep the server behaving as without one.
            "--log-bin-trust-function-creators=1",
        ]

    def _admin_password_for_start(self) -> str:
        return secrets.token_urlsafe(24)

    @classmethod
    def from_url(cls, url: str) -> MariaDBServer:
        """Wrap an existing server: mysql://user:pw@host:port/db?ssl_ca=/ca.pem."""
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ValueError("TEST_MYSQL_URL must start with mysql://")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        info = ServerInfo(
            engine="mariadb",
            host=parts.hostname or HOST,
            port=parts.port or 3306,
            admin_user=unquote(parts.username or "root"),
            admin_password=unquote(parts.password or ""),
            ca_file=query.get("ssl_ca", query.get("ssl-ca", "")),
            log_file=None,
            dbname=unquote(parts.path.lstrip("/")) or "mysql",
        )
        return cls(external=info)

    @property
    def error_log_file(self) -> str | None:
        return self._error_log

    def log_text(self) -> str:
        """The general query log (every statement), followed by the error log."""
        return super().log_text() + _read(self._error_log)

    def stop(self) -> None:
        super().stop()
        if not self._external:
            self._error_log = None
            self._replication_password = None

    def _tmpdir_prefix(self) -> str:
        return "mdb-"

    def _start(self, tmpdir: str, account: pwd.struct_passwd | None, timeout: float) -> ServerInfo:
        pymysql = import_pymysql()
        install_db = _find_binary("mariadb-install-db", "/usr/bin/mariadb-install-db")
        mariadbd = _find_binary("mariadbd", "/usr/sbin/mariadbd")
        tls = self._write_tls(tmpdir)
        _chown_tree(tmpdir, account)
        datadir = os.path.join(tmpdir, "data")
        socket_path = os.path.join(tmpdir, "mysqld.sock")
        error_log = os.path.join(tmpdir, "error.log")
        general_log = os.path.join(tmpdir, "general.log")
        self._error_log = error_log
        # mariadbd's stdout/stderr and --log-error share one file, which the server
        # (running as mysql) reopens for appending: create it with the right owner.
        _write_private(error_log, "", account)
        env = _child_env(tmpdir)
        as_user = ["--user=mysql"] if account is not None else []
        # Must be identical for install and server (InnoDB log/buffer sizing).
        innodb = [
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=8M",
            "--innodb-temp-data-file-path=ibtmp1:1M:autoextend",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
        ]
        _run_checked(
            [
                install_db,
                "--no-defaults",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                *as_user,
                *innodb,
            ],
            log_path=os.path.join(tmpdir, "install.log"),
            what="mariadb-install-db",
            cwd=tmpdir,
            env=env,
        )

        password = self._admin_password_for_start()
        for attempt in range(3):
            port = _free_port()
            cmd = [
                mariadbd,
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={socket_path}",
                f"--port={port}",
                f"--bind-address={HOST}",
                "--skip-name-resolve",
                f"--pid-file={os.path.join(tmpdir, 'mysqld.pid')}",
                f"--tmpdir={tmpdir}",
                f"--log-error={error_log}",
                "--general-log=1",
                f"--general-log-file={general_log}",
                f"--ssl-ca={tls.ca_file}",
                f"--ssl-cert={tls.cert_file}",
                f"--ssl-key={tls.key_file}",
                "--max-connections=50",
                "--performance-schema=OFF",
                "--loose-feedback=OFF",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                *self._server_args(tmpdir),
                *innodb,
                *as_user,
            ]
            proc = self._spawn(
                cmd,
                log_path=error_log,
                tmpdir=tmpdir,
                account=account,
            )
            try:
                _wait_until(
                    lambda: self._socket_root_connect(socket_path).close(),
                    retry_on=(pymysql.err.OperationalError,),
                    proc=proc,
                    timeout=timeout,
                    what="mariadbd",
                    log_path=error_log,
                )
            except _ProcessDiedError:
                self._proc = None
                if attempt < 2 and any(e in _tail(error_log) for e in _BIND_ERRORS):
                    continue
                raise
            self._bootstrap_accounts(socket_path, password)
            info = ServerInfo(
                engine="mariadb",
                host=HOST,
                port=port,
                admin_user=self.ADMIN_USER,
                admin_password=password,
                ca_file=tls.ca_file,
                log_file=general_log,
                dbname="mysql",
            )
            self._info = info
            try:
                # Prove the admin account works the way tests will use it: TCP + verified TLS.
                _wait_until(
                    lambda: self.admin_connect().close(),
                    retry_on=(pymysql.err.OperationalError,),
                    proc=proc,
                    timeout=timeout,
                    what="mariadbd (admin over TLS)",
                    log_path=error_log,
                )
            except BaseException:
                self._info = None
                raise
            return info
        raise AssertionError("unreachable")

    @staticmethod
    def _socket_root_connect(socket_path: str, password: str = "") -> MySQLConnection:
        pymysql = import_pymysql()
        return pymysql.connect(
            unix_socket=socket_path,
            user="root",
            password=password,
            ssl_disabled=True,
            connect_timeout=_CONNECT_TIMEOUT,
            autocommit=True,
        )

    def _bootstrap_accounts(self, socket_path: str, password: str) -> None:
        """Create admin@'%' with ALL ... WITH GRANT OPTION; lock down everything else.

        mariadb-install-db --auth-root-authentication-method=normal leaves root@localhost,
        root@127.0.0.1, root@::1 and root@<hostname> WITHOUT a password (the 127.0.0.1 one is
        reachable over TCP): drop all but root@localhost and give that one the admin password.
        The statements are kept out of the general log (sql_log_off), and only the
        mysql_native_password hash is sent, never the password itself.
        """
        pw_hash = mysql_native_password_hash(password)
        conn = self._socket_root_connect(socket_path)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_off = 1")
                cur.execute(
                    "SELECT User, Host FROM mysql.user WHERE NOT (User = 'root' AND Host = 'localhost')"
                    " AND User NOT IN ('mariadb.sys')"
                )
                for user, host in cur.fetchall():
                    cur.execute("DROP USER %s@%s", (user, host))
                cur.execute(
                    "CREATE USER %s@'%%' IDENTIFIED BY PASSWORD %s",
                    (self.ADMIN_USER, pw_hash),
                )
                cur.execute(
                    "GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION",
                    (self.ADMIN_USER,),
                )
                cur.execute(
                    "ALTER USER 'root'@'localhost' IDENTIFIED BY PASSWORD %s",
                    (pw_hash,),
                )
        finally:
            conn.close()

    def admin_connect(self, dbname: str | None = None) -> MySQLConnection:
        """Admin connection (autocommit) over TCP + TLS verified against ``info.ca_file``.

        The default database is ``dbname`` or else ``info.dbname`` ("mysql").
        """
        info = self.info
        return self.connect(info.admin_user, info.admin_password, dbname or info.dbname)

    def connect(
        self,
        user: str,
        password: str,
        database: str | None = None,
        ssl: bool = True,
        *,
        autocommit: bool = True,
    ) -> MySQLConnection:
        """Connect over TCP to ``info.host:info.port`` with pymysql.

        ssl=True: TLS is required, the chain is verified against ``info.ca_file`` and the
        host (127.0.0.1) against the certificate's SANs. ssl=False: plain TCP (TLS is
        explicitly disabled; pymysql would otherwise opportunistically use it).
        ``database=None`` selects no default database (a plain user usually has no
        rights on "mysql"). The connection is in autocommit mode unless autocommit=False.
        """
        pymysql = import_pymysql()
        info = self.info
        tls: dict[str, Any] = {"ssl": _tls_client_context(info.ca_file)} if ssl else {"ssl_disabled": True}
        return pymysql.connect(
            host=info.host,
            port=info.port,
            user=user,
            password=password,
            database=database,
            connect_timeout=_CONNECT_TIMEOUT,
            autocommit=autocommit,
            **tls,
        )


# --------------------------------------------------------------------------- env helpers


def postgres_from_env_or_start(
    timeout: float = DEFAULT_START_TIMEOUT,
) -> PostgresServer:
    """The server named by TEST_POSTGRES_URL, or else a freshly started throwaway one."""
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        return PostgresServer.from_url(url)
    server = PostgresServer()
    server.start(timeout)
    return server


def mariadb_from_env_or_start(timeout: float = DEFAULT_START_TIMEOUT, *, replication: bool = False) -> MariaDBServer:
    """The server named by TEST_MYSQL_URL, or else a freshly started throwaway one
    (with its binary log on if ``replication``, so that it can :meth:`~MariaDBServer.start_replica`)."""
    url = os.environ.get("TEST_MYSQL_URL")
    if url:
        return MariaDBServer.from_url(url)
    server = MariaDBServer(replication=replication)
    server.start(timeout)
    return server


def postgres_standby_of(server: PostgresServer, timeout: float = DEFAULT_START_TIMEOUT) -> PostgresStandby:
    """A started streaming standby of ``server`` (fixture-ready: call ``.stop()`` when done)."""
    return server.start_standby(timeout)


def mariadb_replica_of(server: MariaDBServer, timeout: float = DEFAULT_START_TIMEOUT) -> MariaDBReplica:
    """A started read-only replica of ``server`` (fixture-ready: call ``.stop()`` when done)."""
    return server.start_replica(timeout)
