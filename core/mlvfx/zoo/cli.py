"""``mlvfx zoo``: list, pull, verify, locate and prune models; serve a mirror; help publish.

``register(subparsers)`` adds the ``zoo`` command to the main ``mlvfx`` parser. Handlers read the
global ``--quiet`` and ``--json`` flags, print one JSON document with ``--json``, and raise
:class:`~mlvfx.errors.MlvfxError` subclasses for user errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlvfx.errors import InputError, ManifestError, ModelError
from mlvfx.zoo.cache import BlobCache, default_caches, sha256_file
from mlvfx.zoo.download import ByteProgressFn
from mlvfx.zoo.manifest import Manifest, ModelEntry, ZooFile, check_url, load_manifest, version_key
from mlvfx.zoo.resolve import cached_path, fetch_file, fetch_model

if TYPE_CHECKING:
    from mlvfx.zoo.serve import ZooHTTPServer


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mlvfx zoo ...`` to the main parser."""
    zoo = subparsers.add_parser(
        "zoo",
        help="list, download, verify and serve models",
        description="The model zoo: models are fetched on demand, verified and cached for every host.",
    )
    zoo.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="manifest file (default: MLVFX_ZOO_MANIFEST, else a source checkout's "
        "model_zoo/manifest.json, else the built-in)",
    )
    zoo.set_defaults(func=lambda args: _usage(zoo))
    sub = zoo.add_subparsers(dest="zoo_command", metavar="COMMAND")

    p = sub.add_parser("list", help="models in the manifest: id, version, size, cached?, metrics")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("pull", help="download models into the cache")
    p.add_argument(
        "models", nargs="*", metavar="ID[@VERSION]", help="models to pull (default newest version)"
    )
    p.add_argument("--all", action="store_true", help="every model and version in the manifest")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("verify", help="re-hash every cached blob; corrupt ones are removed")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("path", help="print the local path of a model's file (fetching it if needed)")
    p.add_argument("model", metavar="ID[@VERSION]")
    p.add_argument("--format", choices=("safetensors", "onnx"), default=None, dest="fmt")
    p.set_defaults(func=cmd_path)

    p = sub.add_parser(
        "prune",
        help="remove blobs the manifest no longer names, and leftovers, from the cache "
        "(MLVFX_CACHE_DIR, else the per-user one)",
        description="Remove cached blobs the manifest no longer names, and leftovers of interrupted "
        "downloads, from the primary cache only: MLVFX_CACHE_DIR when set, else the per-user cache. "
        "When MLVFX_CACHE_DIR is set, the per-user cache is left alone: other installations (another "
        "mlvfx version, the Blender add-on) share it, and their manifests may name other models.",
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.set_defaults(func=cmd_prune)

    for (
        name,
        child,
    ) in sub.choices.items():  # `mlvfx zoo list --manifest X` as well as `zoo --manifest X list`
        if name in ("list", "pull", "verify", "path", "prune"):
            child.add_argument("--manifest", type=Path, default=argparse.SUPPRESS, help="manifest file")

    p = sub.add_parser("serve", help="serve a folder of zoo files over HTTP with Range support")
    p.add_argument("directory", type=Path, metavar="DIR")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("hash", help="print manifest 'files' entries (name, sha256, size, urls) for files")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--url-base", default=None, help="release URL folder; adds <base>/<name> to 'urls'")
    p.set_defaults(func=cmd_hash)

    p = sub.add_parser("check", help="validate the manifest and the weights in model_zoo/weights")
    p.set_defaults(func=cmd_check)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _manifest(args: argparse.Namespace) -> Manifest:
    return load_manifest(getattr(args, "manifest", None))


def _split_ref(ref: str) -> tuple[str, str | None]:
    model_id, _, version = ref.partition("@")
    if not model_id:
        raise InputError(f"bad model reference {ref!r} (use ID or ID@VERSION)")
    return model_id, version or None


def _emit(args: argparse.Namespace, payload: Any, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        for line in lines:
            print(line)


@contextmanager
def _byte_bar(args: argparse.Namespace, label: str) -> Iterator[ByteProgressFn | None]:
    """A tqdm byte bar on stderr (none with --quiet or --json)."""
    if args.quiet or args.json:
        yield None
        return
    from mlvfx.cli import make_bar

    bar = make_bar(
        total=0, desc=label, disable=False, unit="B", unit_scale=True, unit_divisor=1024, leave=False
    )

    def on_bytes(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield on_bytes
    finally:
        bar.close()


def _fmt_size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("KB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def _cached_state(entry: ModelEntry, caches: list[BlobCache]) -> str:
    have = [cached_path(f, caches) is not None for f in entry.files]
    return "yes" if all(have) else ("partial" if any(have) else "no")


def cmd_list(args: argparse.Namespace) -> int:
    """``mlvfx zoo list``."""
    manifest = _manifest(args)
    caches = default_caches()
    rows: list[dict[str, Any]] = []
    for m in sorted(manifest.models, key=lambda m: (m.id, version_key(m.version))):
        rows.append(
            {
                "id": m.id,
                "version": m.version,
                "task": m.task,
                "size": m.size,
                "cached": _cached_state(m, caches),
                "metrics": dict(m.metrics),
            }
        )
    lines = [f"{'ID':<28} {'VERSION':<10} {'SIZE':>9}  {'CACHED':<7} METRICS"]
    for r in rows:
        metrics = ", ".join(f"{k}={v:g}" for k, v in r["metrics"].items()) or "-"
        lines.append(
            f"{r['id']:<28} {r['version']:<10} {_fmt_size(r['size']):>9}  {r['cached']:<7} {metrics}"
        )
    if not rows:
        lines = [f"no models in {manifest.path}"]
    _emit(args, {"manifest": str(manifest.path), "models": rows}, lines)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    """``mlvfx zoo pull``."""
    manifest = _manifest(args)
    if args.all:
        entries = list(manifest.models)
    elif args.models:
        entries = [manifest.get(*_split_ref(ref)) for ref in args.models]
    else:
        raise InputError("name the models to pull, or pass --all")
    pulled: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for entry in entries:
        try:
            with _byte_bar(args, f"{entry.id} {entry.version}") as on_bytes:
                paths = fetch_model(entry, on_bytes=on_bytes)
                paths = _into_primary(entry, paths, on_bytes)
        except ModelError as exc:
            if len(entries) == 1:
                raise
            # Warming a farm's cache: one unreachable model must not keep the others out.
            failed.append({"id": entry.id, "version": entry.version, "error": str(exc)})
            print(f"mlvfx: error: {exc}", file=sys.stderr)
            continue
        pulled.append({"id": entry.id, "version": entry.version, "paths": [str(p) for p in paths]})
    lines = [] if args.quiet else [f"{p['id']} {p['version']}: {', '.join(p['paths'])}" for p in pulled]
    _emit(args, {"pulled": pulled, "failed": failed}, lines)
    if failed:
        print(f"mlvfx: {len(failed)} of {len(entries)} models could not be pulled", file=sys.stderr)
        return 1
    return 0


def _into_primary(entry: ModelEntry, paths: list[Path], on_bytes: ByteProgressFn | None) -> list[Path]:
    """Files found only in the per-user cache, copied (verified) into ``MLVFX_CACHE_DIR``: pulling
    is how a studio cache is filled, and a model the user had already was left out of it."""
    from mlvfx.zoo.download import Reporter, copy_verified

    primary = default_caches()[0]
    if not primary.writable():
        missing = any(primary.lookup(z.sha256, z.size) is None for z in entry.files)
        if missing and os.environ.get("MLVFX_CACHE_DIR"):  # pulling fills a studio cache: say it did not
            print(
                f"mlvfx: warning: {entry.id} {entry.version}: MLVFX_CACHE_DIR={primary.base} cannot be "
                f"written by this user; the model stays in {paths[0].parent}",
                file=sys.stderr,
            )
        return paths
    out = []
    for zfile, path in zip(entry.files, paths, strict=True):
        if primary.lookup(zfile.sha256, zfile.size) is None:
            reporter = Reporter(f"{entry.id} {entry.version}", zfile.size, None, on_bytes)
            try:
                path = copy_verified(path, primary, zfile.sha256, zfile.size, reporter, None)
            except OSError as exc:  # a full or locked studio cache: the model is still usable here
                print(
                    f"mlvfx: warning: {entry.id} {entry.version}: not copied into {primary.base} "
                    f"({exc.strerror or exc}); it stays in {path.parent}",
                    file=sys.stderr,
                )
        out.append(path)
    return out


def cmd_path(args: argparse.Namespace) -> int:
    """``mlvfx zoo path``."""
    manifest = _manifest(args)
    entry = manifest.get(*_split_ref(args.model))
    zfile = entry.file(None, args.fmt)
    with _byte_bar(args, f"{entry.id} {entry.version}") as on_bytes:
        path = fetch_file(entry, zfile, on_bytes=on_bytes)
    _emit(args, {"id": entry.id, "version": entry.version, "path": str(path)}, [str(path)])
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``mlvfx zoo verify``: exit 1 when a corrupt blob was found."""
    known = _known_hashes(args)
    results = []
    for cache in default_caches():
        for sha, path in cache.iter_blobs():
            ok = cache.verify(sha)
            removed = False if ok else cache.discard(sha)
            results.append(
                {
                    "path": str(path),
                    "ok": ok,
                    "removed": removed,
                    "in_manifest": sha in known if known is not None else None,
                }
            )
    bad = [r for r in results if not r["ok"]]
    lines = []
    for r in bad:
        lines.append(f"CORRUPT {r['path']}" + (" (removed)" if r["removed"] else " (read-only, not removed)"))
    lines.append(f"{len(results) - len(bad)} blob(s) ok, {len(bad)} corrupt")
    _emit(args, {"blobs": results, "ok": len(results) - len(bad), "corrupt": len(bad)}, lines)
    return 1 if bad else 0


def _known_hashes(args: argparse.Namespace) -> set[str] | None:
    try:
        return _manifest(args).hashes()
    except ManifestError:
        return None


def cmd_prune(args: argparse.Namespace) -> int:
    """``mlvfx zoo prune``: only writable caches are pruned."""
    known = _manifest(args).hashes()
    removed: list[str] = []
    for cache in default_caches()[:1]:  # the primary cache only (see the command's description)
        if not cache.root.exists() or not cache.writable():
            continue
        doomed = [p for sha, p in cache.iter_blobs() if sha not in known] + cache.leftovers()
        for path in doomed:
            if not args.dry_run:
                if path.parent == cache.blobs:
                    cache.discard(path.name)
                else:
                    path.unlink(missing_ok=True)
            removed.append(str(path))
    verb = "would remove" if args.dry_run else "removed"
    lines = [f"{verb} {p}" for p in removed] if not args.quiet else []
    lines.append(f"{verb} {len(removed)} file(s)")
    _emit(args, {"removed": removed, "dry_run": args.dry_run}, lines)
    return 0


def cmd_serve(args: argparse.Namespace, ready: Callable[[ZooHTTPServer, str], None] | None = None) -> int:
    """``mlvfx zoo serve``: blocks until interrupted or shut down.

    ``ready(server, url)`` runs on a thread once the server listens (tests use it to stop it).
    """
    from mlvfx.zoo.serve import RangeRequestHandler, make_server

    directory: Path = args.directory
    if not directory.is_dir():
        raise InputError("not a folder", path=directory)
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be in [0, 65535], got {args.port}")

    class Handler(RangeRequestHandler):
        quiet = bool(args.quiet)

    try:
        server = make_server(directory, args.bind, args.port, Handler)
    except OSError as exc:
        raise InputError(f"cannot listen on {args.bind}:{args.port} ({exc.strerror or exc})") from None
    host, port = str(server.server_address[0]), int(server.server_address[1])
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    if args.json:
        print(json.dumps({"url": url, "directory": str(directory.resolve())}), flush=True)
    elif not args.quiet:
        print(f"serving {directory.resolve()} at {url} (set MLVFX_ZOO_URL={url}); Ctrl+C stops", flush=True)
    if ready is not None:
        threading.Thread(target=ready, args=(server, url), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_hash(args: argparse.Namespace) -> int:
    """``mlvfx zoo hash``: the ``files`` entries to paste into the manifest."""
    if args.url_base is not None and check_url(args.url_base) is not None:
        raise InputError(f"--url-base: {check_url(args.url_base)}")
    entries = []
    for path in args.files:
        if not path.is_file():
            raise InputError("not a file", path=path)
        name = path.name
        entry: dict[str, Any] = {"name": name, "sha256": sha256_file(path), "size": path.stat().st_size}
        entry["urls"] = [args.url_base.rstrip("/") + "/" + name] if args.url_base else []
        entries.append(entry)
    print(json.dumps(entries, indent=2))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``mlvfx zoo check``: the manifest is valid and every file in its ``weights/`` folder matches."""
    manifest = _manifest(args)
    if manifest.path is None:
        raise ManifestError("the manifest has no file")
    weights = manifest.path.parent / "weights"
    problems: list[str] = []
    checked = 0
    for m in manifest.models:
        for f in m.files:
            path = weights / f.name
            if path.is_file():
                checked += 1
                problem = _check_file(path, f)
                if problem:
                    problems.append(f"{path}: {problem}")
    lines = [
        *problems,
        f"{len(manifest.models)} model(s), {checked} local file(s) checked, {len(problems)} problem(s)",
    ]
    _emit(args, {"models": len(manifest.models), "checked": checked, "problems": problems}, lines)
    return 1 if problems else 0


def _check_file(path: Path, zfile: ZooFile) -> str | None:
    size = path.stat().st_size
    if size != zfile.size:
        return f"{size} bytes, the manifest says {zfile.size}"
    digest = sha256_file(path)
    if digest != zfile.sha256:
        return f"sha256 {digest}, the manifest says {zfile.sha256}"
    return None


__all__ = ["register"]
