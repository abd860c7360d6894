"""ONNX export of the material model, with dynamic height and width."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mlvfx.nets.material import MaterialNet


def export_onnx(net: MaterialNet, path: str | os.PathLike[str], *, size: int = 64, opset: int = 17) -> Path:
    """Export ``net`` (eval mode, CPU) to ONNX with input ``photo`` (B, 3, H, W) linear RGB and
    output ``maps`` (B, 8, H, W); batch, H and W are dynamic (H, W multiples of ``net.multiple``).

    A net with a context branch gets a second input ``thumb`` (B, 3, h, w): the
    :func:`mlvfx.nets.material.context_thumbnail` of the whole photo (pass the photo's own
    thumbnail when the photo is not tiled).

    Written atomically.
    """
    out = Path(path)
    net = net.cpu().eval()
    dummy: tuple[torch.Tensor, ...] = (torch.rand(1, 3, size, size),)
    names = ["photo"]
    axes = {
        "photo": {0: "batch", 2: "height", 3: "width"},
        "maps": {0: "batch", 2: "height", 3: "width"},
    }
    if net.config.context:
        dummy = (dummy[0], torch.rand(1, 3, max(1, size // 4), max(1, size // 4)))
        names.append("thumb")
        axes["thumb"] = {0: "batch", 2: "thumb_height", 3: "thumb_width"}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    torch.onnx.export(
        net,
        dummy,
        str(tmp),
        input_names=names,
        output_names=["maps"],
        dynamic_axes=axes,
        opset_version=opset,
        dynamo=False,
    )
    os.replace(tmp, out)
    return out
