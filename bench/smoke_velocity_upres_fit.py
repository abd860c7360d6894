"""Is a learned velocity upres worth building? Fit one on top of the published 3D surrogate and score it.

Issue 7 asks for a learned upres of the density "(and velocity)". `bench/smoke_velocity_upres.py`
showed that linear upsampling is a large part of the surrogate's velocity error (0.318 of 0.508 at
t = 100, held out). This experiment fits a velocity upres the way the density's was fitted, and
scores it on the held-out shots against the linear upsampling hosts get today:

* **data**: the reference's cell-centred velocity at the output resolution every ``--every`` steps
  of training shots (seeds from 0, the recipe's families and resolution) and validation shots
  (1000+); beside it, the frozen surrogate's own coarse state at the same steps, rolled out from
  the empty domain as at inference. Cached per shot in ``--cache`` (resumable).
* **net**: the density upres's design (``UpresNet``: three mirror-equivariant 3-tap convolutions on
  the coarse grid and a sub-cell head), with a head of ``3 x factor**3`` channels: per fine cell a
  velocity correction added to the linear upsampling. The X velocity is odd under the X mirror.
  Zero-initialised, so untrained it *is* the linear upsampling.
* **fit**: Adam on the relative squared error per frame, the best validation score kept.
* **score**: held-out shots 5000+ at ``--steps``, relative L2 against the reference's velocity,
  linear and learned from the same surrogate run.

The experiment that decided the velocity upres belongs in the model (stop 20). It is shipped since
(stop 21): ``VelocityUpres`` in ``mlvfx.fluids.surrogate``, trained by the ``vupres`` stage of
``mlvfx train smoke3d`` (recipe ``smoke3d_v14``, smoke3d 0.3.0). Weights go to ``--out`` only.

    .venv/bin/python bench/smoke_velocity_upres_fit.py \\
        --weights model_zoo/weights/smoke3d-0.2.0.safetensors --cache vupres_cache/ --out vupres.safetensors
"""

from __future__ import annotations

import argparse
import copy
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlvfx.fluids.bench import rel_l2
from mlvfx.fluids.grid import faces_to_centre
from mlvfx.fluids.reference import ReferenceSolver
from mlvfx.fluids.surrogate import SurrogateSolver, VelocityUpres, prolong_velocity, surrogate_from_state
from mlvfx.io import write_bytes_atomic
from mlvfx.train.smoke import load_smoke_recipe, shot_scenario
from mlvfx.zoo import load_state_dict

RECIPE = Path(__file__).resolve().parents[1] / "model_zoo" / "recipes" / "smoke3d_v2.json"


def shot_frames(sc: Any, net: Any, factor: int, steps: list[int], last: int) -> dict[str, np.ndarray]:
    """Inputs, linear velocity and the reference's velocity at ``steps`` of one shot (float16)."""
    ref = ReferenceSolver(sc.config, sc.obstacles)
    ref_src = ref.prepare_sources(sc.sources)
    sur = SurrogateSolver(sc.config, net, sc.obstacles, factor, dtype="float32", open_inflow="clean")
    sur_src = sur.prepare_sources(sc.sources)
    r, s = ref.zeros(), sur.solver.zeros()
    xs, lins, truths = [], [], []
    with torch.no_grad():
        for i in range(1, last + 1):
            r = ref.advance(*r, ref_src)
            s = sur.advance(*s, sur_src)
            if i in steps:
                xs.append(sur.inputs(*s, sur_src)[0].float().numpy())
                lins.append(prolong_velocity(s[1], factor).float().numpy())
                truths.append(torch.stack(faces_to_centre(r[1])).float().numpy())
    return {
        "x": np.stack(xs).astype(np.float16),
        "linear": np.stack(lins).astype(np.float16),
        "truth": np.stack(truths).astype(np.float16),
    }


def cached_shot(
    cache: Path, recipe: Any, seed: int, net: Any, factor: int, steps: list[int]
) -> dict[str, np.ndarray]:
    path = cache / f"shot_{seed:06d}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    frames = shot_frames(shot_scenario(recipe, seed), net, factor, steps, max(steps))
    buffer = io.BytesIO()
    np.savez(buffer, **frames)
    write_bytes_atomic(path, buffer.getvalue(), overwrite=True)
    return frames


