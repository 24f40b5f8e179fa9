"""HTTP/1.1 on loopback: a ThreadingHTTPServer handing each request to the service."""

from __future__ import annotations

import socket
import sys
import threading
from contextlib import suppress
from dataclasses import replace
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from importer.sandbox._account import MAX_BODY_BYTES
from importer.sandbox._rules import show
from importer.sandbox._service import Service
from importer.sandbox._wire import Reply, Request, error, is_digits


class Handler(BaseHTTPRequestHandler):
    """Speaks HTTP/1.1 with keep-alive, so pooled `requests` connections are reused."""

    protocol_version = "HTTP/1.1"
    server_version = "lsq-sandbox"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection is closed, as a real load balancer would
    # headers and body go out in two writes: without TCP_NODELAY, Nagle plus the client's
    # delayed ACK can hold each answer back for tens of milliseconds
    disable_nagle_algorithm = True
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and the demo must not print a line per request."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    do_PUT = do_DELETE = do_PATCH = do_POST

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer protocol errors (bad request line, unsupported method) with the envelope too."""
        headers = getattr(self, "headers", None) or Message()
        path = urlsplit(getattr(self, "path", "") or "").path
        request = Request(self.command or "", path, {}, headers, b"", self.server.service.clock())
        reply = error(code, message or HTTPStatus(code).phrase)
        reply.close = True
        self.server.service.log(request, reply)
        self._write(reply)

    def _serve(self) -> None:
        service = self.server.service
        arrived = service.clock()
        body = self._read_body()
        if body is None:  # the client left before sending the whole body
            self.close_connection = True
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        sent = body if isinstance(body, bytes) else b""
        request = Request(self.command, url.path, query, self.headers, sent, arrived)
        reply = body if isinstance(body, Reply) else service.handle(request)
        service.log(request, reply)  # before answering, so a client that got its answer sees it
        self.server.stopping.wait(reply.delay)
        self._write(reply)

    def _read_body(self) -> bytes | Reply | None:
        """The request body, an error to answer instead, or None if the client went away."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return replace(error(411, "Send the body with a Content-Length"), close=True)
        length = self.headers.get("Content-Length", "0").strip()
        if not is_digits(length):
            return replace(error(400, f"Invalid Content-Length {show(length)}"), close=True)
        if int(length) > MAX_BODY_BYTES:
            message = f"The request body is larger than {MAX_BODY_BYTES} bytes"
            return replace(error(413, message, "MXRequestTooLargeException"), close=True)
        body = self.rfile.read(int(length))
        return body if len(body) == int(length) else None

    def _write(self, reply: Reply) -> None:
        if self.request_version == "HTTP/0.9":
            # the base class answers 0.9 (and unparsable request lines) with a bare body;
            # every answer here has a status line and headers
            self.request_version = "HTTP/1.0"
        if reply.drop:
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.close:
            self.send_header("Connection", "close")  # also sets close_connection
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)


class Server(ThreadingHTTPServer):
    """Tracks open connections so stop() can end idle keep-alive ones instead of waiting."""

    daemon_threads = True  # a stuck client must never keep the interpreter alive
    # several runs of 25 workers each connect at once: the default backlog of 5 dropped their
    # connection attempts, which the client's TCP tried again only a second later
    request_queue_size = 128
    block_on_close = True  # server_close() joins handler threads: no socket outlives stop()

    def __init__(self, address: tuple[str, int], service: Service) -> None:
        self.service = service
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (a DNS query); loopback needs none
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            still_open = list(self._open)
        for connection in still_open:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away mid-answer: nothing to report
        super().handle_error(request, client_address)
