"""Behaviours a mutation audit (stop 27) found unprotected by any test: download retries on
429 / Retry-After, and a body longer than the manifest's size. A fake requests session stands in
for the network; no sleeping."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest

from mlvfx.errors import IntegrityError
from mlvfx.zoo.cache import BlobCache
from mlvfx.zoo.download import Downloader, DownloadOptions, Reporter

URL = "https://zoo.example/w.safetensors"


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._buf = io.BytesIO(body)

    def read1(self, n: int, decode_content: bool = True) -> bytes:
        return self._buf.read(min(n, 4096))


class _Response:
    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.status_code, self.reason, self.headers, self.raw = status, "", headers or {}, _Raw(body)
        self.is_redirect = False

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _Session:
    def __init__(self, responses: list[_Response]) -> None:
        self.responses = responses
        self.calls: list[dict[str, Any]] = []

    def get(self, url: str, **kwargs: Any) -> _Response:
        self.calls.append(kwargs)
        return self.responses[min(len(self.calls), len(self.responses)) - 1]

    def close(self) -> None:
        pass


def _downloader(
    tmp_path: Path, session: _Session, monkeypatch: pytest.MonkeyPatch
) -> tuple[Downloader, list[float]]:
    dl = Downloader(BlobCache(tmp_path), DownloadOptions(backoff=0.01, backoff_max=10.0), session=session)  # type: ignore[arg-type]
    sleeps: list[float] = []
    monkeypatch.setattr(dl, "_sleep", sleeps.append)
    return dl, sleeps


def test_429_is_retried_after_the_servers_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CDN rate-limiting a farm's nodes answers 429 with Retry-After: wait that long, then retry."""
    data = b"w" * 10_000
    session = _Session(
        [
            _Response(429, headers={"Retry-After": "7"}),
            _Response(200, data, {"Content-Length": str(len(data))}),
        ]
    )
    dl, sleeps = _downloader(tmp_path, session, monkeypatch)
    path = dl.download(URL, hashlib.sha256(data).hexdigest(), len(data), Reporter("m", len(data), None, None))
    assert path.read_bytes() == data
    assert len(session.calls) == 2
    assert sleeps == [7.0]


def test_a_body_longer_than_the_manifest_size_is_cut_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that streams more than the manifest's size without a Content-Length (chunked, or
    endless) must not be written past that size, nor fetched again and again."""
    data = b"w" * 10_000
    session = _Session([_Response(200, data + b"x" * 50_000)])  # no Content-Length
    dl, _ = _downloader(tmp_path, session, monkeypatch)
    with pytest.raises(IntegrityError, match="sent more than"):
        dl.download(URL, hashlib.sha256(data).hexdigest(), len(data), Reporter("m", len(data), None, None))
    assert len(session.calls) == 1
    assert not list((tmp_path / "zoo" / "tmp").glob("*.part"))
