"""Batch-1 3-tap convolutions on the CPU: PyTorch's dispatcher against oneDNN called directly.

PyTorch sends a batch-1 3D convolution to oneDNN only when batch x channels x depth x height is
large; the small grids of the smoke surrogate (16^3 to 32^3, 8-16 channels) fall to its naive
kernel. `mlvfx.fluids.surrogate._conv` calls oneDNN directly. This prints both times and their
ratio, measured in the same run (median of --repeats after a warm-up), and checks the outputs agree.

    .venv/bin/python bench/conv_onednn.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from mlvfx.fluids.surrogate import _conv


def median_ms(fn: object, repeats: int) -> float:
    assert callable(fn)
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}")
    print("| input (batch 1) | channels in -> out | F.conv ms | oneDNN direct ms | ratio |")
    print("|---|---|---:|---:|---:|")
    gen = torch.Generator().manual_seed(0)
    for shape, c_in, c_out in [
        ((16, 16, 16), 16, 16),
        ((32, 32, 32), 16, 16),
        ((32, 32, 32), 12, 64),
        ((64, 64), 16, 16),
    ]:
        x = torch.randn((1, c_in, *shape), generator=gen)
        w = torch.randn((c_out, c_in) + (3,) * len(shape), generator=gen) * 0.1
        b = torch.zeros(c_out)
        conv = F.conv3d if len(shape) == 3 else F.conv2d
        with torch.no_grad():
            ref = conv(x, w, b, padding=1)
            got = _conv(x, w, b)
            if not torch.allclose(ref, got, atol=1e-4, rtol=1e-4):
                print(f"outputs differ for {shape}: max {float((ref - got).abs().max()):.2e}")
                return 1
            plain = median_ms(lambda c=conv, x=x, w=w, b=b: c(x, w, b, padding=1), args.repeats)
            direct = median_ms(lambda x=x, w=w, b=b: _conv(x, w, b), args.repeats)
        size = "x".join(map(str, shape))
        print(f"| {size} | {c_in} -> {c_out} | {plain:.2f} | {direct:.2f} | {plain / direct:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
