"""bench/material_capacity.py: its GPU batch moves photos and normals as the training augmentation does,
and its travelling pack keeps the photos exact and the normals within a fraction of a degree."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from bench_scripts import load_bench

from mlvfx.data import augment
from mlvfx.data.augment import normals_from_height
from mlvfx.io import write_image

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    return load_bench("material_capacity")


def test_turn_matches_the_training_dihedral() -> None:
    cap = _bench()
    rng = np.random.default_rng(0)
    lit = rng.random((8, 6, 3)).astype(np.float32)
    n = rng.normal(size=(8, 6, 3)).astype(np.float32)
    sample = augment.MaterialSample(lit, lit, n, lit[..., 0], lit[..., 0], None)
    for k in range(4):
        for mirror in (False, True):
            want = augment.dihedral(sample, k, mirror)
            img, nrm = cap.turn(
                torch.from_numpy(lit.transpose(2, 0, 1)), torch.from_numpy(n.transpose(2, 0, 1)), k, mirror
            )
            np.testing.assert_allclose(img.numpy().transpose(1, 2, 0), want.lit)
            np.testing.assert_allclose(nrm.numpy().transpose(1, 2, 0), want.normal)


def _sample(root: Path, index: int) -> None:
    y, x = np.mgrid[0:32, 0:32].astype(np.float32)
    normal = normals_from_height(2.0 * np.sin(x / (3 + index)) * np.cos(y / 4))
    lit = np.clip(0.2 + 0.6 * normal[..., 2:3] * np.array([1.0, 0.8, 0.6], np.float32), 0, 1)
    d = root / f"s{index:06d}"
    d.mkdir(parents=True)
    write_image(d / "lit.png", lit, kind="color")
    write_image(d / "normal.png", normal * 0.5 + 0.5, kind="data", bit_depth=16)
    (d / "meta.json").write_text(json.dumps({"family": "rocky", "seed": 1, "index": index}))


def test_pack_round_trips_and_batches_are_aligned(tmp_path: Path) -> None:
    from mlvfx.eval.material import read_map
    from mlvfx.io import read_image

    cap = _bench()
    for i in range(3):
        _sample(tmp_path / "train", i)
    _sample(tmp_path / "val", 5)
    cap.pack(tmp_path / "train", tmp_path / "val", tmp_path / "p.npz", max_train=2)
    data = cap._load_pack(tmp_path / "p.npz", "cpu")
    assert data["train_lit"].shape == (2, 3, 32, 32) and data["val_lit"].shape == (1, 3, 32, 32)
    lit, _ = read_image(tmp_path / "val/s000005/lit.png", kind="color")
    np.testing.assert_allclose(data["val_lit"][0].numpy().transpose(1, 2, 0), lit[..., :3], atol=1e-6)
    truth = read_map(tmp_path / "val/s000005", "normal")
    assert truth is not None
    got = data["val_normal"][0].numpy().transpose(1, 2, 0)
    cos = (got * truth).sum(-1) / np.linalg.norm(truth, axis=-1)
    assert float(np.degrees(np.arccos(np.clip(cos, -1, 1))).max()) < 0.6
    # A batch of crops: photo and normals cut at the same place of the same turned sample.
    args = argparse.Namespace(batch=4, crop=16)
    g, gg = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    rgb, thumb, nrm = cap._batch(data, g, gg, args)
    assert rgb.shape == (4, 3, 16, 16) and nrm.shape == (4, 3, 16, 16) and thumb.shape[:2] == (4, 3)
    assert torch.allclose(nrm.norm(dim=1), torch.ones(4, 16, 16), atol=1e-4)
