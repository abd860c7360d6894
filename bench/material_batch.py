"""What a material training batch costs: the dataset's fast path against the reference augmentation.

``MaterialDataset.batch`` builds each step's batch on the CPU between the optimiser steps. Since
stop 14 it crops the maps before converting them from float16 and jitters the photo's colour
channel by channel (``augment_with_context``). This times, in one run and interleaved, that path
against the path it replaced: the whole sample converted to float32, turned (``dihedral``),
jittered with the old broadcast formula, then cropped. It also checks that both give the same
batch, value for value.

    .venv/bin/python bench/material_batch.py --data ~/.cache/mlvfx/data/material_v1_train --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import mlvfx.data.augment as aug
from mlvfx.train.dataset import MaterialDataset, context_batch


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
    """``data.batch(..., context=True)`` the way it was built before stop 14: each whole sample
    converted to float32, turned, jittered, then cropped."""
    rng = np.random.default_rng([seed, step])
    picks = rng.integers(0, len(data.train), size=batch)
    pairs = []
    for i in picks:
        out = aug.dihedral(data.train[int(i)].sample(), int(rng.integers(4)), bool(rng.integers(2)))
        out = replace(out, lit=broadcast_jitter(out.lit, rng))
        h, w = out.shape
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        pairs.append((aug.crop(out, top, left, crop), out.lit))
    return context_batch(pairs)


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
