"""Cost of filling the colour under alpha 0 (``mlvfx.classical.filters.fill_transparent``).

A straight-alpha RGBA image with its right half transparent, at each ``--side``: seconds and the
memory allocated beyond the input (tracemalloc's peak), with the cost of one copy of the image
measured in the same run as the yardstick (the fill returns a copy, so that part is unavoidable).

    .venv/bin/python bench/fill_transparent.py --side 1024 4096
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np


def measure(fn, image: np.ndarray) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    t = time.perf_counter()
    fn(image)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 2**30


def main() -> int:
    from mlvfx.classical.filters import fill_transparent

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, nargs="+", default=[1024, 4096])
    args = ap.parse_args()
    print("| side | fill s | fill GiB | copy s | copy GiB | fill / copy time |")
    print("|---:|---:|---:|---:|---:|---:|")
    for side in args.side:
        rng = np.random.default_rng(0)
        image = rng.random((side, side, 4), dtype=np.float32)
        image[..., 3] = 1.0
        image[:, side // 2 :, 3] = 0.0
        fill_transparent(image[:64, :64].copy())  # warm-up
        fs, fg = measure(fill_transparent, image)
        cs, cg = measure(np.copy, image)
        print(f"| {side} | {fs:.2f} | {fg:.2f} | {cs:.3f} | {cg:.2f} | {fs / cs:.0f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
