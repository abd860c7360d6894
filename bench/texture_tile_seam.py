"""Where ``mlvfx texture tile`` leaves its seam: coherence of the copy next to the wrap.

``make_tileable`` keeps the interior and re-synthesises a band along the edges; every output pixel
copies one exemplar pixel (a coordinate map). Between two neighbouring pixels the copy is
*coherent* when the right one copies the pixel right of the left one's source. A straight seam is
a column (or row) where most rows (columns) break coherence at once. ``mlvfx eval texture``'s
seam score compares only the wrap pair itself and misses a seam one pixel inside it (an audit,
stop 22), so this prints, per boundary near the wrap, the share of coherent pairs against the
median boundary of the band in the same run, and the worst one.

Exemplars: 256x256 crops of the bundled sample photo (a cracked-mud render: large cells, the hard
case) and scikit-image's brick, grass and gravel photos.

    .venv/bin/python bench/texture_tile_seam.py [--seeds 3] [--passes 0 1 1 4] [--coherence 2.0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlvfx.ops.texture as ops
from mlvfx.texture.patchmatch import SynthesisConfig


def exemplars() -> dict[str, np.ndarray]:
    from texture import exemplars as real

    from mlvfx.io import read_image
    from mlvfx.samples import sample_photo

    photo = read_image(sample_photo())[0][..., :3]
    out = {"sample_tl": photo[:256, :256], "sample_br": photo[-256:, -256:]}
    out.update({k: v for k, v in real(256).items() if k in ("brick", "grass", "gravel")})
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def coherence(coords: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Share of coherent neighbour pairs per boundary: ``cols[j]`` for columns (j - 1)|j (j = 0 is
    the wrap pair W - 1|0), ``rows[i]`` likewise for rows."""
    y, x = coords // width, coords % width
    cols = ((x == np.roll(x, 1, 1) + 1) & (y == np.roll(y, 1, 1))).mean(0)
    rows = ((y == np.roll(y, 1, 0) + 1) & (x == np.roll(x, 1, 0))).mean(1)
    return cols, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--band", type=float, default=0.15)
    ap.add_argument("--passes", type=int, nargs="+", default=None, help="SynthesisConfig.passes")
    ap.add_argument("--coherence", type=float, default=None, help="SynthesisConfig.coherence")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = SynthesisConfig()
    if args.passes is not None:
        cfg = SynthesisConfig(passes=tuple(args.passes), coherence=cfg.coherence)
    if args.coherence is not None:
        cfg = SynthesisConfig(passes=cfg.passes, coherence=args.coherence)
    captured: dict[str, torch.Tensor] = {}
    real_synthesize = ops.synthesize

    def spy(*a: object, **k: object) -> torch.Tensor:
        captured["coords"] = real_synthesize(*a, **k)  # type: ignore[arg-type]
        return captured["coords"]

    ops.synthesize = spy  # type: ignore[assignment]
    print(f"config: passes {cfg.passes}, coherence {cfg.coherence}, band {args.band}\n")
    print(
        "| exemplar | seed | worst column boundary (share coherent) | worst row boundary | band median | s |"
    )
    print("|---|---:|---|---|---:|---:|")
    worst_all: list[float] = []
    medians: list[float] = []
    for name, img in exemplars().items():
        h, w = img.shape[:2]
        bx, by = max(2, round(args.band * w)), max(2, round(args.band * h))
        near_c = [j % w for j in range(-bx, bx + 1)]  # boundaries within the band around the wrap
        near_r = [i % h for i in range(-by, by + 1)]
        for seed in range(args.seeds):
            t = time.perf_counter()
            ops.make_tileable(img, band=args.band, seed=seed, config=cfg)
            seconds = time.perf_counter() - t
            cols, rows = coherence(captured["coords"].cpu().numpy(), w)
            jc = min(near_c, key=lambda j: cols[j])
            jr = min(near_r, key=lambda i: rows[i])
            median = float(np.median(np.concatenate([cols[near_c], rows[near_r]])))
            worst_all.append(min(cols[jc], rows[jr]))
            medians.append(median)
            col = f"{(jc - 1) % w}|{jc}: {cols[jc]:.2f}"
            row = f"{(jr - 1) % h}|{jr}: {rows[jr]:.2f}"
            print(f"| {name} | {seed} | {col} | {row} | {median:.2f} | {seconds:.2f} |")
    print(
        f"\nmean worst boundary {np.mean(worst_all):.2f} against a band median of {np.mean(medians):.2f} "
        "(boundary 255|0 of a 256 px side is the wrap itself)"
    )


if __name__ == "__main__":
    main()
