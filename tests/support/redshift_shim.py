"""A test-only TCP shim that makes a throwaway PostgreSQL look like Amazon Redshift to
redshift_connector, so the Redshift engine is tested through the real driver.

Plain PostgreSQL refuses redshift_connector at connect time, for three reasons found by
trying (redshift_connector 2.2.0 against PostgreSQL 15):

- the driver's start-up packet carries parameters only Redshift knows
  (``client_protocol_version``, ``driver_version``, ``os_version``,
  ``driver_discovery_version``): PostgreSQL treats start-up parameters as settings and
  ends the session with "unrecognized configuration parameter";
- the driver parses the ``server_version`` the server reports with
  ``packaging.version.parse``, which cannot read PostgreSQL's "15.x (Debian ...)";
- its SASL client sends the wrong mechanism list to scramp, so it cannot log in with
  SCRAM at all (Redshift uses md5, or its own SHA-256 digest: PostgresServer(auth="md5")).

The shim sits between the driver and PostgreSQL: it terminates the driver's TLS with a
certificate of its own CA (the tests trust it through SSL_CERT_FILE, as the driver's
``load_default_certs`` honours that variable), drops the Redshift-only start-up
parameters (recording them in ``dropped_parameters``), opens the upstream session over
TLS when, and only when, the driver asked for TLS (so ``pg_stat_ssl`` tells what the
driver did), and reports ``server_version`` 8.0.2 as Redshift does. One statement is
changed: Redshift's ``SET enable_case_sensitive_identifier TO true|false`` becomes a
setting PostgreSQL accepts (``redshift_emulation.enable_case_sensitive_identifier``),
recorded in ``emulated_settings``: PostgreSQL never folds a quoted identifier, so it
behaves as Redshift does with the setting on. Every other statement reaches PostgreSQL
as the engine sent it, and PostgreSQL's answers and errors reach the driver as they are.

``emulate_catalogs`` creates, in a database of the emulation, the Redshift system views
the engine reads (SVV_REDSHIFT_DATABASES, SVV_EXTERNAL_SCHEMAS, SVV_RELATION_PRIVILEGES,
SVV_SCHEMA_PRIVILEGES, SVV_DATABASE_PRIVILEGES), with Redshift's names and columns,
answering for PostgreSQL's own objects what Redshift would for local ones: every database
"local"; explicit grants from the objects' ACLs (identity_type "user" for a role that
logs in, "group" for one that does not, "public"). A schema whose comment is
``EXTERNAL_SCHEMA_MARK`` is listed as an external (Spectrum) schema, eskind 1: PostgreSQL
has none, and the tests mark one to drive the engine's external-schema path. Redshift SQL
that PostgreSQL lacks (DROP and ALTER privileges on tables, databases made from
datashares, the refusal of GRANT on external schemas inside a transaction) is not faked.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import ssl
import struct
import threading
from collections.abc import Sequence
from typing import Any

from devtools.tls import generate_server_tls

__all__ = ["EXTERNAL_SCHEMA_MARK", "REDSHIFT_SERVER_VERSION", "RedshiftShim", "emulate_catalogs"]

REDSHIFT_SERVER_VERSION = "8.0.2"
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_PROTOCOL_3 = 196608
# Start-up parameters PostgreSQL understands; everything else is Redshift's own.
_POSTGRES_STARTUP_PARAMETERS = frozenset(
    {"user", "database", "application_name", "options", "client_encoding", "DateStyle", "TimeZone"}
)
_TIMEOUT = 30.0
_CASE_SETTING = re.compile(rb"\s*SET\s+enable_case_sensitive_identifier\s+TO\s+(true|false)\s*;?\s*", re.IGNORECASE)
EXTERNAL_SCHEMA_MARK = "redshift-emulation: external schema"

# identity_id, identity_name, identity_type of an ACL grantee (0 is PUBLIC).
_IDENTITY = """a.grantee::bigint::int AS identity_id,
    CASE WHEN a.grantee = 0 THEN 'public' ELSE r.rolname::text END AS identity_name,
    CASE WHEN a.grantee = 0 THEN 'public' WHEN r.rolcanlogin THEN 'user' ELSE 'group' END AS identity_type,
    a.is_grantable AS admin_option"""
_CATALOG_VIEWS = {
    "svv_redshift_databases": """
SELECT d.datname::varchar(128) AS database_name, d.datdba::bigint::int AS database_owner,
    'local'::varchar(32) AS database_type, NULL::varchar(128) AS database_acl,
    NULL::varchar(128) AS database_options, 'Serializable'::varchar(128) AS database_isolation_level
