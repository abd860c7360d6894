"""Side by side: reference, coarse+smooth, surrogate+smooth and surrogate+learned upres (one held-out shot).

.venv/bin/python docs/scripts/smoke_compare.py --weights runs/smoke3d_v2/smoke3d_v2.safetensors \
    --dims 3 --res 64 --seed 5000 --steps 25 50 100 --out docs/smoke3d_compare.png

Each panel is the density integrated along Z (3D) or the density itself (2D), all on one grey scale
(the reference's maximum at that step); rows are steps, the number in a panel is its rel. L2 error
against the reference at the output resolution. The seed should be a benchmark seed (5000+), which
no recipe trains on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from mlvfx.fluids.bench import rel_l2
from mlvfx.fluids.reference import ReferenceSolver
from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import SurrogateSolver, prolong_density, surrogate_from_state
from mlvfx.io.atomic import write_bytes_atomic
from mlvfx.zoo import load_state_dict

FAMILIES = ("plume", "two_sources", "wind", "obstacle")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--dims", type=int, default=3)
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--seed", type=int, default=5000)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100])
    parser.add_argument("--panel", type=int, default=192, help="panel size in pixels")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    net, factor = surrogate_from_state(load_state_dict(args.weights), source=str(args.weights))
    if net.upres is None:
        print(f"{args.weights}: this model has no learned upres", file=sys.stderr)
        return 2
    sc = make_scenario(FAMILIES[args.seed % len(FAMILIES)], args.dims, args.res, seed=args.seed)
    ref = ReferenceSolver(sc.config, sc.obstacles)
    ref_src = ref.prepare_sources(sc.sources)
    sur = SurrogateSolver(sc.config, net.eval(), sc.obstacles, factor, dtype="float32")
    sur_src = sur.prepare_sources(sc.sources)
    r_state, c_state, s_state = ref.zeros(), sur.solver.zeros(), sur.solver.zeros()
    names = ("reference", "coarse + smooth", "surrogate + smooth", "surrogate + upres")
    rows = []
    with torch.no_grad():
        for i in range(1, max(args.steps) + 1):
            r_state = ref.advance(*r_state, ref_src)
            c_state = sur.solver.advance(*c_state, sur_src)
            s_state = sur.advance(*s_state, sur_src)
            if i in args.steps:
                truth = r_state[0].double()
                fields = [
                    truth,
                    prolong_density(c_state[0].double(), factor),
                    prolong_density(s_state[0].double(), factor),
                    sur.output_density(*s_state, sur_src).double(),
                ]
                rows.append((i, fields, [rel_l2(f, truth) for f in fields]))
    p = args.panel
    pad, top = 6, 28
    img = np.full((top + len(rows) * (p + pad), 70 + 4 * (p + pad), 3), 255, np.uint8)
    for n, name in enumerate(names):
        cv2.putText(
            img, name, (70 + n * (p + pad), 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
    for r, (step, fields, errors) in enumerate(rows):
        views = [(f.sum(0) if f.dim() == 3 else f).flip(0).cpu().numpy() for f in fields]  # +Y up
        scale = max(float(views[0].max()), 1e-12)
        y0 = top + r * (p + pad)
        cv2.putText(
            img, f"t={step}", (8, y0 + p // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
        )
        for n, (view, err) in enumerate(zip(views, errors, strict=True)):
            grey = (255 * np.clip(view / scale, 0, 1)).astype(np.uint8)
            panel = cv2.resize(grey, (p, p), interpolation=cv2.INTER_NEAREST)
            x0 = 70 + n * (p + pad)
            img[y0 : y0 + p, x0 : x0 + p] = panel[..., None]
            if n:
                cv2.putText(
                    img,
                    f"{err:.3f}",
                    (x0 + 4, y0 + 16),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.45,
                    (0, 200, 255),
                    1,
                    cv2.LINE_AA,
                )
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        print("could not encode the image", file=sys.stderr)
        return 1
    write_bytes_atomic(args.out, buf.tobytes(), overwrite=True)
    print(
        f"{sc.name} seed {args.seed}: "
        + "; ".join(
            f"t={s}: " + ", ".join(f"{n} {e:.3f}" for n, e in zip(names[1:], errs[1:], strict=True))
            for s, _, errs in rows
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
