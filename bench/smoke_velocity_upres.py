"""How much of the 3D surrogate's velocity error could a learned velocity upres remove?

Issue 7 asks for a learned upres of the density "(and velocity)". The published surrogates learn
the density's upres; their velocity reaches the output grid by linear interpolation of the coarse
cell-centred velocity (what the Blender bake and the Houdini SOP receive). This script measures,
on held-out shots (seeds 5000+, as ``mlvfx smoke bench``), the velocity's relative L2 error against
the reference at the output resolution for:

* **surrogate, linear**: the surrogate's coarse velocity, linearly upsampled (what hosts got up to
  smoke3d 0.2.0);
* **surrogate, linear, zero in obstacles**: the same, with the velocity inside the fine obstacles
  set to zero (as the reference's is there): what a model without a velocity upres outputs since
  stop 21;
* **surrogate, output**: what hosts get now (``SurrogateSolver.output_velocity``): the model's
  learned velocity upres when it has one (smoke3d 0.3.0), else the linear upsampling; zero inside
  obstacles. The ratio printed is against the row above, so the masking is not counted as the
  upres's gain;
* **coarse only, linear**: the plain coarse solver, the same upsampling;
* **restricted reference, linear**: the reference's own velocity brought to the coarse grid
  (flux-preserving, as the surrogate restricts host input) and upsampled the same way. This is
  the interpolation floor: the error of linear upsampling when the coarse state is perfect.

The density's errors are printed beside them (surrogate through its learned upres; the restricted
reference density, upsampled trilinear): how far a learned upres gets below linear upsampling of a
perfect coarse state. The velocity's floor against the surrogate's error says how much of that
error is upsampling at all; the rest is the coarse trajectory's own distance from the reference,
which no upres can remove.

    .venv/bin/python bench/smoke_velocity_upres.py --weights model_zoo/weights/smoke3d-0.2.0.safetensors

``--vupres-from FILE`` puts another surrogate's velocity upres on the model first (e.g. smoke3d
0.3.0's, trained at 64³, on smoke3d_128 at 128³): does it transfer?
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mlvfx.fluids.bench import BenchSpec, rel_l2
from mlvfx.fluids.grid import faces_to_centre
from mlvfx.fluids.reference import ReferenceSolver
from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import (
    SurrogateSolver,
    prolong_density,
    prolong_velocity,
    restrict_density,
    restrict_faces,
    surrogate_from_state,
)
from mlvfx.zoo import load_state_dict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="the surrogate's safetensors")
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--seed", type=int, default=5000, help="first shot (held out: 5000+)")
    ap.add_argument("--steps", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vupres-from", default=None, help="use this surrogate file's velocity upres")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, factor = surrogate_from_state(load_state_dict(args.weights), source=args.weights)
    if args.vupres_from:
        donor, donor_factor = surrogate_from_state(load_state_dict(args.vupres_from), source=args.vupres_from)
        if donor.vupres is None or donor_factor != factor or donor.conditions != net.conditions:
            raise SystemExit(f"{args.vupres_from}: no velocity upres for a {factor}x model like this one")
        net.vupres = donor.vupres
    net.eval()
    spec = BenchSpec(dims=net.dims, res=args.res)
    last = max(args.steps)
    rows: dict[str, dict[int, list[float]]] = {}

    def put(name: str, step: int, value: float) -> None:
        rows.setdefault(name, {}).setdefault(step, []).append(value)

    t0 = time.monotonic()
    for n in range(args.shots):
        seed = args.seed + n
        sc = make_scenario(spec.families[seed % len(spec.families)], net.dims, args.res, seed=seed)
        ref = ReferenceSolver(sc.config, sc.obstacles)
        ref_src = ref.prepare_sources(sc.sources)
        sur = SurrogateSolver(sc.config, net, sc.obstacles, factor, dtype="float32", open_inflow="clean")
        sur_src = sur.prepare_sources(sc.sources)
        coarse = sur.solver
        r, s, c = ref.zeros(), coarse.zeros(), coarse.zeros()
        with torch.no_grad():
            for i in range(1, last + 1):
                r = ref.advance(*r, ref_src)
                s = sur.advance(*s, sur_src)
                c = coarse.advance(*c, sur_src)
                if i not in args.steps:
                    continue
                truth_v = torch.stack(faces_to_centre(r[1])).double()
                for name, state in (("surrogate", s), ("coarse only", c)):
                    up = prolong_velocity(state[1], factor).double()
                    put(f"velocity: {name}, linear", i, rel_l2(up, truth_v))
                masked = prolong_velocity(s[1], factor).double()
                if sur.fine_solid is not None:
                    masked = masked.masked_fill(sur.fine_solid, 0.0)
                put("velocity: surrogate, linear, zero in obstacles", i, rel_l2(masked, truth_v))
                out_v = sur.output_velocity(*s, sur_src).double()
                put("velocity: surrogate, output", i, rel_l2(out_v, truth_v))
                floor_v = prolong_velocity([v.float() for v in restrict_faces(r[1], factor)], factor)
                put("velocity: restricted reference, linear", i, rel_l2(floor_v.double(), truth_v))
                truth_d = r[0].double()
                put(
                    "density: surrogate, learned upres",
                    i,
                    rel_l2(sur.output_density(*s, sur_src).double(), truth_d),
                )
                floor_d = prolong_density(restrict_density(r[0].float(), factor), factor)
                put("density: restricted reference, trilinear", i, rel_l2(floor_d.double(), truth_d))
        print(f"shot {seed} ({sc.name}) done, {time.monotonic() - t0:.0f} s", flush=True)
    shots = f"{args.seed}-{args.seed + args.shots - 1}"
    donor = f" with the velocity upres of {args.vupres_from}" if args.vupres_from else ""
    print(f"\n{args.weights}{donor}, {args.res}^{net.dims} output, held-out shots {shots}")
    print("| relative L2 against the reference | " + " | ".join(f"t={i}" for i in args.steps) + " |")
    print("|---|" + "---:|" * len(args.steps))
    for name, per in rows.items():
        print(f"| {name} | " + " | ".join(f"{np.mean(per[i]):.3f}" for i in args.steps) + " |")
    learned = "learned velocity upres" if net.vupres is not None else "no velocity upres"
    base = "velocity: surrogate, linear, zero in obstacles"
    ratios = [np.mean(rows["velocity: surrogate, output"][i]) / np.mean(rows[base][i]) for i in args.steps]
    print(
        f"surrogate output ({learned}) / linear with zero in obstacles: "
        + ", ".join(f"t={i} {r:.3f}x" for i, r in zip(args.steps, ratios, strict=True))
    )
    for i in args.steps:
        sur_v = np.mean(rows["velocity: surrogate, linear"][i])
        floor = np.mean(rows["velocity: restricted reference, linear"][i])
        print(f"t={i}: the interpolation floor is {floor / sur_v:.2f} of the surrogate's velocity error")


if __name__ == "__main__":
    main()
