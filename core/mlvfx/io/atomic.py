"""Atomic file writes: a temp file beside the target, then a rename.

A crash or a full disk never leaves a half-written output under the final name, and an existing
file is only replaced when the caller asks for it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mlvfx.errors import ImageWriteError, OutputExistsError


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_read_umask()
"""Mode of every output file: what ``open()`` would give under the process's umask (read once at
import). ``tempfile.mkstemp`` creates 0600 files, which other users of a shared farm could not read."""


DIR_MODE = 0o777 & ~_read_umask()
"""Mode of output folders made as temp folders and renamed into place (``tempfile.mkdtemp`` gives
0700: a dataset rendered on a farm would be unreadable to everyone else)."""


def _current_umask() -> int:
    """The process's umask now. Linux shows it in /proc (read without changing it: setting and
    restoring it would race with other threads' files); elsewhere the value read at import."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777 & ~DIR_MODE


def file_mode() -> int:
    """:data:`FILE_MODE` under the umask in force now: a tool that sets umask 002 for a shared
    show folder after importing mlvfx got 0644 outputs (a pipeline audit)."""
    return 0o666 & ~_current_umask()


def dir_mode() -> int:
    """:data:`DIR_MODE` under the umask in force now (see :func:`file_mode`)."""
    return 0o777 & ~_current_umask()


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A temp folder in ``parent`` with the normal folder mode (to be renamed into place)."""
    if os.name == "nt":
        # mkdtemp gives a Windows folder an access list of the user, SYSTEM and Administrators
        # only (CPython's fix of CVE-2024-4030), inherited by all in it: a cache renamed into place
        # would be unreadable to a colleague or a farm account. os.mkdir inherits the parent's.
        import secrets

        for _ in range(100):
            folder = parent / f"{prefix}{secrets.token_hex(6)}"
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            return folder
        raise FileExistsError(f"no free temp folder name in {parent}")
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    with contextlib.suppress(OSError):
        # Keep the setgid bit a show folder (chmod 2775) passes down: without it the frames got the
        # creating user's primary group instead of the show's (a review).
        os.chmod(folder, dir_mode() | (folder.stat().st_mode & stat.S_ISGID))
    return folder


def make_temp(target: Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """A temp file beside ``target`` (open descriptor and path) with the normal output mode."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    if hasattr(os, "fchmod"):  # POSIX; Windows (Python < 3.13) has no fchmod and no 0600 problem
        with contextlib.suppress(OSError):  # a filesystem without modes (some network mounts)
            os.fchmod(fd, file_mode())
    return fd, Path(name)


def output_path(text: str) -> Path:
    """An ``argparse`` type for output paths: an empty or blank one is refused (it used to mean
    "the current folder" and scatter the outputs there)."""
    import argparse

    if not text.strip():
        raise argparse.ArgumentTypeError("the output path is empty")
    return Path(text)


def check_writable(path: Path, overwrite: bool) -> None:
    """Raise ``OutputExistsError`` if ``path`` exists and ``overwrite`` is false, or is a folder."""
    if path.is_dir():
        raise OutputExistsError("is a folder, so a file cannot be written there", path)
    if not overwrite and path.exists():
        raise OutputExistsError("already exists (pass overwrite=True or --overwrite to replace it)", path)


def write_files_atomic(files: list[tuple[Path, bytes]], *, overwrite: bool = False) -> list[Path]:
    """Write several files as one: either all of them end up in place, or none is changed.

    Every file is first written to a temp file beside its target (a full disk or an unwritable
    folder fails here, before anything is replaced). Then the temp files are moved in; if a move
    fails, the ones already moved are taken back and any file they replaced is restored, so a
    failed ``--overwrite`` never leaves a folder half old and half new.

    Raises:
        OutputExistsError: a target exists and ``overwrite`` is false, or is a folder.
        ImageWriteError: a folder cannot be created or a file cannot be written.
    """
    targets = [Path(t) for t, _ in files]
    for t in targets:
        check_writable(t, overwrite)
    staged: list[tuple[Path, Path]] = []
    try:
        for target, data in zip(targets, (d for _, d in files), strict=True):
            staged.append((_write_temp(target, data), target))
        with _set_lock(targets, overwrite):
            _place(staged, overwrite)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return targets


@contextlib.contextmanager
def _set_lock(targets: list[Path], overwrite: bool) -> Iterator[None]:
    """With ``overwrite``, one process at a time replaces a set of files in a folder (two runs of
    one job on a machine): moving each file aside and back is not atomic across processes, and two
    interleaved writers could leave one's albedo beside the other's height. The lock file lives in
    the machine's temp folder, keyed by the folder's path, so outputs stay clean; it serialises
    processes on one machine only, not farm nodes writing to one network folder. Without
    ``overwrite`` no lock is needed: a hard link never replaces another writer's file."""
    if not overwrite or not targets:
        yield
        return
    import filelock

    try:
        lock_path = set_lock_file(targets[0].parent)
        lock = filelock.FileLock(str(lock_path))
        lock.acquire(timeout=LOCK_TIMEOUT)
    except filelock.Timeout:
        raise ImageWriteError(
            f"another mlvfx process has been replacing files here for {LOCK_TIMEOUT:.0f} s", targets[0].parent
        ) from None
    except (OSError, NotImplementedError):  # no lock can be made here: write without one, as before
        yield
        return
    try:
        yield
    finally:
        lock.release()


