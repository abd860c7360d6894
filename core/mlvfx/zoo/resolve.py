"""Resolving a model to a verified local file: cache, then local mirrors, then the network.

``fetch("material")`` returns the path of the model's weights, trying in order:

1. the caches: ``MLVFX_CACHE_DIR`` (which may be read-only, pre-filled by a studio), and the
   per-user cache when ``MLVFX_CACHE_DIR`` points elsewhere;
2. local mirrors: the folders in ``MLVFX_ZOO_MIRRORS``, then the ``model_zoo/`` folder of a source
   checkout. A mirror holds files by name, either at its top or under ``weights/``;
3. the network: ``MLVFX_ZOO_URL/<file name>`` when that is set, otherwise the manifest's URLs in
   order. ``file://`` URLs are local copies and work offline; ``MLVFX_OFFLINE=1`` forbids the rest.

Files found in a mirror or downloaded are verified (size and sha256) and copied into the first
writable cache; when no cache is writable, a verified mirror file is used where it is.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from mlvfx import config
from mlvfx.errors import DownloadError, InputError, IntegrityError, ModelError, OfflineError
from mlvfx.progress import CancelToken, ProgressFn, check_cancel
from mlvfx.zoo.cache import BlobCache, default_caches, file_matches
from mlvfx.zoo.download import (
    ByteProgressFn,
    Downloader,
    DownloadOptions,
    Reporter,
    copy_verified,
    file_url_path,
    scrub,
)
from mlvfx.zoo.manifest import Manifest, ModelEntry, ZooFile, check_url, checkout_zoo_dir, resolve_manifest

ManifestLike = Manifest | str | os.PathLike[str] | None


def mirror_dirs() -> list[Path]:
    """Local mirror folders, in order: ``MLVFX_ZOO_MIRRORS``, then the checkout's ``model_zoo/``."""
    dirs = list(config.zoo_mirrors())
    checkout = checkout_zoo_dir()
    if checkout is not None:
        dirs.append(checkout)
    unique: list[Path] = []
    seen: set[Path] = set()
    for folder in dirs:  # a mirror named twice (MLVFX_ZOO_MIRRORS set to the checkout's) is tried once
        key = folder.resolve() if folder.exists() else folder
        if key not in seen:
            seen.add(key)
            unique.append(folder)
    return unique


def file_urls(zfile: ZooFile) -> list[str]:
    """Where ``zfile`` can be downloaded: ``MLVFX_ZOO_URL/<name>`` if set, else the manifest's URLs.

    Raises:
        InputError: ``MLVFX_ZOO_URL`` has a scheme the zoo does not allow.
    """
    base = config.zoo_url()
    if base is None:
        return list(zfile.urls)
    problem = check_url(base)
    if problem is not None:
        raise InputError(f"MLVFX_ZOO_URL: {problem}")
    return [base.rstrip("/") + "/" + zfile.name]


def cached_path(zfile: ZooFile, caches: Sequence[BlobCache] | None = None) -> Path | None:
    """The verified cached copy of ``zfile``, or ``None``; never touches mirrors or the network."""
    for cache in caches if caches is not None else default_caches():
        path = cache.lookup(zfile.sha256, zfile.size)
        if path is not None:
            return path
    return None


def _cached_instead(entry: ModelEntry, caches: Sequence[BlobCache]) -> str:
    """``"; cached: material 0.7.0 (pin it: material@0.7.0)"`` when other versions of ``entry``'s
    model are cached: after an upgrade offline, the error said only that the new one was not there
    (an upgrade audit). Empty when none are, or the manifest cannot be read."""
    from mlvfx.errors import MlvfxError
    from mlvfx.zoo.manifest import load_manifest

    try:
        manifest = load_manifest()
        fmt = "safetensors" if "safetensors" in entry.formats else None  # the weights hosts fetch
        others = [
            v
            for v in manifest.versions(entry.id)
            if v != entry.version and cached_path(manifest.get(entry.id, v).file(None, fmt), caches)
        ]
    except (MlvfxError, OSError):
        return ""
    if not others:
        return ""
    newest = others[-1]
    listed = ", ".join(f"{entry.id} {v}" for v in others)
    return f"; cached: {listed} (pin it to run offline now: {entry.id}@{newest})"


