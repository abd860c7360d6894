"""``mlvfx zoo serve``'s HTTP server: byte ranges, HEAD, and nothing outside its folder."""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_zoo_support import blob

from mlvfx.zoo.serve import RangeRequestHandler, make_server, parse_range


class QuietHandler(RangeRequestHandler):
    quiet = True


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=10-", (10, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=990-5000", (990, 999)),
        ("bytes=1000-", False),
        ("bytes=5000-6000", False),
        ("bytes=-0", False),
        ("bytes=50-10", None),  # invalid: ignored, whole file
        ("bytes=0-1,5-6", None),  # several ranges: ignored, whole file
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header: str | None, expected: object) -> None:
    assert parse_range(header, 1000) == expected


class Served:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    root = tmp_path / "mirror"
    (root / "weights").mkdir(parents=True)
    (root / "w.safetensors").write_bytes(blob(1000))
    (root / "notes.txt").write_text("outside: a note beside the weights")
    (root / ".hidden.safetensors").write_text("outside: hidden")
    (root / "weights" / "v.onnx").write_bytes(blob(10, seed=1))
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", root / "link.safetensors")
    server = make_server(root, "127.0.0.1", 0, QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Served(root, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_full_get_and_head(served: Served) -> None:
    data = blob(1000)
    status, headers, body = served.request("GET", "/w.safetensors")
    assert status == 200 and body == data
    assert headers["content-length"] == "1000" and headers["accept-ranges"] == "bytes"
    status, headers, body = served.request("HEAD", "/w.safetensors")
    assert status == 200 and body == b"" and headers["content-length"] == "1000"
    status, _, body = served.request("GET", "/weights/v.onnx")
    assert status == 200 and body == blob(10, seed=1)


def test_ranges(served: Served) -> None:
    data = blob(1000)
    status, headers, body = served.request("GET", "/w.safetensors", {"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200]
    assert headers["content-range"] == "bytes 100-199/1000"
    status, headers, body = served.request("GET", "/w.safetensors", {"Range": "bytes=-10"})
    assert status == 206 and body == data[-10:]
    status, headers, body = served.request("GET", "/w.safetensors", {"Range": "bytes=1000-"})
    assert status == 416 and headers["content-range"] == "bytes */1000" and body == b""
    # A 5000-digit number raised inside int() and printed a traceback; now the header is ignored.
    status, _, body = served.request("GET", "/w.safetensors", {"Range": "bytes=" + "9" * 5000 + "-"})
    assert status == 200 and body == data


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/weights/../../secret.txt",
        "/link.safetensors",  # a symlink that leaves the folder
        "/weights",  # no listings
        "/",
        "/missing.safetensors",
        "/..%5csecret.txt",
        "/notes.txt",  # not a zoo file
        "/.hidden.safetensors",  # hidden
    ],
)
def test_nothing_outside_the_folder(served: Served, path: str) -> None:
    status, _, body = served.request("GET", path)
    assert status == 404
    assert b"outside" not in body


def test_make_server_rejects_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        make_server(tmp_path / "f")
