"""bench/texture_tile_seam.py's measure: the share of coherent copies per boundary."""

from __future__ import annotations

import numpy as np
from bench_scripts import load_bench


def test_coherence_finds_a_straight_cut() -> None:
    seam = load_bench("texture_tile_seam")
    h = w = 16
    y, x = np.mgrid[0:h, 0:w]
    coords = y * w + x  # the identity copy: every pair coherent, except across the wrap
    cols, rows = seam.coherence(coords, w)
    assert cols[0] == 0.0 and rows[0] == 0.0 and np.all(cols[1:] == 1.0) and np.all(rows[1:] == 1.0)
    cut = coords.copy()
    cut[:, 5:] = ((y[:, 5:] + 3) % h) * w + x[:, 5:]  # columns 5.. copied from 3 rows lower
    cols, rows = seam.coherence(cut, w)
    assert cols[5] == 0.0 and np.all(np.delete(cols, [0, 5]) == 1.0)  # a straight cut at 4|5
