"""Downloading one zoo file into the cache: streaming, resume, retries, verification.

One download goes like this:

1. claim the resumable ``<hex>.part`` left by an interrupted download (an atomic rename to a
   unique name, so two processes never write the same temp file), or start an empty one;
2. ``GET`` with ``Range: bytes=<offset>-`` when resuming. A ``206`` appends, a ``200`` (a server
   that ignores ranges) starts over, and a ``416`` (the part is longer than the remote file)
   discards the part and starts over;
3. stream in chunks with (connect, read) timeouts, hashing as bytes arrive, never past the size
   the manifest gives;
4. retry with exponential backoff and jitter on connection errors, timeouts, truncated bodies,
   ``429`` and ``5xx`` (``Retry-After`` is honoured); other statuses fail this URL at once;
5. check size and sha256, then ``os.replace`` into the cache. A failed check discards the part;
   any other failure (including cancel) leaves it as ``<hex>.part`` for the next attempt.

TLS is verified by requests as usual: proxies (``HTTPS_PROXY``) and CA bundles
(``REQUESTS_CA_BUNDLE``) work, and verification is never turned off. Nothing downloaded is run or
unpickled; weights are loaded from safetensors only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import random
import re
import stat
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from mlvfx import __version__
from mlvfx.errors import Cancelled, DownloadError, IntegrityError
from mlvfx.progress import CancelToken, ProgressFn, check_cancel, report
from mlvfx.zoo.cache import BlobCache

if TYPE_CHECKING:
    import requests

ByteProgressFn = Callable[[int, int], None]
"""``on_bytes(done, total)``: raw byte counts of the file being fetched."""

_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
STALE_PART_S = 600.0
"""A unique temp file untouched this long belongs to a dead process and may be taken over."""


@dataclass(frozen=True)
class DownloadOptions:
    """Network settings for the zoo.

    Attributes:
        connect_timeout: seconds to wait for a TCP/TLS connection.
        read_timeout: seconds to wait for the next bytes of a response.
        retries: failed attempts in a row (without new bytes) before a URL is given up.
        max_attempts: attempts per URL in total, progress or not (a server that keeps dropping).
        backoff: first retry delay in seconds; it doubles per failure, with jitter.
        backoff_max: longest retry delay, and longest ``Retry-After`` honoured.
        chunk_size: bytes per read from the socket and per write to disk.
        lock_poll: seconds between checks for cancel while waiting on another process's download.
        progress_interval: least seconds between two progress calls (the last call always happens).
        min_rate: bytes per second an attempt must average over every ``read_timeout`` window;
            a server that trickles a byte now and then never trips the read timeout, and would
            otherwise hold the download (and a farm job) for hours. Slower attempts are cut and
            retried (resuming), so the ``max_attempts`` limit ends the download.
    """

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 4
    max_attempts: int = 20
    backoff: float = 0.5
    backoff_max: float = 10.0
    chunk_size: int = 1 << 20
    lock_poll: float = 0.25
    progress_interval: float = 0.1
    min_rate: float = 1024.0

    @classmethod
    def from_env(cls) -> DownloadOptions:
        """The defaults, with ``MLVFX_ZOO_TIMEOUT`` as the read timeout (and as the connect
        timeout when it is shorter than the default's) and ``MLVFX_ZOO_MIN_RATE`` as the least
        rate (0: no least rate, for a genuinely slow link)."""
        from dataclasses import replace

        from mlvfx.config import zoo_min_rate, zoo_timeout

        options = cls()
        timeout = zoo_timeout()
        if timeout is not None:
            options = replace(
                options, connect_timeout=min(cls.connect_timeout, timeout), read_timeout=timeout
            )
        rate = zoo_min_rate()
        if rate is not None:
            options = replace(options, min_rate=rate)
        return options


class Reporter:
    """Turns byte counts into ``progress(fraction, message)`` and ``on_bytes(done, total)`` calls."""

    def __init__(
        self,
        label: str,
        total: int,
        progress: ProgressFn | None,
        on_bytes: ByteProgressFn | None,
        interval: float = 0.1,
    ) -> None:
        self.label = label
        self.total = total
        self.progress = progress
        self.on_bytes = on_bytes
        self.interval = interval
        self._last = 0.0

    def __call__(self, done: int, *, force: bool = False) -> None:
        if self.progress is None and self.on_bytes is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self.on_bytes is not None:
            self.on_bytes(done, self.total)
        fraction = done / self.total if self.total else 1.0
        report(self.progress, fraction, f"{self.label}: {done / 1e6:.1f}/{self.total / 1e6:.1f} MB")


class _Retriable(Exception):
    """A transient failure: try the same URL again after a backoff."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Fatal(Exception):
    """This URL cannot work (404, bad TLS, bad scheme); move on to the next one."""


def new_session() -> requests.Session:
    """A requests session for the zoo: identity encoding (byte ranges must be raw bytes)."""
    import requests

    session = requests.Session()
    session.headers.update({"User-Agent": f"mlvfx/{__version__}", "Accept-Encoding": "identity"})
    session.hooks["response"].append(_check_redirect)
    return session


def _check_redirect(response: requests.Response, *args: object, **kwargs: object) -> None:
    """A redirect may only lead where the manifest itself may point (https, or http to loopback):
    requests would follow one to plain http on another host."""
    from mlvfx.zoo.manifest import check_url

    if response.is_redirect:
        from requests.utils import requote_uri

        target = requote_uri(urllib.parse.urljoin(response.url, response.headers.get("Location", "")))
        problem = check_url(target)
        if problem is not None or target.lower().startswith("file:"):
            response.close()  # its pooled connection goes back; a blocking pool would hang on it
            raise DownloadError(
                f"{response.url} redirects to {target}, which the zoo does not follow: "
                f"{problem or 'a local file'}"
            )


def file_url_path(url: str) -> Path:
    """The local path of a ``file://`` URL."""
    return Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))


