"""Are the learned normals too flat? Tilt of the predicted normals against the truth's, per family.

For every sample of a validation folder, the learned normals (the operator's tiled path) are
compared with the rendered ones:

* the mean tilt (angle from straight up) of the prediction and of the truth, per family: a model
  that cannot read the relief predicts small tilts;
* the mean angular error when the prediction's slopes (its x and y over z) are multiplied by k.
  k = 0 is the flat normal. An error that hardly changes with k means the prediction is nearly
  flat there; a minimum away from k = 1 means a consistent over- or under-estimate of the slope;
* how much of the photo the relief explains ("shade r"): the correlation between the truth's
  n . L (L towards the sun) and the photo's luminance over the albedo's. Only samples lit by the
  sun and the HDRI (no area light, not overcast) count; the HDRI adds light from elsewhere, so
  1.0 is out of reach, but a family whose r stays near 0 shows little of its relief in the photo.

The scales are an analysis, not a setting: they are chosen on the data they are scored on.

Usage:
    .venv/bin/python bench/material_slope.py --weights W.safetensors [--truth DIR] [--threads 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mlvfx.eval.material import normal_errors, read_map, sample_family, sample_folders
from mlvfx.io import read_image

ROOT = Path(__file__).resolve().parents[1]
SCALES = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
Float = npt.NDArray[np.float32]


def scaled(normal: Float, k: float) -> Float:
    """The normal with its slopes (x/z, y/z) multiplied by ``k``."""
    z = np.maximum(normal[..., 2:3], 1e-3)
    out = np.concatenate([normal[..., :2] / z * k, np.ones_like(z)], axis=-1)
    return np.asarray(out / np.linalg.norm(out, axis=-1, keepdims=True), np.float32)


def tilt_deg(normal: Float) -> float:
    n = normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    return float(np.degrees(np.arccos(np.clip(n[..., 2], -1.0, 1.0))).mean())


def shading_correlation(folder: Path, lit: Float, truth: Float) -> float | None:
    """Correlation of n . L_sun with lit / albedo luminance; ``None`` without a lone sun."""
    import json

    from mlvfx.data.augment import sun_direction

    meta = json.loads((folder / "meta.json").read_text())
    to_sun = sun_direction(meta)
    if to_sun is None or (meta.get("lighting") or {}).get("area"):
        return None
    albedo = read_map(folder, "albedo")
    if albedo is None:
        return None
    ndl = truth.astype(np.float64) @ to_sun.astype(np.float64)
    shade = lit.mean(axis=-1) / np.maximum(albedo.mean(axis=-1), 1e-3)
    return float(np.corrcoef(ndl.ravel(), shade.ravel())[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--truth", type=Path, default=ROOT / "model_zoo/eval/materials_v1/256")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from mlvfx.nets.infer import load_material_net, predict_material

    torch.set_num_threads(args.threads)
    net = load_material_net(args.weights)
    rows: dict[str, list[list[float]]] = {}
    shading: dict[str, list[float]] = {}
    for folder in sample_folders(args.truth):
        lit, _ = read_image(folder / "lit.png", kind="color")
        rgb = np.asarray(lit[..., :3], np.float32)
        pred = predict_material(net, rgb, integrate=False).normal
        truth = read_map(folder, "normal")
        if truth is None:
            continue
        r = shading_correlation(folder, rgb, truth)
        if r is not None:
            shading.setdefault(sample_family(folder), []).append(r)
        errs = [normal_errors(scaled(pred, k), truth)["normal_mean_deg"] for k in SCALES]
        rows.setdefault(sample_family(folder), []).append([tilt_deg(pred), tilt_deg(truth), *errs])

    print(f"weights {args.weights.name}, truth {args.truth}")
    head = " | ".join(f"k={k:g}" for k in SCALES)
    print(f"\n| family | n | tilt pred° | tilt truth° | {head} | best k | shade r (n) |")
    print("|---|---:|---:|---:|" + "---:|" * len(SCALES) + "---:|---:|")
    everything: list[list[float]] = []
    for fam in sorted(rows):
        everything.extend(rows[fam])
        _row(fam, np.array(rows[fam]), shading.get(fam, []))
    _row("**overall**", np.array(everything), [r for v in shading.values() for r in v])


def _row(name: str, a: npt.NDArray[np.float64], shade: list[float]) -> None:
    m = a.mean(axis=0)
    errs = m[2:]
    cells = " | ".join(f"{e:.2f}" for e in errs)
    r = f"{np.mean(shade):.2f} ({len(shade)})" if shade else "- (0)"
    best = SCALES[int(np.argmin(errs))]
    print(f"| {name} | {len(a)} | {m[0]:.1f} | {m[1]:.1f} | {cells} | {best:g} | {r} |")


if __name__ == "__main__":
    main()
