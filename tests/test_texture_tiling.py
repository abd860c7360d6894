"""make_tileable's default "stitch" method (mlvfx.texture.tiling): blocks cut into a band round the wrap."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from test_texture_support import bricks, material, noise_rgb

import mlvfx.ops.texture as ops
from mlvfx.errors import Cancelled, InputError
from mlvfx.progress import CancelToken
from mlvfx.texture import metrics
from mlvfx.texture.tiling import MIN_BAND, band_fits, tile_coords


def _worst_coherence(coords: npt.NDArray[np.int64], band: int) -> float:
    """Least share of coherent copies over the boundaries within ``band`` of the wrap (both axes)."""
    w = coords.shape[1]
    y, x = coords // w, coords % w
    cols = ((x == np.roll(x, 1, 1) + 1) & (y == np.roll(y, 1, 1))).mean(0)
    rows = ((y == np.roll(y, 1, 0) + 1) & (x == np.roll(x, 1, 0))).mean(1)
    near = [j % w for j in range(-band, band + 1)]
    return float(min(cols[near].min(), rows[near].min()))


def _wrap_coherence(coords: npt.NDArray[np.int64]) -> float:
    """Share of coherent copies across the wrap itself (the lower of the column and row wraps).

    Near 1 means the pixels on both sides of the wrap copy neighbouring exemplar pixels: the
    output continues across it like the texture does anywhere. (``seam_score`` cannot tell a seam
    from a mortar line of the texture that happens to lie on the wrap.)
    """
    w = coords.shape[1]
    y, x = coords // w, coords % w
    col = ((x[:, 0] == x[:, -1] + 1) & (y[:, 0] == y[:, -1])).mean()
    row = ((y[0] == y[-1] + 1) & (x[0] == x[-1])).mean()
    return float(min(col, row))


def _coords_of(monkeypatch: pytest.MonkeyPatch, method: str, ex: object, seed: int) -> npt.NDArray[np.int64]:
    captured: dict[str, npt.NDArray[np.int64]] = {}
    real_tile, real_synth = ops.tile_coords, ops.synthesize

    def tile(*a: object, **k: object) -> npt.NDArray[np.int64]:
        captured["c"] = real_tile(*a, **k)  # type: ignore[arg-type]
        return captured["c"]

    def synth(*a: object, **k: object) -> object:
        out = real_synth(*a, **k)  # type: ignore[arg-type]
        captured["c"] = out.cpu().numpy()
        return out

    monkeypatch.setattr(ops, "tile_coords", tile)
    monkeypatch.setattr(ops, "synthesize", synth)
    ops.make_tileable(ex, seed=seed, method=method)
    return captured["c"]


def test_stitch_keeps_the_interior_tiles_and_copies_only_texture_pixels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ex = bricks(96, seed=3)
    out = ops.make_tileable(ex, seed=0)
    assert isinstance(out, np.ndarray) and out.shape == ex.shape and out.dtype == np.float32
    b = round(0.15 * 96)
    np.testing.assert_array_equal(out[b:-b, b:-b], ex[b:-b, b:-b])
    assert _wrap_coherence(np.arange(96 * 96).reshape(96, 96)) == 0.0  # the original: all seam
    assert _wrap_coherence(_coords_of(monkeypatch, "stitch", ex, 0)) >= 0.8
    assert np.mean(np.any(out != ex, axis=2)) > 0.05  # the band was rebuilt
    pixels = {p.tobytes() for p in ex.reshape(-1, 3)}
    assert all(p.tobytes() in pixels for p in out.reshape(-1, 3))


def test_stitch_leaves_no_straight_seam_where_synthesis_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # The synthesis method continues the kept interior from both sides until it meets the
    # exemplar's edge, so one boundary next to the wrap breaks coherence in most rows at once.
    b = round(0.15 * 96)
    for seed in range(2):
        ex = bricks(96, seed=seed)
        stitch = _worst_coherence(_coords_of(monkeypatch, "stitch", ex, seed), b)
        synthesis = _worst_coherence(_coords_of(monkeypatch, "synthesis", ex, seed), b)
        assert stitch >= 0.6, (seed, stitch)
        assert stitch > synthesis + 0.2, (seed, stitch, synthesis)


def test_tile_coords_is_a_torus_copy_map_and_seeded() -> None:
    ex = bricks(80, seed=5)
    a = tile_coords(ex, (12, 12), seed=1)
    assert a.shape == (80, 80) and a.dtype == np.int64
    assert a.min() >= 0 and a.max() < 80 * 80
    ident = np.arange(80 * 80).reshape(80, 80)
    np.testing.assert_array_equal(a[12:-12, 12:-12], ident[12:-12, 12:-12])
    np.testing.assert_array_equal(a, tile_coords(ex, (12, 12), seed=1))
    assert np.any(a != tile_coords(ex, (12, 12), seed=2))


@pytest.mark.parametrize("shape", [(97, 83), (83, 97), (23, 81), (41, 41)])
def test_stitch_keeps_the_interior_at_odd_sizes(shape: tuple[int, int]) -> None:
    # the rings must sit on the wrap itself: rolled by half an odd size, texture column 0 is not
    # at w // 2 unless the roll is chosen for it (a review found one interior column changed)
    h, w = shape
    ex = np.ascontiguousarray(bricks(100, seed=6)[:h, :w])
    by, bx = max(2, round(0.3 * h)), max(2, round(0.3 * w))
    assert band_fits((h, w), (by, bx))
    out = ops.make_tileable(ex, band=0.3, seed=1)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out[by : h - by, bx : w - bx], ex[by : h - by, bx : w - bx])
    coords = tile_coords(ex, (by, bx), seed=1)
    ident = np.arange(h * w).reshape(h, w)
    np.testing.assert_array_equal(coords[by : h - by, bx : w - bx], ident[by : h - by, bx : w - bx])
    changed = coords != ident
    # both sides of the wrap are rebuilt, not one side twice
    assert changed[:, :bx].any() and changed[:, w - bx :].any()
    assert changed[:by].any() and changed[h - by :].any()


def test_stitch_non_square_and_material_set_stay_aligned(monkeypatch: pytest.MonkeyPatch) -> None:
    ex = np.ascontiguousarray(bricks(128, seed=2)[:72, :120])
    out = ops.make_tileable(ex, seed=0)
    assert isinstance(out, np.ndarray) and out.shape == (72, 120, 3)
    assert _wrap_coherence(_coords_of(monkeypatch, "stitch", ex, 0)) >= 0.8
    mat = material(96, seed=7)
    res = ops.make_tileable(mat, seed=1)
    assert isinstance(res, dict)
    np.testing.assert_allclose(res["albedo"][:, :, 0], res["height"], atol=1e-6)
    np.testing.assert_allclose(res["roughness"][:, :, 0], 1.0 - 0.5 * res["height"], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(res["normal"], axis=2), 1.0, atol=1e-5)
    assert _wrap_coherence(_coords_of(monkeypatch, "stitch", mat, 1)) >= 0.8


def test_stitch_removes_the_seam_of_a_texture_without_lines() -> None:
    # noise with a ramp: the original's wrap is a plain step; the seam score is meaningful here
    ex = noise_rgb(96, seed=5)
    ramp = np.linspace(0, 0.5, 96, dtype=np.float32)
    ex = np.clip(ex + ramp[None, :, None] + ramp[:, None, None] * 0.5, 0, 1).astype(np.float32)
    assert metrics.seam_score(ex) > 3
    for seed in range(3):
        out = ops.make_tileable(ex, seed=seed)
        assert isinstance(out, np.ndarray)
        assert metrics.seam_score(out) < 1.2, seed


def test_narrow_band_falls_back_to_synthesis(monkeypatch: pytest.MonkeyPatch) -> None:
    ex = bricks(64, seed=1)
    band = 0.05  # 3 px per side: no room for a cut
    assert not band_fits((64, 64), (3, 3)) and MIN_BAND > 3
    called: list[str] = []
    real = ops.synthesize

    def synth(*a: object, **k: object) -> object:
        called.append("synthesis")
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(ops, "synthesize", synth)
    out = ops.make_tileable(ex, band=band, seed=0)
    assert called == ["synthesis"]
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out[3:-3, 3:-3], ex[3:-3, 3:-3])


def test_progress_cancel_and_bad_method() -> None:
    ex = bricks(96, seed=4)
    seen: list[float] = []
    ops.make_tileable(ex, seed=0, progress=lambda f, m: seen.append(f))
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) >= 6
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        ops.make_tileable(ex, seed=0, cancel=token)
    with pytest.raises(InputError, match="unknown tiling method 'quilt'"):
        ops.make_tileable(ex, method="quilt")


def test_small_blocks_in_a_long_ring_are_searched_coarse_to_fine() -> None:
    # a 4096x256 trim: its long ring has 76 px blocks, each correlated with the whole exemplar
    from mlvfx.texture.tiling import _Search

    assert _Search(np.zeros((4096, 256, 3), np.float32), 0.5, 76).factor == 2
    assert _Search(np.zeros((256, 256, 3), np.float32), 0.5, 76).factor == 1  # the bench's tiles
    assert _Search(np.zeros((256, 256, 3), np.float32), 0.5, 40).factor == 1
    assert _Search(np.zeros((4096, 4096, 3), np.float32), 0.5, 1228).factor == 12
    # a 320x3200 strip: its horizontal ring's 96 px blocks take the coarse search
    strip = np.ascontiguousarray(np.tile(bricks(320, seed=2), (1, 10, 1)))
    h, w = strip.shape[:2]
    by, bx = round(0.15 * h), round(0.15 * w)
    assert _Search(np.zeros((w, h, 3), np.float32), 0.5, 2 * by).factor == 2
    coords = tile_coords(strip, (by, bx), seed=0)
    ident = np.arange(h * w).reshape(h, w)
    np.testing.assert_array_equal(coords[by:-by, bx:-bx], ident[by:-by, bx:-bx])
    assert _wrap_coherence(coords) >= 0.8
