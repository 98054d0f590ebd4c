"""Self-check of the throwaway test servers: TLS, authentication, logging, cleanup.

Each server is started once for the module; the stop() checks use servers of their own.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2
import pytest
from psycopg2.extensions import encrypt_password

from devtools import servers
from devtools.replicas import MariaDBReplica, PostgresStandby
from devtools.servers import (
    HOST,
    MariaDBServer,
    PostgresServer,
    ServerStartError,
    import_pymysql,
    mariadb_from_env_or_start,
    mariadb_replica_of,
    mysql_native_password_hash,
    port_accepts_connections,
    postgres_from_env_or_start,
    postgres_standby_of,
)
from devtools.tls import generate_ca

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mdb() -> Iterator[MariaDBServer]:
    server = MariaDBServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    return generate_ca(str(tmp_path_factory.mktemp("other-ca")))


# --------------------------------------------------------------------------- PostgreSQL


def test_pg_admin_is_tls_verify_full(pg: PostgresServer) -> None:
    conn = pg.admin_connect()
    try:
        assert conn.autocommit
        assert conn.get_dsn_parameters()["sslmode"] == "verify-full"
        with conn.cursor() as cur:
            cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            row = cur.fetchone()
            assert row is not None
            ssl_on, version = row
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == (True,)
    finally:
        conn.close()
    assert ssl_on is True
    assert version.startswith("TLSv1.")


def test_pg_wrong_ca_is_rejected(pg: PostgresServer, other_ca: str) -> None:
    info = pg.info
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        psycopg2.connect(
            host=info.host,
            port=info.port,
            user=info.admin_user,
            password=info.admin_password,
            dbname=info.dbname,
            sslmode="verify-full",
            sslrootcert=other_ca,
            connect_timeout=5,
        )


def test_pg_plain_tcp_is_possible(pg: PostgresServer) -> None:
    conn = pg.connect(pg.info.admin_user, pg.info.admin_password, sslmode="disable")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (False,)
    finally:
        conn.close()


def test_pg_role_password_login(pg: PostgresServer) -> None:
    role = f"selfcheck_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    admin = pg.admin_connect()
    try:
        # Only the SCRAM verifier (computed by libpq, client-side) reaches the logging server.
        verifier = encrypt_password(password, role, admin, "scram-sha-256")
        with admin.cursor() as cur:
            cur.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD %s', (verifier,))
    finally:
        admin.close()

    conn = pg.connect(role, password)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (role, True)
    finally:
        conn.close()

    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        pg.connect(role, password + "x")

    log = pg.log_text()
    assert role in log  # the CREATE ROLE statement was logged ...
    assert password not in log  # ... but only the verifier travelled
    assert pg.info.admin_password not in log


def test_pg_statements_are_logged(pg: PostgresServer) -> None:
    marker = f"selfcheck-marker-{secrets.token_hex(8)}"
    conn = pg.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT %s", (marker,))
    finally:
        conn.close()
    assert f"statement: SELECT '{marker}'" in pg.log_text()


def test_pg_stop_cleans_up() -> None:
    server = PostgresServer()
    info = server.start()
    directory = server.directory
    assert directory is not None
    assert os.path.isdir(directory)
    assert port_accepts_connections(info.host, info.port)
    server.stop()
    assert not os.path.exists(directory)
    assert not port_accepts_connections(info.host, info.port)
    server.stop()  # idempotent


def test_pg_from_env_wraps_existing_server(pg: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    info = pg.info
    url = (
        f"postgresql://{quote(info.admin_user, safe='')}:{quote(info.admin_password, safe='')}"
        f"@{info.host}:{info.port}/postgres?sslrootcert={quote(info.ca_file)}"
    )
    monkeypatch.setenv("TEST_POSTGRES_URL", url)
    external = postgres_from_env_or_start()
    assert external.is_external
    assert external.info == dataclasses.replace(info, log_file=None)
    assert external.log_text() == ""
    conn = external.admin_connect()
    conn.close()
    external.stop()  # must not touch the server
    assert port_accepts_connections(info.host, info.port)


def test_server_info_repr_hides_password(pg: PostgresServer) -> None:
    assert pg.info.admin_password not in repr(pg.info)


# --------------------------------------------------------------------------- MariaDB


def _ssl_cipher(conn: object) -> str:
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        row = cur.fetchone()
    return str(row[1]) if row else ""


def test_mdb_admin_is_tls_verified(mdb: MariaDBServer) -> None:
    conn = mdb.admin_connect()
    try:
        assert _ssl_cipher(conn) != ""
        with conn.cursor() as cur:
            cur.execute("SHOW GRANTS")
            grants = " ".join(row[0] for row in cur.fetchall())
            cur.execute("SELECT DATABASE()")
            assert cur.fetchone() == ("mysql",)
    finally:
        conn.close()
    assert "ALL PRIVILEGES ON *.*" in grants
    assert "WITH GRANT OPTION" in grants


def test_mdb_wrong_ca_is_rejected(mdb: MariaDBServer, other_ca: str) -> None:
    pymysql = import_pymysql()
    info = mdb.info
    ctx = ssl.create_default_context(cafile=other_ca)
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        pymysql.connect(
            host=info.host,
            port=info.port,
            user=info.admin_user,
            password=info.admin_password,
            ssl=ctx,
            connect_timeout=5,
        )
    assert "CERTIFICATE_VERIFY_FAILED" in str(excinfo.value) or isinstance(
        excinfo.value.__cause__, ssl.SSLCertVerificationError
    )


def test_mdb_plain_tcp_is_possible(mdb: MariaDBServer) -> None:
    conn = mdb.connect(mdb.info.admin_user, mdb.info.admin_password, ssl=False)
    try:
        assert _ssl_cipher(conn) == ""
    finally:
        conn.close()


def test_mdb_user_password_login(mdb: MariaDBServer) -> None:
    pymysql = import_pymysql()
    user = f"selfcheck_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    admin = mdb.admin_connect()
    try:
        with admin.cursor() as cur:
            cur.execute(
                "CREATE USER %s@'%%' IDENTIFIED BY PASSWORD %s",
                (user, mysql_native_password_hash(password)),
            )
    finally:
        admin.close()

    conn = mdb.connect(user, password)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone() == (f"{user}@%",)
        assert _ssl_cipher(conn) != ""
    finally:
        conn.close()

    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        mdb.connect(user, password + "x")
    assert excinfo.value.args[0] == 1045  # ER_ACCESS_DENIED_ERROR

    log = mdb.log_text()
    assert user in log
    assert password not in log
    assert mdb.info.admin_password not in log


def test_mdb_statements_are_logged(mdb: MariaDBServer) -> None:
    marker = f"selfcheck-marker-{secrets.token_hex(8)}"
    conn = mdb.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT %s", (marker,))
    finally:
        conn.close()
    assert f"SELECT '{marker}'" in mdb.log_text()


def test_mdb_stop_cleans_up() -> None:
    server = MariaDBServer()
    info = server.start()
    directory = server.directory
    assert directory is not None
    assert os.path.isdir(directory)
    assert port_accepts_connections(info.host, info.port)
    server.stop()
    assert not os.path.exists(directory)
    assert not port_accepts_connections(info.host, info.port)
    server.stop()  # idempotent


def test_mdb_from_env_wraps_existing_server(mdb: MariaDBServer, monkeypatch: pytest.MonkeyPatch) -> None:
    info = mdb.info
    url = (
        f"mysql://{quote(info.admin_user, safe='')}:{quote(info.admin_password, safe='')}"
        f"@{info.host}:{info.port}/mysql?ssl_ca={quote(info.ca_file)}"
    )
    monkeypatch.setenv("TEST_MYSQL_URL", url)
    external = mariadb_from_env_or_start()
    assert external.is_external
    assert (external.info.host, external.info.port, external.info.admin_user) == (
        info.host,
        info.port,
        info.admin_user,
    )
    assert external.info.admin_password == info.admin_password
    assert external.info.ca_file == info.ca_file
    assert external.info.log_file is None
    assert external.log_text() == ""
    conn = external.admin_connect()
    try:
        assert _ssl_cipher(conn) != ""
    finally:
        conn.close()
    external.stop()  # must not touch the server
    assert port_accepts_connections(info.host, info.port)


def test_tls_files_modes(pg: PostgresServer) -> None:
    directory = pg.directory
    assert directory is not None
    assert (Path(directory) / "server.key").stat().st_mode & 0o777 == 0o600


def test_urls_are_parsed_and_unquoted() -> None:
    password = "p@ss:w/rd%?#&é"
    pg_url = f"postgresql://ad%40min:{quote(password, safe='')}@db.example:6543/app?sslrootcert=%2Fca%20dir%2Fca.pem"
    pg_info = PostgresServer.from_url(pg_url).info
    assert (pg_info.admin_user, pg_info.admin_password) == ("ad@min", password)
    assert (pg_info.host, pg_info.port, pg_info.dbname) == ("db.example", 6543, "app")
    assert pg_info.ca_file == "/ca dir/ca.pem"
    assert pg_info.log_file is None

    my_info = MariaDBServer.from_url(f"mysql://root:{quote(password, safe='')}@db.example/mysql").info
    assert (my_info.admin_user, my_info.admin_password) == ("root", password)
    assert (my_info.port, my_info.dbname, my_info.ca_file) == (3306, "mysql", "")


# --------------------------------------------------------------------------- replicas
# A PostgreSQL streaming standby and a MariaDB replica (devtools/replicas.py): what is
# created on the primary logs in on the replica after the wait, the replica refuses writes,
# and every replica is gone (directory, port, processes) after stop, a failed start, a failed
# test, or its primary's stop.


def _process_group_gone(pgid: int, timeout: float = 5.0) -> bool:
    """True once no process of the group is left (zombies included: they are reaped quickly)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _assert_gone(directory: str, port: int, pid: int) -> None:
    assert not os.path.exists(directory)
    assert not port_accepts_connections(HOST, port)
    assert _process_group_gone(pid)


