"""The Blender factory for real: normal orientation on a known slope, files of a full sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.bpy


@pytest.fixture(scope="module")
def bpy_home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    bpy = pytest.importorskip("bpy")
    yield bpy
    mp.undo()


def _slope_family(a: float, b: float) -> Any:
    from mlvfx.data.families import Channels, Family, Graph

    def build(g: Graph, vec: Any, p: dict[str, Any]) -> Channels:
        x, y, _ = g.sep(vec)
        return Channels(g.add(g.mul(x, p["a"]), g.mul(y, p["b"])), [0.5, 0.5, 0.5], 0.5)

    return Family("slope", lambda rng: {"a": a, "b": b}, build, (0.1, 0.1))


def test_normal_pass_orientation_on_a_known_slope(bpy_home: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlvfx.data import families, materials
    from mlvfx.data.augment import normals_from_height

    a, b, relief, size = 1.0, -0.5, 0.1, 32
    monkeypatch.setitem(families.FAMILIES, "slope", _slope_family(a, b))
    monkeypatch.setattr(materials, "FAMILIES", families.FAMILIES)
    base = materials.make_spec(1, 0, size=size, samples=2, families=["bricks"])
    spec = materials.SampleSpec(
        1, 0, "slope", {"a": a, "b": b}, relief, {"rot_z": 0.0, "scale": 1.0}, base.lighting, size, 2
    )
    maps = materials.render_maps(spec)
    inner = (slice(3, -3), slice(3, -3))
    n = maps.normal[inner].reshape(-1, 3).mean(axis=0)
    # height (patch widths) = relief * (a*u + b*v), u right, v up: OpenGL n ∝ (-relief*a, -relief*b, 1).
    expected = np.array([-relief * a, -relief * b, 1.0])
    expected /= np.linalg.norm(expected)
    angle = np.degrees(np.arccos(np.clip(n @ expected / np.linalg.norm(n), -1, 1)))
    assert angle < 0.5, (n, expected)
    assert n[0] < -0.05 and n[1] > 0.02  # rises to the right -> faces left; falls upwards -> faces up
    # Height: rises to the right (columns) and falls toward the top (row 0 is the top of the image).
    h = maps.height
    assert h[:, -4].mean() > h[:, 3].mean()
    assert h[3, :].mean() < h[-4, :].mean()
    assert abs(float(h.max()) - relief * a) < 0.01
    # The height map and the normal pass agree (central differences, pixel = 1/size patch widths).
    nh = normals_from_height(h, 1.0 / size)[inner]
    err = np.degrees(np.arccos(np.clip(np.sum(nh * maps.normal[inner], axis=-1), -1, 1)))
    # Per-pixel differences carry the sub-pixel jitter of 2 AA samples; the mean carries none.
    assert float(np.median(err)) < 1.5
    mean_h = nh.reshape(-1, 3).mean(axis=0)
    assert np.degrees(np.arccos(mean_h @ expected / np.linalg.norm(mean_h))) < 0.5


def test_generate_writes_a_complete_sample(bpy_home: Any, tmp_path: Path) -> None:
    from mlvfx.data import materials
    from mlvfx.data.augment import load_sample

    rep = materials.generate(tmp_path, 1, size=32, seed=11, samples=1, families=["cobblestones"])
    assert rep.rendered == [0]
    folder = tmp_path / "s000000"
    assert materials.is_complete(folder)
    from mlvfx.io.atomic import DIR_MODE

    assert folder.stat().st_mode & 0o777 == DIR_MODE  # not mkdtemp's 0700: others on a farm can read it
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["family"] == "cobblestones" and meta["seed"] == 11 and meta["size"] == 32
    s = load_sample(folder)
    assert s.lit.shape == (32, 32, 3) and s.normal.shape == (32, 32, 3) and s.height.shape == (32, 32)
    assert np.allclose(np.linalg.norm(s.normal, axis=-1), 1.0, atol=1e-3)
    assert float(s.normal[..., 2].min()) > 0.0
    assert float(s.height.max()) > float(s.height.min())  # real relief
    assert float(s.lit.std()) > 0.0 and float(s.albedo.std()) > 0.0
    # albedo is its own signal, not a function of height
    corr = np.corrcoef(s.albedo.mean(axis=-1).ravel(), s.height.ravel())[0, 1]
    assert abs(corr) < 0.99
    # rerun: nothing to render
    again = materials.generate(tmp_path, 1, size=32, seed=11, samples=1, families=["cobblestones"])
    assert again.rendered == [] and again.skipped == [0]


def test_render_is_deterministic_by_seed(bpy_home: Any) -> None:
    from mlvfx.data import materials

    spec = materials.make_spec(21, 3, size=24, samples=2, families=["rocky"])
    a = materials.render_maps(spec)
    b = materials.render_maps(spec)
    for name in ("lit", "albedo", "normal", "height", "roughness"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_composite_family_renders_every_primitive_and_op(bpy_home: Any) -> None:
    from mlvfx.data import materials
    from mlvfx.data.families import COMPOSITE_LAYERS, COMPOSITE_OPS

    # One hand-made spec that stacks all six primitives and all three ops.
    base = materials.make_spec(10, 0, size=32, samples=1, families=["composite"])
    drawn = [
        layer
        for i in range(60)
        for layer in materials.make_spec(10, i, families=["composite"]).params["layers"]
    ]
    layers = []
    for k, kind in enumerate(COMPOSITE_LAYERS):
        layer = {
            key: v
            for key, v in next(d for d in drawn if d["kind"] == kind).items()
            if key not in ("op", "weight")
        }
        if k:
            layer.update(op=COMPOSITE_OPS[k % 3], weight=0.5)
        layers.append(layer)
    params = dict(base.params, layers=layers, fine=0.05, metallic=True)
    spec = materials.SampleSpec(10, 0, "composite", params, 0.05, base.transform, base.lighting, 32, 1)
    maps = materials.render_maps(spec)
    assert np.isfinite(maps.height).all() and float(np.ptp(maps.height)) > 0.002
    assert np.allclose(np.linalg.norm(maps.normal, axis=-1), 1.0, atol=1e-3)
    assert float(maps.lit.std()) > 0.0 and float(maps.albedo.std()) > 0.0
    assert 0.0 <= float(maps.roughness.min()) and float(maps.roughness.max()) <= 1.0