def available_locally(zfile: ZooFile, caches: Sequence[BlobCache] | None = None) -> bool:
    """Whether ``zfile`` can be had without the network: verified in a cache, or present in a local
    mirror (a mirror copy is verified when it is fetched). For hosts that say so before a job."""
    return cached_path(zfile, caches) is not None or next(_mirror_candidates(zfile), None) is not None


def _mirror_candidates(zfile: ZooFile) -> Iterator[Path]:
    for folder in mirror_dirs():
        for candidate in (folder / zfile.name, folder / "weights" / zfile.name):
            if candidate.is_file():
                yield candidate


def fetch_file(
    entry: ModelEntry,
    zfile: ZooFile,
    progress: ProgressFn | None = None,
    *,
    on_bytes: ByteProgressFn | None = None,
    cancel: CancelToken | None = None,
    options: DownloadOptions | None = None,
    downloader: Downloader | None = None,
) -> Path:
    """Resolve one file of a model to a verified local path (see the module docstring for the order).

    Args:
        entry: the model the file belongs to (named in messages).
        zfile: the file.
        progress: ``progress(fraction, "id version: 12.3/50.0 MB")`` while copying or downloading.
        on_bytes: ``on_bytes(done, total)`` with raw byte counts, for hosts' own progress bars.
        cancel: checked between chunks; a cancelled download is kept for a resume.
        options: timeouts and retries.
        downloader: reuse a downloader (and its HTTP connection) across files.

    Returns:
        The path of a file with the manifest's size and sha256.

    Raises:
        OfflineError: ``MLVFX_OFFLINE=1`` and no cache or mirror has the file; the message names the
            URL and the exact path to save the file at.
        DownloadError: every URL failed, or no cache is writable.
        IntegrityError: every source had the file with the wrong size or sha256.
        Cancelled: the cancel token was set.
    """
    opts = options or DownloadOptions.from_env()
    caches = default_caches()
    label = f"{entry.id} {entry.version}"
    reporter = Reporter(label, zfile.size, progress, on_bytes, opts.progress_interval)

    found = cached_path(zfile, caches)
    if found is not None:
        reporter(zfile.size, force=True)
        return found
    check_cancel(cancel)
    target = next((c for c in caches if c.writable()), None)
    if target is not None and target is not caches[0]:
        _note_fallback(caches[0], target)

    errors: list[ModelError] = []
    candidates = list(_mirror_candidates(zfile))
    if candidates:
        # A farm's nodes starting together copy from the (network) mirror once, not once each: the
        # per-blob lock as for downloads, then the cache again.
        lock = (
            _blob_lock(target, zfile.sha256, opts, cancel) if target is not None else contextlib.nullcontext()
        )
        with lock:
            found = target.lookup(zfile.sha256, zfile.size) if target is not None else None
            if found is not None:
                reporter(zfile.size, force=True)
                return found
            for candidate in candidates:
                result = _from_local(candidate, zfile, target, reporter, cancel, errors)
                if result is not None:
                    return result

    urls = file_urls(zfile)
    local_urls = [u for u in urls if u.lower().startswith("file:")]
    missing: list[str] = []
    for url in local_urls:
        source = file_url_path(url)
        if source.is_file():
            result = _from_local(source, zfile, target, reporter, cancel, errors)
            if result is not None:
                return result
        else:
            missing.append(f"{url} does not exist")
    remote_urls = [u for u in urls if u not in local_urls]
    missing += [f"mirror folder {d} does not exist" for d in config.zoo_mirrors() if not d.is_dir()]
    missing += [f"cache {c.base} is not a folder" for c in caches if c.base.exists() and not c.base.is_dir()]

    drop_at = (target or caches[0]).blob_path(zfile.sha256)
    # What went wrong with the copies found so far (a corrupt mirror file, a damaged cached blob
    # that could not be removed), and places set up that are not there (a mistyped mirror or
    # file:// URL): said in the error, or the user only hears "not cached".
    unusable = "; ".join(str(e) for e in errors[-2:])
    notes = ([f"copies found but unusable: {unusable}"] if unusable else []) + missing
    seen = f" ({'; '.join(notes)})" if notes else ""
    if config.offline():
        where = scrub(remote_urls[0]) if remote_urls else "(the manifest gives no URL)"
        raise OfflineError(
            f"{label}: {zfile.name} is not cached and MLVFX_OFFLINE=1 forbids downloading it from "
            f"{where}; download it yourself and save it as {drop_at}{seen}{_cached_instead(entry, caches)}"
        )
    if not remote_urls:
        if errors:  # the error names the file; say which model it was for too
            raise type(errors[-1])(f"{label}: {zfile.name}: {errors[-1]}") from None
        no_url = "MLVFX_ZOO_URL gives only a local copy" if config.zoo_url() else "the manifest gives no URL"
        raise DownloadError(
            f"{label}: {zfile.name} is in no cache or mirror and {no_url}{seen}; "
            f"save it as {drop_at} or put it in a folder listed in MLVFX_ZOO_MIRRORS"
        )
    if target is None:
        damaged = [c.blob_path(zfile.sha256) for c in caches if c.blob_path(zfile.sha256).exists()]
        why = f"; the cached copy {damaged[0]} is damaged" if damaged else ""
        raise DownloadError(
            f"{label}: no writable cache to download {zfile.name} into "
            f"({', '.join(str(c.base) for c in caches)} are read-only){why}{seen}; set MLVFX_CACHE_DIR"
        )

    own = downloader is None or downloader.cache.base != target.base
    dl = Downloader(target, opts, cancel=cancel) if own or downloader is None else downloader
    try:
        with _blob_lock(target, zfile.sha256, opts, cancel):
            # Another process may have finished this blob while we waited for the lock.
            found = target.lookup(zfile.sha256, zfile.size)
            if found is not None:
                reporter(zfile.size, force=True)
                return found
            for url in remote_urls:
                try:
                    return dl.download(url, zfile.sha256, zfile.size, reporter)
                except (DownloadError, IntegrityError) as exc:
                    errors.append(exc)
    finally:
        if own:
            dl.close()
    # No network (a farm node, a laptop on a plane): say how to work without it.
    offline_hint = "" if all(isinstance(e, IntegrityError) for e in errors) else OFFLINE_HINT
    if len(errors) == 1:  # the error names the URL or file; say which model it was for too
        raise type(errors[0])(f"{label}: {zfile.name}: {errors[0]}{offline_hint}") from None
    summary = "; ".join(str(e) for e in errors)
    kind = IntegrityError if all(isinstance(e, IntegrityError) for e in errors) else DownloadError
    raise kind(f"{label}: {zfile.name} could not be fetched from any source: {summary}{offline_hint}")