@pytest.fixture
def started_dirs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The temporary directories of the servers started during the test."""
    made: list[str] = []
    original = servers._make_tmpdir

    def recording(prefix: str, account: Any) -> str:
        path = original(prefix, account)
        made.append(path)
        return path

    monkeypatch.setattr(servers, "_make_tmpdir", recording)
    return made


@pytest.fixture(scope="module")
def pg_standby(pg: PostgresServer) -> Iterator[PostgresStandby]:
    standby = postgres_standby_of(pg)
    try:
        yield standby
    finally:
        standby.stop()


@pytest.fixture(scope="module")
def mdb_primary() -> Iterator[MariaDBServer]:
    server = MariaDBServer(replication=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mdb_replica(mdb_primary: MariaDBServer) -> Iterator[MariaDBReplica]:
    replica = mariadb_replica_of(mdb_primary)
    try:
        yield replica
    finally:
        replica.stop()


def _pg_create_role(server: PostgresServer, role: str, password: str) -> None:
    """As tests/engines.py does: only the SCRAM verifier reaches the server."""
    admin = server.admin_connect()
    try:
        verifier = encrypt_password(password, role, admin, "scram-sha-256")
        with admin.cursor() as cur:
            cur.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD %s', (verifier,))
    finally:
        admin.close()


def _pg_logs_in(server: PostgresServer, role: str, password: str) -> bool:
    try:
        conn = server.connect(role, password)
    except psycopg2.OperationalError as exc:
        if "authentication failed" in str(exc):
            return False
        raise
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (role, True)
    finally:
        conn.close()
    return True


def test_pg_standby_replays_a_role_made_on_the_primary(pg: PostgresServer, pg_standby: PostgresStandby) -> None:
    role = f"standby_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    _pg_create_role(pg, role, password)
    pg_standby.wait_replayed()
    assert _pg_logs_in(pg_standby, role, password)  # verify-full against the standby's ca_file
    assert not _pg_logs_in(pg_standby, role, password + "x")
    assert password not in pg_standby.log_text()
    assert password not in pg.log_text()


def test_pg_standby_wait_replayed_waits_for_replay(pg: PostgresServer, pg_standby: PostgresStandby) -> None:
    role = f"paused_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    admin = pg_standby.admin_connect()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_wal_replay_pause()")
        try:
            _pg_create_role(pg, role, password)
            with pytest.raises(TimeoutError, match="not yet the primary's"):
                pg_standby.wait_replayed(timeout=0.5)
            assert not _pg_logs_in(pg_standby, role, password)  # not replayed: no such role yet
        finally:
            with admin.cursor() as cur:
                cur.execute("SELECT pg_wal_replay_resume()")
    finally:
        admin.close()
    pg_standby.wait_replayed()
    assert _pg_logs_in(pg_standby, role, password)


def test_pg_standby_refuses_writes(pg_standby: PostgresStandby) -> None:
    assert pg_standby.is_in_recovery()
    conn = pg_standby.admin_connect()  # even a superuser
    try:
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
                cur.execute("CREATE ROLE refused_on_standby LOGIN")
            with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
                cur.execute("ALTER ROLE CURRENT_USER PASSWORD NULL")
    finally:
        conn.close()


def test_pg_standby_tls_and_streaming(pg: PostgresServer, pg_standby: PostgresStandby) -> None:
    assert pg_standby.info.port != pg.info.port
    assert pg_standby.directory != pg.directory
    assert (pg_standby.info.admin_user, pg_standby.info.dbname) == (pg.info.admin_user, pg.info.dbname)
    # Same CA, its own server certificate.
    assert Path(pg_standby.info.ca_file).read_bytes() == Path(pg.info.ca_file).read_bytes()
    assert pg_standby.directory is not None and pg.directory is not None
    assert (Path(pg_standby.directory) / "server.pem").read_bytes() != (Path(pg.directory) / "server.pem").read_bytes()
    # A client holding only the primary's CA file verifies the standby.
    conn = psycopg2.connect(
        host=pg_standby.info.host,
        port=pg_standby.info.port,
        user=pg.info.admin_user,
        password=pg.info.admin_password,
        dbname="postgres",
        sslmode="verify-full",
        sslrootcert=pg.info.ca_file,
        connect_timeout=5,
    )
    conn.close()
    status = pg_standby.replication_status()
    assert status["state"] == "streaming"
    assert status["usename"] == PostgresServer.REPLICATION_ROLE
    assert status["ssl"] is True


def test_pg_standby_stop_leaves_the_primary_running(pg: PostgresServer) -> None:
    standby = pg.start_standby()
    directory, port, pid, name = standby.directory, standby.info.port, standby.pid, standby.application_name
    assert directory is not None and pid is not None
    standby.stop()
    _assert_gone(directory, port, pid)
    standby.stop()  # idempotent
    role = f"after_stop_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    _pg_create_role(pg, role, password)  # the primary still takes writes
    assert _pg_logs_in(pg, role, password)
    conn = pg.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_replication WHERE application_name = %s", (name,))
            assert cur.fetchone() == (0,)
    finally:
        conn.close()


def _fail_while_running(replica: PostgresStandby | MariaDBReplica, seen: dict[str, Any]) -> None:
    """A test body that fails while using the replica, as a fixture's body would."""
    with replica:
        seen.update(directory=replica.directory, port=replica.info.port, pid=replica.pid)
        raise ZeroDivisionError


