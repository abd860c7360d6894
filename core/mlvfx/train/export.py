"""ONNX export of the material model, with dynamic height and width."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mlvfx.nets.material import MaterialNet


def export_onnx(net: MaterialNet, path: str | os.PathLike[str], *, size: int = 64, opset: int = 17) -> Path:
    """Export ``net`` (eval mode, CPU) to ONNX with input ``photo`` (B, 3, H, W) linear RGB and
    output ``maps`` (B, 8, H, W); batch, H and W are dynamic (H, W multiples of ``net.multiple``).

    Written atomically.
    """
    out = Path(path)
    net = net.cpu().eval()
    dummy = torch.rand(1, 3, size, size)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    torch.onnx.export(
        net,
        (dummy,),
        str(tmp),
        input_names=["photo"],
        output_names=["maps"],
        dynamic_axes={
            "photo": {0: "batch", 2: "height", 3: "width"},
            "maps": {0: "batch", 2: "height", 3: "width"},
        },
        opset_version=opset,
        dynamo=False,
    )
    os.replace(tmp, out)
    return out