OFFLINE_HINT = (
    "; without network access, copy the zoo's files into a folder and name it in MLVFX_ZOO_MIRRORS "
    "(model_zoo/README.md), or use a classical method where there is one"
)


def _from_local(
    source: Path,
    zfile: ZooFile,
    target: BlobCache | None,
    reporter: Reporter,
    cancel: CancelToken | None,
    errors: list[ModelError],
) -> Path | None:
    """A mirror or ``file://`` copy: verified into the cache, or used in place if no cache is writable."""
    try:
        if source.stat().st_size != zfile.size:
            errors.append(
                IntegrityError(f"{source.stat().st_size} bytes, the manifest says {zfile.size}", path=source)
            )
            return None
        if target is None:
            if file_matches(source, zfile.sha256, zfile.size):
                reporter(zfile.size, force=True)
                return source
            errors.append(IntegrityError(f"sha256 is not {zfile.sha256}", path=source))
            return None
        return copy_verified(source, target, zfile.sha256, zfile.size, reporter, cancel)
    except IntegrityError as exc:
        errors.append(exc)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) and file_matches(
            source, zfile.sha256, zfile.size
        ):
            # The cache is full, the mirror's copy is good: used where it is, as for a read-only
            # cache (it was refused, and the error sent the user to set up the mirror they had).
            _note_full_cache(target, exc)
            reporter(zfile.size, force=True)
            return source
        errors.append(DownloadError(f"cannot copy ({exc.strerror or exc})", path=source))
    return None


def _note_full_cache(cache: BlobCache | None, exc: OSError) -> None:
    """Say once per process that a model is used from its mirror because the cache is full."""
    key = f"full:{cache.base if cache is not None else ''}"
    if key in _noted:
        return
    _noted.add(key)
    import logging

    where = cache.base if cache is not None else "the cache"
    logging.getLogger("mlvfx.zoo").warning(
        "mlvfx: the model cache %s has no room (%s); models are used from the mirror in place",
        where,
        exc.strerror,
    )


