"""Mean predicted against mean true roughness per family: is a model's roughness error a bias?

For each weights file, runs the learned material net (the operator's tiled inference) on every
sample of a factory folder and prints, per family, the mean of each sample's predicted and true
mean roughness, their spread over the samples, and the MAE the accuracy bench reports.

    .venv/bin/python bench/material_roughness_bias.py --truth heldout_v2 \\
        model_zoo/weights/material-0.7.0.safetensors runs/material_v7/material_v7.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mlvfx.io import read_image
from mlvfx.nets.infer import predict_material
from mlvfx.nets.material import material_net_from_state_dict
from mlvfx.zoo import load_state_dict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path, nargs="+")
    ap.add_argument("--truth", type=Path, required=True, help="a factory folder (s*/lit.png, roughness.png)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    samples = sorted(d for d in args.truth.glob("s*") if (d / "meta.json").is_file())
    if not samples:
        raise SystemExit(f"{args.truth}: no samples")
    print("| weights | family | n | predicted mean (sd) | true mean (sd) | MAE |")
    print("|---|---|---:|---|---|---:|")
    for w in args.weights:
        net = material_net_from_state_dict(load_state_dict(w)).eval()
        rows: dict[str, list[tuple[float, float, float]]] = {}
        for d in samples:
            family = json.loads((d / "meta.json").read_text())["family"]
            lit, _ = read_image(d / "lit.png", kind="color")
            true, _ = read_image(d / "roughness.png", kind="data")
            true = true[..., 0] if true.ndim == 3 else true
            with torch.no_grad():
                pred = predict_material(net, np.asarray(lit[..., :3], np.float32)).roughness
            pred = pred[..., 0] if pred.ndim == 3 else pred
            rows.setdefault(family, []).append(
                (float(pred.mean()), float(true.mean()), float(np.abs(pred - true).mean()))
            )
        for family, values in rows.items():
            a = np.array(values)
            print(
                f"| {w.stem} | {family} | {len(a)} | {a[:, 0].mean():.3f} ({a[:, 0].std():.3f}) | "
                f"{a[:, 1].mean():.3f} ({a[:, 1].std():.3f}) | {a[:, 2].mean():.3f} |"
            )


if __name__ == "__main__":
    main()
