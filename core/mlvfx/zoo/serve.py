"""A small HTTP file server with Range support, for a studio's zoo mirror (``mlvfx zoo serve``).

It serves the zoo files (``.safetensors``, ``.onnx``; not hidden ones) of one folder
(``model_zoo/weights`` or a flat folder of zoo files) read-only,
with ``GET``/``HEAD``, single byte ranges (``206``/``416``), keep-alive and ``sendfile``. It lists no
folders and never serves anything outside its folder. Point clients at it with
``MLVFX_ZOO_URL=http://127.0.0.1:PORT``. It binds to 127.0.0.1 unless told otherwise; it has no
TLS or authentication, so a server for other machines belongs behind a proper web server.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

SERVED_SUFFIXES = (".safetensors", ".onnx")
"""The zoo's file types (the manifest allows no others); nothing else in the folder is served."""

_RANGE_RE = re.compile(r"^bytes=(\d{0,20})-(\d{0,20})$")  # longer numbers: not a range of any file


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal[False] | None:
    """The byte range ``(start, end_inclusive)`` a ``Range`` header asks of a ``size``-byte file.

    Returns:
        ``None`` to send the whole file (no header, a malformed one, or several ranges, which a
        server may ignore), ``False`` when the range cannot be satisfied (``416``), else the range.
    """
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix range: the last N bytes
        count = int(last)
        if count == 0:
            return False
        return max(0, size - count), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignore the header
    if start >= size:
        return False
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


class RangeRequestHandler(BaseHTTPRequestHandler):
    """Serves ``self.server.directory`` (set by :func:`make_server`) with byte ranges."""

    protocol_version = "HTTP/1.1"
    server_version = "mlvfx-zoo"
    quiet: ClassVar[bool] = False
    timeout = 60  # seconds a connection may sit idle: idle sockets each held a thread for ever

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def do_GET(self) -> None:
        self.serve(head=False)

    def do_HEAD(self) -> None:
        self.serve(head=True)

    def resolve(self) -> Path | None:
        """The file the request path names, or ``None`` for anything outside the served folder."""
        root: Path = getattr(self.server, "directory")  # noqa: B009 - set by make_server
        raw = urllib.parse.urlsplit(self.path).path
        parts = [p for p in urllib.parse.unquote(raw).split("/") if p]
        if not parts or any(p in (".", "..") or "\\" in p or "\0" in p for p in parts):
            return None
        if any(p.startswith(".") for p in parts):  # hidden files (.git, .env, temp files) are not served
            return None
        if not parts[-1].endswith(SERVED_SUFFIXES):  # only zoo files: not notes, keys or scripts beside them
            return None
        candidate = root.joinpath(*parts)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(root) or not resolved.is_file():
            return None
        return resolved

    def serve(self, head: bool) -> None:
        path = self.resolve()
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        try:
            f = open(path, "rb")
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            wanted = parse_range(self.headers.get("Range"), size)
            if wanted is False:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if wanted is None:
                start, length = 0, size
                self.send_response(HTTPStatus.OK)
            else:
                start, end = wanted
                length = end - start + 1
                self.send_response(HTTPStatus.PARTIAL_CONTENT)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if not head:
                self.send_body(f, start, length)

    def send_body(self, f: IO[bytes], start: int, length: int) -> None:
        """Send ``length`` bytes of ``f`` from ``start`` (``sendfile`` where the OS has it)."""
        try:
            self.connection.sendfile(f, start, length)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class ZooHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows the folder it serves."""

    daemon_threads = True
    directory: Path

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a cancelled or timed-out download) is normal, not a server bug.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


def make_server(
    directory: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    handler: type[RangeRequestHandler] = RangeRequestHandler,
) -> ZooHTTPServer:
    """A server (not yet serving) for ``directory``; ``port=0`` picks a free port.

    Call ``serve_forever()`` (in a thread if needed) and ``shutdown()``; the bound port is
    ``server.server_address[1]``.

    Raises:
        NotADirectoryError: ``directory`` is not a folder.
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    server = ZooHTTPServer((host, port), handler)
    server.directory = root
    return server
