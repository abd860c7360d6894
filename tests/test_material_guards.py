"""Behaviours a mutation audit (stop 27) found unprotected by any test: the learned material path."""

from __future__ import annotations

import numpy as np

from mlvfx.ops.material import material


def _photo(
    h: int, w: int, seed: int = 5, sigma: float = 6.0, low: float = 0.15, span: float = 0.7
) -> np.ndarray:
    from mlvfx.classical.filters import gaussian

    rng = np.random.default_rng(seed)
    field = gaussian(rng.random((h, w), dtype=np.float32), sigma, True)  # periodic relief
    field = (field - field.min()) / (field.max() - field.min())
    return ((low + span * field)[..., None] * np.array([0.8, 0.7, 0.6], np.float32)).astype(np.float32)


def test_learned_height_spans_zero_to_one_and_scales_back_to_pixels() -> None:
    """README: height.exr is the height normalised; material.json's height_scale_px turns it back
    into pixels. The range test only checks <= 1, which a sub-pixel relief passes unnormalised."""
    result = material(_photo(96, 96), maps="normal,height", method="learned")
    height = result.maps["height"]
    assert height.min() == 0.0
    assert abs(float(height.max()) - 1.0) < 1e-6
    assert result.height_scale_px > 0
    # relief_px is that predicted relief too (it was the unused --relief option's 0.01 x size, 7.7x
    # the predicted depth in an audit's photo), and --relief changes nothing in the learned maps
    assert result.relief_px == result.height_scale_px
    other = material(_photo(96, 96), maps="normal,height", method="learned", relief=0.3)
    assert other.relief_px == result.relief_px
    np.testing.assert_array_equal(other.maps["height"], height)


def test_learned_ao_wraps_for_a_tileable_photo() -> None:
    """The tileable wrap test covers normal, height, albedo and roughness, not the AO."""
    h, w = 300, 517
    ao = material(
        _photo(h, w, sigma=3.0, low=0.05, span=0.9), maps="ao", tileable=True, method="learned"
    ).maps["ao"]
    assert float(ao.min()) < 0.97  # some occlusion to see
    for axis in (0, 1):
        first, last = np.take(ao, 0, axis=axis), np.take(ao, -1, axis=axis)
        wrap = np.abs(first - last).mean()
        interior = np.abs(np.diff(ao, axis=axis)).mean()
        assert wrap < 2.0 * interior + 1e-6, (axis, wrap, interior)


def test_existing_outputs_are_refused_before_the_maps_are_computed(tmp_path, monkeypatch) -> None:
    """material_from_file promises to check the outputs first: a refused run must not spend
    minutes on a large photo (or a model download) before saying the folder is taken."""
    import pytest

    import mlvfx.ops.material as op
    from mlvfx.errors import OutputExistsError
    from mlvfx.io import write_image

    photo = write_image(tmp_path / "photo.png", _photo(32, 32))
    out = tmp_path / "mat"
    out.mkdir()
    (out / "normal.png").write_bytes(b"an earlier map")

    def computed(*args: object, **kwargs: object) -> None:
        raise AssertionError("the maps were computed before the existing output was refused")

    monkeypatch.setattr(op, "material", computed)
    with pytest.raises(OutputExistsError, match="already exists"):
        op.material_from_file(photo, out, "normal", method="classical")
    assert (out / "normal.png").read_bytes() == b"an earlier map"


def test_a_relief_given_in_percent_is_refused() -> None:
    """--relief is a fraction of the image side, in (0, 1]; 2 (meant as 2 %) must be an error,
    not normals 100x too steep. test_bad_arguments covers 0 and negative values only."""
    import pytest

    from mlvfx.errors import InputError

    with pytest.raises(InputError, match=r"relief must be in \(0, 1\]"):
        material(_photo(16, 16), maps="normal", method="classical", relief=2.0)


def test_negative_and_huge_float_pixels_are_clipped_not_nan() -> None:
    # One negative pixel of a float EXR (a colour transform's) made the classical maps NaN, and the
    # error named normal.png (a fuzz audit).
    photo = _photo(32, 32)
    photo[3, 5] = -1.0
    photo[7, 7] = 1e38
    for method in ("classical", "learned"):
        result = material(photo, maps="normal,height,albedo,roughness,ao", method=method)
        assert all(np.isfinite(m).all() for m in result.maps.values()), method