def test_pg_standby_is_cleaned_up_when_a_test_fails(pg: PostgresServer, started_dirs: list[str]) -> None:
    seen: dict[str, Any] = {}
    with pytest.raises(ZeroDivisionError):
        _fail_while_running(pg.start_standby(), seen)
    _assert_gone(seen["directory"], seen["port"], seen["pid"])
    # A start that fails (no time to come up) leaves nothing either.
    with pytest.raises(ServerStartError, match="not ready"):
        pg.start_standby(timeout=0)
    assert len(started_dirs) == 2
    assert not os.path.exists(started_dirs[1])
    pg.admin_connect().close()  # the primary is untouched


def test_pg_primary_stop_stops_its_standby() -> None:
    primary = PostgresServer()
    primary.start()
    try:
        standby = primary.start_standby()
        directory, port, pid = standby.directory, standby.info.port, standby.pid
        assert directory is not None and pid is not None
    finally:
        primary.stop()
    _assert_gone(directory, port, pid)


def test_replicas_of_external_or_stopped_servers_are_refused(started_dirs: list[str]) -> None:
    url = "postgresql://postgres:pw@127.0.0.1:1/postgres"
    with pytest.raises(RuntimeError, match="external server"):
        PostgresServer.from_url(url).start_standby()
    with pytest.raises(RuntimeError, match="start the primary first"):
        PostgresServer().start_standby()
    with pytest.raises(RuntimeError, match="external server"):
        MariaDBServer.from_url("mysql://root:pw@127.0.0.1:1/mysql").start_replica()
    with pytest.raises(RuntimeError, match="start the primary first"):
        MariaDBServer(replication=True).start_replica()
    assert started_dirs == []


