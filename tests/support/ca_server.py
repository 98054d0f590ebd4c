"""A stand-in for AWS's RDS trust store host: HTTPS on 127.0.0.1 with a generated CA.

    with BundleServer(tmp_path) as server:           # or tls=False: plain HTTP
        server.answer("/global/global-bundle.pem", pem_bytes)
        url = server.url("/global/global-bundle.pem")
        # a client trusts server.ca_file (SSL_CERT_FILE=server.ca_file) to reach it

Each request's path is recorded in `requests`, so a test can prove a client sent none
(plain http refused before connecting, a redirect not followed). It listens on loopback
only and stops with the `with` block.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from pathlib import Path
from typing import Any, Self

from devtools.tls import generate_server_tls


class BundleServer:
    def __init__(self, directory: Path, *, tls: bool = True, certificate: tuple[str, str] | None = None) -> None:
        """certificate: (certificate chain file, key file) to serve instead of a generated one."""
        directory.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        files = generate_server_tls(str(directory))  # for localhost and 127.0.0.1
        self.ca_file = files.ca_file
        cert_file, key_file = certificate or (files.cert_file, files.key_file)
        self.requests: list[str] = []
        self._answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, headers, body = server._answers.get(self.path, (404, {}, b"not found\n"))
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_file, key_file)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="bundle-server", daemon=True)

    def answer(self, path: str, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._answers[path] = (status, headers or {}, body)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
