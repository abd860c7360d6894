"""Is inferring the light direction what keeps the model from reading a family's relief?

A diagnostic, not a recipe. The same model is fine-tuned twice, the same number of steps, on
renders of one family (default rocky, which the published model predicts flat):

* **random**: each spec under the factory's studio lighting as drawn (sun anywhere around, area
  lights, HDRIs), with the usual random turns and mirrors. The model must work out where the light
  comes from;
* **fixed**: the same specs, the sun always from one direction (azimuth 0.6 rad, 35 degrees up,
  strength 4, weak HDRI, no area light), and no turns or mirrors, so the light always comes from the
  same side of the image;
* **random+light**: "random" plus the recipe loss ``light`` (weight ``--light``): a head on the
  context vector must predict each photo's sun direction, so the context branch learns to
  estimate it. Does that recover what "fixed" gets for free?
* **random+oracle**: "random", but the context branch reads the *true* sun direction instead of
  the photo's thumbnail (a ramp image along the sun's x/y, its z as a flat channel), in training
  and in scoring. Not a usable model (it needs the answer): it shows whether a good light
  estimate would be enough;
* **random+turned**: "random", each photo turned so its true sun comes from the fixed sun's side
  (an oracle too);
* **sun**, **fixed+sky**, **fixed+area**: between "fixed" and "random", one part of the factory's
  lighting at a time. "sun": the drawn sun alone (any azimuth, elevation, strength), a weak sky,
  no area light, with turns and mirrors. "fixed+sky": the fixed sun under the drawn sky.
  "fixed+area": the fixed sun plus the drawn area light. The last two keep the photo's
  orientation, as "fixed" does.

It then scores the model on validation specs of the same family (other indices, never trained on)
under each condition's lighting: the mean tilt of the predicted normals against the truth's, and
the mean angular error of the initial and the fine-tuned model against the flat normal. If "fixed"
reads the relief and "random" does not, the photos hold the relief and the missing piece is the
light direction.

Usage (needs bpy; renders 2 x (count + val) samples, then two fine-tunes):
    HOME=$(mktemp -d) .venv/bin/python bench/material_fixed_light.py \\
        --weights model_zoo/weights/material-0.7.0.safetensors --out /tmp/fixed_light
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from mlvfx.data import augment, materials
from mlvfx.eval.material import normal_errors, read_map, sample_folders
from mlvfx.io import read_image

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = (
    "random",
    "fixed",
    "random+light",
    "random+oracle",
    "random+turned",
    "sun",
    "fixed+sky",
    "fixed+area",
)
FIXED_SUN = {"azimuth": 0.6, "elevation": float(np.radians(35.0)), "strength": 4.0, "angle": 0.03}


def fixed_lighting(light: dict[str, Any]) -> dict[str, Any]:
    return dict(light, hdri_strength=0.15, area=None, exposure_ev=0.0, sun=dict(light["sun"], **FIXED_SUN))


def sun_lighting(light: dict[str, Any]) -> dict[str, Any]:
    """The drawn sun alone (any azimuth, elevation, strength, size, colour), a weak sky, no area light."""
    return dict(light, hdri_strength=0.15, area=None, exposure_ev=0.0)


def fixed_sky_lighting(light: dict[str, Any]) -> dict[str, Any]:
    """The fixed sun under the drawn sky (HDRI, rotation, strength); no area light."""
    return dict(light, area=None, exposure_ev=0.0, sun=dict(light["sun"], **FIXED_SUN))


def fixed_area_lighting(light: dict[str, Any]) -> dict[str, Any]:
    """The fixed sun and a weak sky, plus the drawn area light (three specs in ten have one)."""
    return dict(light, hdri_strength=0.15, exposure_ev=0.0, sun=dict(light["sun"], **FIXED_SUN))


#: Lighting of each condition's renders (conditions not named here use the factory's as drawn),
#: the folder they go in, and whether training keeps the photo's orientation (no turns or mirrors).
LIGHTING: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]] | None, str, bool]] = {
    "fixed": (fixed_lighting, "fixed", True),
    "sun": (sun_lighting, "sun", False),
    "fixed+sky": (fixed_sky_lighting, "fixed_sky", True),
    "fixed+area": (fixed_area_lighting, "fixed_area", True),
}


def render_set(
    out: Path,
    family: str,
    seed: int,
    indices: range,
    relight: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> None:
    """Render the specs ``indices`` of ``family`` into ``out`` (finished ones are kept), their drawn
    lighting passed through ``relight`` (None: the factory's lighting as drawn)."""
    out.mkdir(parents=True, exist_ok=True)
    for i in indices:
        folder = out / materials.sample_dir_name(i)
        if (folder / "meta.json").is_file():
            continue
        spec = materials.make_spec(seed, i, families=[family])
        if relight is not None:
            spec = dataclasses.replace(spec, lighting=relight(spec.lighting))
        maps = materials.render_maps(spec)
        tmp = out / f".tmp-{folder.name}"
        tmp.mkdir(exist_ok=True)
        materials.write_sample(tmp, spec, maps)
        tmp.rename(folder)


def light_ramp(light: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B, 3, h, w) thumbnail shaped like ``like`` that spells out each (B, 3) sun direction."""
    b, _, h, w = like.shape
    ys = torch.linspace(1.0, -1.0, h).view(1, h, 1)
    xs = torch.linspace(-1.0, 1.0, w).view(1, 1, w)
    lx, ly, lz = (light[:, i].view(b, 1, 1).float() for i in range(3))
    ramp = 0.5 + 0.25 * (lx * xs + ly * ys)
    return torch.stack([ramp, (0.5 * lz).expand(b, h, w), torch.full((b, h, w), 0.5)], dim=1)


@contextmanager
def oracle_thumbnails(light: npt.NDArray[np.float32] | None) -> Iterator[None]:
    """While active, the operator's context thumbnail is :func:`light_ramp` of ``light``."""
    from mlvfx.nets import material as netmod

    original = netmod.context_thumbnail
    vec = torch.zeros(1, 3) if light is None else torch.from_numpy(np.asarray(light))[None]
    netmod.context_thumbnail = lambda rgb: light_ramp(vec.expand(rgb.shape[0], 3), original(rgb))
    try:
        yield
    finally:
        netmod.context_thumbnail = original


@contextmanager
def oracle_batches() -> Iterator[None]:
    """While active, training batches carry :func:`light_ramp` thumbnails of their true suns."""
    from mlvfx.train.dataset import MaterialDataset

    original = MaterialDataset.batch

    def batch(self: MaterialDataset, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        out = original(self, *args, **kwargs)
        if "thumb" in out:
            out["thumb"] = light_ramp(out["light"], out["thumb"])
        return out

    MaterialDataset.batch = batch  # type: ignore[method-assign]
    try:
        yield
    finally:
        MaterialDataset.batch = original  # type: ignore[method-assign]


#: The fixed sun's direction in the image frame (+X right, +Y up), for :func:`turn_towards_fixed`.
FIXED_LIGHT_XY = (float(np.sin(FIXED_SUN["azimuth"])), -float(np.cos(FIXED_SUN["azimuth"])))


def turn_towards_fixed(light: npt.NDArray[np.float32] | None) -> tuple[int, bool]:
    """The turn and mirror (as :func:`augment.dihedral` takes them) that bring ``light``'s azimuth
    closest to the fixed sun's; (0, False) without a sun."""
    if light is None or float(np.hypot(light[0], light[1])) < 1e-6:
        return 0, False
    ops = [(q, m) for q in range(4) for m in (False, True)]
    dots = []
    for q, m in ops:
        v = augment.rotate_normals(np.asarray(light, np.float32), q, m)
        dots.append(float(v[0] * FIXED_LIGHT_XY[0] + v[1] * FIXED_LIGHT_XY[1]))
    return ops[int(np.argmax(dots))]


def turn_back(normal: npt.NDArray[np.float32], quarter_turns: int, mirror: bool) -> npt.NDArray[np.float32]:
    """Undo :func:`augment.dihedral`'s pixel move and vector turn on an (H, W, 3) normal map."""
    out = normal
    if mirror:
        out = augment.rotate_normals(np.ascontiguousarray(out[:, ::-1]), 0, True)
    out = np.ascontiguousarray(np.rot90(out, -quarter_turns % 4, axes=(0, 1)))
    return augment.rotate_normals(out, -quarter_turns % 4)


@contextmanager
def fixed_turns(choose: Any) -> Iterator[None]:
    """While active, training batches use ``choose(sample)``'s ``(quarter_turns, mirror)`` (or a
    random one where it returns None) instead of a random turn. Patches the name the dataset calls
    (:func:`mlvfx.data.augment.augment_with_context` since stop 14; patching ``augment.dihedral``,
    as stops 8-9 did, no longer reaches the batches)."""
    from mlvfx.train import dataset

    original, original_dihedral = dataset.augment_with_context, augment.dihedral

    def patched(sample: Any, rng: np.random.Generator, **kwargs: Any) -> Any:
        return original(sample, rng, turn=choose(sample), **kwargs)

    def patched_dihedral(sample: Any, quarter_turns: int, mirror: bool = False) -> Any:
        turn = choose(sample)  # the path of nets without a context branch (``augment``)
        return original_dihedral(sample, *(turn if turn is not None else (quarter_turns, mirror)))

    dataset.augment_with_context = patched  # type: ignore[assignment]
    augment.dihedral = patched_dihedral  # type: ignore[assignment]
    try:
        yield
    finally:
        dataset.augment_with_context = original  # type: ignore[assignment]
        augment.dihedral = original_dihedral  # type: ignore[assignment]


def turned_batches() -> Any:
    """Batches turned by :func:`turn_towards_fixed` (a sample without a sun keeps a random turn)."""
    return fixed_turns(lambda s: None if s.light is None else turn_towards_fixed(s.light))


def unturned_batches() -> Any:
    """Batches that keep the photo's orientation: the fixed sun stays on its side."""
    return fixed_turns(lambda s: (0, False))


def score(weights: Path | None, truth: Path, oracle: bool = False, turned: bool = False) -> dict[str, float]:
    from mlvfx.data.augment import sun_direction
    from mlvfx.nets.infer import load_material_net, predict_material

    net = load_material_net(weights) if weights else None
    tilt_p, tilt_t, err, flat = [], [], [], []
    for folder in sample_folders(truth):
        lit, _ = read_image(folder / "lit.png", kind="color")
        sun = sun_direction(json.loads((folder / "meta.json").read_text())) if oracle or turned else None
        t = read_map(folder, "normal")
        if t is None:
            continue
        up = np.zeros_like(t)
        up[..., 2] = 1.0
        flat.append(normal_errors(up, t)["normal_mean_deg"])
        tilt_t.append(normal_errors(t, up)["normal_mean_deg"])
        if net is not None:
            photo = np.asarray(lit[..., :3], np.float32)
            q, m = turn_towards_fixed(sun) if turned else (0, False)
            photo = np.ascontiguousarray(np.rot90(photo, q, axes=(0, 1)))
            photo = np.ascontiguousarray(photo[:, ::-1]) if m else photo
            with oracle_thumbnails(sun) if oracle else nullcontext():
                p = predict_material(net, photo, integrate=False).normal
            p = turn_back(p, q, m)
            err.append(normal_errors(p, t)["normal_mean_deg"])
            tilt_p.append(normal_errors(p, up)["normal_mean_deg"])
    out = {"flat": float(np.mean(flat)), "tilt_truth": float(np.mean(tilt_t))}
    if err:
        out |= {"error": float(np.mean(err)), "tilt_pred": float(np.mean(tilt_p))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True, help="the model to start from")
    ap.add_argument("--out", type=Path, required=True, help="work folder (renders and runs are reused)")
    ap.add_argument("--family", default="rocky")
    ap.add_argument("--count", type=int, default=100, help="training renders per condition")
    ap.add_argument("--val", type=int, default=20, help="validation renders per condition")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=515151, help="spec seed (no recipe uses it)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--light", type=float, default=1.0, help="light-loss weight of 'random+light'")
    ap.add_argument(
        "--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS, help="which to run"
    )
    args = ap.parse_args()

    from mlvfx.train.material import train_material, with_overrides
    from mlvfx.train.recipe import load_recipe

    torch.set_num_threads(args.threads)
    recipe = load_recipe(ROOT / "model_zoo/recipes/material_v4.json")
    recipe = with_overrides(
        recipe,
        steps=args.steps,
        warmup=100,
        budget_minutes=600,
        init=str(args.weights.resolve()),
        threads=args.threads,
    )
    results: dict[str, dict[str, Any]] = {}
    for cond in args.conditions:
        relight, folder, fixed = LIGHTING.get(cond, (None, "random", False))
        renders = args.out / folder
        t0 = time.perf_counter()
        render_set(renders / "train", args.family, args.seed, range(args.count), relight)
        val = renders / "val"
        render_set(val, args.family, args.seed, range(args.count, args.count + args.val), relight)
        rendered = time.perf_counter() - t0
        run = (
            args.out
            / (f"random_light_{args.light:g}" if cond == "random+light" else cond.replace("+", "_"))
            / "run"
        )
        cond_recipe = recipe
        if cond == "random+light":  # the random condition plus the light-direction loss
            cond_recipe = dataclasses.replace(recipe, loss=dataclasses.replace(recipe.loss, light=args.light))
        oracle, turned = cond == "random+oracle", cond == "random+turned"
        # "fixed" and its variants: no turns or mirrors, the light stays on one side of the image.
        batches = (
            oracle_batches()
            if oracle
            else turned_batches()
            if turned
            else unturned_batches()
            if fixed
            else nullcontext()
        )
        t1 = time.perf_counter()
        with batches:
            res = train_material(
                cond_recipe, data_dir=renders / "train", out_dir=run, resume=True, export_onnx=False
            )
        trained = time.perf_counter() - t1
        log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        light = [(r["step"], r["light"]) for r in log if r.get("event") == "train" and "light" in r]
        first = [v for step, v in light if step <= 250]
        last = [v for step, v in light if step > args.steps - 250]
        results[cond] = {
            "render_s": round(rendered),
            "train_s": round(trained),
            "train_s_logged": next(r["seconds"] for r in reversed(log) if r.get("event") == "end"),
            "light_loss_first_last": [float(np.mean(first)), float(np.mean(last))] if light else None,
            "before": score(args.weights, val, oracle, turned),
            "after": score(res.weights, val, oracle, turned),
            "after_on_train": score(res.weights, renders / "train", oracle, turned),
        }
    saved = args.out / "results.json"
    results = (json.loads(saved.read_text()) if saved.is_file() else {}) | results
    saved.write_text(json.dumps(results, indent=1))
    print(
        f"family {args.family}, {args.count} training and {args.val} validation renders per condition, "
        f"{args.steps} steps from {args.weights.name}"
    )
    for cond, r in results.items():
        ll = r["light_loss_first_last"]
        light_text = (
            f", light loss (1 - cos) {ll[0]:.3f} over its first 250 steps, {ll[1]:.3f} over its last"
            if ll
            else ""
        )
        print(f"{cond}: trained {r['train_s_logged']:.0f} s (log){light_text}")
    print(
        "\n| condition | tilt truth | flat error | before: tilt / error | after: tilt / error "
        "| after, on its training renders: tilt / error (flat) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for cond, r in results.items():
        b, a, tr = r["before"], r["after"], r["after_on_train"]
        print(
            f"| {cond} | {b['tilt_truth']:.1f}° | {b['flat']:.2f}° "
            f"| {b['tilt_pred']:.1f}° / {b['error']:.2f}° "
            f"| {a['tilt_pred']:.1f}° / {a['error']:.2f}° "
            f"| {tr['tilt_pred']:.1f}° / {tr['error']:.2f}° ({tr['flat']:.2f}°) |"
        )


if __name__ == "__main__":
    main()
