"""The learned material model against the baselines: accuracy on held-out data, seams, speed, memory.

``accuracy``: runs ``mlvfx.ops.material(method="learned")`` (through a temporary zoo manifest that
points at ``--weights``, so the exact operator path is measured even before publishing) and the
baselines of ``bench/material_baselines.py`` (flat normal / photo albedo / constant height, and the
classical maps at several normal strengths) on the public validation set, scores everything with
``mlvfx.eval.material`` and prints per-family ratios against the *best* baseline per metric.
It also measures tile seams (angular error within 2 px of tile borders / interior, with small tiles
so that borders exist) and the height/normal consistency of the learned output.

``speed``: seconds per megapixel of the learned and classical operators in the same run, and the
wall time and peak RSS of a 4096² photo through each (one child process per method).

Usage:
    .venv/bin/python bench/material.py accuracy --weights W.safetensors [--truth DIR] [--json OUT]
        [--sheets DIR]
    .venv/bin/python bench/material.py speed --weights W.safetensors [--size 1024] [--big 4096] [--tileable]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from material_baselines import classical as classical_baseline  # noqa: E402
from material_baselines import predict, real_photo_inputs, trivial  # noqa: E402

from mlvfx.eval.material import METRICS, EvalResult, evaluate, is_better, sample_folders  # noqa: E402
from mlvfx.io import read_image  # noqa: E402

Float = npt.NDArray[np.float32]
MODEL_ID = "material"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def temporary_zoo(weights: Path) -> Iterator[None]:
    """Point the zoo at a temporary manifest whose ``material`` model is ``weights`` (file:// URL)."""
    weights = weights.resolve()
    entry = {
        "id": MODEL_ID,
        "version": "0.0.0",
        "task": "material",
        "format": ["safetensors"],
        "license": "Apache-2.0",
        "files": [
            {
                "name": weights.name if weights.name.endswith(".safetensors") else "w.safetensors",
                "sha256": _sha256(weights),
                "size": weights.stat().st_size,
                "urls": [weights.as_uri()],
            }
        ],
        "io": {
            "inputs": [{"name": "photo", "channels": 3, "color_space": "linear"}],
            "outputs": [{"name": "maps", "channels": 8, "color_space": "data"}],
            "tile": 384,
            "overlap": 32,
            "scale": 1,
        },
        "metrics": {},
        "card": "cards/material_v1.md",
        "recipe": "recipes/material_v1.json",
    }
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.json"
        manifest.write_text(json.dumps({"schema_version": 1, "models": [entry]}))
        old = {k: os.environ.get(k) for k in ("MLVFX_ZOO_MANIFEST", "MLVFX_CACHE_DIR", "MLVFX_ZOO_MIRRORS")}
        os.environ["MLVFX_ZOO_MANIFEST"] = str(manifest)
        os.environ["MLVFX_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ["MLVFX_ZOO_MIRRORS"] = ""
        try:
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def learned_method(lit: Float, quality: str = "standard") -> dict[str, Float]:
    from mlvfx.ops.material import material

    res = material(lit, "normal,height,albedo,roughness", method="learned", quality=quality)  # type: ignore[arg-type]
    return res.maps


def classical_op(lit: Float) -> dict[str, Float]:
    from mlvfx.ops.material import material

    return material(lit, "normal,height,albedo,roughness", method="classical").maps


def seam_ratio(weights: Path, truth: Path, tile: int = 96, band: int = 2) -> dict[str, float]:
    """Angular error within ``band`` px of interior tile borders divided by the error elsewhere."""
    from mlvfx.data.augment import normals_from_height
    from mlvfx.eval.material import read_map
    from mlvfx.nets.infer import OVERLAP, load_material_net, predict_material
    from mlvfx.tiling import plan_axis

    net = load_material_net(weights)
    border_err: list[float] = []
    inner_err: list[float] = []
    consistency: list[float] = []
    for folder in sample_folders(truth):
        lit, _ = read_image(folder / "lit.png", kind="color")
        n_true = read_map(folder, "normal")
        assert n_true is not None
        maps = predict_material(net, np.asarray(lit[..., :3], np.float32), tile=tile)
        n_true /= np.linalg.norm(n_true, axis=-1, keepdims=True)
        ang = np.degrees(np.arccos(np.clip((maps.normal * n_true).sum(-1), -1, 1)))
        h, w = ang.shape
        mask = np.zeros((h, w), bool)
        for length, axis in ((h, 0), (w, 1)):
            plan = plan_axis(length, tile, OVERLAP)
            for s in plan.starts:
                for edge in (s, s + plan.tile):
                    if 0 < edge < length:
                        sl = slice(max(0, edge - band), min(length, edge + band))
                        if axis == 0:
                            mask[sl, :] = True
                        else:
                            mask[:, sl] = True
        border_err.append(float(ang[mask].mean()))
        inner_err.append(float(ang[~mask].mean()))
        nh = normals_from_height(maps.height_px)
        c = np.degrees(np.arccos(np.clip((nh * maps.normal).sum(-1), -1, 1)))[2:-2, 2:-2]
        consistency.append(float(c.mean()))
    return {
        "seam_border_deg": float(np.mean(border_err)),
        "seam_interior_deg": float(np.mean(inner_err)),
        "seam_ratio": float(np.mean(border_err) / np.mean(inner_err)),
        "height_normal_consistency_deg": float(np.mean(consistency)),
    }


def accuracy(args: argparse.Namespace) -> None:
    methods: dict[str, Callable[[Float], dict[str, Float]]] = {
        "learned": functools.partial(learned_method, quality=args.quality),
        "trivial": trivial,
        "classical op (default relief)": classical_op,
    }
    for s in (0.5, 1.0, 2.0, 4.0, 8.0):
        methods[f"classical s={s:g}"] = classical_baseline(s)
    results: dict[str, EvalResult] = {}
    seconds: dict[str, float] = {}
    with temporary_zoo(args.weights), tempfile.TemporaryDirectory() as tmp:
        learned_method(np.full((64, 64, 3), 0.5, np.float32))  # fetch + load once, outside the timing
        for name, fn in methods.items():
            out = Path(tmp) / f"m{len(results)}"
            seconds[name] = predict(fn, args.truth, out)
            results[name] = evaluate(out, args.truth)
            if args.sheets is not None and name in ("learned", "classical s=4"):
                from mlvfx.eval.sheet import contact_sheet

                args.sheets.mkdir(parents=True, exist_ok=True)
                tag = "learned" if name == "learned" else "classical"
                contact_sheet(
                    args.sheets / f"val_{tag}.png",
                    truth=args.truth,
                    pred=out,
                    limit=16,
                    tile=128,
                    overwrite=True,
                )
        if args.sheets is not None:
            from mlvfx.eval.sheet import contact_sheet

            real = real_photo_inputs(Path(tmp) / "real")
            for tag, fn in (("learned", learned_method), ("classical", classical_baseline(4.0))):
                predict(fn, real, Path(tmp) / f"real_{tag}")
                contact_sheet(
                    args.sheets / f"real_{tag}.png",
                    truth=real,
                    pred=Path(tmp) / f"real_{tag}",
                    tile=192,
                    overwrite=True,
                )
    seams = seam_ratio(args.weights, args.truth)

    baselines = [k for k in methods if k != "learned"]

    # Issue 5's targets are set on the public validation set with the held-out families reported
    # separately: "overall" is every sample, the two split rows the trained and held-out ones.
    def grouped(r: Any) -> dict[str, dict[str, Any]]:
        split = {f"overall, {k}": v for k, v in r.by_split().items()}
        return {**r.per_family(), "overall": r.overall(), **split}

    fams = grouped(results["learned"])
    base_fams = {k: grouped(results[k]) for k in baselines}
    report: dict[str, Any] = {
        "truth": str(args.truth),
        "seconds_per_image": seconds,
        "seams": seams,
        "families": {},
    }
    targets = {"normal_mean_deg": 0.5, "albedo_si_rmse": 0.6, "height_rmse": 1.0, "roughness_mae": 1.0}
    print(f"truth: {args.truth} ({len(sample_folders(args.truth))} samples); weights: {args.weights}\n")
    print("| family | n | metric | learned | best baseline | which | ratio | target | ok |")
    print("|---|---:|---|---:|---:|---|---:|---:|:-:|")
    for fam, agg in fams.items():
        rows = {}
        for m, target in targets.items():
            best_name, best_val = None, None
            # height and roughness are judged against the classical baseline only (the bar);
            # normal and albedo against the best of everything, trivial included.
            pool = (
                baselines
                if m in ("normal_mean_deg", "albedo_si_rmse")
                else [k for k in baselines if k.startswith("classical")]
            )
            for k in pool:
                v = base_fams[k].get(fam, {}).get(m)
                if v is not None and (best_val is None or is_better(m, v, best_val)):
                    best_name, best_val = k, v
            mine = agg.get(m)
            ratio = None if mine is None or not best_val else mine / best_val
            ok = ratio is not None and (ratio <= target if target < 1 else ratio < 1.0)
            rows[m] = {
                "learned": mine,
                "best": best_val,
                "best_method": best_name,
                "ratio": ratio,
                "target": target,
                "ok": ok,
            }
            print(
                f"| {fam} | {agg['count']} | {m} | {mine:.4f} | {best_val:.4f} | {best_name} | "
                f"{ratio:.3f} | {'≤' if target < 1 else '<'}{target:g} | {'✓' if ok else '✗'} |"
            )
        report["families"][fam] = rows
    print()
    print(results["learned"].to_markdown(title="learned, per family"))
    print()
    print(
        f"seams (tile 96, overlap 32): border {seams['seam_border_deg']:.2f}°, interior "
        f"{seams['seam_interior_deg']:.2f}°, ratio {seams['seam_ratio']:.3f} (target ≤ 1.1)"
    )
    print(
        f"height/normal consistency: {seams['height_normal_consistency_deg']:.2f}° mean angle between the "
        "normals of the integrated height and the predicted normals"
    )
    print("seconds per 256² image: " + ", ".join(f"{k} {v:.3f}" for k, v in seconds.items()))
    report["metrics_all"] = {k: grouped(r) for k, r in results.items()}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    _ = METRICS


def _photo(size: int) -> Float:
    from mlvfx.samples import sample_photo

    img, _ = read_image(sample_photo(), kind="color")
    reps = -(-size // img.shape[0])
    big = np.tile(img[..., :3], (reps, reps, 1))[:size, :size]
    return np.ascontiguousarray(big, dtype=np.float32)


def child(args: argparse.Namespace) -> None:
    """One method on one size, in this (fresh) process; prints seconds and peak RSS as JSON."""
    from mlvfx.ops.material import material

    photo = _photo(args.size)
    with temporary_zoo(args.weights):
        if args.method == "learned":  # load the model outside the timing, as a session would
            material(photo[:64, :64], "normal", method="learned")
        t0 = time.perf_counter()
        maps = "normal,height,albedo,roughness"
        material(photo, maps, method=args.method, quality=args.quality, tileable=args.tileable)
        dt = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"method": args.method, "size": args.size, "seconds": dt, "peak_rss_mb": rss_mb}))


