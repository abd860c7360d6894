"""What every training run writes into its output folder: a JSON-lines log, atomic checkpoints.

Shared by the material and smoke trainers, so their run folders look alike:
``checkpoint.pt`` (resumable state), ``log.jsonl`` (one event per line) and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mlvfx.errors import ImageWriteError, out_of_memory

LogFn = Callable[[dict[str, Any]], None]

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
SUMMARY = "summary.json"


def run_logger(out: Path, log: LogFn | None = None) -> LogFn:
    """A function that appends an event to ``out/log.jsonl`` and passes it on to ``log``."""

    def emit(record: dict[str, Any]) -> None:
        with open(out / LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        if log is not None:
            log(record)

    return emit


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    had_one = path.is_file()
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename: a power cut keeps the old checkpoint
        os.replace(tmp, path)
        _drop_overwritten(path.parent)  # the new run has a checkpoint: the earlier run can go
    except BaseException as exc:  # Ctrl-C or a full disk: no temp file left beside the run
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError | RuntimeError) and not out_of_memory(exc):
            # torch's writer says a full disk as a RuntimeError
            said = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{said} (disk full?)"
            if had_one:
                then = "the previous checkpoint is kept (free space, then run the same command with --resume)"
            else:  # the first: nothing to resume; an --overwrite run's predecessor is set aside
                then = "this run has no checkpoint yet"
                if (path.parent / OVERWRITTEN).is_dir():
                    then += (
                        f"; the earlier run is in {path.parent / OVERWRITTEN} (move its files back, or "
                        "delete it to free space, then run the command again)"
                    )
            raise ImageWriteError(f"cannot write the checkpoint: {why}; {then}", path) from None
        raise


# Train settings a resumed run may change on the command line or in the recipe: how long it may
# run, how often it writes, how many threads, and how far it goes. Everything else must match.
RESUMABLE_CHANGES = frozenset(
    {"budget_minutes", "checkpoint_minutes", "log_every", "threads", "steps", "iterations", "val_every"}
)


def check_run_folder(out: Path, *, resume: bool, overwrite: bool, weights_name: str = "") -> None:
    """Refuse to start a run over an earlier one, and to resume nothing; with ``overwrite``, move
    the earlier run's files into ``out/.overwritten/`` first (so a failed rerun never leaves a
    folder half old, half new), where they stay until the new run's first checkpoint.

    ``weights_name``: the run's weights file stem (``<recipe name>``), removed with the rest.

    Raises:
        InputError: ``resume`` without ``out/checkpoint.pt``; or, without ``resume`` or
            ``overwrite``, an ``out`` that already holds a run (its checkpoint, summary or log).
    """
    from mlvfx.errors import InputError

    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    held = [name for name in (CHECKPOINT, SUMMARY, LOG) if (out / name).is_file()]
    if resume:
        if CHECKPOINT not in held:
            aside = (
                f" (the run --overwrite replaced is in {out / OVERWRITTEN}: move its files back to resume it)"
                if (out / OVERWRITTEN).is_dir()
                else ""
            )
            raise InputError(
                f"--resume: there is no {CHECKPOINT} to continue from; run without --resume{aside}", out
            )
        _remove_checkpoint_temps(out)
        return
    if held and not overwrite:
        hint = (
            "pass --resume to continue it, or --overwrite to start again"
            if CHECKPOINT in held
            else "it has no checkpoint to continue from: pass --overwrite to start again"
        )
        raise InputError(
            f"holds a run already ({', '.join(held)}): {hint} (its files are then replaced)", out
        )
    if overwrite and out.is_dir():
        stale = [out / n for n in (CHECKPOINT, SUMMARY, LOG)] + sorted(out.glob("*_checkpoint.pt"))
        if weights_name:
            stale += [out / f"{weights_name}.safetensors", out / f"{weights_name}.onnx"]
        stale = [path for path in stale if path.is_file()]
        kept = out / OVERWRITTEN
        if stale and not kept.is_dir():
            # Set aside, not deleted, until the new run writes its first checkpoint: a rerun that
            # fails first (a full disk) lost the earlier run too (a resource audit).
            kept.mkdir()
            for path in stale:
                os.replace(path, kept / path.name)
        else:  # an earlier run is set aside already: these are a failed rerun's files
            for path in stale:
                path.unlink(missing_ok=True)
        _remove_checkpoint_temps(out)


OVERWRITTEN = ".overwritten"  # an --overwrite run's predecessor, kept until its first checkpoint


def _drop_overwritten(out: Path) -> None:
    """Remove the earlier run that ``--overwrite`` set aside in ``out``, if there is one."""
    kept = out / OVERWRITTEN
    if kept.is_dir():
        shutil.rmtree(kept, ignore_errors=True)


def _remove_checkpoint_temps(out: Path) -> None:
    """Temp files of checkpoints a killed run (``kill -9``, a power cut) was writing: the run that
    starts or resumes in ``out`` is its only writer, so they are nobody's."""
    for temp in out.glob(".*checkpoint.pt.*.tmp"):
        temp.unlink(missing_ok=True)


