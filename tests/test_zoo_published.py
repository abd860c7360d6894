"""The models published in model_zoo/: each loads from the repository's weights as its card says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlvfx.zoo import load_manifest, load_state_dict

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "model_zoo" / "weights"


def _file(model_id: str, suffix: str, version: str | None = None) -> Path:
    entry = load_manifest(ROOT / "model_zoo" / "manifest.json").get(model_id, version)
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


def test_published_smoke3d_0_3_is_0_2_plus_a_velocity_upres() -> None:
    """0.3.0 keeps 0.2.0's correction and density upres bit for bit (its recipe freezes them) and
    adds the learned velocity upres, which the stepper's velocity output goes through."""
    from mlvfx.fluids.scenarios import make_scenario
    from mlvfx.fluids.surrogate import SurrogateSolver, VelocityUpres, prolong_velocity, surrogate_from_state

    old = load_state_dict(_file("smoke3d", ".safetensors", "0.2.0"))
    new = load_state_dict(_file("smoke3d", ".safetensors", "0.3.0"))
    assert set(old) < set(new) and all(torch.equal(old[k], new[k]) for k in old)
    added = {k.split(".")[0] for k in set(new) - set(old)}
    # Besides the velocity upres, only the flags 0.2.0's older file lacks, at the defaults it loads with.
    assert added == {"vupres", "gain", "dilation"}
    assert float(new["gain"].sum()) == 0.0 and bool((new["dilation"] == 1).all())
    net, factor = surrogate_from_state(new)
    assert isinstance(net.vupres, VelocityUpres) and net.vupres.factor == factor == 4
    sc = make_scenario("plume", 3, 64, seed=0)
    sur = SurrogateSolver(sc.config, net, sc.obstacles, factor, dtype="float32")
    src = sur.prepare_sources(sc.sources)
    rho, vel = sur.solver.zeros()
    with torch.no_grad():
        for _ in range(3):
            rho, vel = sur.advance(rho, vel, src)
        out, linear = sur.output_velocity(rho, vel, src), prolong_velocity(vel, factor)
    assert out.shape == (3, 64, 64, 64) and bool(torch.isfinite(out).all())
    assert float((out - linear).abs().max()) > 1e-4


def test_published_smoke3d_128_steps_a_128_cubed_shot() -> None:
    """The 128³ model: the same architecture as smoke3d, fine-tuned weights, a finite 128³ step."""
    from mlvfx.fluids.scenarios import make_scenario
    from mlvfx.fluids.surrogate import SurrogateStepper, UpresNet, surrogate_from_state

    net, factor = surrogate_from_state(load_state_dict(_file("smoke3d_128", ".safetensors")))
    assert factor == 4 and net.dims == 3 and net.symmetric and isinstance(net.upres, UpresNet)
    assert net.vupres is not None  # 0.2.0: 0.1.0 plus a velocity upres fine-tuned at 128³
    base = load_state_dict(_file("smoke3d", ".safetensors", "0.2.0"))  # what it was tuned from
    tuned = load_state_dict(_file("smoke3d_128", ".safetensors"))
    first = load_state_dict(_file("smoke3d_128", ".safetensors", "0.1.0"))
    assert all(torch.equal(first[k], tuned[k]) for k in first)  # 0.1.0's correction and upres, kept
    donor = load_state_dict(_file("smoke3d", ".safetensors", "0.3.0"))  # where its velocity upres started
    vkeys = [k for k in tuned if k.startswith("vupres.")]
    assert vkeys and any(not torch.equal(donor[k], tuned[k]) for k in vkeys)  # fine-tuned, not a copy
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