def test_mdb_replica_needs_a_binary_log(mdb: MariaDBServer, started_dirs: list[str]) -> None:
    assert mdb.server_id is None
    with pytest.raises(RuntimeError, match=r"MariaDBServer\(replication=True\)"):
        mdb.start_replica()
    assert started_dirs == []  # refused before anything was made
    conn = mdb.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@log_bin")
            assert cur.fetchone() == (0,)  # the suite's servers keep running without one
    finally:
        conn.close()


def _mdb_create_user(server: MariaDBServer, user: str, password: str, *grants: str) -> None:
    """As tests/engines.py does: only the mysql_native_password hash reaches the server."""
    admin = server.admin_connect()
    try:
        with admin.cursor() as cur:
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY PASSWORD %s", (user, mysql_native_password_hash(password)))
            for grant in grants:
                cur.execute(f"GRANT {grant} TO %s@'%%'", (user,))
    finally:
        admin.close()


def _mdb_logs_in(server: MariaDBServer, user: str, password: str) -> bool:
    pymysql = import_pymysql()
    try:
        conn = server.connect(user, password)
    except pymysql.err.OperationalError as exc:
        if exc.args[0] == 1045:
            return False
        raise
    try:
        assert _ssl_cipher(conn) != ""
    finally:
        conn.close()
    return True


