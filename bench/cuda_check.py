"""On a machine with CUDA: do the CUDA paths agree with the CPU ones, and how much faster are they?

Everything is measured in one run on one machine, CPU against CUDA:

* ``material``: the learned material operator's tiled prediction (``predict_material``) on the
  bundled sample photo, enlarged to ``--size``: the largest difference between the CPU and CUDA
  maps, and seconds per megapixel on each (CUDA also with larger tile batches);
* ``train``: steps of ``mlvfx.train.train_material`` with a published recipe's settings (no
  warm start) on synthetic samples: seconds per step on each device (the CPU with the recipe's
  thread count), and that the loss is finite.

The smoke solvers need no extra script: ``mlvfx smoke bench`` picks CUDA when present, and
``MLVFX_DEVICE=cpu`` forces the CPU (see docs/BENCHMARKS.md).

    .venv/bin/python bench/cuda_check.py --weights model_zoo/weights/material-0.6.0.safetensors \
        --json cuda_check.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _photo(size: int) -> np.ndarray:
    from mlvfx.io import read_image

    photo = read_image(ROOT / "core/mlvfx/samples/sample_photo.png")[0][..., :3]
    reps = -(-size // min(photo.shape[:2]))
    big = np.tile(photo, (reps, reps, 1))[:size, :size]
    return np.ascontiguousarray(big.astype(np.float32))


def material(weights: Path, size: int, gpu: str = "cuda") -> dict[str, Any]:
    from mlvfx.nets.infer import load_material_net, predict_material

    photo = _photo(size)
    out: dict[str, Any] = {"size": size}
    maps: dict[str, Any] = {}
    for device, batches in (("cpu", (2,)), ("cuda", (2, 16))):
        net = load_material_net(weights, gpu if device == "cuda" else "cpu")
        predict_material(net, photo[:256, :256])  # warm-up: caches, kernels, allocator
        for batch in batches:
            _sync()
            t = time.perf_counter()
            res = predict_material(net, photo, batch=batch)
            _sync()
            seconds = time.perf_counter() - t
            out[f"{device}_batch{batch}_s_per_mp"] = round(seconds / (size * size / 1e6), 3)
            maps.setdefault(device, res)
    a, b = maps["cpu"], maps["cuda"]
    cos = np.clip(np.sum(a.normal * b.normal, axis=-1), -1.0, 1.0)
    out["normal_max_deg"] = float(np.degrees(np.arccos(cos)).max())
    out["albedo_max_abs"] = float(np.abs(a.albedo - b.albedo).max())
    out["roughness_max_abs"] = float(np.abs(a.roughness - b.roughness).max())
    span = float(np.ptp(a.height_px)) or 1.0
    out["height_max_abs_rel"] = float(np.abs(a.height_px - b.height_px).max() / span)
    out["cuda_speedup_batch2"] = round(out["cpu_batch2_s_per_mp"] / out["cuda_batch2_s_per_mp"], 1)
    out["cuda_speedup_batch16"] = round(out["cpu_batch2_s_per_mp"] / out["cuda_batch16_s_per_mp"], 1)
    return out


def _synthetic_data(root: Path, count: int, size: int = 256) -> None:
    """Samples in the factory's layout with a simple shaded relief (a speed check needs no renders)."""
    from mlvfx.data.augment import normals_from_height
    from mlvfx.io import write_image

    for i in range(count):
        rng = np.random.default_rng(i)
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        height = 0.01 * (np.sin(x / (5 + i)) * np.cos(y / 7)).astype(np.float32)
        normal = normals_from_height(height * size)
        albedo = np.clip(rng.random(3).astype(np.float32) * 0.6 + 0.2 + 0.1 * np.sin(x / 9)[..., None], 0, 1)
        shade = np.clip(normal @ np.array([0.3, 0.3, 0.9], np.float32), 0.05, 1)
        lit = np.clip(albedo * shade[..., None], 0, 1)
        d = root / f"s{i:06d}"
        d.mkdir(parents=True)
        write_image(d / "lit.png", lit, kind="color", bit_depth=16)
        write_image(d / "albedo.png", albedo, kind="color", bit_depth=16)
        write_image(d / "normal.png", normal * 0.5 + 0.5, kind="data", bit_depth=16)
        lo, hi = float(height.min()), float(height.max())
        write_image(d / "height16.png", (height - lo) / (hi - lo), kind="data", bit_depth=16)
        write_image(d / "roughness.png", np.full((size, size), 0.3, np.float32), kind="data")
        meta = {"family": "bricks", "seed": 7, "index": i, "height_range": [lo, hi], "size": size}
        (d / "meta.json").write_text(json.dumps(meta))


def train(recipe_path: Path, steps: dict[str, int], gpu: str = "cuda") -> dict[str, Any]:
    from mlvfx.train.material import train_material
    from mlvfx.train.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    recipe = replace(recipe, train=replace(recipe.train, init="", checkpoint_minutes=1000.0, log_every=1))
    out: dict[str, Any] = {"recipe": recipe.name, "batch": recipe.train.batch, "crop": recipe.train.crop}
    tmp = Path(tempfile.mkdtemp(prefix="mlvfx-cuda-check-"))
    try:
        _synthetic_data(tmp / "data", 12)
        for device, n in steps.items():
            records: list[dict[str, Any]] = []
            train_material(
                recipe,
                data_dir=tmp / "data",
                out_dir=tmp / device,
                steps=n,
                device=gpu if device == "cuda" else "cpu",
                export_onnx=False,
                log=records.append,
            )
            train_records = [r for r in records if r.get("event") == "train"]
            # Seconds per step after the first 5 (warm-up), from the run's own log.
            first = next(r for r in train_records if r["step"] == 5)
            last = train_records[-1]
            out[f"{device}_s_per_step"] = round((last["seconds"] - first["seconds"]) / (last["step"] - 5), 4)
            out[f"{device}_final_loss"] = round(float(last["total"]), 4)
            out[f"{device}_finite"] = bool(np.isfinite(last["total"]))
        out["cuda_speedup"] = round(out["cpu_s_per_step"] / out["cuda_s_per_step"], 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--recipe", type=Path, default=ROOT / "model_zoo/recipes/material_v3e.json")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--cpu-steps", type=int, default=25)
    ap.add_argument("--cuda-steps", type=int, default=505)
    ap.add_argument("--gpu", default="cuda", help=argparse.SUPPRESS)  # "cpu": a dry run of the script
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--parts", nargs="+", choices=("material", "train"), default=["material", "train"])
    args = ap.parse_args()
    if args.gpu == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/cuda_check.py: no CUDA device here; nothing to compare")
    result: dict[str, Any] = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if args.gpu == "cuda" else "none (dry run)",
        "cpu_threads": torch.get_num_threads(),
    }
    if "material" in args.parts:
        result["material"] = material(args.weights, args.size, args.gpu)
        print(json.dumps({"material": result["material"]}), flush=True)
    if "train" in args.parts:
        result["train"] = train(args.recipe, {"cpu": args.cpu_steps, "cuda": args.cuda_steps}, args.gpu)
        print(json.dumps({"train": result["train"]}), flush=True)
    print(json.dumps(result, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
