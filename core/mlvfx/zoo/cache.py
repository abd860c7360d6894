"""The content-addressed model cache shared by every host on a machine.

Layout under the cache folder (``MLVFX_CACHE_DIR`` or ``platformdirs.user_cache_dir("mlvfx")``)::

    zoo/sha256/<hex>      the blob whose sha256 is <hex> (a studio can pre-fill this)
    zoo/verified/<hex>    "<size> <mtime_ns>" of the blob when it was last hashed
    zoo/tmp/              downloads in progress (<hex>.part, and <hex>.<unique>.part while written)
    zoo/locks/<hex>.lock  one file lock per blob, so concurrent processes download it once

A warm lookup is two ``stat``-sized reads: the blob and its ``verified`` stamp. When the stamp is
missing or stale (the blob was rewritten), the blob is hashed again; a corrupt blob is removed (when
the cache is writable) so that it is fetched again. The cache may be read-only, pre-filled by a
studio: lookups then never write, and hashes are memoised in the process instead of in stamps.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mlvfx import config
from mlvfx.fsutil import read_regular

HASH_CHUNK = 1 << 20
_HEX = set("0123456789abcdef")

_memo_lock = threading.Lock()
# (path, size, mtime_ns) -> sha256 hex, for files hashed in this process.
_hash_memo: dict[tuple[str, int, int], str] = {}


def is_sha256(name: str) -> bool:
    """Whether ``name`` is 64 lowercase hex digits."""
    return len(name) == 64 and set(name) <= _HEX


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None, chunk: int = HASH_CHUNK) -> str:
    """The sha256 hex digest of a file, read in chunks; ``on_bytes(n)`` is called per chunk."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            digest.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return digest.hexdigest()


def file_matches(path: Path, sha256: str, size: int) -> bool:
    """Whether ``path`` is a regular file of ``size`` bytes with this sha256 (memoised per process)."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != size or not path.is_file():
        return False
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _memo_lock:
        known = _hash_memo.get(key)
    if known is None:
        try:
            known = sha256_file(path)
        except OSError:
            return False
        with _memo_lock:
            _hash_memo[key] = known
    return known == sha256


def probe_writable(folder: Path) -> bool:
    """Whether files can be created in ``folder`` (creating it if needed).

    ``os.access`` is not enough: it says yes to root on a read-only mount and no to some ACLs.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
        with open(probe, "xb"):
            pass
        probe.unlink()
        return True
    except OSError:
        return False