def test_mdb_replica_replays_a_user_made_on_the_primary(
    mdb_primary: MariaDBServer, mdb_replica: MariaDBReplica
) -> None:
    user = f"replica_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    _mdb_create_user(mdb_primary, user, password)
    mdb_replica.wait_caught_up()
    assert _mdb_logs_in(mdb_replica, user, password)  # TLS verified against the replica's ca_file
    assert not _mdb_logs_in(mdb_replica, user, password + "x")
    assert password not in mdb_replica.log_text()
    assert password not in mdb_primary.log_text()


def test_mdb_replica_wait_caught_up_waits(mdb_primary: MariaDBServer, mdb_replica: MariaDBReplica) -> None:
    user = f"stalled_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    admin = mdb_replica.admin_connect()
    try:
        with admin.cursor() as cur:
            cur.execute("STOP SLAVE SQL_THREAD")
        try:
            _mdb_create_user(mdb_primary, user, password)
            with pytest.raises(TimeoutError, match="not yet the primary's"):
                mdb_replica.wait_caught_up(timeout=0.5)
            assert not _mdb_logs_in(mdb_replica, user, password)
        finally:
            with admin.cursor() as cur:
                cur.execute("START SLAVE SQL_THREAD")
    finally:
        admin.close()
    mdb_replica.wait_caught_up()
    assert _mdb_logs_in(mdb_replica, user, password)


def test_mdb_replica_refuses_writes(mdb_primary: MariaDBServer, mdb_replica: MariaDBReplica) -> None:
    pymysql = import_pymysql()
    database = f"rdb_{secrets.token_hex(4)}"
    user = f"writer_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    admin = mdb_primary.admin_connect()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {database}")
    finally:
        admin.close()
    _mdb_create_user(mdb_primary, user, password, f"ALL ON {database}.*")
    mdb_replica.wait_caught_up()
    for conn in (mdb_replica.connect(user, password, database), mdb_replica.admin_connect(database)):
        try:
            with conn.cursor() as cur, pytest.raises(pymysql.err.OperationalError) as excinfo:
                cur.execute("CREATE TABLE t (i INT)")
            assert excinfo.value.args[0] == 1290  # ER_OPTION_PREVENTS_STATEMENT: --read-only
        finally:
            conn.close()
    conn = mdb_replica.admin_connect()
    try:
        with conn.cursor() as cur, pytest.raises(pymysql.err.OperationalError) as excinfo:
            cur.execute("ALTER USER %s@'%%' IDENTIFIED BY PASSWORD %s", (user, mysql_native_password_hash("x")))
        assert excinfo.value.args[0] == 1290
    finally:
        conn.close()
    # The same write on the primary arrives on the replica.
    conn = mdb_primary.connect(user, password, database)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (i INT)")
    finally:
        conn.close()
    mdb_replica.wait_caught_up()
    conn = mdb_replica.connect(user, password, database)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            assert cur.fetchall() == (("t",),)
    finally:
        conn.close()


