"""mlvfx.ops.texture: make_tileable, grow, paint on small generated exemplars."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest
from test_texture_support import bricks, material, noise_rgb

from mlvfx.errors import Cancelled, InputError, InvalidImageDataError
from mlvfx.ops.texture import grow, labels_from_colors, make_tileable, paint
from mlvfx.progress import CancelToken
from mlvfx.texture import metrics


def _pixels_set(a: npt.NDArray[np.float32]) -> set[bytes]:
    return {row.tobytes() for row in a.reshape(-1, a.shape[-1])}


def test_grow_shape_copies_and_seeds() -> None:
    ex = bricks(64)
    a = grow(ex, (128, 96), seed=1)
    assert isinstance(a, np.ndarray)
    assert a.shape == (128, 96, 3) and a.dtype == np.float32
    # every output pixel is a copy of an exemplar pixel (the synthesiser copies, never blurs)
    assert _pixels_set(a) <= _pixels_set(ex)
    b = grow(ex, (128, 96), seed=1)
    assert isinstance(b, np.ndarray)
    np.testing.assert_array_equal(a, b)  # deterministic for a seed
    c = grow(ex, (128, 96), seed=2)
    assert np.mean(np.any(a != c, axis=2)) > 0.5  # another seed is another variation


def test_grow_is_tileable_and_not_verbatim() -> None:
    ex = noise_rgb(64, seed=3)
    scores = []
    for seed in range(3):
        out = grow(ex, (128, 128), seed=seed, tileable=True)
        assert isinstance(out, np.ndarray)
        scores.append(metrics.seam_score(out))
        if seed == 0:
            assert metrics.verbatim_share(out, ex) <= 0.3
    assert float(np.mean(scores)) <= 1.1
    # plain tiling of the exemplar: the wrap seam is obvious, and it is all verbatim copy
    tiled = np.tile(ex, (2, 2, 1))
    assert metrics.seam_score(tiled) > 1.5
    assert metrics.verbatim_share(tiled, ex) > 0.8


def test_grow_look_not_worse_than_quilting() -> None:
    from mlvfx.texture.quilting import quilt

    ex = bricks(64, seed=4)
    ours = np.mean([metrics.look_distance(grow(ex, (128, 128), seed=s), ex) for s in range(2)])  # type: ignore[arg-type]
    iq = np.mean([metrics.look_distance(quilt(ex, (128, 128), seed=s), ex) for s in range(2)])
    assert ours <= iq * 1.1


def test_make_tileable_keeps_interior_and_removes_seam() -> None:
    ex = noise_rgb(64, seed=5)
    ramp = np.linspace(0, 0.5, 64, dtype=np.float32)
    ex = np.clip(ex + ramp[None, :, None] + ramp[:, None, None] * 0.5, 0, 1).astype(np.float32)
    assert metrics.seam_score(ex) > 3
    out = make_tileable(ex, band=0.15, seed=0)
    assert isinstance(out, np.ndarray)
    assert out.shape == ex.shape
    b = max(2, round(0.15 * 64))
    np.testing.assert_array_equal(out[b:-b, b:-b], ex[b:-b, b:-b])
    assert metrics.seam_score(out) < 1.3
    assert np.any(out[:b] != ex[:b])


def test_material_set_maps_stay_aligned() -> None:
    mat = material(64, seed=6)
    mat["height"] = mat["height"][:, :]  # (H, W) in, (H, W) out
    out = grow(mat, (96, 96), seed=3)
    assert isinstance(out, dict)
    assert set(out) == set(mat)
    assert out["height"].shape == (96, 96)
    assert out["roughness"].shape == (96, 96, 1)
    # the maps were built from one height field; they must still agree pixel for pixel
    np.testing.assert_allclose(out["albedo"][:, :, 0], out["height"], atol=1e-6)
    np.testing.assert_allclose(out["roughness"][:, :, 0], 1.0 - 0.5 * out["height"], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out["normal"], axis=2), 1.0, atol=1e-5)
    # normals travel with their height: each output (height, normal) pair exists in the exemplar
    lookup: dict[float, list[npt.NDArray[np.float32]]] = {}
    for h, n in zip(mat["height"].ravel(), mat["normal"].reshape(-1, 3)):
        lookup.setdefault(float(h), []).append(n)
    for h, n in zip(out["height"].ravel(), out["normal"].reshape(-1, 3)):
        assert min(float(np.abs(c - n).max()) for c in lookup[float(h)]) < 1e-5


def test_make_tileable_material_set() -> None:
    mat = material(64, seed=7)
    out = make_tileable(mat, seed=1)
    assert isinstance(out, dict)
    np.testing.assert_allclose(out["albedo"][:, :, 0], out["height"], atol=1e-6)
    assert metrics.seam_score(out["albedo"]) < 1.3


def test_paint_fills_regions_from_their_exemplar() -> None:
    red = noise_rgb(64, seed=8, tint=(0.9, 0.1, 0.1))
    blue = noise_rgb(64, seed=9, tint=(0.1, 0.1, 0.9))
    labels = np.zeros((128, 128), np.int64)
    labels[:, 64:] = 7
    out = paint(labels, {0: red, 7: blue}, seed=0, transition=8)
    assert isinstance(out, np.ndarray)
    assert out.shape == (128, 128, 3)
    from_red = out[..., 0] > out[..., 2]
    # away from the border each region copies from its own exemplar
    assert from_red[:, :48].mean() > 0.97
    assert (~from_red[:, 80:]).mean() > 0.97
    # the boundary is not a straight painted line
    flips = [32 + int(np.argmax(~from_red[y, 32:96])) for y in range(128)]
    assert len(set(flips)) > 3


def test_paint_errors() -> None:
    ex = noise_rgb(32, seed=1)
    labels = np.zeros((64, 64), np.int64)
    labels[:10] = 3
    with pytest.raises(InputError, match=r"\[3\]"):
        paint(labels, {0: ex}, seed=0)
    with pytest.raises(InputError, match="same kind"):
        paint(labels, {0: ex, 3: ex[:, :, :1]}, seed=0)
    with pytest.raises(InputError, match="integer"):
        paint(labels.astype(np.float32) + 0.5, {0: ex, 3: ex})
    with pytest.raises(InputError, match="exemplar"):
        paint(labels, {})
    for bad in (float("nan"), float("inf"), -1.0, 1e9):  # NaN/inf crashed; 1e9 asked for petabytes
        with pytest.raises(InputError, match="transition must be between 0 and the label map's size"):
            paint(labels, {0: ex, 3: ex}, seed=0, transition=bad)


def test_labels_from_colors() -> None:
    img = np.zeros((4, 5, 3), np.uint8)
    img[:, 2:] = (255, 0, 0)
    img[3, 4] = (0, 255, 0)
    idx = labels_from_colors(img, [(0, 0, 0), (255, 0, 0), (0, 255, 0)])
    assert idx.dtype == np.int64
    assert idx[0, 0] == 0 and idx[0, 3] == 1 and idx[3, 4] == 2
    # floats read from an 8-bit PNG are matched exactly too
    np.testing.assert_array_equal(labels_from_colors(img / 255.0, [(0, 0, 0), (255, 0, 0), (0, 255, 0)]), idx)
    with pytest.raises(InputError, match=r"#00ff00.*add an exemplar for each"):  # one slot forgotten
        labels_from_colors(img, [(0, 0, 0), (255, 0, 0)], "labels.png")
    noisy = img.copy()
    noisy[0, :3] = ((1, 0, 0), (0, 1, 0), (0, 0, 1))  # what JPEG compression does to flat colours
    with pytest.raises(InputError, match="JPEG compression changes colours: save the label map as PNG"):
        labels_from_colors(noisy, [(0, 0, 0), (255, 0, 0), (0, 255, 0)], "labels.jpg")
    with pytest.raises(InputError, match="flat colours only"):
        labels_from_colors(noisy, [(0, 0, 0), (255, 0, 0), (0, 255, 0)], "labels.png")
    with pytest.raises(InputError, match="within 3 levels of a given colour"):  # #fe0000 vs #ff0000
        labels_from_colors(img, [(0, 0, 0), (254, 0, 0), (0, 255, 0)], "labels.png")


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (np.full((32, 32, 3), np.nan, np.float32), InvalidImageDataError),
        (np.zeros((32, 32, 5), np.float32), InvalidImageDataError),
        (np.zeros((0, 32, 3), np.float32), InvalidImageDataError),
        (np.zeros((4, 4, 3), np.float32), InvalidImageDataError),
        ({"normal": np.zeros((32, 32, 2), np.float32)}, InvalidImageDataError),
        ({"albedo": np.zeros((32, 32, 3), np.float32), "height": np.zeros((16, 16), np.float32)}, InputError),
        ({}, InputError),
    ],
)
def test_bad_inputs_raise_typed_errors(bad: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        grow(bad, (64, 64))  # type: ignore[arg-type]


def test_size_errors() -> None:
    ex = noise_rgb(64)
    with pytest.raises(InputError, match="larger than the output"):
        grow(ex, (48, 128))
    with pytest.raises(InputError, match="at least 8x8"):
        grow(ex, (0, 64))
    with pytest.raises(InputError, match="band"):
        make_tileable(ex, band=0.6)


def test_progress_and_cancel() -> None:
    ex = noise_rgb(32)
    seen: list[float] = []
    grow(ex, (64, 64), progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert all(b >= a for a, b in itertools.pairwise(seen))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        grow(ex, (64, 64), cancel=token)


def test_paint_default_transition_keeps_thin_regions() -> None:
    # With 128-px exemplars the old default transition (16 px) blurred a 10-px stripe away
    # entirely; the default is now capped by the thinnest painted region.
    rng = np.random.default_rng(0)
    red = np.stack(
        [0.6 + 0.2 * rng.random((128, 128)), 0.1 * rng.random((128, 128)), 0.1 * rng.random((128, 128))], -1
    )
    green = np.stack(
        [0.1 * rng.random((128, 128)), 0.6 + 0.2 * rng.random((128, 128)), 0.1 * rng.random((128, 128))], -1
    )
    lab = np.zeros((96, 160), np.int64)
    lab[:, 40:50] = 1  # a 10-px stripe
    lab[:, 100:140] = 1  # a 40-px one
    for transition, least in ((None, 0.6), (16.0, None)):
        out = paint(
            lab, {0: red.astype(np.float32), 1: green.astype(np.float32)}, seed=0, transition=transition
        )
        green_share = float((out[:, 40:50, 1] > out[:, 40:50, 0]).mean())
        if least is not None:
            assert green_share > least
        else:  # an explicit transition is the caller's: as wide as asked, the thin stripe goes
            assert green_share < 0.2
    assert float((out[:, 100:140, 1] > out[:, 100:140, 0]).mean()) > 0.4


def test_atlas_keeps_one_level_and_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every level holds full-resolution features of the whole exemplar; holding them all at once
    # doubled grow's peak memory with a 2048² exemplar (bench/texture_memory.py).
    import torch

    from mlvfx.texture import patchmatch

    ex = bricks(64, seed=2)
    cfg = patchmatch.SynthesisConfig()
    atlas = patchmatch.ExemplarAtlas([torch.from_numpy(ex.transpose(2, 0, 1).copy())], 3, cfg, seed=0)
    assert len(atlas.levels) == 3
    second = atlas.levels[2]
    assert atlas.levels[2] is second  # built once while it is the current level
    atlas.levels[1]
    assert atlas.levels._cached is not None and atlas.levels._cached[0] == 1 and not atlas.levels._all
    with pytest.raises(IndexError):
        atlas.levels[3]
    lazy = grow(ex, (96, 96), seed=4)
    monkeypatch.setattr(patchmatch._Levels, "keep_all", True)
    eager = grow(ex, (96, 96), seed=4)
    np.testing.assert_array_equal(lazy, eager)


def test_colour_hidden_under_alpha_zero_does_not_steer_synthesis() -> None:
    rng = np.random.default_rng(5)
    a = np.ones((64, 64, 4), np.float32)
    a[..., :3] = rng.random((64, 64, 3))
    a[20:40, 20:40, 3] = 0.0
    b = a.copy()
    a[20:40, 20:40, :3] = (1.0, 0.0, 1.0)
    b[20:40, 20:40, :3] = 0.0
    for op in (lambda m: make_tileable(m, seed=1), lambda m: grow(m, (96, 96), seed=1)):
        oa, ob = op(a), op(b)
        np.testing.assert_array_equal(oa, ob)


def _source_positions(out: npt.NDArray[np.float32], side: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel was copied from, read back from an exemplar that encodes it."""
    return np.rint(out[..., 1] * (side - 1)).astype(int), np.rint(out[..., 0] * (side - 1)).astype(int)


