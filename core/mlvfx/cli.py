"""The ``mlvfx`` command.

Errors are one line on stderr and a non-zero exit code; ``--debug`` shows the traceback. Long work
shows a tqdm bar on stderr unless ``--quiet``; ``--json`` prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from mlvfx import __version__
from mlvfx.errors import Cancelled, ImageReadError, InputError, MlvfxError, OutOfMemoryError, out_of_memory
from mlvfx.io.atomic import output_path
from mlvfx.progress import ProgressFn

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a job killed by it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


@contextmanager
def progress_bar(args: argparse.Namespace, description: str) -> Iterator[ProgressFn | None]:
    """A tqdm bar on stderr driven by a ``(fraction, message)`` callback; None when quiet or JSON.

    When stderr is not a terminal (a farm's log file), a bar's carriage-return redraws would pile
    up in the log; there a plain line is written instead, at most every
    :data:`LOG_PROGRESS_SECONDS` (so short jobs write none).
    """
    if args.quiet or args.json:
        yield None
        return
    if not _is_terminal(sys.stderr):
        yield _progress_lines(description)
        return
    from tqdm import tqdm

    bar = tqdm(
        total=1000,
        desc=description,
        unit="‰",
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
    )

    def update(fraction: float, message: str) -> None:
        bar.update(max(0, round(fraction * 1000) - bar.n))
        bar.set_postfix_str(message, refresh=False)

    try:
        yield update
    finally:
        bar.close()


LOG_PROGRESS_SECONDS = 30.0
"""How often :func:`progress_bar` writes a progress line into a log that is not a terminal."""


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _progress_lines(description: str) -> ProgressFn:
    """``description: 42% message`` lines on stderr, one per :data:`LOG_PROGRESS_SECONDS` at most."""
    import time

    last = time.monotonic()

    def update(fraction: float, message: str) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= LOG_PROGRESS_SECONDS:
            last = now
            tail = f" {message}" if message else ""
            print(f"{description}: {100 * fraction:.0f}%{tail}", file=sys.stderr, flush=True)

    return update


class _LineBar:
    """The part of tqdm's interface the long commands use (``n``, ``update``, ``set_postfix_str``,
    ``refresh``, ``close``, a context manager), as a plain line every :data:`LOG_PROGRESS_SECONDS`."""

    def __init__(self, total: float, desc: str) -> None:
        import time

        self.n: float = 0
        self.total = total
        self.desc = desc
        self.postfix = ""
        self._clock = time.monotonic
        self._last = time.monotonic()

    def update(self, k: float = 1) -> None:
        self.n += k
        self.refresh()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s
        if refresh:
            self.refresh()

    def refresh(self) -> None:
        now = self._clock()
        if now - self._last >= LOG_PROGRESS_SECONDS:
            self._last = now
            done = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g}"
            tail = f" {self.postfix}" if self.postfix else ""
            print(f"{self.desc}: {done}{tail}", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> _LineBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_bar(*, total: float, desc: str, disable: bool, **tqdm_options: Any) -> Any:
    """A tqdm bar on a terminal; in a log (stderr not a terminal) a :class:`_LineBar`."""
    from tqdm import tqdm

    if disable or _is_terminal(sys.stderr):
        return tqdm(total=total, desc=desc, disable=disable, file=sys.stderr, **tqdm_options)
    return _LineBar(total, desc)


def emit(args: argparse.Namespace, data: Any, text: str | None = None) -> None:
    """Print a result: JSON with ``--json``, else ``text`` unless ``--quiet``."""
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    elif text is not None and not args.quiet:
        print(text)


# --- material ----------------------------------------------------------------------------------

NAMES_LISTED = 5  # files named in the "not read" line of a folder batch (a photo folder's .xmp sidecars)


def _material_jobs(source: Path, outdir: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``(image, output folder)`` per image: a file, or every image in a folder (hidden files and
    macOS ``._`` resource forks left out), each in its own folder named after the image's stem;
    and the folder's other files, which are not read (``name (why)``).

    Names are unique and depend only on the folder's file names, so a rerun maps every image to
    the same folder: two files with the same stem (``rock.png``, ``rock.jpg``) get their full
    names (``rock_png``, ``rock_jpg``), and a name that is still taken (``rock_png.jpg`` beside
    them) gets ``-2``, ``-3``, ...
    """
    from mlvfx.io import is_image_file

    if source.is_dir():
        images, others = [], []
        for p in sorted(source.iterdir()):
            if p.name.startswith(".") or p.is_dir():
                continue
            if not p.is_file():
                others.append(f"{p.name} (a broken link)" if p.is_symlink() else f"{p.name} (not a file)")
            elif is_image_file(p):
                images.append(p)
            else:
                others.append(f"{p.name} ({p.suffix.lower() or 'no extension'})")
        if not images:
            raise ImageReadError("folder holds no PNG, JPEG, TIFF or EXR images", source)
        from collections import Counter

        stems = Counter(p.stem for p in images)  # a farm folder may hold tens of thousands
        wanted = [p.stem if stems[p.stem] == 1 else p.name.replace(".", "_") for p in images]
        taken: set[str] = set()
        jobs = []
        for image, name in zip(images, wanted, strict=True):
            unique, n = name, 1
            while unique.casefold() in taken:  # case-insensitive file systems (macOS, Windows shares)
                n += 1
                unique = f"{name}-{n}"
            taken.add(unique.casefold())
            jobs.append((image, outdir / unique))
        return jobs, others
    if not source.exists():
        raise ImageReadError("no such file or folder", source)
    return [(source, outdir)], []