def test_mdb_replica_status_and_tls(mdb_primary: MariaDBServer, mdb_replica: MariaDBReplica) -> None:
    status = mdb_replica.replica_status()
    assert mdb_primary.server_id == 1
    assert mdb_replica.server_id not in (None, mdb_primary.server_id)
    assert status["Master_Server_Id"] == mdb_primary.server_id
    assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")
    assert status["Using_Gtid"] == "Slave_Pos"
    assert (status["Master_SSL_Allowed"], status["Master_SSL_Verify_Server_Cert"]) == ("Yes", "Yes")
    assert status["Master_Port"] == mdb_primary.info.port
    assert mdb_replica.info.port != mdb_primary.info.port
    assert Path(mdb_replica.info.ca_file).read_bytes() == Path(mdb_primary.info.ca_file).read_bytes()
    assert mdb_replica.directory is not None and mdb_primary.directory is not None
    assert (Path(mdb_replica.directory) / "server.pem").read_bytes() != (
        Path(mdb_primary.directory) / "server.pem"
    ).read_bytes()
    # The replication account cannot connect without TLS, and its password is in no log.
    primary_password = mdb_primary._replication_password
    assert primary_password is not None
    assert _mdb_plain_login_error(mdb_primary, MariaDBServer.REPLICATION_USER, primary_password) == 1045
    assert primary_password not in mdb_primary.log_text() + mdb_replica.log_text()
    assert mdb_primary.info.admin_password not in mdb_replica.log_text()


def _mdb_plain_login_error(server: MariaDBServer, user: str, password: str) -> int:
    """The error code of a login without TLS (0 if it logged in)."""
    pymysql = import_pymysql()
    try:
        server.connect(user, password, ssl=False).close()
    except pymysql.err.OperationalError as exc:
        return int(exc.args[0])
    return 0


def test_mdb_replica_started_late_has_earlier_data_and_stops_alone(mdb_primary: MariaDBServer) -> None:
    user = f"early_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    _mdb_create_user(mdb_primary, user, password)
    replica = mdb_primary.start_replica()
    directory, port, pid = replica.directory, replica.info.port, replica.pid
    assert directory is not None and pid is not None
    try:
        assert _mdb_logs_in(replica, user, password)  # start_replica() returns caught up
    finally:
        replica.stop()
    _assert_gone(directory, port, pid)
    replica.stop()  # idempotent
    assert _mdb_logs_in(mdb_primary, user, password)  # the primary is untouched
    _mdb_create_user(mdb_primary, user + "_b", password)


def test_mdb_replica_is_cleaned_up_when_a_test_fails(mdb_primary: MariaDBServer, started_dirs: list[str]) -> None:
    seen: dict[str, Any] = {}
    with pytest.raises(ZeroDivisionError):
        _fail_while_running(mdb_primary.start_replica(), seen)
    _assert_gone(seen["directory"], seen["port"], seen["pid"])
    with pytest.raises(ServerStartError, match="not ready"):
        mdb_primary.start_replica(timeout=0)
    assert len(started_dirs) == 2
    assert not os.path.exists(started_dirs[1])


def test_mdb_primary_stop_stops_its_replica() -> None:
    primary = MariaDBServer(replication=True)
    primary.start()
    try:
        replica = primary.start_replica()
        directory, port, pid = replica.directory, replica.info.port, replica.pid
        assert directory is not None and pid is not None
    finally:
        primary.stop()
    _assert_gone(directory, port, pid)
