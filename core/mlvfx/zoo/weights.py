"""Loading weights: safetensors only, so nothing downloaded is ever unpickled or executed."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from mlvfx.errors import IntegrityError
from mlvfx.progress import CancelToken, ProgressFn

if TYPE_CHECKING:
    import torch

    from mlvfx.zoo.resolve import ManifestLike

_MAX_HEADER = 100 * 1024 * 1024


def _check_safetensors_header(path: Path) -> None:
    """Reject anything that is not a safetensors file before handing it to the parser.

    A safetensors file starts with a little-endian u64 header length and a JSON object; a pickle,
    a zip (``torch.save``) or an ONNX protobuf does not.
    """
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a named pipe blocked the read forever (a review)
            raise IntegrityError("not a safetensors file (not a regular file)", path=path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise IntegrityError("not a safetensors file (shorter than 8 bytes)", path=path)
            (length,) = struct.unpack("<Q", head)
            if length < 2 or length > _MAX_HEADER or length + 8 > os.fstat(f.fileno()).st_size:
                raise IntegrityError("not a safetensors file (bad header length)", path=path)
            header = json.loads(f.read(length).decode("utf-8"))
    except OSError as exc:
        raise IntegrityError(f"cannot read weights ({exc.strerror or exc})", path=path) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IntegrityError("not a safetensors file (header is not JSON)", path=path) from None
    if not isinstance(header, dict):
        raise IntegrityError("not a safetensors file (header is not an object)", path=path)


def load_state_dict(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Load a safetensors file into a ``{name: tensor}`` state dict.

    Args:
        path: a ``.safetensors`` file (e.g. from :func:`mlvfx.zoo.fetch`).
        device: where to put the tensors.

    Returns:
        The tensors, with the shapes and dtypes stored in the file (conv weights ``(O, I, kH, kW)``).

    Raises:
        IntegrityError: the file is not a valid safetensors file. Pickles are never loaded.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from mlvfx.zoo.cache import blob_is_damaged, drop_damaged_blob

    file = Path(path)
    # A cache blob is hashed once more before use (a few ms): the cache trusts a blob whose size and
    # mtime match its stamp, so bytes damaged in place gave NaN maps, or wrong ones with exit 0,
    # on every run (a fuzz audit). Other files pass through.
    if blob_is_damaged(file):
        gone = drop_damaged_blob(file)
        raise IntegrityError(
            "the cached copy was damaged (its bytes no longer match its sha256) "
            + ("and is removed: run again to fetch it" if gone else "and cannot be removed here"),
            path=file,
        )
    try:
        _check_safetensors_header(file)
        try:
            tensors: dict[str, torch.Tensor] = load_file(str(file), device=str(device))
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise IntegrityError(f"not a valid safetensors file ({exc})", path=file) from None
        import torch

        bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:  # a net with these would paint NaN, named as the output's fault (a fuzz audit)
            raise IntegrityError(f"tensor {bad[0]!r} holds NaN or inf values", path=file)
    except IntegrityError as exc:
        from mlvfx.zoo.cache import drop_damaged_blob

        if drop_damaged_blob(file):
            raise IntegrityError(
                f"{exc.message}; the cached copy was damaged and is removed: run again to fetch it", path=file
            ) from None
        raise
    return tensors


def load_weights(
    model_id: str,
    version: str | None = None,
    progress: ProgressFn | None = None,
    *,
    device: str | torch.device = "cpu",
    manifest: ManifestLike = None,
    cancel: CancelToken | None = None,
) -> dict[str, torch.Tensor]:
    """Fetch a model's safetensors file (see :func:`mlvfx.zoo.fetch`) and load its state dict."""
    from mlvfx.zoo.resolve import fetch

    path = fetch(model_id, version, progress, fmt="safetensors", manifest=manifest, cancel=cancel)
    return load_state_dict(path, device=device)