def set_lock_file(folder: Path) -> Path:
    """The lock file :func:`_set_lock` takes for replacing files in ``folder`` (its folder is made).

    One of :data:`LOCK_BUCKETS` files in a private per-user folder of the machine's temp folder,
    picked by the folder's hash: one file per folder piled up there for good (a farm re-rendering
    thousands of materials left thousands). Two folders in one bucket only wait for each other's
    file moves.

    Raises:
        OSError: the lock folder cannot be made, or is not this user's.
    """
    import hashlib

    digest = hashlib.sha256(str(folder.resolve()).encode("utf-8", "surrogateescape")).digest()
    # One folder per user, private: a folder shared by all would let another user plant a link
    # under a lock's (predictable) name, and opening the lock would truncate what it points at.
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    lock_dir = Path(tempfile.gettempdir()) / f"mlvfx-locks-{user}"
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    if lock_dir.is_symlink() or (hasattr(os, "getuid") and lock_dir.stat().st_uid != os.getuid()):
        raise OSError("the lock folder is not this user's")
    return lock_dir / f"set-{int.from_bytes(digest[:4], 'big') % LOCK_BUCKETS:03d}.lock"


LOCK_TIMEOUT = 600.0
LOCK_BUCKETS = 256


def _place(staged: list[tuple[Path, Path]], overwrite: bool) -> None:
    """Move staged temp files to their targets; on failure put every replaced file back."""
    placed: list[tuple[Path, Path | None]] = []  # (target, backup of the file it replaced)
    try:
        for tmp, target in staged:
            backup: Path | None = None
            if overwrite and target.exists():
                backup = target.with_name(f".{target.name}.{os.getpid()}.bak")
                try:
                    os.replace(target, backup)
                except FileNotFoundError:  # removed since: nothing to put back
                    backup = None
            try:
                commit(tmp, target, overwrite=overwrite)
            except BaseException:
                if backup is not None:
                    os.replace(backup, target)
                raise
            placed.append((target, backup))
    except BaseException as exc:
        for target, backup in reversed(placed):
            with contextlib.suppress(OSError):
                os.unlink(target)
                if backup is not None:
                    os.replace(backup, target)
        if isinstance(exc, OSError):
            raise ImageWriteError(f"cannot write: {exc.strerror or exc}", staged[len(placed)][1]) from None
        raise
    for _, backup in placed:
        if backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(backup)


def replace_files(moves: list[tuple[Path, Path]]) -> None:
    """Move finished files onto their targets (each in the target's folder or on its filesystem),
    replacing what is there: all or nothing. If one cannot be moved (a frame held open by a viewer
    on Windows), the ones already moved are taken back and the replaced files restored.

    Raises:
        ImageWriteError: naming the file that could not be replaced.
    """
    _place(moves, overwrite=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (a temp file, then :func:`commit`).

    Raises:
        OutputExistsError: the file exists and ``overwrite`` is false.
        ImageWriteError: the folder cannot be created or the file cannot be written.
    """
    target = Path(path)
    check_writable(target, overwrite)
    tmp = _write_temp(target, data)
    try:
        commit(tmp, target, overwrite=overwrite)
    except OSError as exc:
        raise ImageWriteError(f"cannot write: {exc.strerror or exc}", target) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target


def why_not(folder: Path, exc: OSError) -> str:
    """Why ``folder`` cannot be made or written in: a file standing where a folder of its path
    should be is named ("File exists" said nothing; an audit), else the system's reason."""
    for part in (folder, *folder.parents):
        if part.is_symlink() and not part.exists():  # an unmounted disk's link (a review)
            return f"{part} links to {os.readlink(part)}, which does not exist"
        if part.exists():
            if not part.is_dir():
                return f"{part} is a file, not a folder"
            break
    return exc.strerror or str(exc)


def make_folder(folder: Path, what: str = "output folder") -> Path:
    """``folder`` and its parents, created if missing.

    Raises:
        ImageWriteError: it cannot be created (permission, a file in the way, a full disk), named
            in one line rather than an internal error (an audit).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(f"cannot create the {what}: {why_not(folder, exc)}", folder) from None
    return folder


def check_folder_writable(folder: Path, what: str = "output folder") -> None:
    """Create ``folder`` if needed and write and remove a file in it: a batch learns at once that it
    cannot write there, not after computing every image (an audit: hours of a learned batch, then
    one error per image).

    Raises:
        ImageWriteError: naming the folder and why.
    """
    make_folder(folder, what)
    try:
        fd, tmp = make_temp(folder / ".mlvfx-write-check")
    except OSError as exc:
        raise ImageWriteError(f"cannot write in the {what}: {why_not(folder, exc)}", folder) from None
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()


def _write_temp(target: Path, data: bytes) -> Path:
    """``data`` written and synced to a new temp file beside ``target`` (its folder created).

    Raises:
        ImageWriteError: the folder or the temp file cannot be created or written (the temp file
            is removed again).
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = make_temp(target)
    except OSError as exc:
        raise ImageWriteError(f"cannot create output: {why_not(target.parent, exc)}", target) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as exc:  # Ctrl-C too: no hidden temp file is left behind
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise ImageWriteError(f"cannot write: {exc.strerror or exc}", target) from None
        raise
    return tmp


def commit(tmp: Path, target: Path, *, overwrite: bool) -> None:
    """Move a finished temp file (in the target's folder) to its final name.

    Without ``overwrite`` the move is a hard link, which fails if another process created the file
    in the meantime, so a concurrent writer's file is never clobbered; filesystems without hard
    links fall back to an existence check and a rename. The caller removes ``tmp`` afterwards.
    """
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise OutputExistsError(
            "already exists (pass overwrite=True or --overwrite to replace it)", target
        ) from None
    except OSError:
        check_writable(target, overwrite)
        os.replace(tmp, target)
