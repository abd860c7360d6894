"""mlvfx.tiling: identity, seams, wrap-around, scale, batching, memory, progress and cancel."""

from __future__ import annotations

import itertools
import tracemalloc

import cv2
import numpy as np
import pytest

from mlvfx.errors import Cancelled, InputError
from mlvfx.progress import CancelToken
from mlvfx.tiling import plan_axis, run_tiled


def _blur(batch: np.ndarray, border: int) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(t, (7, 7), 1.5, borderType=border).reshape(t.shape) for t in batch])


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.random((203, 317, 3), dtype=np.float32)


@pytest.mark.parametrize("tileable", [False, True])
def test_identity_gives_the_input_back(image: np.ndarray, tileable: bool) -> None:
    out = run_tiled(image, lambda b: b, tile=64, overlap=16, margin=8, tileable=tileable, batch=3)
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.abs(out - image).max() <= 1e-6


def test_plan_covers_axis_with_required_overlap() -> None:
    for length in (1, 63, 64, 65, 200, 1000, 4097):
        plan = plan_axis(length, 64, 16)
        assert plan.starts[0] == 0 and plan.starts[-1] + plan.tile == length
        gaps = np.diff(plan.starts)
        assert (plan.tile - gaps >= 16).all() or len(plan.starts) == 1


def test_no_seams_with_a_local_nonlinear_function(image: np.ndarray) -> None:
    """A 7x7 blur followed by a nonlinearity, tiled with a 4-px margin, equals the whole-image result."""

    def fn(batch: np.ndarray) -> np.ndarray:
        return np.tanh(3 * _blur(batch, cv2.BORDER_REFLECT_101) - 1)

    whole = fn(image[None])[0]
    tiled = run_tiled(image, fn, tile=48, overlap=12, margin=4, batch=5)
    assert np.abs(tiled - whole).max() < 1e-5
    # And with a margin too small for the receptive field, blending still hides the borders:
    # the error at tile borders stays of the order of the interior error, not a visible step.
    rough = run_tiled(image, fn, tile=48, overlap=12, margin=0)
    assert np.abs(rough - whole).max() < 0.05


def test_wrap_makes_the_result_equal_to_a_periodic_global_operation(image: np.ndarray) -> None:
    def fn(batch: np.ndarray) -> np.ndarray:
        return _blur(batch, cv2.BORDER_REFLECT_101)

    padded = np.pad(image, ((3, 3), (3, 3), (0, 0)), mode="wrap")
    periodic = fn(padded[None])[0][3:-3, 3:-3]
    tiled = run_tiled(image, fn, tile=64, overlap=16, margin=4, tileable=True)
    assert np.abs(tiled - periodic).max() < 1e-5
    # The result tiles: the jump across the wrap border is like any interior neighbour difference.
    wrap_jump = np.abs(tiled[:, 0] - tiled[:, -1]).mean()
    interior_jump = np.abs(np.diff(tiled, axis=1)).mean()
    assert wrap_jump < 1.2 * interior_jump


def test_scale_and_channel_change(image: np.ndarray) -> None:
    def up_gray(batch: np.ndarray) -> np.ndarray:
        gray = batch.mean(axis=3, keepdims=True)
        return gray.repeat(2, axis=1).repeat(2, axis=2)

    out = run_tiled(image, up_gray, tile=64, overlap=16, margin=4, scale=2)
    expected = image.mean(axis=2, keepdims=True).repeat(2, axis=0).repeat(2, axis=1)
    assert out.shape == (406, 634, 1)
    assert np.abs(out - expected).max() < 1e-5


def test_multiple_pads_tiles_to_a_divisible_size(image: np.ndarray) -> None:
    seen: set[tuple[int, int]] = set()

    def fn(batch: np.ndarray) -> np.ndarray:
        seen.add(batch.shape[1:3])
        return batch

    out = run_tiled(image, fn, tile=50, overlap=10, margin=3, multiple=16)
    assert all(h % 16 == 0 and w % 16 == 0 for h, w in seen)
    assert np.abs(out - image).max() <= 1e-6