class BlobCache:
    """One cache folder; blobs are named by their sha256.

    Args:
        base: the cache folder (``config.cache_dir()`` by default); blobs live under ``base/zoo``.
    """

    def __init__(self, base: Path | None = None) -> None:
        self.base = Path(base) if base is not None else config.cache_dir()
        self.root = self.base / "zoo"
        self.blobs = self.root / "sha256"
        self.stamps = self.root / "verified"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self._writable: bool | None = None

    def __repr__(self) -> str:
        return f"BlobCache({str(self.base)!r})"

    def writable(self) -> bool:
        """Whether this cache accepts new blobs (probed once per instance)."""
        if self._writable is None:
            folders = (self.root, self.blobs, self.stamps, self.tmp, self.locks)
            self._writable = all(probe_writable(d) for d in folders[1:])
            if self._writable:
                for folder in folders:
                    self.share(folder)
        return self._writable

    @functools.cached_property
    def group_shared(self) -> bool:
        """Whether the cache's base folder is group-writable (a studio cache for a team): then what
        the cache creates is group-writable too, whatever the creating user's umask. With umask
        022 the first user made ``zoo/`` 0755, and everyone else's models then went, in silence,
        into their own home caches (an audit)."""
        if os.name != "posix":
            return False
        try:
            return bool(self.base.stat().st_mode & stat.S_IWGRP)
        except OSError:
            return False

    def share(self, path: Path) -> None:
        """Give the group read and write on ``path`` (a folder also search and setgid) when the
        cache is :attr:`group_shared`. Only this user's own files and folders, and never through a
        symlink: it is opened without following links and changed through the descriptor (a name
        swapped for a link by another member of the group cannot redirect the change)."""
        if not self.group_shared:
            return
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            if st.st_uid != os.getuid() or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                return
            extra = (0o070 | stat.S_ISGID) if stat.S_ISDIR(st.st_mode) else 0o060
            if stat.S_IMODE(st.st_mode) & extra != extra:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) | extra)
        except OSError:
            pass
        finally:
            os.close(fd)

    def blob_path(self, sha256: str) -> Path:
        """Where the blob with this sha256 lives (whether or not it exists)."""
        return self.blobs / sha256

    def lookup(self, sha256: str, size: int) -> Path | None:
        """The verified blob, or ``None``. A corrupt blob is removed when the cache is writable.

        The full hash is skipped when the blob's size and mtime match its ``verified`` stamp.
        """
        path = self.blobs / sha256
        try:
            st = path.lstat()
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):  # a link planted in a shared cache is not a blob we wrote
            return None
        if st.st_size == size and self._stamp_matches(sha256, st.st_size, st.st_mtime_ns):
            return path
        if file_matches(path, sha256, size):
            if self.writable():
                self._write_stamp(sha256, path)
            return path
        if self.writable():
            self.discard(sha256)
        return None

    def _stamp_matches(self, sha256: str, size: int, mtime_ns: int) -> bool:
        try:
            text = read_regular(self.stamps / sha256).decode("ascii")
        except (OSError, UnicodeDecodeError):
            return False
        return text.split() == [str(size), str(mtime_ns)]

    def _write_stamp(self, sha256: str, path: Path) -> None:
        """Record that ``path`` hashed correctly; silently skipped on a read-only cache."""
        try:
            st = path.stat()
            self.stamps.mkdir(parents=True, exist_ok=True)
            tmp = self.stamps / f".{sha256}.{os.getpid()}-{secrets.token_hex(4)}"
            tmp.write_text(f"{st.st_size} {st.st_mtime_ns}\n", encoding="ascii")
            self.share(tmp)
            os.replace(tmp, self.stamps / sha256)
        except OSError:
            pass

    def discard(self, sha256: str) -> bool:
        """Remove a blob and its stamp; ``False`` if it was not there or the cache is read-only."""
        try:
            (self.blobs / sha256).unlink()
        except OSError:
            return False
        with contextlib.suppress(OSError):
            (self.stamps / sha256).unlink()
        return True

    def install(self, src: Path, sha256: str) -> Path:
        """Atomically move a verified file into the cache (``os.replace``) and stamp it."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        if not stat.S_ISREG(os.lstat(src).st_mode):
            raise OSError(f"{src} is not a regular file")
        dest = self.blobs / sha256
        self.share(src)
        os.replace(src, dest)
        self._write_stamp(sha256, dest)
        return dest

    def unique_temp(self, sha256: str) -> Path:
        """A temp file name no other process or host will pick."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self.tmp / f"{sha256}.{os.getpid()}-{secrets.token_hex(6)}.part"

    def resumable_part(self, sha256: str) -> Path:
        """The stable name under which an interrupted download waits to be resumed."""
        return self.tmp / f"{sha256}.part"

    def lock_path(self, sha256: str) -> Path:
        return self.locks / f"{sha256}.lock"

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        """Every blob in the cache as ``(sha256, path)``, sorted by hash."""
        try:
            entries = sorted(self.blobs.iterdir())
        except OSError:
            return
        for p in entries:
            if is_sha256(p.name) and p.is_file():
                yield p.name, p

    def verify(self, sha256: str) -> bool:
        """Hash a blob again, ignoring stamps and memo; refresh its stamp when it is correct."""
        path = self.blobs / sha256
        try:
            ok = sha256_file(path) == sha256
        except OSError:
            return False
        if ok:
            self._write_stamp(sha256, path)
        return ok

    def leftovers(self, stale_after: float = 600.0) -> list[Path]:
        """Resumable parts, abandoned temp files, and stamps of blobs that are gone.

        A unique temp file (``<hex>.<id>.part``) modified within ``stale_after`` seconds may be an
        active download of another process, so it is left alone.
        """
        out: list[Path] = []
        now = time.time()
        with contextlib.suppress(OSError):
            for p in self.tmp.iterdir():
                with contextlib.suppress(OSError):
                    resumable = p.name.endswith(".part") and p.name.count(".") == 1
                    if p.is_file() and (resumable or now - p.stat().st_mtime > stale_after):
                        out.append(p)
        with contextlib.suppress(OSError):
            out += [p for p in self.stamps.iterdir() if not (self.blobs / p.name).exists()]
        return sorted(out)


def _is_blob_path(blob: Path) -> bool:
    return is_sha256(blob.name) and blob.parent.name == "sha256" and blob.parent.parent.name == "zoo"


def blob_is_damaged(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a zoo cache blob whose bytes no longer hash to its name (nothing is
    written: a read-only studio cache is hashed as well). Not a blob, or unreadable: False."""
    blob = Path(path)
    if not _is_blob_path(blob):
        return False
    try:
        return sha256_file(blob) != blob.name
    except OSError:
        return False


def drop_damaged_blob(path: str | os.PathLike[str]) -> bool:
    """Remove ``path`` if it is a zoo cache blob whose bytes no longer hash to its name.

    For a cached model that fails to load: the cache trusts a blob whose size and mtime match its
    ``verified`` stamp without hashing it again, so a byte flipped in place (a disk fault, a tool
    that restored the mtime) would otherwise fail every run. Hashed again here, a damaged blob is
    removed with its stamp and the next run fetches it again. Returns whether it was removed.
    """
    blob = Path(path)
    if not _is_blob_path(blob):
        return False
    cache = BlobCache(blob.parent.parent.parent)
    return not cache.verify(blob.name) and cache.discard(blob.name)


def default_caches() -> list[BlobCache]:
    """The caches to look in, in order: ``config.cache_dir()``, then the per-user default.

    The second is only there when ``MLVFX_CACHE_DIR`` points elsewhere (typically a read-only
    studio cache): blobs the studio cache lacks are then downloaded into the user's own cache.
    """
    primary = config.cache_dir()
    import platformdirs

    caches = [BlobCache(primary)]
    try:
        fallback = Path(platformdirs.user_cache_dir("mlvfx"))
    except RuntimeError:  # no HOME and a uid without a passwd entry (a container): no per-user cache
        return caches
    if fallback.expanduser().absolute() != primary.expanduser().absolute():
        caches.append(BlobCache(fallback))
    return caches
