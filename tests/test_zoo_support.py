"""Shared helpers for the zoo tests: a real loopback HTTP server with injectable faults.

Imported by the other ``test_zoo_*`` files; it holds fixtures and helpers, and one self-test.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from mlvfx.zoo import manifest as zoo_manifest
from mlvfx.zoo.download import DownloadOptions
from mlvfx.zoo.serve import RangeRequestHandler, ZooHTTPServer, make_server

FAST = DownloadOptions(
    connect_timeout=2.0,
    read_timeout=0.3,
    retries=2,
    max_attempts=8,
    backoff=0.01,
    backoff_max=0.05,
    chunk_size=64 * 1024,
    lock_poll=0.05,
)


@dataclass
class FaultState:
    """What the server should do, and what it did.

    ``faults[name]`` is a list of one-shot faults consumed one per request; ``sticky[name]`` is a
    fault applied to every request once the one-shot list is empty. Faults: ``"404"``, ``"500"``,
    ``"416"``, ``"drop:N"`` (send N body bytes, then cut the connection), ``"trickle"`` (a few
    bytes, then silence longer than any read timeout), ``"ignore-range"`` (always 200, whole file),
    ``"slow"`` (the body in small pieces with pauses), ``"drip"`` (one byte every 20 ms: never a
    read timeout, but far too slow).
    """

    faults: dict[str, list[str]] = field(default_factory=dict)
    sticky: dict[str, str] = field(default_factory=dict)
    requests: list[list[Any]] = field(default_factory=list)
    body_bytes: dict[str, int] = field(default_factory=dict)
    full_transfers: dict[str, int] = field(default_factory=dict)
    last_send_end: float = 0.0
    in_flight: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)

    def begin_body(self) -> None:
        with self.lock:
            self.in_flight += 1

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no body is being sent, so the counters are final.

        A client can hold every byte of a body before the server thread has booked it; reading the
        counters without this wait is a race (it failed a CI run once).
        """
        with self.lock:
            if not self.lock.wait_for(lambda: self.in_flight == 0, timeout):
                raise AssertionError(f"{self.in_flight} response bodies still being sent after {timeout} s")

    def next_fault(self, name: str) -> str | None:
        with self.lock:
            queue = self.faults.get(name)
            if queue:
                return queue.pop(0)
            return self.sticky.get(name)

    def log(self, method: str, name: str, range_header: str | None, status: int) -> list[Any]:
        entry: list[Any] = [method, name, range_header, status]
        with self.lock:
            self.requests.append(entry)
        return entry

    def sent(self, name: str, count: int, full: bool) -> None:
        with self.lock:
            self.body_bytes[name] = self.body_bytes.get(name, 0) + count
            if full:
                self.full_transfers[name] = self.full_transfers.get(name, 0) + 1
            self.last_send_end = time.time()
            self.in_flight -= 1
            self.lock.notify_all()

    def gets(self, name: str) -> list[tuple[str, str, str | None, int]]:
        with self.lock:
            return [(r[0], r[1], r[2], r[3]) for r in self.requests if r[0] == "GET" and r[1] == name]