def copy_verified(
    src: Path,
    cache: BlobCache,
    sha256: str,
    size: int,
    reporter: Reporter,
    cancel: CancelToken | None,
    chunk: int = 1 << 20,
) -> Path:
    """Copy a local file (mirror, ``file://`` URL) into the cache, hashing while copying.

    Raises:
        IntegrityError: the copy's size or sha256 is not the expected one (nothing is installed).
        OSError: the source cannot be read or the cache written.
    """
    tmp = cache.unique_temp(sha256)
    try:
        digest = hashlib.sha256()
        done = 0
        with open(src, "rb") as fin, open(tmp, "xb") as fout:
            while True:
                check_cancel(cancel)
                block = fin.read(chunk)
                if not block:
                    break
                done += len(block)
                if done > size:
                    break
                digest.update(block)
                fout.write(block)
                reporter(done)
        if done != size or digest.hexdigest() != sha256:
            got = f"{done} bytes" if done != size else f"sha256 {digest.hexdigest()}"
            raise IntegrityError(f"expected {size} bytes with sha256 {sha256}, got {got}", path=src)
        reporter(done, force=True)
        return cache.install(tmp, sha256)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class Downloader:
    """Downloads files into one writable cache; one instance may serve many files and URLs.

    Args:
        cache: the writable cache that receives the files.
        options: timeouts, retries and chunk size.
        session: a requests session (one is made when omitted).
        cancel: checked between chunks and during backoff; cancelling keeps the ``.part``.
    """

    def __init__(
        self,
        cache: BlobCache,
        options: DownloadOptions | None = None,
        session: requests.Session | None = None,
        cancel: CancelToken | None = None,
    ) -> None:
        self.cache = cache
        self.options = options or DownloadOptions.from_env()
        self._session = session
        self.cancel = cancel

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = new_session()
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    # ---------------------------------------------------------------- temp files

    def _claim_part(self, sha256: str) -> Path:
        """A unique temp file holding whatever an earlier, interrupted download left behind."""
        mine = self.cache.unique_temp(sha256)
        candidates = [self.cache.resumable_part(sha256)]
        # Unique parts orphaned by a killed process; a recent one may still be written by another
        # process (on a filesystem where the lock does not work), so only stale ones are taken.
        now = time.time()
        with contextlib.suppress(OSError):
            for p in self.cache.tmp.glob(f"{sha256}.*.part"):
                with contextlib.suppress(OSError):
                    if now - p.stat().st_mtime > STALE_PART_S:
                        candidates.append(p)
        for src in candidates:
            try:
                os.rename(src, mine)  # atomic: of two racing processes, one wins
            except OSError:
                continue
            # A link planted in a shared cache would have the download written through it.
            if stat.S_ISREG(os.lstat(mine).st_mode):
                if os.access(mine, os.W_OK):
                    return mine
                # Another user's part in a team cache that we cannot append to: put it back for them.
                with contextlib.suppress(OSError):
                    os.rename(mine, src)
                mine = self.cache.unique_temp(sha256)
                continue
            try:
                os.unlink(mine)
            except OSError:  # a folder under that name: leave it, take another name
                mine = self.cache.unique_temp(sha256)
        with open(mine, "xb"):
            pass
        self.cache.share(mine)  # a team cache: another user may resume it
        return mine

    def _park_part(self, tmp: Path) -> None:
        """Keep a partial download as the resumable ``<hex>.part`` (or drop it if empty)."""
        try:
            if tmp.stat().st_size > 0:
                os.replace(tmp, self.cache.resumable_part(tmp.name.split(".", 1)[0]))
                return
        except OSError:
            pass
        with contextlib.suppress(OSError):
            tmp.unlink()

    # ---------------------------------------------------------------- download

    def download(self, url: str, sha256: str, size: int, reporter: Reporter) -> Path:
        """Download ``url`` into the cache as the blob ``sha256``, resuming any ``.part``.

        Returns:
            The path of the installed blob.

        Raises:
            DownloadError: the URL failed for good (HTTP error, retries exhausted, disk error).
            IntegrityError: the server's file has the wrong size or sha256.
            Cancelled: the cancel token was set (the partial file is kept for a resume).
        """
        tmp = self._claim_part(sha256)
        keep_part = True
        part: _Part | None = None
        try:
            part = _Part(tmp, size)
            return self._download_into(part, url, sha256, reporter)
        except IntegrityError as exc:
            keep_part = False
            raise IntegrityError(scrub(exc.message, url), exc.path) from None
        except DownloadError as exc:
            raise DownloadError(scrub(exc.message, url), exc.path) from None
        except OSError as exc:
            raise DownloadError(f"cannot write the download ({exc.strerror or exc})", path=tmp) from None
        finally:
            if part is not None:
                part.digest.close()
            if tmp.exists():
                if keep_part:
                    self._park_part(tmp)
                else:
                    with contextlib.suppress(OSError):
                        tmp.unlink()

    def _download_into(self, part: _Part, url: str, sha256: str, reporter: Reporter) -> Path:
        opts = self.options
        attempts = failures = 0
        last_reason = ""
        # Bytes from an earlier run may be stale (another upstream file, a disk fault): a wrong
        # hash then earns one download from scratch. A wrong hash from scratch is final.
        has_old_bytes = part.have > 0
        while True:
            check_cancel(self.cancel)
            if part.have == part.size:
                if part.digest.hexdigest() == sha256:
                    reporter(part.have, force=True)
                    return self.cache.install(part.path, sha256)
                if has_old_bytes:
                    has_old_bytes = False
                    part.restart()
                    continue
                raise IntegrityError(
                    f"{url} has sha256 {part.digest.hexdigest()}, expected {sha256}; the file was not cached"
                )
            if failures > opts.retries or attempts >= opts.max_attempts:
                raise DownloadError(f"{url}: gave up after {attempts} attempt(s): {last_reason}")
            attempts += 1
            before = part.have
            try:
                self._attempt(part, url, reporter)
            except _Fatal as exc:
                raise DownloadError(f"{url}: {exc}") from None
            except _Retriable as exc:
                last_reason = str(exc)
                # New bytes mean the server works, if badly: start a fresh run of retries.
                failures = 1 if part.have > before else failures + 1
                if failures <= opts.retries and attempts < opts.max_attempts:
                    self._sleep(_backoff(opts, failures, exc.retry_after))

    def _attempt(self, part: _Part, url: str, reporter: Reporter) -> None:
        """One HTTP request that appends to ``part``; raises _Retriable or _Fatal on failure."""
        import requests
        import urllib3

        size = part.size
        headers = {"Range": f"bytes={part.have}-"} if part.have else {}
        timeout = (self.options.connect_timeout, self.options.read_timeout)
        try:
            response = self.session.get(url, headers=headers, stream=True, timeout=timeout)
        except requests.exceptions.SSLError as exc:
            raise _Fatal(f"TLS error ({exc}); set REQUESTS_CA_BUNDLE for a private CA") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
            raise _Fatal(str(exc)) from None
        except requests.exceptions.Timeout as exc:
            raise _Retriable(f"timed out ({exc})") from None
        except requests.exceptions.RequestException as exc:
            raise _Retriable(f"connection failed ({exc})") from None
        except OSError as exc:  # after RequestException (an OSError too): a CA bundle that is not there
            raise _Fatal(f"cannot use the TLS certificates ({exc}); check REQUESTS_CA_BUNDLE") from None
        with response:
            status = response.status_code
            if status == 416:
                # The part is longer than the remote file: it cannot be resumed.
                part.restart()
                raise _Retriable("HTTP 416 (range not satisfiable); restarting from byte 0")
            if status == 429 or status >= 500:
                raise _Retriable(f"HTTP {status}", _retry_after(response.headers.get("Retry-After")))
            if status not in (200, 206):
                raise _Fatal(f"HTTP {status} {response.reason or ''}".rstrip())
            if status == 206:
                start, total = _parse_content_range(response.headers.get("Content-Range"))
                if total is not None and total != size:
                    raise IntegrityError(f"{url} is {total} bytes, the manifest says {size}")
                if start != part.have:
                    reason = f"server resumed at byte {start}, not {part.have}; restarting"
                    part.restart()
                    raise _Retriable(reason)
            else:
                if part.have:
                    part.restart()  # the server ignored Range and sends the whole file
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) != size:
                    raise IntegrityError(f"{url} is {length} bytes, the manifest says {size}")
            try:
                with open(part.path, "ab") as out:
                    self._stream(response, part, out, url, reporter)
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
                kind = "timed out" if "timed out" in str(exc).lower() else "connection dropped"
                raise _Retriable(f"{kind} after {part.have} of {size} bytes ({exc})") from None
            if part.have < size:
                raise _Retriable(f"connection closed after {part.have} of {size} bytes")

    def _stream(
        self, response: requests.Response, part: _Part, out: IO[bytes], url: str, reporter: Reporter
    ) -> None:
        """Copy the body into ``part``.

        ``read1`` returns what the socket has (up to a chunk) instead of waiting for a whole chunk,
        so bytes that arrived before a timeout or a dropped connection are kept for the resume.
        """
        raw = response.raw
        chunk_size = self.options.chunk_size
        window = self.options.read_timeout
        window_start, window_bytes = time.monotonic(), 0
        while True:
            chunk = raw.read1(chunk_size, decode_content=True)
            if not chunk:
                return
            if self.cancel is not None and self.cancel.cancelled:
                raise Cancelled()
            if part.have + len(chunk) > part.size:
                raise IntegrityError(f"{url} sent more than the {part.size} bytes the manifest gives")
            part.append(out, chunk)
            reporter(part.have)
            window_bytes += len(chunk)
            elapsed = time.monotonic() - window_start
            if elapsed >= window:
                if self.options.min_rate > 0 and window_bytes < self.options.min_rate * elapsed:
                    raise _Retriable(
                        f"too slow: {window_bytes} bytes in {elapsed:.1f} s "
                        f"(at least {self.options.min_rate:g} bytes/s needed)"
                    )
                window_start, window_bytes = time.monotonic(), 0

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            check_cancel(self.cancel)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))


