"""Do thin painted regions keep their texture? ``paint``'s default transition against a fixed one.

A label map of vertical stripes 6, 10, 20 and 40 px wide (label 1) on label 0, painted from a
red and a green noise exemplar (128 px). For each stripe it prints the share of its pixels that
came out green (its own texture), for the default transition (capped by the thinnest region since
stop 22) and for ``--transition`` = exemplar side / 8, the default before, in the same run.

    .venv/bin/python bench/texture_paint_thin.py
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from mlvfx.ops.texture import paint

WIDTHS = (6, 10, 20, 40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exemplar", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    n = args.exemplar

    def tinted(channel: int) -> np.ndarray:
        img = 0.1 * rng.random((n, n, 3))
        img[..., channel] = 0.6 + 0.2 * rng.random((n, n))
        return img.astype(np.float32)

    red, green = tinted(0), tinted(1)
    lab = np.zeros((160, 16 + sum(w + 40 for w in WIDTHS)), np.int64)
    spans, x0 = [], 16
    for w in WIDTHS:
        lab[:, x0 : x0 + w] = 1
        spans.append((x0, x0 + w))
        x0 += w + 40
    print(f"| transition | {' | '.join(f'{w}-px stripe' for w in WIDTHS)} | label 0 kept |")
    print("|---|" + "---:|" * (len(WIDTHS) + 1))
    for name, transition in (("default (capped)", None), (f"exemplar / 8 = {n / 8:g} px", n / 8.0)):
        out = paint(lab, {0: red, 1: green}, seed=args.seed, transition=transition)
        green_px = out[..., 1] > out[..., 0]
        shares = [float(green_px[:, a:b].mean()) for a, b in spans]
        kept = float((~green_px)[lab == 0].mean())
        print(f"| {name} | {' | '.join(f'{s:.2f}' for s in shares)} | {kept:.2f} |")


if __name__ == "__main__":
    main()