class FaultHandler(RangeRequestHandler):
    quiet = True

    @property
    def state(self) -> FaultState:
        state: FaultState = getattr(self.server, "state")
        return state

    def serve(self, head: bool) -> None:
        name = self.path.rsplit("/", 1)[-1]
        fault = self.state.next_fault(name)
        path = self.resolve()
        if fault in ("404", "500") or path is None:
            code = 404 if fault == "404" or path is None else 500
            self.state.log(self.command, name, self.headers.get("Range"), code)
            self.send_error(code)
            return
        size = path.stat().st_size
        if fault == "416":
            self.state.log(self.command, name, self.headers.get("Range"), 416)
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault == "ignore-range":
            del self.headers["Range"]
        self._fault = fault
        self._size = size
        self._entry = self.state.log(self.command, name, self.headers.get("Range"), 0)
        super().serve(head)

    def send_response(self, code: int, message: str | None = None) -> None:
        entry = getattr(self, "_entry", None)
        if entry is not None:
            entry[3] = code
        super().send_response(code, message)

    def send_body(self, f: IO[bytes], start: int, length: int) -> None:
        name = self.path.rsplit("/", 1)[-1]
        full = start == 0 and length == self._size
        fault = self._fault
        self.state.begin_body()
        if fault is None:
            try:
                super().send_body(f, start, length)
            finally:
                self.state.sent(name, length, full)
            return
        f.seek(start)
        data = f.read(length)
        sent = 0
        try:
            if fault.startswith("drop:"):
                n = min(int(fault.split(":")[1]), length)
                self.wfile.write(data[:n])
                sent = n
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                full = False
            elif fault == "trickle":
                deadline = time.monotonic() + 5.0
                for i in range(0, len(data), 100):
                    self.wfile.write(data[i : i + 100])
                    sent += len(data[i : i + 100])
                    self.wfile.flush()
                    time.sleep(1.0)
                    if time.monotonic() > deadline:
                        break
                full = False
                self.close_connection = True
            elif fault == "drip":
                for i in range(len(data)):
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    sent += 1
                    time.sleep(0.02)
            elif fault == "slow":
                step = max(1, length // 20)
                for i in range(0, len(data), step):
                    self.wfile.write(data[i : i + step])
                    sent += len(data[i : i + step])
                    time.sleep(0.02)
            else:
                self.wfile.write(data)
                sent = len(data)
        except OSError:
            full = False
            self.close_connection = True
        finally:
            self.state.sent(name, sent, full and sent == length)


@dataclass
class ZooServer:
    server: ZooHTTPServer
    state: FaultState
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def file_url(self, name: str) -> str:
        return f"{self.url}/{name}"

    def settled(self) -> FaultState:
        """The state once every response body under way has been fully booked."""
        self.state.settle()
        return self.state

    def add(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return self.file_url(name)


@pytest.fixture
def zoo_server(tmp_path: Path) -> Iterator[ZooServer]:
    root = tmp_path / "served"
    root.mkdir()
    server = make_server(root, "127.0.0.1", 0, FaultHandler)
    state = FaultState()
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield ZooServer(server, state, root)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class ZooEnv:
    tmp: Path
    cache: Path
    user_cache: Path
    manifest: Path


@pytest.fixture
def zoo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ZooEnv:
    """Caches, manifest and settings all under tmp_path; no mirror, no zoo URL, online."""
    cache = tmp_path / "cache"
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("MLVFX_CACHE_DIR", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.setenv("MLVFX_ZOO_MANIFEST", str(tmp_path / "manifest.json"))
    for name in ("MLVFX_ZOO_MIRRORS", "MLVFX_ZOO_URL", "MLVFX_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    # Proxies from the environment must not capture loopback test traffic.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return ZooEnv(tmp_path, cache, xdg / "mlvfx", tmp_path / "manifest.json")


def blob(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (so a wrong offset can never look right)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(name: str, data: bytes, urls: list[str]) -> dict[str, Any]:
    return {"name": name, "sha256": sha(data), "size": len(data), "urls": urls}


def model_entry(model_id: str, files: list[dict[str, Any]], version: str = "1.0.0") -> dict[str, Any]:
    formats = sorted({f["name"].rsplit(".", 1)[-1] for f in files})
    return {
        "id": model_id,
        "version": version,
        "task": "material.normal",
        "format": formats,
        "license": "Apache-2.0",
        "files": files,
        "io": {
            "inputs": [{"name": "photo", "channels": 3, "color_space": "srgb"}],
            "outputs": [{"name": "normal", "channels": 3, "color_space": "data"}],
            "tile": 256,
            "overlap": 16,
            "scale": 1,
        },
        "metrics": {"angular_error_deg": 7.5},
        "card": f"cards/{model_id}.md",
        "recipe": f"recipes/{model_id}.toml",
    }


def write_manifest(path: Path, models: list[dict[str, Any]]) -> Path:
    doc = {"$schema": "./manifest.schema.json", "schema_version": 1, "models": models}
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    # A rewrite within the filesystem's timestamp granularity must not hit the loader's memo.
    zoo_manifest._memo.clear()
    return path


def one_model(env: ZooEnv, name: str, data: bytes, urls: list[str], model_id: str = "m") -> Path:
    """Write a manifest with one model of one file."""
    return write_manifest(env.manifest, [model_entry(model_id, [file_entry(name, data, urls)])])


def test_fault_server_serves_ranges(zoo_server: ZooServer) -> None:
    import requests

    data = blob(1000)
    url = zoo_server.add("a.safetensors", data)
    r = requests.get(url, headers={"Range": "bytes=900-"}, timeout=5)
    assert r.status_code == 206 and r.content == data[900:]
    assert zoo_server.settled().body_bytes["a.safetensors"] == 100
    assert zoo_server.state.full_transfers.get("a.safetensors", 0) == 0