class PipelinedHash:
    """sha256 computed on a helper thread, so hashing overlaps the socket reads and disk writes.

    ``hashlib`` releases the GIL on large updates, so on two or more cores a download costs about
    max(network + disk, hash) instead of their sum. At most ``depth`` chunks wait in the queue.
    """

    def __init__(self, depth: int = 8) -> None:
        self._digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None

    def update(self, chunk: bytes) -> None:
        if len(chunk) < 65536 and self._thread is None:
            self._digest.update(chunk)  # small updates: a thread would cost more than it saves
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlvfx-zoo-hash", daemon=True)
            self._thread.start()
        self._queue.put(chunk)

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._digest.update(chunk)

    def _drain(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def hexdigest(self) -> str:
        """The digest of everything given so far (waits for the helper thread)."""
        self._drain()
        return self._digest.hexdigest()

    def close(self) -> None:
        """Stop the helper thread; the hash can go on afterwards."""
        self._drain()


class _Part:
    """A partial download on disk with the running sha256 of its bytes."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.digest = PipelinedHash()
        self.have = path.stat().st_size
        if self.have > size:
            self.restart()
        elif self.have:
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    self.digest.update(block)

    def restart(self) -> None:
        """Empty the file and the hash."""
        with open(self.path, "wb"):
            pass
        self.digest.close()
        self.digest = PipelinedHash()
        self.have = 0

    def append(self, out: IO[bytes], chunk: bytes) -> None:
        out.write(chunk)
        self.digest.update(chunk)
        self.have += len(chunk)


def _parse_content_range(value: str | None) -> tuple[int, int | None]:
    match = _CONTENT_RANGE_RE.match(value or "")
    if match is None:
        raise _Retriable(f"bad Content-Range {value!r}")
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s?#]*@")
_QUERY = re.compile(r"\?(?:[^\s#;,)'\":]|:(?!\s|$))+")  # a colon ends it only before a space or the end


def scrub(message: str, url: str | None = None) -> str:
    """``message`` with the credentials of URLs in it hidden: ``https://user:token@host/..``
    becomes ``https://***@host/..`` and a query (a signed link's signature) ``?***``. A token in
    MLVFX_ZOO_URL reached stderr, the --json document and the hosts' error reports (an audit).
    With ``url``, its own userinfo and query are removed wherever they appear, with or without a
    scheme (requests writes "Max retries exceeded with url: /w.safetensors?sig=..." ).
    """
    if url:
        parts = urllib.parse.urlsplit(url)
        if parts.query:
            message = message.replace("?" + parts.query, "?***")
        userinfo = parts.netloc.rpartition("@")[0]
        if userinfo:
            message = message.replace("//" + userinfo + "@", "//***@")
    message = _USERINFO.sub(r"\1***@", message)
    return _QUERY.sub("?***", message) if "://" in message or url else message


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to the usual backoff


def _backoff(options: DownloadOptions, failures: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, options.backoff_max)
    base: float = min(options.backoff_max, options.backoff * 2.0 ** max(0, failures - 1))
    return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
