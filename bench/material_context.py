"""Does the material model use its whole-photo context? An ablation on the public validation set.

For a model with a context branch (``MaterialNet.config.context > 0``), each validation photo is
run whole through the net three times, changing only the thumbnail the context encoder reads:

* ``own``: the photo's own thumbnail (what the operator does);
* ``rotated``: the thumbnail of the photo turned by 180 degrees: same materials and colours,
  light from the opposite side;
* ``grey``: a flat thumbnail of the photo's mean colour (no spatial information at all).

If the net reads the light direction from the context, ``rotated`` hurts the normals most.

Usage:
    .venv/bin/python bench/material_context.py --weights W.safetensors [--truth DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from material_bands import angle_deg  # noqa: E402

from mlvfx.eval.material import read_map, sample_folders, si_rmse  # noqa: E402
from mlvfx.io import read_image  # noqa: E402
from mlvfx.nets.infer import load_material_net  # noqa: E402
from mlvfx.nets.material import MaterialNet, context_thumbnail  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--truth", type=Path, default=ROOT / "model_zoo/eval/materials_v1/256")
    args = ap.parse_args()
    net = load_material_net(args.weights)
    assert isinstance(net, MaterialNet)
    if not net.config.context:
        print(f"{args.weights}: this model has no context branch")
        return 1
    variants = ("own", "rotated", "grey")
    normal: dict[str, list[float]] = {v: [] for v in variants}
    albedo: dict[str, list[float]] = {v: [] for v in variants}
    for folder in sample_folders(args.truth):
        lit, _ = read_image(folder / "lit.png", kind="color")
        n_true, a_true = read_map(folder, "normal"), read_map(folder, "albedo")
        if n_true is None or a_true is None:
            continue
        x = torch.from_numpy(np.ascontiguousarray(lit[..., :3].transpose(2, 0, 1)))[None]
        h, w = (s - s % net.multiple for s in x.shape[-2:])
        x = x[..., :h, :w]
        thumbs = {
            "own": context_thumbnail(x),
            "rotated": context_thumbnail(torch.flip(x, dims=(-2, -1))),
            "grey": context_thumbnail(x.mean(dim=(-2, -1), keepdim=True).expand_as(x)),
        }
        for v in variants:
            with torch.inference_mode():
                y = net(x, thumbs[v])[0].numpy().transpose(1, 2, 0)
            normal[v].append(angle_deg(y[..., 0:3], n_true[:h, :w]))
            albedo[v].append(si_rmse(y[..., 4:7], a_true[:h, :w]))
    print(f"{args.weights.name}: {len(normal['own'])} validation photos, each run whole")
    print("| thumbnail | normal mean° | albedo si-RMSE |")
    print("|---|---:|---:|")
    for v in variants:
        print(f"| {v} | {np.mean(normal[v]):.3f} | {np.mean(albedo[v]):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
