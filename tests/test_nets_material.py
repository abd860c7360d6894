"""MaterialNet, its ONNX export, normal integration and tiled inference (tiny nets, random input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from mlvfx.data.augment import normals_from_height
from mlvfx.nets import (
    MaterialNet,
    MaterialNetConfig,
    config_from_state_dict,
    count_flops_per_pixel,
    count_parameters,
    material_net_from_state_dict,
)
from mlvfx.nets.infer import load_material_net, predict_material
from mlvfx.nets.integrate import integrate_normals, slopes
from mlvfx.train.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = MaterialNetConfig(widths=(4, 8, 8), blocks=1)


def _net(config: MaterialNetConfig = TINY, seed: int = 0) -> MaterialNet:
    torch.manual_seed(seed)
    net = MaterialNet(config)
    # Non-trivial BatchNorm statistics so eval mode differs from identity.
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_output_layout_and_ranges() -> None:
    net = _net()
    y = net(torch.rand(2, 3, 32, 48))
    assert tuple(y.shape) == (2, 8, 32, 48)
    assert torch.allclose(y[:, 0:3].norm(dim=1), torch.ones(2, 32, 48), atol=1e-5)
    assert bool((y[:, 2] > 0).all()), "normals must face the camera"
    assert 0.0 <= float(y[:, 4:8].min()) and float(y[:, 4:8].max()) <= 1.0
    assert net.multiple == 4


def test_exposure_only_shifts_log_input() -> None:
    # Zero the head's albedo gain: the albedo must then equal the photo (log gain of 0).
    net = _net()
    with torch.no_grad():
        net.head.weight[4:7].zero_()
        assert net.head.bias is not None
        net.head.bias[4:7].zero_()
    x = torch.rand(1, 3, 16, 16) * 0.9
    assert torch.allclose(net(x)[:, 4:7], x, atol=2e-3)


def test_state_dict_round_trip_recovers_architecture() -> None:
    cfg = MaterialNetConfig(widths=(4, 6, 10), blocks=2)
    net = _net(cfg)
    assert config_from_state_dict(net.state_dict()) == cfg
    again = material_net_from_state_dict(net.state_dict())
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(again(x), net(x))
    with pytest.raises(ValueError, match="not a MaterialNet"):
        config_from_state_dict({"foo": torch.zeros(1)})


def test_recipe_model_fits_the_budget() -> None:
    recipe = load_recipe(ROOT / "model_zoo/recipes/material_v1.json")
    net = MaterialNet(recipe.model)
    params = count_parameters(net)
    assert params * 4 <= 20 * 1024 * 1024  # float32 weights <= 20 MB
    flops = count_flops_per_pixel(net, size=64)
    # Two full-resolution 3x3 convs at widths[0] alone cost 2*9*(6*w0 + w0*w0) FLOPs per pixel.
    w0 = recipe.model.widths[0]
    assert flops > 2 * 9 * (6 * w0 + w0 * w0)
    assert flops < 200_000  # CPU-friendly


def test_onnx_parity(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from mlvfx.train.export import export_onnx

    recipe = load_recipe(ROOT / "model_zoo/recipes/material_v1.json")
    net = _net(recipe.model, seed=3)
    path = export_onnx(net, tmp_path / "m.onnx", size=32)
    x = torch.rand(2, 3, 48, 80)  # not the export size: height and width are dynamic
    with torch.no_grad():
        ref = net(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["maps"], {"photo": x.numpy()})[0]
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= 1e-4


def _bumps(h: int, w: int) -> npt.NDArray[np.float32]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    bumps = 6 * np.sin(4 * np.pi * x / w) * np.cos(6 * np.pi * y / h) + 3 * np.sin(2 * np.pi * y / h)
    return np.asarray(bumps, dtype=np.float32)


@pytest.mark.parametrize("tileable", [False, True])
def test_integrated_height_reproduces_integrable_normals(tileable: bool) -> None:
    h = _bumps(64, 48)
    if tileable:
        gx = (np.roll(h, -1, 1) - np.roll(h, 1, 1)) / 2
        gy = (np.roll(h, -1, 0) - np.roll(h, 1, 0)) / 2
        n = np.stack([-gx, gy, np.ones_like(gx)], -1)
        n = (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)
    else:
        n = normals_from_height(h)
    height = integrate_normals(n, tileable=tileable)
    assert height.dtype == np.float32 and height.shape == h.shape and float(height.min()) == 0.0
    err = np.abs((height - height.mean()) - (h - h.mean())).max()
    assert err < (0.01 if tileable else 0.1) * np.ptp(h)


@pytest.mark.parametrize("width", [4096, 8192])
def test_integrated_height_on_a_long_side_is_finite_and_accurate(width: int) -> None:
    # The Neumann solve's eigenvalues were 2 cos(kx) + 2 cos(ky) - 4 in float32: they cancel, so
    # long sides lost the low frequencies (7 % RMS error at 4096) and from about 7430 px the
    # first one rounded to 0 (an all-NaN height; a scale audit, stop 23).
    x = np.arange(width, dtype=np.float64)
    y = np.arange(16, dtype=np.float64)[:, None]
    height = 30 * np.sin(2 * np.pi * x / width)[None, :] + 10 * np.cos(2 * np.pi * y / 16)
    n = np.dstack([-np.gradient(height, axis=1), np.gradient(height, axis=0), np.ones_like(height)])
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    out = integrate_normals(n.astype(np.float32))
    assert np.isfinite(out).all()
    ref = height - height.min()
    assert np.sqrt(np.mean((out - ref) ** 2)) < 0.01 * np.ptp(ref)


@pytest.mark.parametrize("tileable", [False, True])
def test_predict_material_any_size_and_height_matches_normals(tileable: bool) -> None:
    net = _net(MaterialNetConfig(widths=(4, 8, 8)), seed=1)
    with torch.no_grad():  # a random net's relief is tiny; amplify it
        net.head.weight[0:2] *= 200.0
    rng = np.random.default_rng(0)
    photo = np.clip(rng.random((70, 101, 3)).astype(np.float32), 0, 1)
    maps = predict_material(net, photo, tileable=tileable, tile=32, overlap=8, margin=8, batch=3)
    assert maps.normal.shape == (70, 101, 3) and maps.height_px.shape == (70, 101)
    assert maps.albedo.shape == (70, 101, 3) and maps.roughness.shape == (70, 101)
    assert np.allclose(np.linalg.norm(maps.normal, axis=-1), 1.0, atol=1e-4)
    # Height and normals agree: the height's own normals are closer to the predicted ones than a
    # flat surface is. (A random net's normals of a noise photo are far from integrable, so only
    # their curl-free part can be matched; integrable normals are reproduced exactly above.)
    from_height = normals_from_height(maps.height_px)
    inner = (slice(2, -2), slice(2, -2))

    def angle(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
        return float(np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))[inner].mean())

    target = maps.normal
    if tileable:
        # A periodic height has no mean slope: compare with the normals minus their mean tilt.
        p, q = slopes(target)
        p, q = p - p.mean(), q - q.mean()
        target = np.stack([-p, q, np.ones_like(p)], axis=-1)
        target /= np.linalg.norm(target, axis=-1, keepdims=True)
        # ... and it wraps: the seam step is no larger than a typical step inside.
        assert (
            abs(float((maps.height_px[:, 0] - maps.height_px[:, -1]).mean()))
            < np.abs(np.diff(maps.height_px, axis=1)).max()
        )
    flat = np.zeros_like(target)
    flat[..., 2] = 1
    assert angle(flat, target) > 1.0  # the random net predicts visible relief
    assert angle(from_height, target) < 0.9 * angle(flat, target)
    # It is the least-squares integral: any perturbation fits the normals' slopes worse.
    tp, tq = slopes(target)

    def residual(height: npt.NDArray[np.float32]) -> float:
        hp, hq = slopes(normals_from_height(height))
        return float(((hp - tp)[inner] ** 2).mean() + ((hq - tq)[inner] ** 2).mean())

    base = residual(maps.height_px)
    yy, xx = np.mgrid[0:70, 0:101].astype(np.float32)
    for bump in (np.sin(xx / 7.0), np.cos(yy / 5.0) * np.sin(xx / 11.0)):
        assert residual(maps.height_px + 0.3 * bump) > base


def test_tiles_match_whole_image_inference() -> None:
    net = _net(MaterialNetConfig(widths=(4, 8)), seed=2)  # receptive field < the tiling margin
    photo = np.random.default_rng(1).random((128, 128, 3)).astype(np.float32)
    tiled = predict_material(net, photo, tile=24, overlap=8, margin=24, batch=2, integrate=False)
    with torch.no_grad():
        whole = net(torch.from_numpy(photo.transpose(2, 0, 1)[None].copy()))[0].numpy().transpose(1, 2, 0)
    # Up to the image border: border tiles slide inward, so they meet the image edge where the
    # whole image does (zero padding inside the net), never a mirrored copy of the photo.
    # Tiles start at any pixel, so the 2x pooling grid may sit one pixel off the whole image's:
    # outputs agree closely, not bit-exactly.
    assert np.abs(tiled.albedo - whole[..., 4:7]).mean() < 1e-3
    assert np.abs(tiled.normal - whole[..., 0:3]).max() < 2e-2
    assert np.abs(tiled.roughness - whole[..., 7]).max() < 2e-2


def test_a_photo_within_one_tile_is_one_pass_over_the_photo_itself() -> None:
    # No mirrored margin: the net sees exactly the photo, as in training (crops of real renders).
    net = _net(DETAIL, seed=3)
    photo = np.random.default_rng(4).random((96, 80, 3)).astype(np.float32)
    maps = predict_material(net, photo, integrate=False)
    with torch.no_grad():
        whole = net(torch.from_numpy(photo.transpose(2, 0, 1)[None].copy()))[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(maps.albedo, whole[..., 4:7], atol=1e-5)
    np.testing.assert_allclose(maps.roughness, whole[..., 7], atol=1e-5)
    np.testing.assert_allclose(maps.normal, whole[..., 0:3], atol=1e-4)


def test_load_material_net_caches(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    net = _net()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    a = load_material_net(path)
    assert load_material_net(path) is a
    assert isinstance(a, MaterialNet) and not a.training


def test_learned_operator_path_through_a_zoo_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``material(method="learned")`` end to end with tiny weights served by a temporary manifest."""
    import hashlib
    import json

    from safetensors.torch import save_file

    from mlvfx.ops.material import material

    net = _net(MaterialNetConfig(widths=(4, 8)), seed=5)
    with torch.no_grad():
        net.head.weight[0:2] *= 100.0
    weights = tmp_path / "material-test.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    data = weights.read_bytes()
    entry = {
        "id": "material",
        "version": "0.0.1",
        "task": "material",
        "format": ["safetensors"],
        "license": "Apache-2.0",
        "files": [
            {
                "name": weights.name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "urls": [weights.as_uri()],
            }
        ],
        "io": {
            "inputs": [{"name": "photo", "channels": 3, "color_space": "linear"}],
            "outputs": [{"name": "maps", "channels": 8, "color_space": "data"}],
            "tile": 384,
            "overlap": 32,
            "scale": 1,
        },
        "metrics": {},
        "card": "cards/material_v1.md",
        "recipe": "recipes/material_v1.json",
    }
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"schema_version": 1, "models": [entry]}))
    monkeypatch.setenv("MLVFX_ZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("MLVFX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MLVFX_ZOO_MIRRORS", "")
    rng = np.random.default_rng(3)
    photo = rng.random((40, 56, 4)).astype(np.float32)
    gl = material(photo, "normal,height,albedo,roughness,ao", method="learned")
    dx = material(photo, "normal", method="learned", normal_convention="directx")
    assert gl.method == "learned" and gl.meta["model"] == "material@0.0.1"
    assert gl.maps["normal"].shape == (40, 56, 3) and gl.maps["albedo"].shape == (40, 56, 4)
    assert np.array_equal(gl.maps["albedo"][..., 3], photo[..., 3])  # alpha rides along
    assert np.allclose(dx.maps["normal"][..., 1], -gl.maps["normal"][..., 1])
    h = gl.maps["height"]
    assert h.shape == (40, 56) and float(h.min()) == 0.0 and float(h.max()) == pytest.approx(1.0)
    assert 0.0 <= float(gl.maps["ao"].min()) and float(gl.maps["ao"].max()) <= 1.0
    # The height (back in pixels) is the integral of the returned normals.
    from_height = normals_from_height(h * np.float32(gl.meta["height_scale_px"]))
    flat = np.zeros_like(from_height)
    flat[..., 2] = 1

    def angle(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
        return float(np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))[2:-2, 2:-2].mean())

    assert angle(from_height, gl.maps["normal"]) < angle(flat, gl.maps["normal"])