@pytest.mark.parametrize("size", [(257, 257), (263, 200)])
def test_odd_sizes_have_no_straight_seam(size: tuple[int, int]) -> None:
    # An odd size is the coarser grid doubled and cropped; the cropped row met row 0 across the
    # torus without being coherent with it, a straight seam 16 px inside the texture (audit:
    # coherence 0.00 along that line against about 0.95 elsewhere, a 1.8-2.1x step on gravel).
    side = 64
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / (side - 1)
    exemplar = np.dstack([xx, yy, np.random.default_rng(1).random((side, side), np.float32)])
    out = grow(exemplar, size, seed=0)
    sy, sx = _source_positions(out, side)
    across_x = ((sx[:, 1:] == sx[:, :-1] + 1) & (sy[:, 1:] == sy[:, :-1])).mean(axis=0)
    across_y = ((sy[1:] == sy[:-1] + 1) & (sx[1:] == sx[:-1])).mean(axis=1)
    assert np.median(across_x) > 0.8 and np.median(across_y) > 0.8
    assert across_x.min() > 0.3 and across_y.min() > 0.3, (across_x.argmin(), across_y.argmin())


def test_paint_keeps_a_structured_exemplar_whole_beside_an_unlike_one() -> None:
    # The occurrence penalty was scaled by the feature energy of the whole atlas; with bricks
    # beside a green noise that energy is mostly the difference between the two, and the penalty
    # outweighed matching within the bricks: mortar broke into specks deep inside the brick region
    # (52-59 isolated specks per 10k px here, against 1-2 when the bricks are grown alone).
    import cv2

    def specks(img: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]) -> float:
        mortar = (img[..., 1] > 0.55) & mask
        _, _, stats, _ = cv2.connectedComponentsWithStats(mortar.astype(np.uint8), connectivity=8)
        return float((stats[1:, 4] <= 4).sum()) / (mask.sum() / 1e4)

    brick, green = bricks(128, seed=1), noise_rgb(128, seed=2, tint=(0.2, 0.6, 0.2))
    lab = np.zeros((192, 192), np.int64)
    lab[:, 96:] = 1
    inside = np.zeros((192, 192), bool)
    inside[:, :48] = True  # more than 48 px from the label border
    painted = np.mean([specks(paint(lab, {0: brick, 1: green}, seed=s), inside) for s in range(2)])
    grown = np.mean([specks(grow(brick, (192, 192), seed=s), inside) for s in range(2)])
    assert painted < 25 and grown < 5, (painted, grown)


