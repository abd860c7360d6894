"""Benchmark the tiled inference engine: seconds per megapixel and peak RSS at 1K, 4K and 8K.

Each size runs in a fresh subprocess so its peak RSS is its own. The per-tile function is a small
fixed-weight conv net (3 -> 16 -> 16 -> 3 channels, 3x3 kernels, ReLU; about 2.8 kFLOP/px), the
kind of work the engine exists for. Printed alongside, measured in the same run: the same net on
the whole image at once (the untiled baseline; skipped at 8K where it needs > 10 GB), so the
tiling overhead is a ratio, and time(4K)/time(1K), which must be 16 +- 25% for linear cost.

    .venv/bin/python bench/tiling.py [--sizes 1024,4096,8192] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

_NET = None


def tile_fn(batch: np.ndarray) -> np.ndarray:
    import torch

    global _NET
    if _NET is None:
        torch.manual_seed(0)
        _NET = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 3, 3, padding=1),
        ).eval()
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
        y: np.ndarray = _NET(x).permute(0, 2, 3, 1).contiguous().numpy()
    return y


def child(size: int, mode: str, repeat: int) -> dict[str, float]:
    from mlvfx.tiling import run_tiled

    rng = np.random.default_rng(0)
    image = rng.random((size, size, 3), dtype=np.float32)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        if mode == "tiled":
            result = run_tiled(image, tile_fn, tile=512, overlap=32, margin=8, batch=4)
        else:
            result = tile_fn(image[None])[0]
        best = min(best, time.perf_counter() - start)
        del result
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"size": size, "mode": mode, "seconds": best, "peak_rss_mb": peak_kb / 1024}


def measure(size: int, mode: str, repeat: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", str(size), "--mode", mode, "--repeat", str(repeat)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(proc.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1024,4096,8192")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", type=int)
    parser.add_argument("--mode", default="tiled")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.mode, args.repeat)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    header = ("size", "tiled s", "s/MP", "peak RSS MB", "untiled s", "tiled/untiled")
    print("{:>6} {:>9} {:>7} {:>12} {:>10} {:>14}".format(*header))
    for size in sizes:
        tiled = measure(size, "tiled", args.repeat if size <= 4096 else 1)
        mp = size * size / 1e6
        rows.append((size, tiled))
        secs, peak = tiled["seconds"], tiled["peak_rss_mb"]
        line = f"{size:>6} {secs:>9.3f} {secs / mp:>7.4f} {peak:>12.0f}"
        if size <= 4096:
            whole = measure(size, "whole", args.repeat)
            line += f" {whole['seconds']:>10.3f} {tiled['seconds'] / whole['seconds']:>14.2f}"
        print(line)
    by_size = dict(rows)
    if 1024 in by_size and 4096 in by_size:
        ratio = by_size[4096]["seconds"] / by_size[1024]["seconds"]
        verdict = "OK" if 12.0 <= ratio <= 20.0 else "OUT OF RANGE"
        print(f"time(4K)/time(1K) = {ratio:.2f} (linear: 16 +- 25% -> 12..20) {verdict}")
    if 8192 in by_size:
        peak = by_size[8192]["peak_rss_mb"]
        print(f"8K peak RSS = {peak:.0f} MB (limit 3072 MB) {'OK' if peak < 3072 else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