@pytest.mark.parametrize(
    ("shape", "tile", "margin", "multiple", "scale"),
    [
        ((203, 317), 64, 8, 1, 1),
        ((203, 317), 50, 12, 16, 1),
        ((256, 256), 384, 48, 16, 1),
        ((37, 300), 64, 20, 16, 2),
    ],
)
def test_inside_border_sees_only_real_pixels(
    shape: tuple[int, int], tile: int, margin: int, multiple: int, scale: int
) -> None:
    """With border="inside" every tile is a window of the image itself (no mirrored margin), except
    at most ``multiple - 1`` far-side pixels where the whole axis is shorter than a window; and the
    identity still gives the input back."""
    h, w = shape
    # Each pixel holds its own coordinates, so a tile shows where it was cut from.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([yy, xx, np.zeros_like(yy)], axis=-1)
    windows = []

    def fn(batch: np.ndarray) -> np.ndarray:
        windows.extend(batch.copy())
        return batch.repeat(scale, axis=1).repeat(scale, axis=2)

    out = run_tiled(
        img, fn, tile=tile, overlap=16, margin=margin, multiple=multiple, scale=scale, border="inside"
    )
    assert np.abs(out - img.repeat(scale, axis=0).repeat(scale, axis=1)).max() <= 1e-4
    for t in windows:
        th, tw = t.shape[:2]
        assert th % multiple == 0 and tw % multiple == 0
        real_h, real_w = min(th, h), min(tw, w)
        rows, cols = t[:real_h, 0, 0], t[0, :real_w, 1]
        assert (np.diff(rows) == 1).all() and (np.diff(cols) == 1).all()  # contiguous, never folded back
        assert th - real_h < multiple and tw - real_w < multiple
    # With a margin, tiles inside the image still get it on every side; only border tiles move.
    if h >= tile + 2 * margin + multiple:
        assert any(t[0, 0, 0] > 0 and t[-1, 0, 0] < h - 1 for t in windows)


def test_mirror_border_is_the_default_and_bad_border_is_refused(image: np.ndarray) -> None:
    yy, xx = np.mgrid[0:100, 0:120].astype(np.float32)
    img = np.stack([yy, xx], axis=-1)
    seen: list[np.ndarray] = []

    def fn(batch: np.ndarray) -> np.ndarray:
        seen.extend(batch.copy())
        return batch

    run_tiled(img, fn, tile=64, overlap=16, margin=8)
    first = seen[0]  # the top-left tile: its 8-px margin is the image mirrored about row and column 0
    assert list(first[0, :10, 1]) == [8, 7, 6, 5, 4, 3, 2, 1, 0, 1]
    assert list(first[:10, 0, 0]) == [8, 7, 6, 5, 4, 3, 2, 1, 0, 1]
    with pytest.raises(InputError, match="border"):
        run_tiled(image, lambda b: b, tile=64, border="clamp")


def test_small_image_smaller_than_tile() -> None:
    img = np.random.default_rng(2).random((5, 7, 1), dtype=np.float32)
    np.testing.assert_allclose(run_tiled(img, lambda b: b * 2, tile=512), img * 2, atol=1e-6)


def test_progress_is_monotonic_and_complete(image: np.ndarray) -> None:
    seen: list[float] = []
    run_tiled(image, lambda b: b, tile=64, overlap=16, progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert all(a <= b for a, b in itertools.pairwise(seen))


def test_cancel_stops_early(image: np.ndarray) -> None:
    token = CancelToken()
    calls = 0

    def fn(batch: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 2:
            token.cancel()
        return batch

    with pytest.raises(Cancelled):
        run_tiled(image, fn, tile=64, overlap=16, batch=1, cancel=token)
    assert calls == 2


def test_bad_function_output_and_parameters(image: np.ndarray) -> None:
    with pytest.raises(InputError, match="returned shape"):
        run_tiled(image, lambda b: b[:, :-1], tile=64, overlap=16)
    with pytest.raises(InputError, match="overlap"):
        run_tiled(image, lambda b: b, tile=64, overlap=64)
    with pytest.raises(InputError, match="invalid tiling"):
        run_tiled(image, lambda b: b, tile=0)


def _peak_bytes(height: int) -> int:
    img = np.random.default_rng(3).random((height, 1024, 3), dtype=np.float32)
    out = np.empty_like(img)
    tracemalloc.start()
    run_tiled(img, lambda b: b * 0.5, tile=128, overlap=16, margin=8, batch=4, out=out)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_allclose(out, img * 0.5, atol=1e-6)
    return peak


def test_working_memory_does_not_grow_with_image_height() -> None:
    short, tall = _peak_bytes(512), _peak_bytes(2048)
    # Into a preallocated output only a band of one tile row plus a batch of tiles is live,
    # so four times the rows costs (almost) no more working memory.
    assert tall < 1.15 * short, (short, tall)
    assert tall < 0.5 * (2048 * 1024 * 3 * 4)