FROM pg_database d WHERE NOT d.datistemplate""",
    "svv_external_schemas": f"""
SELECT n.oid AS esoid, 1::smallint AS eskind, n.nspname AS schemaname, n.nspowner::bigint::int AS esowner,
    'emulated'::text AS databasename, NULL::text AS esoptions
FROM pg_namespace n WHERE obj_description(n.oid, 'pg_namespace') = '{EXTERNAL_SCHEMA_MARK}'""",
    "svv_relation_privileges": f"""
SELECT n.nspname::text AS namespace_name, c.relname::text AS relation_name, a.privilege_type::text AS privilege_type,
    {_IDENTITY}
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE c.relkind IN ('r', 'v', 'm', 'p') AND a.privilege_type <> 'TRIGGER'""",
    "svv_schema_privileges": f"""
SELECT n.nspname::text AS namespace_name, a.privilege_type::text AS privilege_type, {_IDENTITY},
    'SCHEMA'::text AS privilege_scope
FROM pg_namespace n CROSS JOIN LATERAL aclexplode(COALESCE(n.nspacl, acldefault('n', n.nspowner))) a
LEFT JOIN pg_roles r ON r.oid = a.grantee""",
    "svv_database_privileges": f"""
SELECT d.datname::text AS database_name, a.privilege_type::text AS privilege_type, {_IDENTITY},
    'DATABASE'::text AS privilege_scope
FROM pg_database d CROSS JOIN LATERAL aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE NOT d.datistemplate AND a.privilege_type <> 'CONNECT'""",
}


def emulate_catalogs(cursor: Any) -> None:
    """Create the Redshift system views the engine reads, in pg_catalog of the cursor's
    database (as Redshift has them: found without a schema name, never synced as user objects).
    Needs a superuser session (allow_system_table_mods)."""
    cursor.execute("SET allow_system_table_mods = on")
    for name, query in _CATALOG_VIEWS.items():
        cursor.execute(f"CREATE OR REPLACE VIEW pg_catalog.{name} AS {query}")
        cursor.execute(f"GRANT SELECT ON pg_catalog.{name} TO PUBLIC")
    cursor.execute("RESET allow_system_table_mods")


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        data += chunk
    return data


def _read_startup(sock: socket.socket) -> tuple[int, bytes]:
    """One length-prefixed start-up message: (code, body after the code)."""
    (length,) = struct.unpack("!i", _recv_exact(sock, 4))
    body = _recv_exact(sock, length - 4)
    (code,) = struct.unpack("!i", body[:4])
    return code, body[4:]


def _parse_parameters(body: bytes) -> list[tuple[bytes, bytes]]:
    parts = body.split(b"\x00")
    pairs = []
    for i in range(0, len(parts) - 1, 2):
        if not parts[i]:
            break
        pairs.append((parts[i], parts[i + 1]))
    return pairs


def _startup_message(pairs: list[tuple[bytes, bytes]]) -> bytes:
    body = struct.pack("!i", _PROTOCOL_3) + b"".join(k + b"\x00" + v + b"\x00" for k, v in pairs) + b"\x00"
    return struct.pack("!i", len(body) + 4) + body


class _ServerMessages:
    """Rewrites the backend's message stream: ParameterStatus server_version only."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = []
        while len(self._buffer) >= 5:
            kind = self._buffer[:1]
            (length,) = struct.unpack("!i", self._buffer[1:5])
            if len(self._buffer) < 1 + length:
                break
            message, self._buffer = self._buffer[: 1 + length], self._buffer[1 + length :]
            if kind == b"S" and message[5:].split(b"\x00", 1)[0] == b"server_version":
                payload = b"server_version\x00" + REDSHIFT_SERVER_VERSION.encode() + b"\x00"
                message = b"S" + struct.pack("!i", len(payload) + 4) + payload
            out.append(message)
        return b"".join(out)


class _ClientMessages:
    """Rewrites the driver's message stream: Redshift's case-sensitivity setting only, in a
    Parse ('P') or simple Query ('Q') message."""

    def __init__(self, seen: list[str]) -> None:
        self._buffer = b""
        self._seen = seen

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = []
        while len(self._buffer) >= 5:
            kind = self._buffer[:1]
            (length,) = struct.unpack("!i", self._buffer[1:5])
            if len(self._buffer) < 1 + length:
                break
            message, self._buffer = self._buffer[: 1 + length], self._buffer[1 + length :]
            if kind == b"P":
                name, rest = message[5:].split(b"\x00", 1)
                query, rest = rest.split(b"\x00", 1)
                payload = name + b"\x00" + self._rewrite(query) + b"\x00" + rest
                message = b"P" + struct.pack("!i", len(payload) + 4) + payload
            elif kind == b"Q":
                payload = self._rewrite(message[5:].split(b"\x00", 1)[0]) + b"\x00"
                message = b"Q" + struct.pack("!i", len(payload) + 4) + payload
            out.append(message)
        return b"".join(out)

    def _rewrite(self, query: bytes) -> bytes:
        match = _CASE_SETTING.fullmatch(query)
        if match is None:
            return query
        value = match.group(1).lower()
        self._seen.append(value.decode())
        return b"SET redshift_emulation.enable_case_sensitive_identifier TO " + value