def score(upres: VelocityUpres, frames: list[dict[str, np.ndarray]]) -> tuple[float, float]:
    """Mean relative L2 of the learned and the linear velocity over every frame of ``frames``."""
    learned, linear = [], []
    with torch.no_grad():
        for f in frames:
            for x, lin, truth in zip(f["x"], f["linear"], f["truth"], strict=True):
                t = torch.from_numpy(truth.astype(np.float32))
                base = torch.from_numpy(lin.astype(np.float32))
                pred = base + upres(torch.from_numpy(x.astype(np.float32))[None])[0]
                learned.append(rel_l2(pred.double(), t.double()))
                linear.append(rel_l2(base.double(), t.double()))
    return float(np.mean(learned)), float(np.mean(linear))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="the surrogate's safetensors (its correction is frozen)")
    ap.add_argument("--cache", type=Path, required=True, help="folder for the shots' frames (resumable)")
    ap.add_argument("--out", type=Path, required=True, help="where the fitted velocity upres goes")
    ap.add_argument("--train-shots", type=int, default=16)
    ap.add_argument("--val-shots", type=int, default=3)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument(
        "--shot-steps", type=int, default=0, help="steps per training shot (default: the recipe's)"
    )
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--heldout", type=int, default=4, help="held-out shots 5000+ to score")
    ap.add_argument("--steps", type=int, nargs="+", default=[50, 100, 200], help="held-out steps scored")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    recipe = load_smoke_recipe(RECIPE)
    net, factor = surrogate_from_state(load_state_dict(args.weights), source=args.weights)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    args.cache.mkdir(parents=True, exist_ok=True)
    steps = list(range(args.every, (args.shot_steps or recipe.data.steps) + 1, args.every))
    t0 = time.monotonic()
    train = []
    for seed in range(args.train_shots):
        train.append(cached_shot(args.cache, recipe, seed, net, factor, steps))
        print(f"train shot {seed} ready, {time.monotonic() - t0:.0f} s", flush=True)
    val = [cached_shot(args.cache, recipe, 1000 + n, net, factor, steps) for n in range(args.val_shots)]
    print(f"data ready, {time.monotonic() - t0:.0f} s", flush=True)

    xs = torch.from_numpy(np.concatenate([f["x"] for f in train]).astype(np.float32))
    lins = torch.from_numpy(np.concatenate([f["linear"] for f in train]).astype(np.float32))
    truths = torch.from_numpy(np.concatenate([f["truth"] for f in train]).astype(np.float32))
    keep = truths.flatten(1).pow(2).sum(1) > 0
    xs, lins, truths = xs[keep], lins[keep], truths[keep]
    upres = VelocityUpres(net.dims, factor, conditions=xs.shape[1] - (1 + net.dims + 2))
    opt = torch.optim.Adam(upres.parameters(), lr=args.lr)
    best = {"score": score(upres, val)[0], "iteration": 0, "state": copy.deepcopy(upres.state_dict())}
    print(f"{len(xs)} training frames; validation at iteration 0 (= linear): {best['score']:.4f}", flush=True)
    rng = np.random.default_rng(args.seed)
    t1 = time.monotonic()
    for it in range(1, args.iterations + 1):
        pick = torch.from_numpy(rng.integers(0, len(xs), size=args.batch))
        pred = lins[pick] + upres(xs[pick])
        t = truths[pick]
        loss = ((pred - t).pow(2).flatten(1).sum(1) / t.pow(2).flatten(1).sum(1).clamp_min(1e-12)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if it % 250 == 0 or it == args.iterations:
            v = score(upres, val)[0]
            if v < best["score"]:
                best = {"score": v, "iteration": it, "state": copy.deepcopy(upres.state_dict())}
            print(
                f"iteration {it}: loss {float(loss.detach()):.4f}, validation {v:.4f}, "
                f"{time.monotonic() - t1:.0f} s",
                flush=True,
            )
    upres.load_state_dict(best["state"])
    from safetensors.torch import save

    write_bytes_atomic(
        args.out, save({k: v.contiguous() for k, v in upres.state_dict().items()}), overwrite=True
    )
    print(
        f"kept iteration {best['iteration']} (validation {best['score']:.4f}); "
        f"fit {time.monotonic() - t1:.0f} s"
    )

    # Held-out shots: the benchmark's seeds and family cycle.
    from mlvfx.fluids.bench import BenchSpec
    from mlvfx.fluids.scenarios import make_scenario

    spec = BenchSpec(dims=net.dims, res=recipe.data.res)
    rows: dict[str, dict[int, list[float]]] = {"linear": {}, "learned": {}}
    for n in range(args.heldout):
        seed = 5000 + n
        sc = make_scenario(spec.families[seed % len(spec.families)], net.dims, spec.res, seed=seed)
        frames = shot_frames(sc, net, factor, args.steps, max(args.steps))
        for k, step in enumerate(args.steps):
            learned, linear = score(upres, [{key: v[k : k + 1] for key, v in frames.items()}])
            rows["learned"].setdefault(step, []).append(learned)
            rows["linear"].setdefault(step, []).append(linear)
        print(f"held-out shot {seed} ({sc.name}) scored", flush=True)
    print(f"\nvelocity relative L2 against the reference, held-out shots 5000-{5000 + args.heldout - 1}")
    print("| surrogate velocity | " + " | ".join(f"t={s}" for s in args.steps) + " |")
    print("|---|" + "---:|" * len(args.steps))
    for name in ("linear", "learned"):
        print(f"| {name} | " + " | ".join(f"{np.mean(rows[name][s]):.3f}" for s in args.steps) + " |")
    ratios = [np.mean(rows["learned"][s]) / np.mean(rows["linear"][s]) for s in args.steps]
    print(
        "learned / linear: " + ", ".join(f"t={s} {r:.3f}x" for s, r in zip(args.steps, ratios, strict=True))
    )


if __name__ == "__main__":
    main()
