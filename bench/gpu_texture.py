"""On a machine with CUDA: texture synthesis (grow, tile, paint) on CUDA against the same machine's CPU.

For each operation and size: seconds on each device (after a warm-up at 256²), the CUDA peak
memory, and how much the two outputs differ (share of pixels that differ by more than 1/255, and
the largest difference). The synthesis draws its random numbers on the CPU and moves them, so the
two devices should make the same choices until float round-off in the patch distances makes a
search pick another candidate; the share of differing pixels measures that.

    python3 bench/gpu_texture.py --sizes 1024 2048 --cuda-only 4096 --json gpu_texture.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _exemplar() -> np.ndarray:
    import cv2

    from mlvfx.io import read_image

    photo = read_image(ROOT / "core/mlvfx/samples/sample_photo.png")[0][..., :3]
    return np.ascontiguousarray(cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA), np.float32)


def _ops(ex: np.ndarray, size: int) -> dict[str, Any]:
    from mlvfx.ops.texture import grow, make_tileable, paint

    big = np.ascontiguousarray(np.tile(ex, (size // 256, size // 256, 1)))
    labels = np.zeros((size, size), np.int64)
    labels[:, size // 2 :] = 1
    yy, xx = np.mgrid[:size, :size]
    labels[(yy - size / 2) ** 2 + (xx - size / 4) ** 2 < (size / 6) ** 2] = 1
    flipped = np.ascontiguousarray(ex[::-1, ::-1] * 0.8)
    return {
        "grow": lambda dev: grow({"color": ex}, (size, size), seed=0, device=dev)["color"],
        "tile_synthesis": lambda dev: make_tileable({"color": big}, method="synthesis", seed=0, device=dev)[
            "color"
        ],
        "tile_stitch": lambda dev: make_tileable({"color": big}, method="stitch", seed=0, device=dev)[
            "color"
        ],
        "paint": lambda dev: paint(labels, {0: {"color": ex}, 1: {"color": flipped}}, seed=0, device=dev)[
            "color"
        ],
    }


def _time(fn: Any, dev: str) -> tuple[float, np.ndarray, float]:
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync()
    t = time.perf_counter()
    out = np.asarray(fn(dev))
    _sync()
    secs = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else 0.0
    return secs, out, peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1024], help="sizes timed on both devices")
    ap.add_argument("--cuda-only", type=int, nargs="*", default=[], help="sizes timed on CUDA only")
    ap.add_argument("--ops", nargs="*", default=["grow", "tile_synthesis", "tile_stitch", "paint"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA here")
        return 1
    ex = _exemplar()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, CPU threads {torch.get_num_threads()}")
    for dev in ("cpu", "cuda"):  # warm-up: kernels, allocator, OpenCV
        for name, fn in _ops(ex, 256).items():
            if name in args.ops:
                fn(dev)
    rows: list[dict[str, Any]] = []
    print("| op | size | CPU s | CUDA s | CPU / CUDA | CUDA peak GiB | pixels differing > 1/255 | max diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in [*args.sizes, *args.cuda_only]:
        for name, fn in _ops(ex, size).items():
            if name not in args.ops:
                continue
            row: dict[str, Any] = {"op": name, "size": size}
            g_s, g_out, peak = _time(fn, "cuda")
            row.update(cuda_s=g_s, cuda_peak_gib=peak)
            if size in args.sizes:
                c_s, c_out, _ = _time(fn, "cpu")
                diff = np.abs(c_out - g_out)
                row.update(cpu_s=c_s, differing=float((diff > 1 / 255).mean()), max_diff=float(diff.max()))
            rows.append(row)
            cpu = f"{row['cpu_s']:.2f}" if "cpu_s" in row else "-"
            ratio = f"{row['cpu_s'] / g_s:.1f}x" if "cpu_s" in row else "-"
            differ = f"{row['differing']:.4f}" if "differing" in row else "-"
            mx = f"{row['max_diff']:.3f}" if "max_diff" in row else "-"
            print(
                f"| {name} | {size} | {cpu} | {g_s:.2f} | {ratio} | {peak:.2f} | {differ} | {mx} |",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
