"""Where a material factory render's time goes: fixed cost per sample against path tracing.

Renders the same specs (training families, ``wide`` lighting, 256²) at several Cycles sample
counts, interleaved, and prints the median wall time per sample, split into the scene set-up
(factory reset, mesh, nodes, lights) and ``bpy.ops.render.render`` (which includes Cycles' own
sync: displacement, BVH, the HDRI's importance map), plus reading the EXR. A linear fit of the
render time over the sample count separates the part that does not depend on the samples from the
cost per sample. Nothing is written to any dataset.

    HOME=$(mktemp -d) .venv/bin/python bench/factory_render_cost.py --count 6 --samples 1 4 16
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from mlvfx.data import materials as M
from mlvfx.data.splits import TRAIN_FAMILIES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=6, help="specs to render")
    ap.add_argument("--samples", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    bpy = M._import_bpy()
    specs = [
        M.make_spec(args.seed, i, size=args.size, families=TRAIN_FAMILIES, lighting="wide")
        for i in range(args.count)
    ]
    setup: dict[int, list[float]] = {s: [] for s in args.samples}
    render: dict[int, list[float]] = {s: [] for s in args.samples}
    read: dict[int, list[float]] = {s: [] for s in args.samples}
    with tempfile.TemporaryDirectory(prefix="mlvfx-render-cost-") as tmp:
        M.render_maps(replace(specs[0], samples=1), work_dir=tmp)  # warm-up: first import, kernels
        for k, spec in enumerate(specs):
            order = args.samples if k % 2 == 0 else list(reversed(args.samples))
            for s in order:
                sp = replace(spec, samples=s)
                t0 = time.perf_counter()
                M._setup_scene(bpy, sp, sp.size)
                t1 = time.perf_counter()
                exr = Path(tmp) / "render.exr"
                bpy.context.scene.render.filepath = str(exr)
                bpy.ops.render.render(write_still=True)
                t2 = time.perf_counter()
                M._read_multilayer(exr)
                t3 = time.perf_counter()
                setup[s].append(t1 - t0)
                render[s].append(t2 - t1)
                read[s].append(t3 - t2)
    print(
        f"{args.count} specs (seed {args.seed}, train families, wide lighting), {args.size}², median seconds"
    )
    print("| samples | scene set-up | render (incl. Cycles sync) | read EXR | total |")
    print("|---:|---:|---:|---:|---:|")
    for s in args.samples:
        a, b, c = (statistics.median(x[s]) for x in (setup, render, read))
        print(f"| {s} | {a:.3f} | {b:.3f} | {c:.3f} | {a + b + c:.3f} |")
    xs = np.array([s for s in args.samples for _ in render[s]], dtype=float)
    ys = np.array([t for s in args.samples for t in render[s]], dtype=float)
    if len(set(args.samples)) > 1:
        slope, intercept = np.polyfit(xs, ys, 1)
        print(f"render time ~ {intercept:.3f} s + {slope:.4f} s per sample (least squares over all renders)")


if __name__ == "__main__":
    main()
