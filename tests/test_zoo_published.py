"""The models published in model_zoo/: each loads from the repository's weights as its card says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlvfx.zoo import load_manifest, load_state_dict

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "model_zoo" / "weights"


def _file(model_id: str, suffix: str) -> Path:
    entry = load_manifest(ROOT / "model_zoo" / "manifest.json").get(model_id)
    (f,) = [f for f in entry.files if f.name.endswith(suffix)]
    path = WEIGHTS / f.name
    assert path.stat().st_size == f.size and path.stat().st_size <= 20_000_000  # issue: <= 20 MB
    return path


def test_published_material_onnx_matches_its_safetensors() -> None:
    ort = pytest.importorskip("onnxruntime")
    from mlvfx.nets.material import material_net_from_state_dict

    net = material_net_from_state_dict(load_state_dict(_file("material", ".safetensors"))).eval()
    session = ort.InferenceSession(str(_file("material", ".onnx")), providers=["CPUExecutionProvider"])
    from mlvfx.nets.material import context_thumbnail

    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    feeds = {"photo": x.numpy()}
    if net.config.context:  # a whole-photo thumbnail, here from a larger photo than the tile
        thumb = context_thumbnail(torch.rand(1, 3, 256, 384, generator=torch.Generator().manual_seed(1)))
        feeds["thumb"] = thumb.numpy()
    with torch.no_grad():
        ref = net(x, torch.from_numpy(feeds["thumb"]) if "thumb" in feeds else None).numpy()
    got = session.run(["maps"], feeds)[0]
    assert got.shape == ref.shape and float(np.abs(got - ref).max()) <= 1e-4


def test_published_smoke3d_is_a_symmetric_4x_surrogate_with_a_learned_upres() -> None:
    from mlvfx.fluids.surrogate import UpresNet, surrogate_from_state

    net, factor = surrogate_from_state(load_state_dict(_file("smoke3d", ".safetensors")))
    assert factor == 4 and net.dims == 3 and net.symmetric
    assert isinstance(net.upres, UpresNet) and net.upres.factor == 4


def test_published_smoke3d_128_steps_a_128_cubed_shot() -> None:
    """The 128³ model: the same architecture as smoke3d, fine-tuned weights, a finite 128³ step."""
    from mlvfx.fluids.scenarios import make_scenario
    from mlvfx.fluids.surrogate import SurrogateStepper, UpresNet, surrogate_from_state

    net, factor = surrogate_from_state(load_state_dict(_file("smoke3d_128", ".safetensors")))
    assert factor == 4 and net.dims == 3 and net.symmetric and isinstance(net.upres, UpresNet)
    base = load_state_dict(_file("smoke3d", ".safetensors"))
    tuned = load_state_dict(_file("smoke3d_128", ".safetensors"))
    weights = {k for k in base if k.startswith(("body.", "upres."))}
    assert weights == {k for k in tuned if k.startswith(("body.", "upres."))}
    assert any(not torch.equal(base[k], tuned[k]) for k in weights)  # fine-tuned, not a copy
    sc = make_scenario("plume", 3, 128, seed=0)
    stepper = SurrogateStepper(sc.config, net, factor)
    density, velocity = stepper.step(None, None, sc.sources)
    for _ in range(2):
        density, velocity = stepper.step(density, velocity, sc.sources)
    assert density.shape == (128, 128, 128) and velocity.shape == (128, 128, 128, 3)
    assert np.isfinite(density).all() and float(density.min()) >= 0 and float(density.sum()) > 0
