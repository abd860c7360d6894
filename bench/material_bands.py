"""Where the normal error lives: a frequency split of the learned model's and the flat normal's error.

For each sample of the public validation set this reports, per Gaussian scale sigma (pixels):

* ``oracle``: the angular error of the *truth* blurred by sigma against the truth. It is the
  error of a hypothetical model that gets everything coarser than sigma exactly right and none
  of the finer detail, so it bounds what a model blind to sub-sigma detail can reach.
* ``learned`` / ``flat``: the error of the blurred prediction against the blurred truth, i.e. the
  error in the band coarser than sigma only.

The learned model runs through the operator (``mlvfx.ops.material(method="learned")``) via a
temporary zoo entry for ``--weights``, exactly as ``bench/material.py accuracy`` does. Scores
are computed on the public validation set only.

Usage:
    .venv/bin/python bench/material_bands.py --weights W.safetensors [--sigmas 1,2,4,8] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from material import learned_method, temporary_zoo  # noqa: E402

from mlvfx.eval.material import normal_errors, read_map, sample_family, sample_folders  # noqa: E402
from mlvfx.io import read_image  # noqa: E402

Float = npt.NDArray[np.float32]


def angle_deg(a: Float, b: Float) -> float:
    """Mean angle in degrees between two (H, W, 3) vector fields (the evaluation's own metric)."""
    return normal_errors(a, b)["normal_mean_deg"]


def blur(n: Float, sigma: float) -> Float:
    """Gaussian low-pass of each channel (reflecting borders)."""
    return np.stack([gaussian_filter(n[..., i], sigma, mode="reflect") for i in range(3)], axis=-1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--truth", type=Path, default=ROOT / "model_zoo/eval/materials_v1/256")
    ap.add_argument("--sigmas", default="1,2,4,8")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    rows: list[dict[str, float | str]] = []
    with temporary_zoo(args.weights):
        for folder in sample_folders(args.truth):
            lit, _ = read_image(folder / "lit.png", kind="color")
            truth = read_map(folder, "normal")
            if truth is None:
                continue
            pred = learned_method(np.ascontiguousarray(lit[..., :3], dtype=np.float32))["normal"]
            flat = np.zeros_like(truth)
            flat[..., 2] = 1.0
            row: dict[str, float | str] = {
                "family": sample_family(folder),
                "learned": angle_deg(pred, truth),
                "flat": angle_deg(flat, truth),
            }
            for s in sigmas:
                tb = blur(truth, s)
                row[f"oracle_{s:g}"] = angle_deg(tb, truth)
                row[f"learned_{s:g}"] = angle_deg(blur(pred, s), tb)
                row[f"flat_{s:g}"] = angle_deg(flat, tb)
            rows.append(row)
    groups: dict[str, list[dict[str, float | str]]] = defaultdict(list)
    for r in rows:
        groups[str(r["family"])].append(r)
    groups["overall"] = rows
    keys = [k for k in rows[0] if k != "family"]

    def mean(rs: list[dict[str, float | str]], k: str) -> float:
        return float(np.mean([float(r[k]) for r in rs]))

    print("Mean angular error (degrees). oracle_s: truth blurred by s px vs truth (what is lost by")
    print("missing all detail finer than s); learned_s / flat_s: error in the band coarser than s.\n")
    print("| family | n | " + " | ".join(keys) + " |")
    print("|---|---:|" + "---:|" * len(keys))
    for fam in [*sorted(g for g in groups if g != "overall"), "overall"]:
        rs = groups[fam]
        print(f"| {fam} | {len(rs)} | " + " | ".join(f"{mean(rs, k):.2f}" for k in keys) + " |")
    overall = {k: mean(rows, k) for k in keys}
    ratio = overall["learned"] / overall["flat"]
    oracle = overall.get("oracle_2", float("nan")) / overall["flat"]
    print(f"\noverall: learned/flat = {ratio:.3f}; exact above sigma=2 px, blind below: {oracle:.3f} of flat")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "overall": overall}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