def test_equalize_takes_the_lighting_falloff_out_of_a_tile() -> None:
    # A photo lit from one side: a plain tile moves the bright-dark step from the wrap to the inner
    # edge of its band (audit: 7x the median slope). Equalized, the brightness runs flat.
    from scipy.ndimage import gaussian_filter1d

    tex = noise_rgb(128, seed=3, tint=(0.7, 0.6, 0.5)) + 0.2
    lit = (tex * np.linspace(0.35, 1.0, 128, dtype=np.float32)[None, :, None]).astype(np.float32)

    def worst_step(img: npt.NDArray[np.float32]) -> float:
        """The largest step of the brightness profile across the columns, smoothed on the torus."""
        cols = gaussian_filter1d(img.mean(axis=(0, 2)).astype(np.float64), 4, mode="wrap")
        return float(np.abs(np.diff(np.concatenate([cols, cols[:1]]))).max())

    plain = make_tileable(lit, seed=0)
    flat = make_tileable(lit, seed=0, equalize=True)
    assert worst_step(flat) < 0.3 * worst_step(plain)  # 0.0012 against 0.0100
    assert abs(float(flat.mean()) - float(lit.mean())) < 0.1 * float(lit.mean())  # brightness kept
    mat = make_tileable({"albedo": lit, "height": tex[..., 0]}, seed=0, equalize=True)
    assert np.array_equal(mat["height"][40:88, 40:88], tex[40:88, 40:88, 0])  # data maps untouched
    with pytest.raises(InputError, match="colour map"):
        make_tileable({"height": tex[..., 0]}, equalize=True)


