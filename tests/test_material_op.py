"""mlvfx.ops.material (classical) and the material folder it writes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from mlvfx.errors import InputError, ModelNotFound, OutputExistsError
from mlvfx.io import read_image, write_image
from mlvfx.ops.material import material, material_from_file, parse_maps, write_material
from mlvfx.progress import CancelToken


def relief_photo(size: int = 96, seed: int = 0) -> np.ndarray:
    """A lit bump field: bright tops, dark valleys, warm albedo (linear)."""
    from mlvfx.classical.filters import gaussian

    rng = np.random.default_rng(seed)
    bumps = gaussian(rng.random((size, size), dtype=np.float32), 4.0, True)
    bumps = (bumps - bumps.min()) / (bumps.max() - bumps.min())
    shade = 0.15 + 0.7 * bumps
    return (shade[..., None] * np.array([0.9, 0.7, 0.5], np.float32)).astype(np.float32)


def test_all_maps_have_the_right_shapes_and_ranges() -> None:
    photo = relief_photo()
    result = material(photo, maps="normal,height,albedo,roughness,ao")
    m = result.maps
    assert set(m) == {"normal", "height", "albedo", "roughness", "ao"}
    assert m["normal"].shape == (96, 96, 3)
    assert np.allclose(np.linalg.norm(m["normal"], axis=-1), 1, atol=1e-5)
    for name in ("height", "roughness", "ao"):
        assert m[name].shape == (96, 96)
        assert 0 <= m[name].min() and m[name].max() <= 1
    assert m["albedo"].shape == (96, 96, 3) and np.isfinite(m["albedo"]).all()


def test_normal_and_height_are_consistent() -> None:
    """The normal map is the gradient of the height map at the recorded relief depth."""
    from mlvfx.classical import normal_to_height

    result = material(relief_photo(128), maps="normal,height", tileable=True)
    h = result.maps["height"] * result.relief_px
    integrated = normal_to_height(result.maps["normal"], tileable=True)
    corr = np.corrcoef(integrated.ravel(), h.ravel())[0, 1]
    assert corr > 0.97


def test_tileable_maps_tile() -> None:
    photo = relief_photo(128)
    m = material(photo, maps="normal,height", tileable=True).maps
    for name in ("normal", "height"):
        a = m[name]
        wrap = np.abs(a[:, 0] - a[:, -1]).mean()
        interior = np.abs(np.diff(a, axis=1)).mean()
        assert wrap < 1.5 * interior, name


def test_alpha_is_kept_in_the_albedo() -> None:
    photo = np.concatenate([relief_photo(), np.full((96, 96, 1), 0.25, np.float32)], axis=2)
    albedo = material(photo, maps="albedo").maps["albedo"]
    assert albedo.shape == (96, 96, 4)
    np.testing.assert_allclose(albedo[..., 3], 0.25)


def test_directx_flips_green() -> None:
    photo = relief_photo()
    gl = material(photo, maps="normal").maps["normal"]
    dx = material(photo, maps="normal", normal_convention="directx").maps["normal"]
    np.testing.assert_allclose(dx[..., 1], -gl[..., 1], atol=1e-6)


def test_bad_arguments() -> None:
    photo = relief_photo(32)
    with pytest.raises(InputError, match="unknown map"):
        parse_maps("normal,specular")
    with pytest.raises(InputError, match="method"):
        material(photo, method="magic")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="relief"):
        material(photo, relief=0)


def test_learned_without_a_published_model_points_at_classical(tmp_path: Path, monkeypatch) -> None:
    from mlvfx.zoo import manifest as zoo_manifest

    (tmp_path / "manifest.json").write_text('{"schema_version": 1, "models": []}')
    monkeypatch.setenv("MLVFX_ZOO_MANIFEST", str(tmp_path / "manifest.json"))
    zoo_manifest._memo.clear()
    with pytest.raises(ModelNotFound, match="classical"):
        material(relief_photo(32), method="learned")
    zoo_manifest._memo.clear()


def test_learned_is_the_default_and_gives_aligned_consistent_maps() -> None:
    photo = relief_photo(96)
    result = material(photo, maps=("normal", "height", "albedo", "roughness"))
    assert result.method == "learned"
    n, h = result.maps["normal"], result.maps["height"]
    assert n.shape == (96, 96, 3) and h.shape[:2] == (96, 96)
    assert result.maps["albedo"].shape == (96, 96, 3) and result.maps["roughness"].shape[:2] == (96, 96)
    assert np.abs(np.linalg.norm(n, axis=-1) - 1).max() < 1e-3
    assert all(np.isfinite(m).all() for m in result.maps.values())


def test_cancel_and_progress() -> None:
    token = CancelToken()
    seen: list[tuple[float, str]] = []

    def progress(fraction: float, message: str) -> None:
        seen.append((fraction, message))
        if message == "albedo":
            token.cancel()

    from mlvfx.errors import Cancelled

    with pytest.raises(Cancelled):
        material(relief_photo(32), method="classical", progress=progress, cancel=token)
    assert [m for _, m in seen][:3] == ["height", "normal", "albedo"]


def test_written_folder_round_trips(tmp_path: Path) -> None:
    photo = relief_photo()
    src = write_image(tmp_path / "photo.png", photo, kind="color")
    written = material_from_file(
        src, tmp_path / "mat", maps="normal,height,albedo,roughness,ao", method="classical"
    )
    names = sorted(p.name for p in (tmp_path / "mat").iterdir())
    assert names == [
        "albedo.png",
        "ao.png",
        "height.exr",
        "height16.png",
        "material.json",
        "normal.png",
        "roughness.png",
    ]
    normal, info = read_image(written["normal"], kind="data")
    assert info.bit_depth == 16
    n = normal * 2 - 1
    assert np.abs(np.linalg.norm(n, axis=-1) - 1).max() < 1e-3
    height, hinfo = read_image(written["height"], kind="data")
    assert hinfo.sample == "float32"
    h16, _ = read_image(written["height16"], kind="data")
    np.testing.assert_allclose(h16[..., 0], height[..., 0], atol=1 / 65535)
    _, ainfo = read_image(written["albedo"], kind="color")
    assert ainfo.bit_depth == 8 and ainfo.color_space == "srgb"
    meta = json.loads(written["meta"].read_text())
    assert meta["method"] == "classical" and meta["normal_convention"] == "opengl"
    assert meta["source"] == str(src)


def test_refused_overwrite_writes_nothing(tmp_path: Path) -> None:
    photo = relief_photo(32)
    result = material(photo, maps="normal,albedo")
    out = tmp_path / "mat"
    out.mkdir()
    (out / "albedo.png").write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=r"albedo\.png"):
        write_material(result, out)
    assert sorted(p.name for p in out.iterdir()) == ["albedo.png"]
    assert (out / "albedo.png").read_bytes() == b"precious"
    write_material(result, out, overwrite=True)
    assert (out / "albedo.png").read_bytes() != b"precious"


def test_learned_progress_is_monotone_and_cancel_stops_it_midway() -> None:
    """The learned path through the tiled engine: progress only grows and reaches 1; a cancel
    raised halfway stops the run, and nothing is reported after it."""
    from mlvfx.errors import Cancelled

    photo = relief_photo(400, seed=2)  # several 384-px tiles' worth of work
    seen: list[float] = []
    material(photo, maps="normal,height,albedo,roughness", progress=lambda f, _m: seen.append(f))
    assert seen and seen[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in itertools.pairwise(seen))
    token = CancelToken()
    after: list[float] = []

    def progress(fraction: float, _message: str) -> None:
        after.append(fraction)
        if fraction >= 0.3:
            token.cancel()

    with pytest.raises(Cancelled):
        material(photo, maps="normal,height,albedo,roughness", progress=progress, cancel=token)
    assert after and max(after) < 0.95  # stopped well before the end
    stopped_at = next(i for i, f in enumerate(after) if f >= 0.3)
    assert len(after) == stopped_at + 1  # no progress after the cancel


@pytest.mark.parametrize("method", ["classical", "learned"])
def test_tileable_maps_wrap_in_both_directions_over_several_tiles(method: str) -> None:
    """A photo larger than one tile, not square: every map wraps across both borders about as
    smoothly as it varies inside."""
    from mlvfx.classical.filters import gaussian

    rng = np.random.default_rng(5)
    h, w = 300, 517
    field = gaussian(rng.random((h, w), dtype=np.float32), 6.0, True)  # periodic relief
    field = (field - field.min()) / (field.max() - field.min())
    photo = ((0.15 + 0.7 * field)[..., None] * np.array([0.8, 0.7, 0.6], np.float32)).astype(np.float32)
    maps = material(photo, maps="normal,height,albedo,roughness", tileable=True, method=method).maps  # type: ignore[arg-type]
    for name, a in maps.items():
        a = a.reshape(h, w, -1)
        for axis in (0, 1):
            first, last = np.take(a, 0, axis=axis), np.take(a, -1, axis=axis)
            wrap = np.abs(first - last).mean()
            interior = np.abs(np.diff(a, axis=axis)).mean()
            assert wrap < 2.0 * interior + 1e-6, (name, axis, wrap, interior)


def test_a_failed_overwrite_leaves_the_old_material_folder_whole(tmp_path: Path) -> None:
    """A file that cannot be replaced (here: a folder where roughness.png goes) is found before
    anything is written; a material folder is never left half old and half new."""
    out = tmp_path / "mat"
    write_material(material(relief_photo(32), method="classical"), out, source="old.png")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "roughness.png").unlink()
    (out / "roughness.png").mkdir()
    new = material(relief_photo(32, seed=1), method="classical")
    with pytest.raises(OutputExistsError, match=r"roughness\.png: is a folder"):
        write_material(new, out, overwrite=True, source="new")
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == {k: v for k, v in before.items() if k != "roughness.png"}
    assert json.loads((out / "material.json").read_text())["source"] == "old.png"


@pytest.mark.parametrize("method", ["classical", "learned"])
def test_colour_hidden_under_alpha_zero_changes_no_map(method: str) -> None:
    # Two straight-alpha photos that look the same (visible pixels equal, the colour stored under
    # alpha 0 magenta in one and black in the other) gave maps differing by up to 0.3 inside the
    # visible part, with a cliff in the height along the alpha edge.
    rng = np.random.default_rng(3)
    a = np.ones((64, 64, 4), np.float32)
    a[..., :3] = rng.random((64, 64, 3)) * 0.3 + 0.3
    a[:, 32:, 3] = 0.0
    b = a.copy()
    a[:, 32:, :3] = (1.0, 0.0, 1.0)
    b[:, 32:, :3] = 0.0
    maps = "normal,height,albedo,roughness,ao"
    ma, mb = material(a, maps, method=method).maps, material(b, maps, method=method).maps  # type: ignore[arg-type]
    for name in ma:
        np.testing.assert_array_equal(ma[name], mb[name], err_msg=name)
    np.testing.assert_array_equal(ma["albedo"][..., 3], a[..., 3])  # alpha itself is kept


def test_a_grey_photo_gives_an_rgb_albedo_with_either_method() -> None:
    # The classical method wrote a one-channel albedo and the learned one three: a pipeline got a
    # different file layout depending on the method.
    grey = np.random.default_rng(4).random((32, 32, 1)).astype(np.float32) * 0.5 + 0.25
    with_alpha = np.concatenate([grey, np.full_like(grey, 0.5)], axis=2)
    for method in ("classical", "learned"):
        albedo = material(grey, "albedo", method=method).maps["albedo"]  # type: ignore[arg-type]
        assert albedo.shape == (32, 32, 3) and np.array_equal(albedo[..., 0], albedo[..., 2]), method
        assert material(with_alpha, "albedo", method=method).maps["albedo"].shape == (32, 32, 4)  # type: ignore[arg-type]


def test_a_photo_without_relief_gives_a_mid_grey_height_either_way() -> None:
    # A 1x1 photo: the classical height was 0.5 (the displacement's rest level), the learned 0.0.
    pixel = np.full((1, 1, 3), 0.5, np.float32)
    for method in ("classical", "learned"):
        assert material(pixel, ["height"], method=method).maps["height"].ravel().tolist() == [0.5], method


def test_quality_high_stops_within_a_pass_when_cancelled(monkeypatch) -> None:
    # High quality runs 8 passes per batch of tiles with no cancel check between them: Esc took
    # seconds (audit: 5.7 s at 512 px). Now at most the pass under way finishes.
    from mlvfx.errors import Cancelled
    from mlvfx.nets.material import MaterialNet

    token = CancelToken()
    calls = []
    real_forward = MaterialNet.forward

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            token.cancel()  # Esc pressed during the second of eight passes
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(MaterialNet, "forward", counting)
    with pytest.raises(Cancelled):
        material(relief_photo(64), ["normal"], method="learned", quality="high", cancel=token)
    assert len(calls) == 2


def test_material_json_tells_an_importer_how_to_read_each_file(tmp_path) -> None:
    # A pipeline reading the folder needs the colour space of each file (Blender's default for a
    # 16-bit PNG is sRGB, wrong for normals) and one height scale that means the same for both methods.
    import json

    from mlvfx.ops.material import material, write_material

    rng = np.random.default_rng(1)
    result = material(
        rng.random((32, 40, 3), dtype=np.float32), "normal,height,albedo,roughness", method="classical"
    )
    write_material(result, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "material.json").read_text())
    assert meta["colorspaces"] == {
        "normal.png": "Non-Color",
        "height.exr": "Non-Color",
        "height16.png": "Non-Color",
        "albedo.png": "sRGB",
        "roughness.png": "Non-Color",
    }
    assert meta["normal_encoding"].startswith("rgb = n * 0.5 + 0.5")
    assert meta["height_scale_px"] == result.height_scale_px == result.relief_px == 0.01 * 40


def test_the_learned_model_can_be_pinned_for_a_show(monkeypatch) -> None:
    # A newer model in the zoo would otherwise change a show's maps half way through.
    from mlvfx.errors import InputError, ModelNotFound
    from mlvfx.ops.material import learned_model_version, material

    monkeypatch.delenv("MLVFX_MATERIAL_MODEL", raising=False)
    assert learned_model_version() is None and learned_model_version(" ") is None
    assert learned_model_version("material@0.7.0") == learned_model_version("0.7.0") == "0.7.0"
    monkeypatch.setenv("MLVFX_MATERIAL_MODEL", "material@0.6.0")
    assert learned_model_version() == "0.6.0" and learned_model_version("0.7.0") == "0.7.0"
    for bad in ("smoke3d@0.2.0", "material@", "material@../x"):
        with pytest.raises(InputError, match="material@VERSION"):
            learned_model_version(bad)
    monkeypatch.setenv("MLVFX_MATERIAL_MODEL", "smoke3d")
    with pytest.raises(InputError, match="MLVFX_MATERIAL_MODEL"):
        learned_model_version()
    monkeypatch.delenv("MLVFX_MATERIAL_MODEL")
    photo = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    assert material(photo, "normal", model="material@0.7.0").meta["model"] == "material@0.7.0"
    with pytest.raises(ModelNotFound, match=r"versions: 0\.1\.0"):
        material(photo, "normal", model="9.9.9")
    assert "model" not in material(photo, "normal", method="classical", model="nonsense").meta  # unused


def test_material_json_names_the_photo_and_the_weights_by_their_bytes(tmp_path, monkeypatch) -> None:
    # A path and "material@0.8.0" could not tell a re-shot photo, or a studio manifest mapping that
    # name to other bytes, from the original (pipeline audit, stop 27).
    import hashlib
    import json

    import mlvfx.ops.material as op
    from mlvfx import zoo
    from mlvfx.io import write_image
    from mlvfx.ops.material import material_from_file

    photo = write_image(tmp_path / "photo.png", relief_photo(48))
    original = hashlib.sha256(photo.read_bytes()).hexdigest()
    real = op.material

    def reshot_meanwhile(*args: object, **kwargs: object) -> object:
        write_image(photo, relief_photo(48)[::-1].copy(), overwrite=True)  # the photo is re-shot
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(op, "material", reshot_meanwhile)
    material_from_file(photo, tmp_path / "m", "normal", method="learned")
    meta = json.loads((tmp_path / "m" / "material.json").read_text())
    assert hashlib.sha256(photo.read_bytes()).hexdigest() != original
    assert meta["source_sha256"] == original  # the bytes the maps were made from
    model, _, version = meta["model"].partition("@")
    assert meta["model_sha256"] == zoo.load_manifest().get(model, version).file(None, "safetensors").sha256