class RedshiftShim:
    """Listens on 127.0.0.1 and relays each connection to ``upstream`` (a PostgreSQL).

    Its certificate names ``dns_names`` and ``ip_addresses`` (localhost and 127.0.0.1 by
    default), signed by a CA of its own (``ca_file``), written into ``directory``.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        upstream_ca_file: str,
        directory: str,
        *,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = "127.0.0.1"
        self.port = 0
        self.tls = generate_server_tls(directory, dns_names=dns_names, ip_addresses=ip_addresses)
        self.dropped_parameters: set[str] = set()
        self.sessions: list[bool] = []  # per connection: did the driver use TLS?
        self.emulated_settings: list[str] = []  # enable_case_sensitive_identifier values set
        self._server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        self._upstream_context = ssl.create_default_context(cafile=upstream_ca_file)
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def ca_file(self) -> str:
        return self.tls.ca_file

    def start(self) -> RedshiftShim:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(32)
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        thread = threading.Thread(target=self._accept, name="redshift-shim", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.close()
            self._open.clear()
        for thread in self._threads:
            thread.join(timeout=5)

    # -- relaying ------------------------------------------------------------------------
    def _accept(self) -> None:
        while self._listener is not None:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), name="redshift-shim-conn", daemon=True)
            thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        # Relay each small protocol message at once (no Nagle delay on top of the driver's).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open.add(sock)
        return sock

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        self._track(client)
        try:
            client.settimeout(_TIMEOUT)
            client, use_tls, code, body = self._client_startup(client)
            upstream = self._track(socket.create_connection((self.upstream_host, self.upstream_port), _TIMEOUT))
            if code == _CANCEL_REQUEST:
                upstream.sendall(struct.pack("!ii", 16, code) + body)
                return
            if use_tls:
                upstream = self._upstream_tls(upstream)
            with self._lock:
                self.sessions.append(use_tls)
            upstream.sendall(_startup_message(self._postgres_parameters(body)))
            self._relay(client, upstream, _ClientMessages(self.emulated_settings))
        except (OSError, ConnectionError, ValueError, struct.error):
            return
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
                    with self._lock:
                        self._open.discard(sock)

    def _client_startup(self, client: socket.socket) -> tuple[socket.socket, bool, int, bytes]:
        """Answer the driver's SSLRequest (TLS with the shim's certificate) and read its start-up."""
        use_tls = False
        code, body = _read_startup(client)
        while code in (_SSL_REQUEST, _GSSENC_REQUEST):
            if code == _GSSENC_REQUEST:
                client.sendall(b"N")
            else:
                client.sendall(b"S")
                client = self._track(self._server_context.wrap_socket(client, server_side=True))
                use_tls = True
            code, body = _read_startup(client)
        return client, use_tls, code, body

    def _upstream_tls(self, upstream: socket.socket) -> socket.socket:
        upstream.sendall(struct.pack("!ii", 8, _SSL_REQUEST))
        if _recv_exact(upstream, 1) != b"S":
            raise ConnectionError("the upstream PostgreSQL refused TLS")
        return self._track(self._upstream_context.wrap_socket(upstream, server_hostname=self.upstream_host))

    def _postgres_parameters(self, body: bytes) -> list[tuple[bytes, bytes]]:
        kept = []
        for key, value in _parse_parameters(body):
            if key.decode() in _POSTGRES_STARTUP_PARAMETERS:
                kept.append((key, value))
            else:
                self.dropped_parameters.add(key.decode())
        return kept

    @staticmethod
    def _relay(client: socket.socket, upstream: socket.socket, requests: _ClientMessages) -> None:
        messages = _ServerMessages()
        peers = {client: upstream, upstream: client}
        while True:
            # An SSL socket may hold decrypted bytes that select() cannot see.
            ready = [s for s in peers if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select(list(peers), [], [], _TIMEOUT)
                if not ready:
                    return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is upstream:
                    data = messages.feed(data)
                    if data:
                        client.sendall(data)
                else:
                    data = requests.feed(data)
                    if data:
                        upstream.sendall(data)