_noted: set[str] = set()


def _note_fallback(primary: BlobCache, used: BlobCache) -> None:
    """Say once per process, through ``logging`` (stderr unless the host configures it), that a
    model goes into the per-user cache because ``MLVFX_CACHE_DIR`` cannot take it. A mistyped,
    unmounted or not group-writable studio cache was silent before (an audit)."""
    key = str(primary.base)
    if key in _noted:
        return
    _noted.add(key)
    import logging

    logging.getLogger("mlvfx.zoo").warning(
        "mlvfx: MLVFX_CACHE_DIR=%s cannot be written by this user; models go into %s instead",
        primary.base,
        used.base,
    )


@contextlib.contextmanager
def _blob_lock(
    cache: BlobCache, sha256: str, options: DownloadOptions, cancel: CancelToken | None
) -> Iterator[None]:
    """Hold the per-blob file lock, checking ``cancel`` while waiting.

    If the lock cannot be created (an odd network filesystem), go on without it: unique temp
    names keep concurrent downloads correct, at the cost of bandwidth.
    """
    import filelock

    try:
        cache.locks.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(cache.lock_path(sha256)))
    except (OSError, ValueError):
        yield
        return
    acquired = False
    while not acquired:
        check_cancel(cancel)
        try:
            lock.acquire(timeout=options.lock_poll)
            acquired = True
        except filelock.Timeout:
            continue
        except OSError:
            break
    if acquired:
        cache.share(cache.lock_path(sha256))  # others in a team cache must open it to lock it
    try:
        yield
    finally:
        if acquired:
            lock.release()


def fetch(
    model_id: str,
    version: str | None = None,
    progress: ProgressFn | None = None,
    *,
    filename: str | None = None,
    fmt: str | None = None,
    manifest: ManifestLike = None,
    on_bytes: ByteProgressFn | None = None,
    cancel: CancelToken | None = None,
    options: DownloadOptions | None = None,
) -> Path:
    """The local path of a model's file, fetched and verified if needed.

    Args:
        model_id: the model's id in the manifest.
        version: its version; default the newest.
        progress: ``progress(fraction, message)`` while the file is copied or downloaded.
        filename: which file of the model; default the first of format ``fmt``, else the first.
        fmt: ``"safetensors"`` or ``"onnx"``.
        manifest: a :class:`Manifest` or manifest path; default :func:`load_manifest`'s.
        on_bytes: ``on_bytes(done, total)``, raw byte counts.
        cancel: cooperative cancel.
        options: timeouts and retries.

    Returns:
        The path of a file whose size and sha256 match the manifest. Do not modify it: it is shared
        by every host on the machine.

    Raises:
        ModelNotFound: no such model, version or file.
        OfflineError, DownloadError, IntegrityError, Cancelled: see :func:`fetch_file`.

    Example:
        >>> path = fetch("material")  # doctest: +SKIP
    """
    entry = resolve_manifest(manifest).get(model_id, version)
    zfile = entry.file(filename, fmt)
    return fetch_file(entry, zfile, progress, on_bytes=on_bytes, cancel=cancel, options=options)


def fetch_model(
    entry: ModelEntry,
    progress: ProgressFn | None = None,
    *,
    on_bytes: ByteProgressFn | None = None,
    cancel: CancelToken | None = None,
    options: DownloadOptions | None = None,
) -> list[Path]:
    """Fetch every file of a model (all formats); the paths are in the manifest's order."""
    paths: list[Path] = []
    total = max(1, entry.size)
    done_before = 0
    with contextlib.closing(Downloader(_first_writable(), options, cancel=cancel)) as dl:
        for zfile in entry.files:
            offset, share = done_before / total, zfile.size / total

            def scaled(fraction: float, message: str, offset: float = offset, share: float = share) -> None:
                if progress is not None:
                    progress(offset + share * fraction, message)

            paths.append(
                fetch_file(
                    entry,
                    zfile,
                    scaled if progress is not None else None,
                    on_bytes=on_bytes,
                    cancel=cancel,
                    options=options,
                    downloader=dl,
                )
            )
            done_before += zfile.size
    return paths


def _first_writable() -> BlobCache:
    caches = default_caches()
    return next((c for c in caches if c.writable()), caches[0])