CTX = MaterialNetConfig(widths=(4, 8, 8), blocks=1, context=5)


def _ctx_net(seed: int = 0, film_scale: float = 3.0) -> MaterialNet:
    net = _net(CTX, seed=seed)
    with torch.no_grad():  # trained FiLM layers are non-zero; make the context matter
        g = torch.Generator().manual_seed(seed)
        for film in net.ctx_film:
            assert isinstance(film, torch.nn.Linear)
            film.weight.copy_(torch.randn(film.weight.shape, generator=g) * film_scale)
        net.ctx_enc.out.weight.mul_(20.0)  # a random encoder barely tells photos apart
    return net


def test_context_net_starts_identical_to_the_plain_net() -> None:
    plain = _net(TINY, seed=4)
    ctx = MaterialNet(CTX).eval()
    missing, unexpected = ctx.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("ctx_") for k in missing)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ctx(x), plain(x), atol=1e-6)  # zero-initialised FiLM: no effect yet
        assert torch.allclose(ctx(x, torch.rand(2, 3, 5, 7)), plain(x), atol=1e-6)


def test_context_changes_the_output_and_defaults_to_the_photo_itself() -> None:
    from mlvfx.nets.material import context_thumbnail

    net = _ctx_net()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        own = net(x)
        assert torch.equal(own, net(x, context_thumbnail(x)))
        assert torch.equal(own, net(x, context=net.context_vector(context_thumbnail(x))))
        other = net(x, torch.rand(1, 3, 8, 8) * 0.2)
    assert float((own - other).abs().max()) > 1e-3


