"""bench/material_fixed_light.py: its "fixed" conditions really keep the photo's orientation in the
training batches (stop 14's faster batch path had silently bypassed the patch stops 8-9 used)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from bench_scripts import load_bench

from mlvfx.data.augment import augment_with_context, load_sample
from mlvfx.io import write_image
from mlvfx.train.dataset import MaterialDataset

ROOT = Path(__file__).resolve().parents[1]
TILT = np.array([0.6, 0.0, 0.8], np.float32)  # every normal leans towards +X


def _bench() -> ModuleType:
    return load_bench("material_fixed_light")


def _sample(root: Path) -> Path:
    size = 32
    rng = np.random.default_rng(0)
    d = root / "s000000"
    d.mkdir(parents=True)
    lit = rng.random((size, size, 3)).astype(np.float32) * 0.5 + 0.2
    write_image(d / "lit.png", lit, kind="color", bit_depth=16)
    write_image(d / "albedo.png", lit, kind="color", bit_depth=16)
    write_image(
        d / "normal.png", np.broadcast_to(TILT * 0.5 + 0.5, (size, size, 3)).copy(), kind="data", bit_depth=16
    )
    write_image(
        d / "height16.png",
        np.tile(np.linspace(0, 1, size, dtype=np.float32), (size, 1)),
        kind="data",
        bit_depth=16,
    )
    write_image(d / "roughness.png", np.full((size, size), 0.5, np.float32), kind="data")
    (d / "meta.json").write_text(
        json.dumps({"family": "rocky", "seed": 7, "index": 0, "height_range": [0.0, 0.01], "size": size})
    )
    return d


def test_turn_overrides_only_the_turn(tmp_path: Path) -> None:
    sample = load_sample(_sample(tmp_path / "d"))
    a, whole_a = augment_with_context(sample, np.random.default_rng(3), crop_size=16, turn=(0, False))
    np.testing.assert_allclose(a.normal.reshape(-1, 3), np.broadcast_to(TILT, (256, 3)), atol=1e-3)
    assert whole_a.shape == (32, 32, 3)


@pytest.mark.parametrize("context", [True, False])
def test_unturned_batches_keep_the_orientation(tmp_path: Path, context: bool) -> None:
    bench = _bench()
    _sample(tmp_path / "d")
    data = MaterialDataset(tmp_path / "d", val_fraction=0.0)
    data.refresh()
    turned = data.batch(1, 0, 16, 16, context=context)["normal"]
    # Random turns move the lean to -X or to +-Y in some crops of 16.
    assert float(turned[:, 0].mean(dim=(1, 2)).min()) < 0.3
    with bench.unturned_batches():
        kept = data.batch(1, 0, 16, 16, context=context)["normal"]
    assert np.allclose(kept[:, 0].numpy(), 0.6, atol=1e-3) and np.allclose(kept[:, 1].numpy(), 0.0, atol=1e-3)
    # And the patch is gone afterwards.
    again = data.batch(1, 0, 16, 16, context=context)["normal"]
    assert np.array_equal(again.numpy(), turned.numpy())
