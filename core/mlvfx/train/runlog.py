"""What every training run writes into its output folder: a JSON-lines log, atomic checkpoints.

Shared by the material and smoke trainers, so their run folders look alike:
``checkpoint.pt`` (resumable state), ``log.jsonl`` (one event per line) and ``summary.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

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
    torch.save(state, tmp)
    os.replace(tmp, path)


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