def load_checkpoint(
    path: Path, recipe: dict[str, Any], device: Any = "cpu", *, allow_changes: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The state in ``path`` and the recipe keys that differ from the one that wrote it.

    A resume with another recipe is refused unless ``allow_changes`` (``--allow-recipe-change``:
    continuing a run on a new schedule, say larger crops, is a real workflow); the differences are
    returned so the run can log them. Budget, threads, length and logging settings may always
    change, and a key the stored recipe lacks (an older checkpoint) is not a difference.

    Raises:
        InputError: the file is not a readable checkpoint, or another recipe wrote it.
    """
    from mlvfx.errors import InputError

    try:
        state: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, pickle/zip errors, EOFError, ...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"not a readable checkpoint ({detail}); start again with --overwrite", path
        ) from None
    if not isinstance(state, dict):
        raise InputError(
            f"not an mlvfx checkpoint (it holds a {type(state).__name__}); start again with --overwrite", path
        )
    counts = [state.get(key, 0) for key in ("step", "iteration")]
    seconds = state.get("seconds", 0.0)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts) or not isinstance(
        seconds, (int, float)
    ):
        raise InputError(
            "not an mlvfx checkpoint (bad step count or seconds); start again with --overwrite", path
        )
    stored = state.get("recipe")
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            raise InputError(
                "not an mlvfx checkpoint (its recipe is not JSON); start again with --overwrite", path
            ) from None
    differs: list[str] = []
    if isinstance(stored, dict):
        # both as JSON gives them (tuples are lists there), so only real differences count
        differs = _differences(json.loads(json.dumps(stored)), json.loads(json.dumps(recipe)))
        if differs and not allow_changes:
            raise InputError(
                f"was written by another recipe (it differs in {', '.join(differs[:6])}); resume with "
                "the recipe that wrote it, pass --allow-recipe-change to continue it on this one, or "
                "start again with --overwrite",
                path,
            )
    return state, differs


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between a stored (``a``) and a current (``b``) recipe dict,
    resumable train settings left out."""
    out = []
    for key in sorted(set(b)):  # keys the stored recipe (a) lacks predate it: not a difference
        if key not in a:
            continue
        name = f"{prefix}{key}"
        if key in RESUMABLE_CHANGES and prefix in ("train.", "upres.", "vupres."):
            continue
        if name in ("comment", "data.dir"):  # words, and where the data lives (--data moves it too)
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{name}.")
        elif va != vb:
            out.append(name)
    return out


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    """Write ``tensors`` (moved to the CPU, made contiguous) as safetensors, atomically, with the
    normal output mode (safetensors' own writer makes 0600 files, which a farm's other users
    cannot read); an existing file is replaced."""
    from safetensors.torch import save

    from mlvfx.io import write_bytes_atomic

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    return write_bytes_atomic(path, data, overwrite=True)


def init_weights_file(spec: str) -> tuple[Path, dict[str, Any]]:
    """The safetensors file a recipe's ``init`` names, and a log record (source and sha256).

    ``spec`` is ``zoo:<id>@<version>`` (fetched and verified through the zoo; no version: the
    manifest's) or a path.

    Raises:
        InputError: the path does not exist.
    """
    from mlvfx.errors import InputError
    from mlvfx.zoo import fetch
    from mlvfx.zoo.cache import sha256_file

    if spec.startswith("zoo:"):
        model, _, version = spec[4:].partition("@")
        path = Path(fetch(model, version or None, fmt="safetensors"))
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InputError("init weights not found", path)
    return path, {"event": "init", "from": spec, "sha256": sha256_file(path)}