def test_labels_too_thin_to_draw_are_found() -> None:
    # A 1-px line and 2x2 dots come out with the neighbours' texture; the hosts warn about them.
    from mlvfx.ops.texture import thin_labels

    lab = np.zeros((40, 40), np.int64)
    lab[5, :] = 1  # a 1-px line
    lab[20:22, 20:22] = 2  # a 2x2 dot
    lab[30:36, 30:36] = 3  # a 6x6 square
    assert thin_labels(lab) == [1, 2]
    edge = np.zeros((12, 12), np.int64)
    edge[:, 0] = 1  # 1 px at the border: thin either way
    assert thin_labels(edge) == [1] and thin_labels(edge, tileable=True) == [1]
    edge[:, -2:] = 1  # 3 px wide across the wrap; without the wrap, 1 and 2 px at the image's edges
    assert thin_labels(edge, tileable=True) == [] and thin_labels(edge) == [1]
    middle = np.zeros((12, 12), np.int64)
    middle[:, 5:7] = 1  # 2 px, nowhere near a border
    assert thin_labels(middle) == [1] and thin_labels(middle, tileable=True) == [1]


def test_synthesis_frees_its_atlas_without_the_cycle_collector() -> None:
    # The atlas and its levels referred to each other, so every grow / paint / synthesis tile (and
    # every cancelled one) kept its full-resolution features until Python's cycle collector ran:
    # in a farm loop of 1024² grows, 96 MB more per call (audit, stop 27).
    import gc

    from mlvfx.texture import patchmatch

    def atlases() -> int:
        return sum(isinstance(o, patchmatch.ExemplarAtlas) for o in gc.get_objects())

    ex = noise_rgb(32, seed=3)
    labels = np.zeros((48, 48), np.int64)
    labels[:, 24:] = 1
    token = CancelToken()
    calls = [
        lambda: grow(ex, (48, 48), seed=1),
        lambda: paint(labels, {0: ex, 1: noise_rgb(32, seed=4)}, seed=0),
        lambda: make_tileable(ex, method="synthesis", seed=0),
        lambda: grow(ex, (48, 48), cancel=token, progress=lambda f, m: token.cancel() if f > 0 else None),
    ]
    gc.collect()
    before = atlases()
    cancelled = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for call in calls:
            try:
                call()
            except Cancelled:
                cancelled.append(call)
            assert atlases() == before
    finally:
        if enabled:
            gc.enable()
    assert cancelled == calls[-1:]
