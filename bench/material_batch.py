"""What a material training batch costs: the dataset's fast path against the reference augmentation.

``MaterialDataset.batch`` builds each step's batch on the CPU between the optimiser steps. Since
stop 14 it crops the maps before converting them from float16 and jitters the photo's colour
channel by channel (``_Stored.with_context``). This times, in one run and interleaved, that path
against the reference one it replaced: ``augment_with_context`` on the whole converted sample,
with the broadcast colour jitter. It also checks that both give the same batch, value for value.

    .venv/bin/python bench/material_batch.py --data ~/.cache/mlvfx/data/material_v1_train --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import mlvfx.data.augment as aug
from mlvfx.nets.material import context_thumbnail
from mlvfx.train.dataset import MaterialDataset, to_batch


def broadcast_jitter(lit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The colour jitter as it was before stop 14 (one broadcast expression)."""
    gain = 2.0 ** rng.uniform(-0.5, 0.5)
    wb = 1.0 + rng.uniform(-0.08, 0.08, size=3)
    out = lit * (gain * wb).astype(np.float32)
    grey = out @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    s = 1.0 + rng.uniform(-0.25, 0.25)
    out = grey[..., None] + (out - grey[..., None]) * s
    out = np.clip(out, 0.0, 1.0) ** (1.0 + rng.uniform(-0.15, 0.15))
    return np.asarray(out, dtype=np.float32)


def reference_batch(
    data: MaterialDataset, seed: int, step: int, batch: int, crop: int
) -> dict[str, torch.Tensor]:
    """``data.batch(..., context=True)`` the way it was built before stop 14."""
    rng = np.random.default_rng([seed, step])
    picks = rng.integers(0, len(data.train), size=batch)
    real = aug.color_jitter
    aug.color_jitter = broadcast_jitter  # type: ignore[assignment]
    try:
        pairs = [aug.augment_with_context(data.train[int(i)].sample(), rng, crop_size=crop) for i in picks]
    finally:
        aug.color_jitter = real
    out = to_batch([p[0] for p in pairs])
    whole = torch.from_numpy(np.stack([p[1].transpose(2, 0, 1) for p in pairs]).astype(np.float32))
    out["thumb"] = context_thumbnail(whole)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a factory dataset folder")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = MaterialDataset(args.data)
    data.refresh()
    times: dict[str, list[float]] = {"reference": [], "fast": []}
    for step in range(args.batches):
        order = ("reference", "fast") if step % 2 else ("fast", "reference")
        got: dict[str, dict[str, torch.Tensor]] = {}
        for name in order:
            t0 = time.perf_counter()
            if name == "fast":
                got[name] = data.batch(1, step, args.batch, args.crop, context=True)
            else:
                got[name] = reference_batch(data, 1, step, args.batch, args.crop)
            times[name].append(time.perf_counter() - t0)
        for key, want in got["reference"].items():
            if not torch.equal(got["fast"][key], want):
                raise SystemExit(f"batch {step}: {key} differs between the two paths")
    ref = statistics.median(times["reference"]) * 1e3
    fast = statistics.median(times["fast"]) * 1e3
    print(f"{len(data.train)} training samples from {args.data}; batch {args.batch}, crop {args.crop}")
    print(f"{args.batches} batches each, interleaved; every batch identical in both paths")
    print("| path | median ms per batch | ratio |")
    print("|---|---:|---:|")
    print(f"| reference (before stop 14) | {ref:.1f} | 1.00x |")
    print(f"| fast (MaterialDataset.batch) | {fast:.1f} | {fast / ref:.2f}x |")


if __name__ == "__main__":
    main()
