"""Self-check of the throwaway test servers: TLS, authentication, logging, cleanup.

Each server is started once for the module; the stop() checks use servers of their own.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest
from psycopg2.extensions import encrypt_password

from tests.support.servers import (
    MariaDBServer,
    PostgresServer,
    import_pymysql,
    mariadb_from_env_or_start,
    mysql_native_password_hash,
    port_accepts_connections,
    postgres_from_env_or_start,
)
from tests.support.tls import generate_ca

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