def _material_done(outdir: Path, maps: Sequence[str]) -> bool:
    """Whether ``outdir`` already holds every file these maps write (a finished material folder:
    :func:`~mlvfx.ops.material.write_material` places all of its files or none)."""
    from mlvfx.ops.material import output_files

    return all((outdir / name).is_file() for name in output_files(maps))


def _skipped_differs(outdir: Path, wanted: dict[str, Any]) -> str | None:
    """How a finished folder that ``--skip-existing`` keeps was made otherwise than this run would
    make it (another model, method or setting), or None. A batch resumed after an upgrade kept its
    older folders unsaid, so one batch held two models' maps (an upgrade audit)."""
    from mlvfx.ops.material import META_FILE

    try:
        meta = json.loads((outdir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no record to compare (an older or foreign folder): kept as before
    if not isinstance(meta, dict):
        return None
    differs = [
        f"{key} {meta.get(key)} (this run: {value})"
        for key, value in wanted.items()
        if key in meta and value is not None and meta.get(key) != value  # relief: material.json has relief_px
    ]
    relief = wanted.get("relief")
    size = max(meta.get("width") or 0, meta.get("height") or 0)
    if relief is not None and meta.get("method") == "classical" and size and "relief_px" in meta:
        earlier = float(meta["relief_px"]) / size  # material.json keeps it in pixels
        if abs(earlier - relief) > 1e-6 * max(relief, 1e-12):
            differs.append(f"relief {earlier:g} (this run: {relief:g})")
    return ", ".join(differs) or None


def _run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What this material run records in ``material.json``, for :func:`_skipped_differs`."""
    wanted: dict[str, Any] = {
        "method": args.method,
        "normal_convention": args.normal_convention,
        "tileable": args.tileable,
        "relief": args.relief if args.method == "classical" else None,
    }
    if args.method == "learned":
        from mlvfx import zoo
        from mlvfx.ops.material import LEARNED_MODEL, learned_model_version

        wanted["quality"] = args.quality
        try:
            version = zoo.load_manifest().get(LEARNED_MODEL, learned_model_version(args.model)).version
        except MlvfxError:
            version = None  # the run itself says why the model cannot be had
        wanted["model"] = f"{LEARNED_MODEL}@{version}" if version else None
    return wanted


def cmd_material(args: argparse.Namespace) -> int:
    from mlvfx.errors import ModelError
    from mlvfx.ops.material import check_options, material_from_file, parse_maps

    maps = parse_maps(args.maps)
    check_options(args.method, args.normal_convention, args.relief, args.quality)  # once, not per image
    if args.method == "learned":
        from mlvfx.ops.material import learned_model_version

        learned_model_version(args.model)  # a malformed reference fails before the first image
    if args.skip_existing and args.overwrite:
        raise InputError("--skip-existing and --overwrite exclude each other")
    if args.quality == "high" and args.method == "classical" and not (args.json or args.quiet):
        print("mlvfx: note: --quality high applies to the learned method only; ignored", file=sys.stderr)
    jobs, others = _material_jobs(Path(args.input), Path(args.output))
    checked = len(jobs) < 2  # a batch checks its output folder before its first image is computed
    if others and not args.json:
        listed = ", ".join(others[:NAMES_LISTED]) + (", ..." if len(others) > NAMES_LISTED else "")
        print(
            f"mlvfx: not read, {len(others)} file(s) that are not PNG, JPEG, TIFF or EXR images: {listed}",
            file=sys.stderr,
        )
    results: list[dict[str, Any]] = []
    failures = skipped = 0
    wanted = _run_settings(args) if args.skip_existing else {}
    try:
        for index, (image, outdir) in enumerate(jobs, start=1):
            label = image.name if len(jobs) == 1 else f"[{index}/{len(jobs)}] {image.name}"
            if args.skip_existing and _material_done(outdir, maps):
                skipped += 1
                differs = _skipped_differs(outdir, wanted)
                results.append(
                    {"input": str(image), "output": str(outdir), "skipped": True, "differs": differs}
                )
                if differs and not (args.json or args.quiet):
                    print(
                        f"mlvfx: warning: {outdir}/ kept (--skip-existing) but made with {differs}; "
                        "remake it with --overwrite",
                        file=sys.stderr,
                    )
                elif not args.json and not args.quiet:
                    print(f"{image} -> {outdir}/ (done already, skipped)")
                continue
            if not checked:  # not before skipped folders: a finished batch on a read-only disk is fine
                from mlvfx.io.atomic import check_folder_writable

                check_folder_writable(Path(args.output))  # before hours of a batch, not after each image
                checked = True
            try:
                with progress_bar(args, label) as progress:
                    written = material_from_file(
                        image,
                        outdir,
                        maps,
                        tileable=args.tileable,
                        normal_convention=args.normal_convention,
                        method=args.method,
                        relief=args.relief,
                        quality=args.quality,
                        model=args.model,
                        overwrite=args.overwrite,
                        progress=progress,
                    )
            except (Cancelled, ModelError):
                raise  # the model cannot be had: every other image would fail the same way
            except (MlvfxError, MemoryError, RuntimeError) as exc:
                if not isinstance(exc, MlvfxError):
                    if not out_of_memory(exc):
                        raise
                    exc = OutOfMemoryError("out of memory for this image (try a smaller image)", image)
                if len(jobs) == 1:
                    raise exc from None
                failures += 1
                results.append(
                    {"input": str(image), "error": cli_text(exc), "error_type": type(exc).__name__}
                )
                if not args.json:
                    print(f"mlvfx: error: {cli_text(exc)}", file=sys.stderr)
                continue
            files = {k: str(v) for k, v in written.items()}
            results.append({"input": str(image), "output": str(outdir), "files": files})
            if not args.json and not args.quiet:
                print(f"{image} -> {outdir}/ ({', '.join(sorted(p.name for p in written.values()))})")
    except BaseException as exc:
        # Interrupted, or stopped by an error every image would hit: what is finished is on disk,
        # and --json still says which images those are before the error line on stderr.
        if args.json and len(jobs) > 1:
            error = {"error": str(exc) or "interrupted", "error_type": type(exc).__name__}
            emit(
                args,
                {
                    "results": results,
                    "failed": failures,
                    "skipped": skipped,
                    "not_read": others,
                    "stopped": error,
                },
            )
            args.json_emitted = True
        raise
    if args.json:
        emit(args, {"results": results, "failed": failures, "skipped": skipped, "not_read": others})
    if failures:
        print(f"mlvfx: {failures} of {len(jobs)} images failed", file=sys.stderr)
        return EXIT_ERROR
    return 0


# --- info --------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    """Describe each file; a file that cannot be read gets its error line and the rest still print."""
    from mlvfx.io import describe
    from mlvfx.io.image import ORIENTATIONS

    def described(path: str) -> dict[str, Any]:
        try:
            return describe(path).as_dict()
        except MemoryError:  # named with its file, and the other files still described (an audit)
            raise OutOfMemoryError("out of memory reading it (try a smaller image)", path) from None

    if len(args.inputs) == 1:
        entries: list[dict[str, Any]] = [described(args.inputs[0])]  # one file: its error is the command's
    else:
        entries = []
        for path in args.inputs:
            try:
                entries.append(described(path))
            except MlvfxError as exc:
                entries.append({"path": str(path), "error": str(exc), "error_type": type(exc).__name__})
    failures = sum("error" in e for e in entries)
    if args.json:
        emit(args, entries if len(entries) > 1 else entries[0])
    else:
        for e in entries:
            if "error" in e:
                print(f"mlvfx: error: {e['error']}", file=sys.stderr)
                continue
            alpha = " (with alpha)" if e["has_alpha"] else ""  # alpha is one of the channels counted
            turned = e["orientation"]
            shown = f", orientation tag {turned} applied ({ORIENTATIONS[turned]})" if turned != 1 else ""
            if e.get("icc_profile"):
                shown += f", ICC profile {e['icc_profile']}"
            if e.get("colour_note"):
                shown += f", {e['colour_note']}"
            emit(
                args,
                None,
                f"{e['path']}: {e['format'].upper()} {e['width']}x{e['height']}, "
                f"{e['channels']} channel(s){alpha}, {e['bit_depth']}-bit {e['sample']}{shown}",
            )
    if failures:
        print(f"mlvfx: {failures} of {len(entries)} files could not be read", file=sys.stderr)
        return EXIT_ERROR
    return 0


# --- demo --------------------------------------------------------------------------------------


def _fresh_folder(base: Path) -> Path:
    """``base`` if it does not exist yet, else ``base-1``, ``base-2``, ..., created here so that
    two demos started together get a folder each (nothing is overwritten)."""
    from mlvfx.errors import ImageWriteError
    from mlvfx.io.atomic import make_folder, why_not

    make_folder(base.parent)
    candidate, n = base, 0
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        except OSError as exc:  # a read-only working folder, say
            why = why_not(candidate.parent, exc)
            raise ImageWriteError(f"cannot create the demo folder: {why}", candidate) from None


def cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from mlvfx.io import read_image, write_image
    from mlvfx.ops.material import material_from_file
    from mlvfx.ops.texture import make_tileable
    from mlvfx.samples import sample_photo

    photo = sample_photo()
    root = _fresh_folder(Path(args.output))
    outdir = root / "material"
    with progress_bar(args, "material from photo") as progress:
        written = material_from_file(
            photo, outdir, maps="normal,height,albedo,roughness,ao", method=args.method, progress=progress
        )
    with progress_bar(args, "seamless tile") as progress:
        pixels, _ = read_image(photo, kind="color")
        seamless = make_tileable(pixels, seed=0, progress=progress)
        assert isinstance(seamless, np.ndarray)  # an array in, an array out (a dict gives a dict)
        written["seamless"] = write_image(root / "seamless.png", seamless, kind="color")
    with progress_bar(args, "smoke") as progress:
        smoke_files, smoke_solver = _demo_smoke(root / "smoke", progress)
    emit(
        args,
        {
            "input": str(photo),
            "output": str(root.resolve()),
            "files": {k: str(v) for k, v in written.items()},
            "smoke": {"solver": smoke_solver, "files": smoke_files},
        },
        f"demo: material maps and a seamless tile from {photo}, and a short smoke shot ({smoke_solver})\n"
        + "\n".join(f"  {name:<10} {path.resolve()}" for name, path in written.items())
        + f"\n  {'smoke':<10} {(root / 'smoke').resolve()} ({len(smoke_files)} files)"
        + f"\noutputs are in {root.resolve()}",
    )
    return 0


def _demo_smoke(outdir: Path, progress: ProgressFn | None) -> tuple[list[str], str]:
    """24 frames of the canonical 3D plume: the zoo's surrogate at 64^3, else the reference at 32^3."""
    from mlvfx.errors import ModelNotFound
    from mlvfx.fluids.cli import write_shot
    from mlvfx.fluids.reference import Stepper
    from mlvfx.fluids.scenarios import make_scenario
    from mlvfx.fluids.surrogate import INFERENCE_OPEN_INFLOW, load_stepper
    from mlvfx.io.volume import openvdb_module

    names = [f"frame_{i:04d}" for i in range(1, 25)]
    try:
        scenario = make_scenario("plume", 3, 64)
        stepper: Any = load_stepper("smoke3d", scenario.config)
        solver = "learned surrogate smoke3d, 64^3"
    except ModelNotFound:
        scenario = make_scenario("plume", 3, 32)
        stepper = Stepper(replace(scenario.config, open_inflow=INFERENCE_OPEN_INFLOW))
        solver = "reference solver, 32^3 (no smoke3d model in the zoo)"
    vdb = openvdb_module() is not None
    files, _ = write_shot(stepper, scenario, names, outdir, vdb=vdb, progress=progress)
    return files, solver


# --- parser ------------------------------------------------------------------------------------


_usage = threading.local()  # the usage error of the parse running on this thread


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its subcommands' parsers are of the same class) that remembers its usage
    error, so that ``--json`` gets its error document for those too."""

    def error(self, message: str) -> NoReturn:
        _usage.message = message
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars or messages"
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one machine-readable JSON document on stdout",
    )
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    parser: argparse.ArgumentParser = _Parser(
        prog="mlvfx",
        description="Machine-learning operators for VFX and texture artists.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"mlvfx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "material",
        parents=[common],
        help="photo -> material maps (normal, height, albedo, ...)",
        description="Compute aligned material maps from a photo, or from every image in a folder "
        "(one output folder per image).",
    )
    p.add_argument("input", help="an image file, or a folder of images")
    p.add_argument("-o", "--output", required=True, type=output_path, help="output folder")
    p.add_argument(
        "--method",
        choices=("classical", "learned"),
        default="learned",
        help="learned (the zoo's model, fetched on first use) or classical (fast, no model); "
        "default: learned",
    )
    p.add_argument(
        "--quality",
        choices=("standard", "high"),
        default="standard",
        help="high: the learned model also sees the photo turned and mirrored (8 views) and averages "
        "them; about 6x slower, slightly more accurate (default: standard)",
    )
    p.add_argument(
        "--model",
        metavar="material@VERSION",
        default=None,
        help="pin the learned model's version, e.g. material@0.7.0, so a newer zoo model does not "
        "change a show's maps (default: MLVFX_MATERIAL_MODEL, else the newest)",
    )
    p.add_argument(
        "--maps",
        default="normal,height,albedo,roughness",
        help="comma-separated: normal,height,albedo,roughness,ao (default: all but ao)",
    )
    p.add_argument("--tileable", action="store_true", help="the photo tiles; make the maps tile too")
    p.add_argument(
        "--normal-convention",
        choices=("opengl", "directx"),
        default="opengl",
        help="normal map Y direction (default: opengl, +Y up)",
    )
    p.add_argument(
        "--relief",
        type=float,
        default=0.01,
        help="classical: relief depth as a fraction of the image size (default: 0.01); learned: not "
        "used, the network predicts the relief (material.json's height_scale_px)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave images whose output folder already holds every requested map (resume a batch)",
    )
    p.set_defaults(func=cmd_material)

    p = sub.add_parser(
        "info",
        parents=[common],
        help="describe image files",
        description="Read and validate image files and describe them.",
    )
    p.add_argument("inputs", nargs="+", help="image files")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="run the main job on the bundled sample photo",
        description="The bundled sample photo becomes a material folder and a seamless tile, and a "
        "24-frame 3D smoke shot runs on the zoo's learned surrogate.",
    )
    p.add_argument(
        "-o",
        "--output",
        default="mlvfx-demo",
        type=output_path,
        help="output folder (a numbered sibling is used if it exists; default: ./mlvfx-demo)",
    )
    p.add_argument(
        "--method",
        choices=("classical", "learned"),
        default="learned",
        help="learned or classical (default: learned)",
    )
    p.set_defaults(func=cmd_demo)

    for register in _plugins():
        register(sub)
    from mlvfx.texture import cli as texture_cli

    texture_cli.add_eval_texture_parser(_subcommands(sub.choices["eval"]))
    _add_common_flags(parser)
    return parser


def _plugins() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Subcommand groups that live beside their code (zoo, data, eval, texture, smoke)."""
    from mlvfx.data import cli as data_cli
    from mlvfx.eval import cli as eval_cli
    from mlvfx.fluids import cli as smoke_cli
    from mlvfx.texture import cli as texture_cli
    from mlvfx.train import cli as train_cli
    from mlvfx.zoo import cli as zoo_cli

    return [
        zoo_cli.register,
        data_cli.register,
        eval_cli.register,
        texture_cli.register,
        smoke_cli.register,
        train_cli.register,
    ]


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(f"{parser.prog} has no subcommands")


def _add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Accept --quiet/--json/--debug at every level (``mlvfx zoo list --json``), not only first."""
    have = {opt for action in parser._actions for opt in action.option_strings}
    for flags, text in (
        (("-q", "--quiet"), "no progress bars or messages"),
        (("--json",), "print one machine-readable JSON document on stdout"),
        (("--debug",), "show tracebacks on errors"),
    ):
        if not have.intersection(flags):
            parser.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=text)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_common_flags(child)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a farm scheduler or ``kill`` cancelling the job) or SIGHUP (the terminal or SSH
    session closing), raised like Ctrl-C so that the same clean-up runs: temp files removed,
    nothing half written, finished results reported, a training run checkpointed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: Any) -> None:
    import signal

    if signum == getattr(signal, "SIGHUP", None):
        # The terminal is gone: writing to it raises EIO, which turned the clean stop into a
        # traceback and exit 1 (a review). Messages from here on go nowhere; the run still stops
        # cleanly (a training run checkpoints) and exits 129.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            for fd in (1, 2):
                with contextlib.suppress(OSError):
                    os.dup2(devnull, fd)
            os.close(devnull)
    raise Terminated(signum)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the command runs, SIGTERM and SIGHUP raise :class:`Terminated` (each left alone if a
    host set a handler, or ``nohup`` ignores it)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # SIGHUP: POSIX; SIGBREAK: Windows, where a job manager's Ctrl-Break is the only cancel a
    # process sees before it is killed outright (TerminateProcess sends no signal at all).
    wanted = [signal.SIGTERM] + [getattr(signal, n) for n in ("SIGHUP", "SIGBREAK") if hasattr(signal, n)]
    taken = {sig: signal.getsignal(sig) for sig in wanted if signal.getsignal(sig) is signal.SIG_DFL}
    for sig in taken:
        signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, previous in taken.items():
            signal.signal(sig, previous)


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_output()
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    _usage.message = None
    try:
        args = parser.parse_args(words)
    except SystemExit as stop:  # argparse has printed usage and message on stderr
        message = getattr(_usage, "message", None)
        if stop.code == EXIT_USAGE and message and "--json" in words[: _end_of_options(words)]:
            error = {"error": message, "error_type": "UsageError", "exit_code": EXIT_USAGE}
            print(json.dumps(error, indent=2))
        raise
    for flag in ("quiet", "json", "debug"):
        if not hasattr(args, flag):
            setattr(args, flag, False)
    from mlvfx.config import env_flag

    debug = args.debug or env_flag("MLVFX_DEBUG", strict=False)  # it decides how errors are shown
    try:
        with _sigterm_as_interrupt():
            return _run(args, debug)
    except BrokenPipeError as exc:
        if not _stdout_closed():
            return _internal_error(args, exc, debug)  # some other pipe: a real error
        # stdout was closed early (``mlvfx zoo list | head``): stop quietly, as a shell tool does,
        # and point fd 1 at /dev/null so the interpreter's own flush at exit does not complain.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, sys.stdout.fileno())
            finally:
                os.close(devnull)
        return EXIT_BROKEN_PIPE


def _tolerant_output() -> None:
    """A file name the console's code page cannot show (a redirected stdout on Windows uses the
    ANSI code page, cp1252 say) is printed escaped instead of failing the finished command."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", "strict") == "strict":
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def _end_of_options(words: list[str]) -> int:
    return words.index("--") if "--" in words else len(words)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader is gone (poll reports an error on it)."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    if not hasattr(select, "poll"):  # Windows: cannot tell, and a closed stdout is the usual cause
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _run(args: argparse.Namespace, debug: bool) -> int:
    try:
        code: int = args.func(args)
        return code
    except Terminated as stop:
        import signal

        if stop.signum == signal.SIGTERM:
            return _fail(args, "terminated", None, EXIT_TERMINATED)
        said = (
            "hung up (the terminal closed)" if stop.signum == getattr(signal, "SIGHUP", None) else "cancelled"
        )
        return _fail(args, said, stop, 128 + stop.signum)
    except KeyboardInterrupt:
        return _fail(args, "interrupted", None, EXIT_INTERRUPTED)
    except Cancelled as exc:
        return _fail(args, str(exc), exc, EXIT_INTERRUPTED)
    except BrokenPipeError:
        raise
    except InputError as exc:
        if debug:
            traceback.print_exc()
        return _fail(args, f"error: {cli_text(exc)}", exc, EXIT_USAGE)
    except MlvfxError as exc:
        if debug:
            traceback.print_exc()
        return _fail(args, f"error: {cli_text(exc)}", exc, EXIT_ERROR)
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            return _internal_error(args, exc, debug)
        if debug:
            traceback.print_exc()
        return _fail(args, "error: out of memory (try a smaller image, size or resolution)", exc, EXIT_ERROR)
    except Exception as exc:  # the last line of defence: one line, not a traceback
        return _internal_error(args, exc, debug)


def cli_text(exc: BaseException) -> str:
    """An error as a command-line user reads it: the Python API's ``overwrite=True`` left out."""
    return str(exc).replace("pass overwrite=True or --overwrite", "use --overwrite")


def _fail(args: argparse.Namespace, message: str, exc: BaseException | None, code: int) -> int:
    """Print ``mlvfx: <message>`` on stderr; with ``--json`` also one JSON document on stdout
    (``error``, ``error_type``, ``exit_code``), unless the command already printed its own."""
    print(f"mlvfx: {message}", file=sys.stderr)
    if args.json and not getattr(args, "json_emitted", False):
        kind = type(exc).__name__ if exc is not None else message.capitalize()
        text = message.removeprefix("error: ")
        try:
            print(json.dumps({"error": text, "error_type": kind, "exit_code": code}, indent=2))
        except BrokenPipeError:
            pass
    return code


def _internal_error(args: argparse.Namespace, exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    detail = str(exc).splitlines()[0] if str(exc) else ""
    message = f"internal error: {type(exc).__name__}: {detail} (run with --debug for details)"
    return _fail(args, message, exc, EXIT_ERROR)


if __name__ == "__main__":
    sys.exit(main())
