"""A small threaded HTTP/1.1 WSGI server that keeps connections open between requests, as the cloud
services do, so that the production clients' connection pools behave here as they do in Azure.

Werkzeug's development server cannot: it answers every request with `Connection: close` and then drains
the socket, so each client call paid a new TCP (and, for Dataverse, TLS) handshake and the emulator a new
thread. Here each request body is read whole before the app runs and each answer carries its length, so
the next request on the connection starts exactly where this one ended. Dev/test only.
"""

from __future__ import annotations

import http.server
import io
import logging
import socket
import socketserver
import ssl
import sys
from typing import Any
from urllib.parse import unquote

from werkzeug.serving import DechunkedInput

log = logging.getLogger(__name__)

_NO_BODY_STATUSES = {204, 304}
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}
# Set by an app that has shut the client's socket (a dropped-connection fault): nothing is sent back.
DROPPED = "emulator.dropped"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle connection ends its thread after this many seconds, as a load balancer's
    # Small answers go out at once: with Nagle's algorithm, a kept-alive connection waits on the
    # client's delayed ACK (40 ms) between the header and body segments.
    disable_nagle_algorithm = True
    server: KeepAliveWSGIServer

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            # In the connection's own thread, so a slow client cannot hold up the accepting thread.
            self.connection.do_handshake()

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, ssl.SSLError):
            pass  # the client went away: nothing to answer

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._run_wsgi
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return DechunkedInput(self.rfile).read()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _environ(self, body: bytes) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": self.path,
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if isinstance(self.connection, ssl.SSLSocket) else "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "werkzeug.socket": self.connection,
        }
        for key, value in self.headers.items():
            name = "HTTP_" + key.upper().replace("-", "_")
            # The body is read whole (and de-chunked): the app sees its plain length.
            if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"):
                environ[name] = f"{environ[name]},{value}" if name in environ else value
        return environ

    def _run_wsgi(self) -> None:
        environ = self._environ(self._read_body())
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            started[:] = [status, headers]
            return chunks.append

        chunks: list[bytes] = []
        try:
            result = self.server.app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:
            log.exception("emulator error on %s %s", self.command, self.path)
            started[:] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
            chunks[:] = [b"emulator error"]
        if environ.get(DROPPED):
            self.close_connection = True
            return
        status, headers = started
        code, _, reason = status.partition(" ")
        payload = b"".join(chunks)
        self.send_response(int(code), reason)
        length = str(len(payload))
        for key, value in headers:
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
            elif key.lower() == "content-length" and self.command == "HEAD":
                length = value
        if int(code) not in _NO_BODY_STATUSES:
            self.send_header("Content-Length", length)
        if self.close_connection:
            self.send_header("Connection", "close")
        if self.command != "HEAD" and int(code) not in _NO_BODY_STATUSES:
            self._headers_buffer.append(b"\r\n" + payload)  # headers and body in one write
        else:
            self._headers_buffer.append(b"\r\n")
        self.flush_headers()


class KeepAliveWSGIServer(http.server.ThreadingHTTPServer):
    """Serves `app` on (host, port); port 0 picks a free one. TLS when an `ssl_context` is given."""

    daemon_threads = True
    # socketserver's default backlog (5) refuses bursts of new connections, e.g. 50 webhook senders.
    request_queue_size = 128

    def __init__(self, host: str, port: int, app: Any, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        super().__init__((host, port), _Handler)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def server_bind(self) -> None:
        # HTTPServer's own would look the host's name up (socket.getfqdn), which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError, socket.timeout)):
            log.exception("emulator connection error from %s", client_address)
