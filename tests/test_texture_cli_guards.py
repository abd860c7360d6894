"""Behaviours a mutation audit (stop 27) found unprotected by any test: a material folder's
height16.png from the texture commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_texture_cli import run
from test_texture_support import material

from mlvfx.io import read_image, write_image
from mlvfx.texture import cli as texture_cli


def test_height16_is_the_height_normalised_whatever_its_units(tmp_path: Path) -> None:
    """A folder whose height.exr is in other units (here 0-5, as a scan in cm gives) must not come
    back clipped at 1: height16.png is then normalised and material.json's height16_range says to
    what, and reading the folder back gives the heights again."""
    maps = material(48, seed=3)
    maps["height"] = maps["height"] * 5.0
    folder = tmp_path / "scan"
    texture_cli.write_maps(folder, maps, texture_cli.Source(folder, True), overwrite=False, note="test")
    out = tmp_path / "tiled"
    assert run("texture", "tile", str(folder), "-o", str(out)) == 0
    height, _ = read_image(out / "height.exr", kind="data")
    h16, info = read_image(out / "height16.png", kind="data")
    assert info.bit_depth == 16
    assert float(height.max()) > 1.5  # the EXR keeps the units
    expected = (height - height.min()) / (height.max() - height.min())
    np.testing.assert_allclose(h16, expected, atol=1e-4)
    meta = json.loads((out / "material.json").read_text())
    assert meta["height16_range"] == pytest.approx([float(height.min()), float(height.max())])
    (out / "height.exr").unlink()  # a folder with only the PNG reads back in the EXR's units
    maps, _ = texture_cli.read_maps(out)
    np.testing.assert_allclose(maps["height"], height, atol=1e-4 * 5)


def test_a_flat_height_far_from_zero_writes_a_flat_height16(tmp_path: Path) -> None:
    # lo + 1e-12 == lo at -20000 in float64: the span was 0 and height16.png NaN (a review)
    maps = material(32, seed=1)
    maps["height"] = np.full_like(maps["height"], -20000.0)
    folder = tmp_path / "flat"
    texture_cli.write_maps(folder, maps, texture_cli.Source(folder, True), overwrite=False, note="test")
    h16, _ = read_image(folder / "height16.png", kind="data")
    assert float(h16.max()) == 0.0
    back, _ = texture_cli.read_maps(folder)
    np.testing.assert_allclose(back["height"], -20000.0)


def test_running_out_of_memory_names_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The generic "out of memory" line named no file (a fuzz audit).
    from mlvfx.errors import OutOfMemoryError
    from mlvfx.ops import texture as texture_ops

    photo = tmp_path / "big.png"
    write_image(photo, material(32, seed=1)["albedo"])

    def no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(texture_ops, "make_tileable", no_memory)
    with pytest.raises(OutOfMemoryError, match=r"big\.png: out of memory for this input"):
        run("texture", "tile", str(photo), "-o", str(tmp_path / "t.png"))