def test_context_thumbnail_size() -> None:
    from mlvfx.nets.material import CONTEXT_MAX_SIDE, context_thumbnail

    assert tuple(context_thumbnail(torch.rand(2, 3, 256, 256)).shape) == (2, 3, 64, 64)
    assert tuple(context_thumbnail(torch.rand(1, 3, 40, 100)).shape) == (1, 3, 10, 25)
    big = context_thumbnail(torch.rand(1, 3, 8, 4 * CONTEXT_MAX_SIDE + 40))
    assert max(big.shape[-2:]) <= CONTEXT_MAX_SIDE


def test_context_state_dict_round_trip() -> None:
    net = _ctx_net()
    assert config_from_state_dict(net.state_dict()) == CTX
    again = material_net_from_state_dict(net.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(again(x), net(x))


def test_context_tiles_share_the_whole_photo_context() -> None:
    # Every tile gets the whole photo's context vector: tiled inference then equals running the
    # whole photo at once, which uses the photo as its own thumbnail.
    net = _net(MaterialNetConfig(widths=(4, 8), context=5), seed=2)
    with torch.no_grad():
        for film in net.ctx_film:
            assert isinstance(film, torch.nn.Linear)
            film.weight.normal_(0.0, 3.0)
        net.ctx_enc.out.weight.mul_(20.0)
    photo = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    photo[:, 32:] *= 0.3  # a thumbnail of one tile would differ from the whole photo's
    tiled = predict_material(net, photo, tile=24, overlap=8, margin=24, batch=2, integrate=False)
    with torch.no_grad():
        x = torch.from_numpy(photo.transpose(2, 0, 1)[None].copy())
        whole = net(x)[0].numpy().transpose(1, 2, 0)
        tile_ctx = net(x, x[..., :24, 40:])[0].numpy().transpose(1, 2, 0)
    sl = (slice(8, -8), slice(8, -8))
    assert np.abs(tiled.albedo[sl] - whole[sl][..., 4:7]).mean() < 1e-3
    assert np.abs(tiled.normal[sl] - whole[sl][..., 0:3]).max() < 2e-2
    assert np.abs(tile_ctx[sl] - whole[sl]).mean() > 1e-2  # the context matters


def test_onnx_parity_with_context(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from mlvfx.nets.material import context_thumbnail
    from mlvfx.train.export import export_onnx

    net = _ctx_net(seed=3)
    path = export_onnx(net, tmp_path / "c.onnx", size=32)
    x = torch.rand(2, 3, 48, 80)
    thumb = context_thumbnail(torch.rand(2, 3, 96, 160))
    with torch.no_grad():
        ref = net(x, thumb).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["photo", "thumb"]
    got = sess.run(["maps"], {"photo": x.numpy(), "thumb": thumb.numpy()})[0]
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= 1e-4


DETAIL = MaterialNetConfig(widths=(4, 8, 8), blocks=1, context=5, detail=6)


def test_detail_block_starts_as_identity_and_round_trips() -> None:
    parent = _ctx_net(seed=5)
    child = MaterialNet(DETAIL).eval()
    missing, unexpected = child.load_state_dict(parent.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("detail.") for k in missing)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(child(x), parent(x), atol=1e-6)  # zero-initialised residual
        child.detail[-1].weight.normal_(0.0, 0.5)  # as after training
        changed = child(x)
    assert float((changed - parent(x)).abs().max()) > 1e-3
    assert config_from_state_dict(child.state_dict()) == DETAIL
    again = material_net_from_state_dict(child.state_dict())
    with torch.no_grad():
        assert torch.equal(again(x), changed)
    # Only 2 x 3 x 3 convolutions' worth of receptive field is added at full resolution.
    assert count_flops_per_pixel(child, 32) > count_flops_per_pixel(parent, 32)


def test_onnx_parity_with_detail(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from mlvfx.nets.material import context_thumbnail
    from mlvfx.train.export import export_onnx

    net = MaterialNet(DETAIL).eval()
    with torch.no_grad():
        net.detail[-1].weight.normal_(0.0, 0.5)
    path = export_onnx(net, tmp_path / "d.onnx", size=32)
    x = torch.rand(1, 3, 48, 64)
    thumb = context_thumbnail(x)
    with torch.no_grad():
        ref = net(x, thumb).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["maps"], {"photo": x.numpy(), "thumb": thumb.numpy()})[0]
    assert float(np.abs(got - ref).max()) <= 1e-4


def _turn_maps(maps: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The maps of a photo turned a quarter turn counter-clockwise: pixels and normal x/y."""
    out = np.rot90(maps, 1, axes=(0, 1)).copy()
    nx, ny = out[..., 0].copy(), out[..., 1].copy()
    out[..., 0], out[..., 1] = -ny, nx
    return out


def test_dihedral_prediction_turns_with_the_photo() -> None:
    # Averaging over the 8 symmetries makes the prediction exactly equivariant: turning the photo
    # turns the maps (and the normals' x/y with them). A single pass is not.
    net = _ctx_net(seed=6)
    photo = np.random.default_rng(3).random((48, 48, 3)).astype(np.float32)
    photo[:, :20] *= 0.4
    turned = np.ascontiguousarray(np.rot90(photo, 1, axes=(0, 1)))

    def maps(p: npt.NDArray[np.float32], dihedral: bool) -> npt.NDArray[np.float32]:
        m = predict_material(net, p, tile=48, overlap=0, margin=16, integrate=False, dihedral=dihedral)
        return np.concatenate([m.normal, m.albedo, m.roughness[..., None]], axis=-1)

    want = _turn_maps(maps(photo, True))
    assert np.abs(maps(turned, True) - want).max() < 1e-4
    plain = _turn_maps(maps(photo, False))
    assert np.abs(maps(turned, False) - plain).max() > 1e-3
    # The averaged normals are renormalised to unit length.
    m = predict_material(net, photo, tile=48, overlap=0, margin=16, integrate=False, dihedral=True)
    assert np.allclose(np.linalg.norm(m.normal, axis=-1), 1.0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (bench/cuda_check.py on a GPU machine)")
def test_cuda_maps_match_the_cpu_maps() -> None:
    from mlvfx.io import read_image
    from mlvfx.nets.infer import load_material_net, predict_material

    weights = ROOT / "model_zoo/weights/material-0.6.0.safetensors"
    photo = read_image(ROOT / "core/mlvfx/samples/sample_photo.png")[0][..., :3]
    photo = np.ascontiguousarray(np.tile(photo, (2, 2, 1))[:768, :768])
    a = predict_material(load_material_net(weights, "cpu"), photo)
    b = predict_material(load_material_net(weights, "cuda"), photo)
    cos = np.clip(np.sum(a.normal * b.normal, axis=-1), -1.0, 1.0)
    assert np.degrees(np.arccos(cos)).max() < 0.05
    assert np.abs(a.albedo - b.albedo).max() < 1e-3
    assert np.abs(a.roughness - b.roughness).max() < 1e-3
    assert np.abs(a.height_px - b.height_px).max() < 1e-2 * max(float(np.ptp(a.height_px)), 1e-6)


def test_overlapping_calls_keep_full_float32_and_give_the_flags_back() -> None:
    # cuDNN's flags are process-wide; per-call torch.backends.cudnn.flags let one thread's exit
    # turn TF32 back on under another thread still running, and left the host's flags changed
    # (pipeline audit, stop 27). Interleaved by hand here: the flags are plain globals on a CPU build.
    import types

    from mlvfx.nets.infer import _full_float32

    cuda = types.SimpleNamespace(type="cuda")
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = True, True
    try:
        first, second = _full_float32(cuda), _full_float32(cuda)
        first.__enter__()
        second.__enter__()
        assert not torch.backends.cudnn.allow_tf32
        first.__exit__(None, None, None)  # the first call ends while the second runs
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cudnn.benchmark
        second.__exit__(None, None, None)
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cudnn.benchmark  # the host's, back
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = before