def _run_child(
    method: str, size: int, weights: Path, quality: str = "standard", tileable: bool = False
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "_child",
        "--method",
        method,
        "--size",
        str(size),
        "--weights",
        str(weights),
        "--quality",
        quality,
        *(["--tileable"] if tileable else []),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def speed(args: argparse.Namespace) -> None:
    rows = [
        _run_child(m, args.size, args.weights, args.quality, args.tileable) for m in ("classical", "learned")
    ]
    if args.tileable:
        print("tileable photos (wrapped context, periodic height)")
    mp = args.size * args.size / 1e6
    print("| method | size | s/MP | peak RSS MB |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['size']}² | {r['seconds'] / mp:.2f} | {r['peak_rss_mb']:.0f} |")
    print(f"learned / classical time ratio: {rows[1]['seconds'] / rows[0]['seconds']:.1f}x")
    if args.big:
        methods = ("classical", "learned")
        big = [_run_child(m, args.big, args.weights, args.quality, args.tileable) for m in methods]
        for r in big:
            print(
                f"| {r['method']} | {r['size']}² | {r['seconds'] / (args.big**2 / 1e6):.2f} | "
                f"{r['peak_rss_mb']:.0f} |"
            )
        print(f"4096²-class peak RSS under 3 GB: {all(r['peak_rss_mb'] < 3072 for r in big)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--weights", type=Path, required=True)
    a.add_argument("--truth", type=Path, default=ROOT / "model_zoo/eval/materials_v1/256")
    a.add_argument("--json", type=Path, default=None)
    a.add_argument("--sheets", type=Path, default=None)
    s = sub.add_parser("speed")
    s.add_argument("--weights", type=Path, required=True)
    s.add_argument("--size", type=int, default=1024)
    s.add_argument("--big", type=int, default=4096)
    c = sub.add_parser("_child")
    c.add_argument("--weights", type=Path, required=True)
    c.add_argument("--method", required=True)
    c.add_argument("--size", type=int, required=True)
    for p in (a, s, c):
        p.add_argument(
            "--quality",
            choices=("standard", "high"),
            default="standard",
            help="the learned operator's quality (high: 8 turned/mirrored views averaged)",
        )
    for p in (s, c):
        p.add_argument("--tileable", action="store_true", help="time the tileable path (wrapped context)")
    args = ap.parse_args()
    {"accuracy": accuracy, "speed": speed, "_child": child}[args.cmd](args)


if __name__ == "__main__":
    main()
