"""Contact sheet of the material model's worst public validation samples (its known failure cases).

Runs the learned operator (the zoo's newest ``material``, or ``--weights``) on every sample of the
public validation set, ranks the samples by how much worse the predicted normals are than the flat
normal (mean angular error, learned over flat), and writes a sheet of the ``--count`` worst rows:
photo | (prediction, truth) for normal, albedo, height and roughness. Prints the ranking.

    .venv/bin/python bench/material_failure_sheet.py --out docs/material_failures.png
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from material import temporary_zoo  # noqa: E402  (bench/material.py: a zoo serving --weights)

from mlvfx.eval.material import normal_errors, read_map, sample_family, sample_folders  # noqa: E402
from mlvfx.eval.sheet import contact_sheet  # noqa: E402
from mlvfx.io import read_image  # noqa: E402
from mlvfx.ops.material import material, write_material  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--truth", type=Path, default=ROOT / "model_zoo/eval/materials_v1/256")
    ap.add_argument("--weights", type=Path, default=None, help="a local model instead of the zoo's newest")
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    ranked = []
    with tempfile.TemporaryDirectory() as tmp:
        pred_root = Path(tmp) / "pred"
        with contextlib.ExitStack() as stack:
            if args.weights is not None:
                stack.enter_context(temporary_zoo(args.weights))
            for folder in sample_folders(args.truth):
                lit, _ = read_image(folder / "lit.png", kind="color")
                result = material(np.asarray(lit[..., :3], np.float32), "normal,height,albedo,roughness")
                write_material(result, pred_root / folder.name, overwrite=True)
                truth = read_map(folder, "normal")
                assert truth is not None
                flat = np.zeros_like(truth)
                flat[..., 2] = 1.0
                learned = float(normal_errors(result.maps["normal"], truth)["normal_mean_deg"])
                plain = float(normal_errors(flat, truth)["normal_mean_deg"])
                ranked.append((learned / max(plain, 1e-6), learned, plain, folder))
        ranked.sort(key=lambda r: -r[0])
        worst = Path(tmp) / "worst"
        worst.mkdir()
        print("| sample | family | learned normal error | flat normal error | ratio |")
        print("|---|---|---:|---:|---:|")
        for ratio, learned, plain, folder in ranked:
            family = sample_family(folder)
            print(f"| {folder.name} | {family} | {learned:.2f}° | {plain:.2f}° | {ratio:.2f} |")
        for _, _, _, folder in ranked[: args.count]:
            (worst / folder.name).symlink_to(folder)
        contact_sheet(args.out, truth=worst, pred=pred_root, tile=args.tile, overwrite=args.overwrite)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
