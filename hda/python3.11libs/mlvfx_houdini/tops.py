"""The TOP nodes: ``mlvfx::Top/material_from_photo::1.0`` and ``mlvfx::Top/texture_synth::1.0``.

Each HDA wraps one Python Processor whose callbacks are one-liners into this module:

* ``onGenerate``: ``mlvfx_houdini.tops.generate(self, item_holder, upstream_items, "material")``
  makes one work item per input image (per variation for ``grow``). Each item carries its job as
  string attributes and, unless "Cook In Process" is on, a command line: the mlvfx CLI run by
  whatever scheduler the network uses (local, HQueue, Deadline, Tractor...). That is what lets a
  TOP network spread a thousand photos over a farm.
* ``onCookTask``: ``mlvfx_houdini.tops.cook_task(self, work_item)`` runs an in-process item in the
  Houdini session by calling the core directly (material) or the CLI entry point (texture).

Everything that decides *what* runs (input discovery, output paths, command lines) is a plain
function of strings and lists, tested without Houdini. The PDG objects are only touched through
the small protocols below.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from mlvfx_houdini._core import require_core

require_core("pdg")  # one line on the node, not a traceback, when the venv is missing

from mlvfx.errors import InputError, MlvfxError

__all__ = [
    "KINDS",
    "MATERIAL_PARMS",
    "TEXTURE_PARMS",
    "Job",
    "command_line",
    "cook_task",
    "generate",
    "image_inputs",
    "material_jobs",
    "texture_jobs",
]

KINDS = ("material", "texture")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr")
TEXTURE_OPS = ("tile", "grow", "paint")
PYTHON_TOKEN = "__PDG_PYTHON__"  # noqa: S105 - PDG replaces it with the scheduler's Python on each machine
ATTRIB_JOB = "mlvfx_job"
ATTRIB_INPUT = "mlvfx_input"
ATTRIB_OUTPUT = "mlvfx_output"
ATTRIB_ARGS = "mlvfx_args"
# The job's argv is kept as a JSON list in one string attribute: a separator character (the unit
# separator was used) is legal in a file name, which could then add flags such as --overwrite.

# Parameters each node's callbacks read (on the inner Python Processor, channel-referenced to the
# HDA's own parameters). tests/test_hou_hda.py checks they exist in both places.
COMMON_PARMS = ("source", "files", "tag", "outdir", "overwrite", "inprocess")
MATERIAL_PARMS = (*COMMON_PARMS, "maps", "method", "quality", "tileable", "normal_convention", "relief")
TEXTURE_PARMS = (*COMMON_PARMS, "operation", "width", "height", "seed", "count", "exemplars", "equalize")

_SAFE_ARG = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


class _Port(Protocol):
    def evaluateString(self, *args: Any) -> str: ...


class _Node(Protocol):
    def __getitem__(self, name: str) -> _Port: ...


class _File(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def tag(self) -> str: ...


class _WorkItem(Protocol):
    def setStringAttrib(self, name: str, value: str) -> None: ...
    def stringAttribValue(self, name: str) -> str | None: ...


class _Holder(Protocol):
    def addWorkItem(self, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Job:
    """One work item: the CLI arguments (after ``mlvfx``), its input and its output path."""

    args: tuple[str, ...]
    input: str
    output: str
    output_is_dir: bool


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def image_inputs(files: Iterable[tuple[str, str]], tag: str, custom: str) -> list[str]:
    """The image paths a node works on.

    Args:
        files: ``(path, tag)`` of the upstream work item's output files.
        tag: keep only files whose tag starts with this (empty: any image by extension).
        custom: a file or folder path typed on the node; used when there are no upstream files.

    Returns:
        image paths, in order, without duplicates.

    Raises:
        InputError: a custom folder holds no image, or a custom path does not exist.
    """
    chosen: list[str] = []
    for path, file_tag in files:
        if (tag and file_tag.startswith(tag)) or (not tag and _is_image(path)):
            if path not in chosen:
                chosen.append(path)
    if chosen or not custom:
        return chosen
    src = Path(custom).expanduser()
    if src.is_dir():
        images = sorted(str(p) for p in src.iterdir() if p.is_file() and _is_image(p.name))
        if not images:
            raise InputError(f"folder {src} holds no PNG, JPEG, TIFF or EXR images")
        return images
    if not src.is_file():
        raise InputError(f"no such file or folder: {src}")
    return [str(src)]


def _not_a_flag(path: str) -> str:
    """A relative path that starts with ``-`` (``-o.png``) would be read as a CLI option: ``./-o.png``."""
    return os.path.join(".", path) if path.startswith("-") else path


def _unique_stem(path: str, taken: set[str]) -> str:
    """``path``'s stem, numbered past the names ``taken`` holds (compared without case: ``Rock`` and
    ``rock`` are one folder on Windows and macOS)."""
    stem = Path(path).stem or "image"
    name, n = stem, 2
    while name.casefold() in taken:
        name, n = f"{stem}_{n}", n + 1
    taken.add(name.casefold())
    return name


def material_jobs(
    inputs: Sequence[str],
    outdir: str,
    *,
    maps: str = "normal,height,albedo,roughness",
    method: str = "learned",
    quality: str = "standard",
    tileable: bool = False,
    normal_convention: str = "opengl",
    relief: float = 0.01,
    overwrite: bool = False,
) -> list[Job]:
    """One ``mlvfx material`` job per image, each writing the folder ``outdir/<image stem>``."""
    from mlvfx.ops.material import parse_maps

    if not outdir:
        raise InputError("set an output folder")
    if method not in ("classical", "learned"):
        raise InputError(f"method must be classical or learned, got {method!r}")
    if quality not in ("standard", "high"):
        raise InputError(f"quality must be standard or high, got {quality!r}")
    if normal_convention not in ("opengl", "directx"):
        raise InputError(f"normal convention must be opengl or directx, got {normal_convention!r}")
    wanted = ",".join(parse_maps(maps))
    taken: set[str] = set()
    jobs: list[Job] = []
    for image in map(_not_a_flag, inputs):
        out = os.path.join(outdir, _unique_stem(image, taken))
        args = ["material", image, "-o", out, "--maps", wanted, "--method", method, "--quality", quality]
        args += ["--normal-convention", normal_convention, "--relief", repr(float(relief))]
        args += ["--tileable"] if tileable else []
        args += ["--overwrite"] if overwrite else []
        jobs.append(Job(tuple(args), image, out, True))
    return jobs


def parse_exemplars(text: str) -> list[tuple[str, str]]:
    """``label=path`` pairs, one per line or separated by ``;`` (e.g. ``#ff0000=rock/``)."""
    pairs: list[tuple[str, str]] = []
    for raw in re.split(r"[;\n]", text):
        entry = raw.strip()
        if not entry:
            continue
        label, sep, path = entry.partition("=")
        if not sep or not label.strip() or not path.strip():
            raise InputError(f"exemplar {entry!r} must look like LABEL=PATH, e.g. #ff0000=rock.png")
        pairs.append((label.strip(), path.strip()))
    return pairs


def texture_jobs(
    inputs: Sequence[str],
    outdir: str,
    *,
    operation: str,
    size: tuple[int, int] = (1024, 1024),
    seed: int = 0,
    count: int = 1,
    exemplars: str = "",
    overwrite: bool = False,
    equalize: bool = False,
) -> list[Job]:
    """``mlvfx texture`` jobs: tile one file per input, grow ``count`` variations, or paint.

    ``equalize`` (tile only) divides out large-scale lighting first (``texture tile --equalize``).

    For ``paint`` each input is a label map and ``exemplars`` gives its ``LABEL=PATH`` slots.
    Output names: ``<stem>_tile.png``, ``<stem>_grow_<seed>/`` and ``<stem>_paint.png`` (a folder,
    ``<stem>_paint/``, when the exemplars are material folders).
    """
    if operation not in TEXTURE_OPS:
        raise InputError(f"operation must be one of {', '.join(TEXTURE_OPS)}, got {operation!r}")
    if not outdir:
        raise InputError("set an output folder")
    if count < 1:
        raise InputError(f"count must be at least 1, got {count}")
    width, height = size
    if width < 1 or height < 1:
        raise InputError(f"size must be positive, got {width}x{height}")
    pairs = parse_exemplars(exemplars) if operation == "paint" else []
    if operation == "paint" and not pairs:
        raise InputError("paint needs at least one exemplar (LABEL=PATH)")
    taken: set[str] = set()
    jobs: list[Job] = []
    for image in map(_not_a_flag, inputs):
        stem = _unique_stem(image, taken)
        extra = ["--overwrite"] if overwrite else []
        if operation == "tile":
            out = os.path.join(outdir, f"{stem}_tile.png")
            flat = ["--equalize"] if equalize else []
            jobs.append(Job(("texture", "tile", image, *flat, "-o", out, *extra), image, out, False))
        elif operation == "grow":
            for variation in range(count):
                s = seed + variation
                out = os.path.join(outdir, f"{stem}_grow_{s}")
                grow = ("texture", "grow", image, "--size", f"{width}x{height}", "--seed", str(s))
                jobs.append(Job((*grow, "-o", out, *extra), image, out, True))
        else:
            # Material folders as exemplars paint every map into a folder; images, one image.
            folders = [os.path.isdir(path) or path.endswith(("/", os.sep)) for _, path in pairs]
            if any(folders) and not all(folders):
                raise InputError("paint exemplars must be all images or all material folders")
            as_folder = all(folders)
            out = os.path.join(outdir, f"{stem}_paint" if as_folder else f"{stem}_paint.png")
            slots = [a for label, path in pairs for a in ("--exemplar", f"{label}={path}")]
            args = ("texture", "paint", image, *slots, "--seed", str(seed), "-o", out, *extra)
            jobs.append(Job(args, image, out, as_folder))
    return jobs


def _quote(arg: str) -> str:
    if _SAFE_ARG.match(arg):
        return arg
    if any(c in arg for c in '"\n$`'):
        raise InputError(
            f"argument {arg!r} contains a quote, newline, $ or backtick, which a farm command cannot carry"
        )
    trailing = len(arg) - len(arg.rstrip("\\"))
    return f'"{arg}' + "\\" * trailing + '"'  # a backslash before the closing quote is doubled


def command_line(job: Job, python: str = PYTHON_TOKEN) -> str:
    """The work item's command: ``<python> -m mlvfx.entry <args> --quiet``, quoted for a scheduler
    (``mlvfx.entry``: the console script, Ctrl-C while importing included; older cores have it too).

    Arguments with spaces are double-quoted (POSIX shells and Windows both accept that); one
    with a double quote or newline is refused rather than mangled.
    """
    argv = (
        [*job.args[:1], "--quiet", *job.args[1:]]
        if job.args[:1] != ("texture",)
        else [*job.args[:2], "--quiet", *job.args[2:]]
    )
    return " ".join([python, "-m", "mlvfx.entry", *(_quote(a) for a in argv)])


def _read(node: _Node) -> Callable[[str], str]:
    """A getter of the node's parameters as text.

    The inner Python Processor's spare parameters are strings holding backtick expressions
    (`` `chs("../outdir")` ``, `` `ch("../seed")` ``) that reference the HDA's parameters, so every
    value arrives as text and is converted here.
    """

    def value(name: str) -> str:
        return str(node[name].evaluateString()).strip()

    return value


def _int(value: Callable[[str], str], name: str) -> int:
    raw = value(name)
    try:
        return int(float(raw))
    except ValueError:
        raise InputError(f"{name} must be a whole number, got {raw!r}") from None


def _float(value: Callable[[str], str], name: str) -> float:
    raw = value(name)
    try:
        return float(raw)
    except ValueError:
        raise InputError(f"{name} must be a number, got {raw!r}") from None


def jobs_from_parms(value: Callable[[str], str], kind: str, inputs: Sequence[str]) -> list[Job]:
    """The jobs for ``inputs`` from the node's parameters (``value(name)`` returns text)."""
    outdir = value("outdir")
    overwrite = _int(value, "overwrite") != 0
    if kind == "material":
        return material_jobs(
            inputs,
            outdir,
            maps=value("maps"),
            method=value("method"),
            quality=value("quality") or "standard",
            tileable=_int(value, "tileable") != 0,
            normal_convention=value("normal_convention"),
            relief=_float(value, "relief"),
            overwrite=overwrite,
        )
    return texture_jobs(
        inputs,
        outdir,
        operation=value("operation"),
        size=(_int(value, "width"), _int(value, "height")),
        seed=_int(value, "seed"),
        count=_int(value, "count"),
        exemplars=value("exemplars"),
        overwrite=overwrite,
        equalize=_int(value, "equalize") != 0,
    )


def _upstream_files(item: Any) -> list[tuple[str, str]]:
    """``(path, tag)`` of an upstream item's output files, or of the files it is expected to write
    when it has not cooked yet (a ROP or an mlvfx TOP upstream, generated statically): the item
    made here is its child, so PDG cooks it after them."""
    for names in (("outputFiles", "resultData"), ("expectedOutputFiles", "expectedResultData")):
        files = None
        for name in names:  # Houdini < 20 called them result data
            files = getattr(item, name, None)
            if files is not None:
                break
        typed: Iterable[_File] = files or ()
        found = [(str(f.path), str(f.tag)) for f in typed]
        if found:
            return found
    return []


@contextlib.contextmanager
def _cook_errors() -> Generator[None, None, None]:
    """mlvfx errors leave as ``pdg.CookError``, which PDG shows as one line on the node (any
    other exception shows as a Python traceback). Outside PDG they pass unchanged."""
    try:
        yield
    except MlvfxError as exc:
        try:
            pdg: Any = importlib.import_module("pdg")
        except ImportError:
            raise exc from None
        cook_error = getattr(pdg, "CookError", None)
        if cook_error is None:
            raise
        raise cook_error(str(exc)) from None


def generate(node: _Node, item_holder: _Holder, upstream_items: Sequence[Any], kind: str) -> None:
    """``onGenerate`` of both TOPs: one work item per job (see module docstring).

    With Source = "Upstream Output Files" each upstream item's image outputs (filtered by the
    tag) become jobs, parented to it; with "Custom Files" the path (a file or folder) does.

    Raises:
        pdg.CookError: bad parameters or no input (an ``InputError`` outside PDG); PDG shows the
            message on the node.
    """
    with _cook_errors():
        _generate(node, item_holder, upstream_items, kind)


def _generate(node: _Node, item_holder: _Holder, upstream_items: Sequence[Any], kind: str) -> None:
    if kind not in KINDS:
        raise InputError(f"unknown mlvfx TOP kind {kind!r}")
    value = _read(node)
    in_process = _int(value, "inprocess") != 0
    if _int(value, "source") == 1:
        batches: list[tuple[Any, list[str]]] = [(None, image_inputs([], "", value("files")))]
    elif upstream_items:
        tag = value("tag")
        batches = [(item, image_inputs(_upstream_files(item), tag, "")) for item in upstream_items]
    else:
        raise InputError(
            "connect a node that outputs images (e.g. File Pattern), or set Source to Custom Files"
        )
    if not any(inputs for _, inputs in batches):
        tag = value("tag")
        if _int(value, "source") == 1:
            raise InputError("Source is Custom Files and Files is empty: set an image or a folder of images")
        raise InputError(
            f"the {len(batches)} upstream work item(s) have no image output files"
            + (f" tagged {tag!r}" if tag else "")
            + ": check the upstream node's outputs or clear the Tag filter"
        )
    for parent, inputs in batches:
        for job in jobs_from_parms(value, kind, inputs):
            item = _add_item(item_holder, parent, in_process)
            item.setStringAttrib(ATTRIB_JOB, kind)
            item.setStringAttrib(ATTRIB_INPUT, job.input)
            item.setStringAttrib(ATTRIB_OUTPUT, job.output)
            item.setStringAttrib(ATTRIB_ARGS, json.dumps(list(job.args)))
            if not in_process:
                item.setCommand(command_line(job))
            _expect_output(item, job)


def _add_item(holder: _Holder, parent: Any, in_process: bool) -> Any:
    pdg: Any = importlib.import_module("pdg")  # only inside Houdini/PDG; no type stubs exist

    cook_type = pdg.workItemCookType.InProcess if in_process else pdg.workItemCookType.OutOfProcess
    if parent is None:
        return holder.addWorkItem(cookType=cook_type)
    return holder.addWorkItem(parent=parent, cookType=cook_type)


def _expect_output(item: Any, job: Job) -> None:
    tag = "file/directory" if job.output_is_dir else "file/image"
    add = getattr(item, "addExpectedOutputFile", None) or getattr(item, "addExpectedResultData", None)
    if add is not None:
        add(job.output, tag)


def _add_output(item: Any, path: str, tag: str) -> None:
    add = getattr(item, "addOutputFile", None)
    if add is not None:
        add(path, tag)
    else:
        item.addResultData(path, tag, 0)


def output_files(output: str, output_is_dir: bool) -> list[tuple[str, str]]:
    """``(path, tag)`` of what a finished job wrote: the file, or each file in the folder."""
    path = Path(output)
    if not output_is_dir:
        return [(str(path), "file/image")] if path.is_file() else []
    if not path.is_dir():
        return []
    out: list[tuple[str, str]] = []
    for f in sorted(path.iterdir()):
        if f.is_file():
            out.append(
                (
                    str(f),
                    "file/image" if _is_image(f.name) else "file/json" if f.suffix == ".json" else "file",
                )
            )
    return out


def run_job(args: Sequence[str]) -> None:
    """Run one job in this process, raising ``MlvfxError`` on failure.

    ``material`` calls :func:`mlvfx.ops.material.material_from_file`; ``texture`` calls the CLI
    entry point (:func:`mlvfx.cli.main`), so both paths run exactly what the farm would.
    """
    if not args:
        raise InputError("empty mlvfx job")
    if args[0] == "material":
        _run_material(args)
        return
    from mlvfx.cli import main

    try:
        code = main([*args[:2], "--quiet", *args[2:]])
    except SystemExit as exc:  # argparse: unknown command or option
        code = exc.code if isinstance(exc.code, int) else 2
    if code != 0:
        raise MlvfxError(f"mlvfx {' '.join(args[:2])} failed with exit code {code} (see the work item log)")


def _run_material(args: Sequence[str]) -> None:
    import argparse

    from mlvfx.ops.material import material_from_file

    p = argparse.ArgumentParser(prog="mlvfx material", add_help=False, exit_on_error=False)
    p.add_argument("input")
    p.add_argument("-o", dest="output", required=True)
    p.add_argument("--maps", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--quality", default="standard")
    p.add_argument("--normal-convention", dest="convention", required=True)
    p.add_argument("--relief", type=float, required=True)
    p.add_argument("--tileable", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    try:
        ns = p.parse_args(list(args[1:]))
    except argparse.ArgumentError as exc:
        raise InputError(f"bad material job: {exc}") from None
    material_from_file(
        ns.input,
        ns.output,
        ns.maps,
        tileable=ns.tileable,
        normal_convention=ns.convention,
        method=ns.method,
        relief=ns.relief,
        quality=ns.quality,
        overwrite=ns.overwrite,
    )


def _json_args(raw: str) -> tuple[str, ...] | None:
    """The argv stored as a JSON list of strings, or None if it is not one."""
    try:
        value: object = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    items = cast(list[object], value)
    args = tuple(a for a in items if isinstance(a, str))
    return args if len(args) == len(items) else None


def job_from_attribs(attribs: Mapping[str, str | None]) -> Job:
    """Rebuild a :class:`Job` from a work item's string attributes."""
    raw = attribs.get(ATTRIB_ARGS) or ""
    args = _json_args(raw) if raw else ()
    if args is None:
        older = "made by an earlier mlvfx" if "\x1f" in raw else "damaged"
        raise InputError(f"this work item's mlvfx job is {older}: regenerate the node (Dirty and Cook)")
    if not args:
        raise InputError("work item has no mlvfx job (was it generated by an mlvfx TOP?)")
    output = attribs.get(ATTRIB_OUTPUT) or ""
    # A folder: material and grow always, paint with material-folder exemplars (no image suffix).
    is_dir = args[0] == "material" or (len(args) > 1 and args[1] == "grow")
    is_dir = is_dir or (len(args) > 1 and args[1] == "paint" and not _is_image(output))
    return Job(args, attribs.get(ATTRIB_INPUT) or "", output, is_dir)


def cook_task(node: _Node, work_item: _WorkItem) -> None:
    """``onCookTask`` of both TOPs: run an in-process item, then report its files.

    Raises:
        pdg.CookError: the job failed (an ``MlvfxError`` outside PDG); PDG marks the work item
            failed and logs the message.
    """
    del node
    with _cook_errors():
        attribs = {k: work_item.stringAttribValue(k) for k in (ATTRIB_ARGS, ATTRIB_INPUT, ATTRIB_OUTPUT)}
        job = job_from_attribs(attribs)
        run_job(job.args)
        for path, tag in output_files(job.output, job.output_is_dir):
            _add_output(work_item, path, tag)
