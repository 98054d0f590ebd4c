"""A throwaway server that asks for passwords the way an attacker's server would, and
records every byte a client sends it: what the attack tests look for the master's password in.

Modes:
- ``postgres-cleartext`` / ``postgres-md5``: the PostgreSQL wire protocol (which Redshift
  speaks too): answers an SSLRequest with 'N' (no TLS), then asks for the password in clear
  text (AuthenticationCleartextPassword) or as md5.
- ``mysql-clear``: a MySQL greeting, then an AuthSwitchRequest to mysql_clear_password.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

MODES = ("postgres-cleartext", "postgres-md5", "mysql-clear")


class Recorder:
    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.received = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.host = "127.0.0.1"
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def saw(self, secret: str) -> bool:
        with self._lock:
            return secret.encode() in bytes(self.received)

    # -- serving -------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        with self._lock:
            self.received.extend(data)
        return data

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if self.mode.startswith("postgres"):
                self._postgres(conn)
            else:
                self._mysql(conn)
        except (OSError, ConnectionError, struct.error):
            pass
        finally:
            conn.close()

    def _postgres(self, conn: socket.socket) -> None:
        while True:
            length = struct.unpack("!i", self._read(conn, 4))[0]
            body = self._read(conn, length - 4)
            if struct.unpack("!i", body[:4])[0] == 80877103:  # SSLRequest: no TLS here
                conn.sendall(b"N")
                continue
            break  # the StartupMessage
        if self.mode == "postgres-cleartext":
            conn.sendall(b"R" + struct.pack("!ii", 8, 3))
        else:
            conn.sendall(b"R" + struct.pack("!ii", 12, 5) + os.urandom(4))
        kind = self._read(conn, 1)
        if kind == b"p":
            length = struct.unpack("!i", self._read(conn, 4))[0]
            self._read(conn, length - 4)
        error = b"SFATAL\x00C28P01\x00Mrecorded\x00\x00"
        conn.sendall(b"E" + struct.pack("!i", len(error) + 4) + error)

    def _mysql_packet(self, conn: socket.socket, seq: int, payload: bytes) -> None:
        conn.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload)

    def _mysql_read(self, conn: socket.socket) -> tuple[int, bytes]:
        header = self._read(conn, 4)
        length = int.from_bytes(header[:3], "little")
        return header[3], self._read(conn, length)

    def _mysql(self, conn: socket.socket) -> None:
        plugin = b"mysql_clear_password"
        capabilities = 0x00000200 | 0x00008000 | 0x00080000 | 0x00000008  # 4.1, secure, plugin auth, with db
        salt = os.urandom(20)
        greeting = (
            b"\x0a5.7.99-recorder\x00"
            + struct.pack("<I", 1)
            + salt[:8]
            + b"\x00"
            + struct.pack("<H", capabilities & 0xFFFF)
            + bytes([45])
            + struct.pack("<H", 2)
            + struct.pack("<H", capabilities >> 16)
            + bytes([21])
            + b"\x00" * 10
            + salt[8:]
            + b"\x00"
            + plugin
            + b"\x00"
        )
        self._mysql_packet(conn, 0, greeting)
        seq, _ = self._mysql_read(conn)  # the handshake response
        self._mysql_packet(conn, seq + 1, b"\xfe" + plugin + b"\x00")
        self._mysql_read(conn)  # the clear-text password, if the client sends it
        error = b"\xff" + struct.pack("<H", 1045) + b"#28000recorded"
        self._mysql_packet(conn, seq + 3, error)
