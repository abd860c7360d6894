"""Training: recipes, losses, dataset batches, a 2-step run with resume, determinism, CLI.

Everything runs on tiny nets and a few generated 48-px samples; nothing is really trained.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mlvfx.data.augment import normals_from_height
from mlvfx.errors import InputError
from mlvfx.io import write_image
from mlvfx.nets import MaterialNet, MaterialNetConfig
from mlvfx.train import losses as L
from mlvfx.train.dataset import MaterialDataset
from mlvfx.train.material import compute_losses, learning_rate, train_material
from mlvfx.train.recipe import Recipe, TrainSpec, load_recipe, recipe_from_dict

ROOT = Path(__file__).resolve().parents[1]
SIZE = 48


def _write_sample(root: Path, index: int, family: str = "bricks") -> Path:
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    height = 0.01 * (np.sin(x / (3 + index)) * np.cos(y / 4)).astype(np.float32)  # patch widths
    normal = normals_from_height(height * SIZE)
    albedo = np.clip(rng.random(3).astype(np.float32) * 0.6 + 0.2 + 0.1 * np.sin(x / 5)[..., None], 0, 1)
    shade = np.clip(normal @ np.array([0.3, 0.3, 0.9], np.float32), 0.05, 1)
    lit = np.clip(albedo * shade[..., None], 0, 1).astype(np.float32)
    d = root / f"s{index:06d}"
    d.mkdir(parents=True)
    write_image(d / "lit.png", lit, kind="color", bit_depth=16)
    write_image(d / "albedo.png", albedo, kind="color", bit_depth=16)
    write_image(d / "normal.png", normal * 0.5 + 0.5, kind="data", bit_depth=16)
    lo, hi = float(height.min()), float(height.max())
    write_image(d / "height16.png", (height - lo) / (hi - lo), kind="data", bit_depth=16)
    write_image(d / "roughness.png", np.full((SIZE, SIZE), 0.2 + 0.1 * index, np.float32), kind="data")
    (d / "meta.json").write_text(
        json.dumps({"family": family, "seed": 7, "index": index, "height_range": [lo, hi], "size": SIZE})
    )
    return d


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(2):
        _write_sample(root, i)
    return root


def _tiny_recipe(**train: object) -> Recipe:
    base = load_recipe(ROOT / "model_zoo/recipes/material_v1.json")
    t = replace(
        base.train,
        steps=2,
        batch=2,
        crop=32,
        warmup=1,
        checkpoint_minutes=1000.0,
        log_every=1,
        threads=1,
        val_samples=2,
    )
    return replace(base, model=MaterialNetConfig(widths=(4, 8)), train=replace(t, **train))  # type: ignore[arg-type]


def test_recipe_file_loads_and_round_trips() -> None:
    recipe = load_recipe(ROOT / "model_zoo/recipes/material_v1.json")
    assert recipe.name == "material_v1" and recipe.data.families == ("train",)
    assert recipe_from_dict(recipe.to_dict()) == recipe


def test_recipe_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="recipe not found"):
        load_recipe(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "seed": 1, "train": {"stepz": 3}}))
    with pytest.raises(InputError, match="stepz") as err:
        load_recipe(bad)
    assert str(bad) in str(err.value)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        load_recipe(bad)
    with pytest.raises(InputError, match="steps"):
        recipe_from_dict({"name": "x", "seed": 1, "train": {"steps": 0}})


def test_losses_behave() -> None:
    tilt = torch.tensor([0, 0, 3.0])[:, None, None]
    n = torch.nn.functional.normalize(torch.randn(2, 3, 8, 8) + tilt, dim=1)
    assert float(L.angular_loss(n, n)) < 2e-3
    up = torch.zeros(1, 3, 4, 4)
    up[:, 2] = 1
    side = torch.zeros(1, 3, 4, 4)
    side[:, 0] = 1
    assert math.isclose(float(L.angular_loss(up, side)), math.pi / 2, rel_tol=1e-3)
    assert math.isclose(float(L.chord_loss(up, side)), math.sqrt(2), rel_tol=1e-3)
    assert float(L.chord_loss(n, n)) < 1e-3
    a = torch.rand(2, 3, 8, 8) * 0.8 + 0.1
    assert float(L.scale_invariant_log_loss(a * 0.5, a)) < 1e-4  # exact but for the log epsilon
    assert float(L.scale_invariant_log_loss(a.flip(-1), a)) > 1e-3
    h = torch.rand(1, 1, 8, 8) * 3
    assert float(L.height_gradient_loss(h + 5.0, h)) < 1e-6
    normals = torch.from_numpy(normals_from_height(h[0, 0].numpy()).transpose(2, 0, 1)[None].copy())
    assert float(L.height_normal_consistency(h, normals)) < 1e-4
    assert float(L.height_normal_consistency(h * 2, normals)) > 0.1


def test_learning_rate_schedule() -> None:
    recipe = _tiny_recipe(lr=1e-2, lr_min=1e-4, warmup=10)
    assert learning_rate(0, recipe, 100) == pytest.approx(1e-3)
    assert learning_rate(10, recipe, 100) == pytest.approx(1e-2)
    assert learning_rate(100, recipe, 100) == pytest.approx(1e-4)


def test_batches_are_deterministic_by_step(dataset: Path) -> None:
    data = MaterialDataset(dataset)
    assert data.refresh() == 2 and data.refresh() == 0
    a = data.batch(5, 3, 2, 32)
    b = data.batch(5, 3, 2, 32)
    c = data.batch(5, 4, 2, 32)
    assert a["lit"].shape == (2, 3, 32, 32) and a["height"].shape == (2, 1, 32, 32)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["lit"], c["lit"])
    # Heights come in pixel units: their slopes match the normals.
    n = a["normal"]
    assert float(L.height_normal_consistency(a["height"], n)) < 0.05


def test_held_out_family_is_refused(tmp_path: Path) -> None:
    _write_sample(tmp_path / "d", 0, family="bark")
    with pytest.raises(InputError, match="held-out"):
        MaterialDataset(tmp_path / "d").refresh()


def test_mixture_with_a_held_out_part_is_skipped(tmp_path: Path) -> None:
    # The factory's mixtures may blend pebbles in (every dataset up to material_v4 has some).
    for i, parts in enumerate([("rocky", "pebbles"), ("rocky", "bricks"), ("bark", "tiles")]):
        d = _write_sample(tmp_path / "d", i, family="mixture")
        meta = json.loads((d / "meta.json").read_text())
        meta["params"] = {"a": {"family": parts[0]}, "b": {"family": parts[1]}}
        (d / "meta.json").write_text(json.dumps(meta))
    _write_sample(tmp_path / "d", 3)
    data = MaterialDataset(tmp_path / "d", val_fraction=0.0)
    assert data.refresh() == 2
    assert len(data.train) == 2 and not data.val
    assert [f.name for f in data.skipped_held_out] == ["s000000", "s000002"]
    assert data.refresh() == 0  # a second look neither reloads nor re-counts them
    assert len(data.skipped_held_out) == 2


def test_overfits_two_samples(dataset: Path) -> None:
    torch.manual_seed(0)
    data = MaterialDataset(dataset, val_fraction=0.0)
    data.refresh()
    batch = data.batch(0, 0, 2, 32)
    net = MaterialNet(MaterialNetConfig(widths=(4, 8)))
    recipe = _tiny_recipe()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(2):
        loss = compute_losses(net(batch["lit"]), batch, recipe.loss)["total"]
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    after = float(compute_losses(net(batch["lit"]), batch, recipe.loss)["total"])
    assert first is not None and after < first


def test_train_two_steps_resume_and_determinism(dataset: Path, tmp_path: Path) -> None:
    recipe = _tiny_recipe()
    r1 = train_material(recipe, data_dir=dataset, out_dir=tmp_path / "a", export_onnx=False)
    assert r1.steps_done == 2 and r1.stopped == "finished" and r1.weights is not None
    r2 = train_material(recipe, data_dir=dataset, out_dir=tmp_path / "b", export_onnx=False)
    from safetensors.torch import load_file

    w1, w2 = load_file(str(r1.weights)), load_file(str(r2.weights))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    if os.name == "posix":  # the weights get the normal output mode, not safetensors' own 0600
        from mlvfx.io.atomic import FILE_MODE

        assert r1.weights.stat().st_mode & 0o777 == FILE_MODE
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["steps_done"] == 2 and summary["params"] > 0 and summary["flops_per_pixel"] > 0
    log = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert next(r["event"] for r in log) == "start" and log[-1]["event"] == "end"


def test_resume_matches_uninterrupted_run(dataset: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    recipe = _tiny_recipe(steps=3)
    full = train_material(recipe, data_dir=dataset, out_dir=tmp_path / "full", export_onnx=False)
    # An interrupted run: it stops after one step (as if the session ended), then resumes.
    part = train_material(
        recipe, data_dir=dataset, out_dir=tmp_path / "part", export_onnx=False, max_steps_this_run=1
    )
    assert part.steps_done == 1 and part.stopped == "paused"
    done = train_material(recipe, data_dir=dataset, out_dir=tmp_path / "part", resume=True, export_onnx=False)
    assert done.steps_done == 3
    assert full.weights is not None and done.weights is not None
    a, b = load_file(str(full.weights)), load_file(str(done.weights))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_budget_zero_stops_without_steps(dataset: Path, tmp_path: Path) -> None:
    res = train_material(
        _tiny_recipe(), data_dir=dataset, out_dir=tmp_path / "z", budget_minutes=0.0, export_onnx=False
    )
    assert res.steps_done == 0 and res.stopped == "budget" and res.weights is None


def test_cli_trains_with_json_summary(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlvfx.train import cli

    recipe = _tiny_recipe().to_dict()
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe))
    parser = argparse.ArgumentParser()
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--json", action="store_true")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(_argv(path, dataset, tmp_path))
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps_done"] == 1 and Path(out["weights"]).is_file() and Path(out["onnx"]).is_file()
    # The same command again would silently replace the finished run: refused, and --overwrite
    # starts it again.
    from mlvfx.errors import InputError

    before = Path(out["weights"]).stat().st_mtime_ns
    with pytest.raises(InputError, match="holds a run already"):
        args.func(args)
    assert Path(out["weights"]).stat().st_mtime_ns == before
    again = parser.parse_args([*_argv(path, dataset, tmp_path), "--overwrite"])
    assert again.func(again) == 0


def _argv(recipe: Path, dataset: Path, tmp_path: Path) -> list[str]:
    return [
        "--json",
        "train",
        "material",
        "--recipe",
        str(recipe),
        "--data",
        str(dataset),
        "--out",
        str(tmp_path / "o"),
        "--skip-render",
        "--steps",
        "1",
    ]


def test_train_spec_defaults_are_sane() -> None:
    t = TrainSpec()
    assert t.crop % 16 == 0 and t.budget_minutes <= 180


def test_context_batches_pair_each_crop_with_its_whole_photo(dataset: Path) -> None:
    from mlvfx.data.augment import augment_with_context, load_sample

    sample = load_sample(dataset / "s000001")
    for seed in range(4):
        part, whole = augment_with_context(sample, np.random.default_rng(seed), crop_size=16)
        # The crop is a window of the (transformed, jittered) whole photo.
        hits = [
            (r, c)
            for r in range(SIZE - 15)
            for c in range(SIZE - 15)
            if np.array_equal(whole[r : r + 16, c : c + 16], part.lit)
        ]
        assert hits
    data = MaterialDataset(dataset)
    data.refresh()
    b = data.batch(5, 3, 2, 32, context=True)
    assert tuple(b["thumb"].shape) == (2, 3, SIZE // 4, SIZE // 4)
    assert all(torch.equal(b[k], data.batch(5, 3, 2, 32, context=True)[k]) for k in b)
    assert "thumb" not in data.batch(5, 3, 2, 32)


def test_context_batches_are_the_reference_augmentation_value_for_value(dataset: Path) -> None:
    # augment_with_context crops before it converts; it must give exactly what the whole-sample
    # composition (turn, light falloff, jitter, then crop) gives, for every one of the 8 turns and
    # mirrors, with and without the falloff, from the float16 training copies as from float32.
    from dataclasses import replace as dc_replace

    from mlvfx.data.augment import augment_with_context, color_jitter, crop, dihedral, relight_smoothly

    def reference(sample, rng, size, illumination):  # type: ignore[no-untyped-def]
        out = dihedral(sample, int(rng.integers(4)), bool(rng.integers(2)))
        if illumination > 0:
            out = dc_replace(out, lit=relight_smoothly(out.lit, rng, illumination))
        out = dc_replace(out, lit=color_jitter(out.lit, rng))
        h, w = out.shape
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        return crop(out, top, left, size), out.lit

    data = MaterialDataset(dataset, val_fraction=0.0)
    data.refresh()
    stored = data.train[0]
    stored.light = np.asarray([0.6, 0.0, 0.8], np.float32)
    seen = set()
    for seed in range(40):
        for illumination in (0.0, 0.7):
            ref_part, ref_whole = reference(stored.sample(), np.random.default_rng(seed), 32, illumination)
            for source in (stored, stored.sample()):
                part, whole = augment_with_context(
                    source, np.random.default_rng(seed), crop_size=32, illumination=illumination
                )
                assert np.array_equal(whole, ref_whole)
                for name in ("lit", "albedo", "normal", "height", "roughness", "light"):
                    a, b = getattr(part, name), getattr(ref_part, name)
                    assert a.dtype == b.dtype and np.array_equal(a, b), name
                    assert a.flags.c_contiguous
        draw = np.random.default_rng(seed)
        seen.add((int(draw.integers(4)), int(draw.integers(2))))
    assert len(seen) == 8  # every quarter turn, with and without the mirror
    with pytest.raises(InputError, match="crop size"):
        augment_with_context(stored, np.random.default_rng(0), crop_size=SIZE + 16)


def test_color_jitter_is_the_broadcast_formula_value_for_value() -> None:
    from mlvfx.data.augment import color_jitter

    lit = np.random.default_rng(3).random((40, 24, 3), dtype=np.float32)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        gain = 2.0 ** rng.uniform(-0.5, 0.5)
        wb = 1.0 + rng.uniform(-0.08, 0.08, size=3)
        out = lit * (gain * wb).astype(np.float32)
        grey = out @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
        s = 1.0 + rng.uniform(-0.25, 0.25)
        out = grey[..., None] + (out - grey[..., None]) * s
        want = np.asarray(np.clip(out, 0.0, 1.0) ** (1.0 + rng.uniform(-0.15, 0.15)), dtype=np.float32)
        got = color_jitter(lit, np.random.default_rng(seed))
        assert got.dtype == np.float32 and np.array_equal(got, want)


def test_light_loss_trains_a_head_on_the_context_and_exports_without_it(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from mlvfx.data.augment import dihedral, load_sample, sun_direction
    from mlvfx.nets.material import material_net_from_state_dict

    root = tmp_path / "d"
    for i in range(3):
        d = _write_sample(root, i)
        meta = json.loads((d / "meta.json").read_text())
        sun = {"azimuth": 0.5 * np.pi, "elevation": 0.0, "strength": 0.0 if i == 2 else 3.0}
        meta["lighting"] = {"sun": sun}
        (d / "meta.json").write_text(json.dumps(meta))
    # Azimuth 90 degrees on the horizon: the factory's sun stands at +X (the image's right).
    np.testing.assert_allclose(load_sample(root / "s000000").light, [1.0, 0.0, 0.0], atol=1e-6)  # type: ignore[arg-type]
    assert load_sample(root / "s000002").light is None  # overcast
    assert sun_direction({}) is None
    # A quarter turn counter-clockwise takes right to up, for the light as for the normals.
    turned = dihedral(load_sample(root / "s000000"), 1)
    np.testing.assert_allclose(turned.light, [0.0, 1.0, 0.0], atol=1e-6)  # type: ignore[arg-type]
    data = MaterialDataset(root, val_fraction=0.0)
    data.refresh()
    b = data.batch(1, 0, 3, 32, context=True)
    assert b["light"].shape == (3, 3) and b["light_mask"].shape == (3,)
    # A unit vector where the photo has a sun, zeros where it has none (the overcast s000002).
    assert torch.allclose(b["light"].norm(dim=1), b["light_mask"], atol=1e-5)

    base = _tiny_recipe(steps=3)
    with pytest.raises(InputError, match="context branch"):
        train_material(
            replace(base, loss=replace(base.loss, light=1.0)), data_dir=root, out_dir=tmp_path / "x"
        )
    recipe = replace(
        base, model=MaterialNetConfig(widths=(4, 8), context=3), loss=replace(base.loss, light=1.0)
    )
    full = train_material(recipe, data_dir=root, out_dir=tmp_path / "full", export_onnx=False)
    log = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert all("light" in r for r in log if r["event"] == "train")
    assert full.weights is not None
    state = load_file(str(full.weights))
    assert not any("light" in k for k in state)
    material_net_from_state_dict(state)  # the exported net is a plain MaterialNet
    # The head lives in the checkpoint, so a resumed run ends where an uninterrupted one does.
    train_material(recipe, data_dir=root, out_dir=tmp_path / "part", export_onnx=False, max_steps_this_run=2)
    part = train_material(recipe, data_dir=root, out_dir=tmp_path / "part", export_onnx=False, resume=True)
    assert part.weights is not None
    resumed = load_file(str(part.weights))
    assert all(torch.allclose(state[k], resumed[k], atol=1e-6) for k in state)


def test_init_weights_warm_start(dataset: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from mlvfx.train.material import init_weights

    torch.manual_seed(1)
    plain = MaterialNet(MaterialNetConfig(widths=(4, 8)))
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in plain.state_dict().items()}, str(path))
    ctx = MaterialNet(MaterialNetConfig(widths=(4, 8), context=3))
    record = init_weights(ctx, str(path))
    assert record["fresh_tensors"] == sum(1 for k in ctx.state_dict() if k.startswith("ctx_"))
    assert all(torch.equal(ctx.state_dict()[k], v) for k, v in plain.state_dict().items())
    detail = MaterialNet(MaterialNetConfig(widths=(4, 8), context=3, detail=4))
    fresh = init_weights(detail, str(path))["fresh_tensors"]
    assert fresh == sum(1 for k in detail.state_dict() if k.startswith(("ctx_", "detail.")))
    with pytest.raises(InputError, match="do not fit"):
        init_weights(MaterialNet(MaterialNetConfig(widths=(4, 6))), str(path))
    with pytest.raises(InputError, match="not found"):
        init_weights(ctx, str(tmp_path / "missing.safetensors"))
    # A warm-started context run trains, and its first step starts from the init weights.
    recipe = _tiny_recipe(init=str(path))
    recipe = replace(recipe, model=MaterialNetConfig(widths=(4, 8), context=3))
    res = train_material(recipe, data_dir=dataset, out_dir=tmp_path / "w", export_onnx=True)
    assert res.steps_done == 2 and res.onnx is not None and res.onnx.is_file()
    log = [json.loads(x) for x in (tmp_path / "w" / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "init" and log[0]["fresh_tensors"] == record["fresh_tensors"]


def test_linear_si_rmse_loss_matches_the_metric() -> None:
    from mlvfx.eval.material import si_rmse

    g = torch.Generator().manual_seed(0)
    pred, truth = torch.rand(3, 3, 8, 8, generator=g), torch.rand(3, 3, 8, 8, generator=g)
    want = np.mean(
        [si_rmse(pred[i].numpy().transpose(1, 2, 0), truth[i].numpy().transpose(1, 2, 0)) for i in range(3)]
    )
    assert float(L.scale_invariant_rmse(pred, truth)) == pytest.approx(want, rel=1e-4)
    assert float(L.scale_invariant_rmse(2.5 * truth, truth)) < 1e-3  # blind to a global scale
    base = load_recipe(ROOT / "model_zoo/recipes/material_v3b.json")
    assert base.loss.albedo_si_linear > 0
    batch = {"albedo": truth, "normal": torch.nn.functional.normalize(torch.rand(3, 3, 8, 8) + 0.5, dim=1)}
    batch |= {"height": torch.zeros(3, 1, 8, 8), "roughness": torch.zeros(3, 1, 8, 8)}
    out = torch.cat([batch["normal"], batch["height"], pred, batch["roughness"]], dim=1)
    assert "albedo_si_linear" in compute_losses(out, batch, base.loss)
    assert "albedo_si_linear" not in compute_losses(out, batch, _tiny_recipe().loss)


def test_recipes_can_share_another_recipes_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlvfx.train.cli import default_data_dir, recipe_data_dir

    monkeypatch.setenv("MLVFX_CACHE_DIR", str(tmp_path))
    assert recipe_data_dir(None, "@material_v1", "material_v3") == default_data_dir("material_v1")
    assert recipe_data_dir(None, "", "material_v3") == default_data_dir("material_v3")
    assert recipe_data_dir(str(tmp_path / "d"), "@material_v1", "x") == tmp_path / "d"
    for bad in ("@", "@../x", "@a/b", "@.."):
        with pytest.raises(InputError, match="shared data"):
            recipe_data_dir(None, bad, "x")
    # The continuation recipes render nothing new: they train on material_v1's renders.
    for name in ("material_v3", "material_v3b"):
        recipe = load_recipe(ROOT / f"model_zoo/recipes/{name}.json")
        v1 = load_recipe(ROOT / "model_zoo/recipes/material_v1.json")
        assert recipe.data.dir == "@material_v1"
        assert replace(recipe.data, dir="") == v1.data


def test_recipe_data_also_trains_on_several_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(2):
        _write_sample(a, i)
    for i in range(3):
        _write_sample(b, i)  # same folder names as in a: both must be kept
    both = MaterialDataset([a, b, tmp_path / "b" / ".." / "a"], val_fraction=0.0)
    assert both.refresh() == 5 and len(both.train) == 5
    assert both.refresh() == 0
    again = MaterialDataset([a, b], val_fraction=0.0)
    again.refresh()
    for x, y in zip(both.batch(3, 0, 4, 32).values(), again.batch(3, 0, 4, 32).values(), strict=True):
        assert torch.equal(x, y)
    # The published recipe renders its wide-lighting set and trains on material_v1's renders too.
    v4 = load_recipe(ROOT / "model_zoo/recipes/material_v4.json")
    assert v4.data.lighting == "wide" and v4.data.also == ("@material_v1",)
    assert load_recipe(ROOT / "model_zoo/recipes/material_v1.json").data.lighting == "studio"
    assert recipe_from_dict(v4.to_dict()) == v4
    for data, match in (
        ({"lighting": "dusk"}, "data.lighting"),
        ({"also": ["material_v1"]}, "data.also"),
        ({"also": ["@../x"]}, "data.also"),
        ({"also": "@material_v1"}, "must be a list"),
    ):
        with pytest.raises(InputError, match=match):
            recipe_from_dict({"name": "x", "seed": 1, "data": data})
    with pytest.raises(InputError, match=r"train\.illumination"):
        recipe_from_dict({"name": "x", "seed": 1, "train": {"illumination": 3.0}})
    assert load_recipe(ROOT / "model_zoo/recipes/material_v4b.json").train.illumination == 0.7


def test_cli_trains_on_the_data_of_recipes_named_in_also(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlvfx.train import cli

    for i in range(2):
        _write_sample(tmp_path / "mine", i)
    for i in range(3):
        _write_sample(tmp_path / "theirs", i)
    base = _tiny_recipe()
    other = replace(base, name="other", data=replace(base.data, dir=str(tmp_path / "theirs")))
    main = replace(base, name="main", data=replace(base.data, dir=str(tmp_path / "mine"), also=("@other",)))
    (tmp_path / "other.json").write_text(json.dumps(other.to_dict()))
    (tmp_path / "main.json").write_text(json.dumps(main.to_dict()))
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    cli.register(parser.add_subparsers())
    argv = ["--json", "train", "material", "--recipe", str(tmp_path / "main.json"), "--skip-render"]
    args = parser.parse_args([*argv, "--out", str(tmp_path / "o"), "--steps", "1"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["steps_done"] == 1
    start = [json.loads(line) for line in (tmp_path / "o" / "log.jsonl").read_text().splitlines()]
    start_rec = next(r for r in start if r.get("event") == "start")
    assert start_rec["train_samples"] + start_rec["val_samples"] == 5
    # A missing "also" recipe is a clear error naming the file.
    (tmp_path / "other.json").unlink()
    args = parser.parse_args([*argv, "--out", str(tmp_path / "o2"), "--steps", "1"])
    with pytest.raises(InputError, match="recipe not found"):
        args.func(args)


def test_curriculum_draws_its_first_steps_from_the_named_folders_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for i in range(2):
        _write_sample(mine, i)  # roughness 0.2, 0.3
    for i in (5, 6, 7):
        _write_sample(theirs, i)  # roughness 0.7, 0.8, 0.9
    data = MaterialDataset([mine, theirs], val_fraction=0.0)
    data.refresh()
    assert data.root_index(theirs) == 1 and data.root_index(tmp_path / "." / "mine") == 0
    with pytest.raises(InputError, match="not one of"):
        data.root_index(tmp_path)
    for step in range(6):
        assert float(data.batch(1, step, 4, 32, roots=[1])["roughness"].min()) > 0.65
        assert float(data.batch(1, step, 4, 32, roots=[0])["roughness"].max()) < 0.35
    # Without roots the batch is what it always was (every folder, same draw).
    assert torch.equal(data.batch(1, 0, 4, 32)["lit"], data.batch(1, 0, 4, 32, roots=None)["lit"])

    # In training: steps below first_steps get the curriculum's folder, later ones every folder.
    base = _tiny_recipe(steps=5, first_steps=3, first_data=("@other",))
    recipe = replace(base, data=replace(base.data, also=("@other",)))
    seen: list[object] = []
    real = MaterialDataset.batch

    def spy(self: MaterialDataset, *args: object, **kw: object) -> dict[str, torch.Tensor]:
        seen.append(kw.get("roots"))
        return real(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(MaterialDataset, "batch", spy)
    res = train_material(recipe, data_dir=[mine, theirs], out_dir=tmp_path / "o", export_onnx=False)
    assert res.steps_done == 5
    assert seen == [[1], [1], [1], None, None]
    with pytest.raises(InputError, match="were given"):
        train_material(recipe, data_dir=[mine], out_dir=tmp_path / "o2", export_onnx=False)


def test_curriculum_recipe_settings_are_checked() -> None:
    v7 = load_recipe(ROOT / "model_zoo/recipes/material_v7.json")
    assert v7.train.first_data == ("@material_v1",) and 0 < v7.train.first_steps < v7.train.steps
    assert v7.data.also == ("@material_v1",)
    assert recipe_from_dict(v7.to_dict()) == v7
    for train, match in (
        ({"first_steps": 10}, "go together"),
        ({"first_data": ["@x"]}, "go together"),
        ({"first_steps": 10, "first_data": ["@elsewhere"]}, "not one of its data folders"),
        ({"first_steps": 10, "first_data": "@x"}, "must be a list"),
    ):
        with pytest.raises(InputError, match=match):
            recipe_from_dict({"name": "x", "seed": 1, "train": train})
    own = recipe_from_dict({"name": "x", "seed": 1, "train": {"first_steps": 1, "first_data": ["@x"]}})
    assert own.train.first_data == ("@x",)


def test_metallic_samples_of_named_families_are_skipped(tmp_path: Path) -> None:
    # recipe data.skip_metallic: ("composite",) drops the composites' metals, not scratched_metal's.
    for i, (family, metallic) in enumerate(
        [("composite", True), ("composite", False), ("scratched_metal", True), ("bricks", False)]
    ):
        d = _write_sample(tmp_path / "d", i, family=family)
        meta = json.loads((d / "meta.json").read_text())
        meta["params"] = {"metallic": metallic}
        (d / "meta.json").write_text(json.dumps(meta))
    kept = MaterialDataset(tmp_path / "d", val_fraction=0.0)
    assert kept.refresh() == 4 and not kept.skipped_metallic
    data = MaterialDataset(tmp_path / "d", val_fraction=0.0, skip_metallic=("composite",))
    assert data.refresh() == 3
    assert [f.name for f in data.skipped_metallic] == ["s000000"]
    assert data.refresh() == 0 and len(data.skipped_metallic) == 1


def test_marked_families_reach_the_batch(tmp_path: Path) -> None:
    # train.teacher_albedo_families: the batch says which of its samples are of those families.
    for i, family in enumerate(["scratched_metal", "bricks", "bricks"]):
        _write_sample(tmp_path / "d", i, family=family)
    data = MaterialDataset(tmp_path / "d", val_fraction=0.0, mark_families=("scratched_metal",))
    assert data.refresh() == 3 and data.train_marked == [True, False, False]
    for step in range(4):
        b = data.batch(3, step, 6, 16)
        picks = np.random.default_rng([3, step]).integers(0, 3, size=6)
        assert b["marked"].tolist() == [1.0 if int(i) == 0 else 0.0 for i in picks]
    plain = MaterialDataset(tmp_path / "d", val_fraction=0.0)
    plain.refresh()
    assert "marked" not in plain.batch(3, 0, 2, 16)


def test_recipe_skip_metallic_round_trips() -> None:
    recipe = load_recipe(ROOT / "model_zoo/recipes/material_v10.json")
    assert recipe.data.skip_metallic == ("composite",)
    assert recipe_from_dict(recipe.to_dict()) == recipe
    bad = recipe.to_dict()
    bad["data"]["skip_metallic"] = ["composites"]  # a typo must not silently skip nothing
    with pytest.raises(InputError, match="skip_metallic names unknown families: composites"):
        recipe_from_dict(bad)


def test_teacher_settings_are_checked_and_round_trip() -> None:
    raw = json.loads((ROOT / "model_zoo/recipes/material_v1.json").read_text())
    with pytest.raises(InputError, match="go together"):
        recipe_from_dict({**raw, "loss": {**raw["loss"], "roughness_teacher": 1.0}})
    with pytest.raises(InputError, match="go together"):
        recipe_from_dict({**raw, "train": {**raw["train"], "teacher": "zoo:material@0.7.0"}})
    both = recipe_from_dict(
        {
            **raw,
            "train": {**raw["train"], "teacher": "zoo:material@0.7.0"},
            "loss": {**raw["loss"], "roughness_teacher": 0.5},
        }
    )
    again = recipe_from_dict(json.loads(json.dumps(both.to_dict())))
    assert again == both and again.train.teacher == "zoo:material@0.7.0"
    # The albedo term needs its families, the families need the term, and the names must exist.
    teach = {**raw["train"], "teacher": "zoo:material@0.7.0"}
    with pytest.raises(InputError, match="go together"):
        recipe_from_dict({**raw, "train": teach, "loss": {**raw["loss"], "albedo_teacher": 1.0}})
    with pytest.raises(InputError, match="go together"):
        recipe_from_dict(
            {
                **raw,
                "train": {**teach, "teacher_albedo_families": ["scratched_metal"]},
                "loss": {**raw["loss"], "roughness_teacher": 1.0},
            }
        )
    with pytest.raises(InputError, match="unknown families: nope"):
        recipe_from_dict(
            {
                **raw,
                "train": {**teach, "teacher_albedo_families": ["nope"]},
                "loss": {**raw["loss"], "albedo_teacher": 1.0},
            }
        )
    v13 = load_recipe(ROOT / "model_zoo/recipes/material_v13.json")
    assert v13.train.teacher_albedo_families == ("scratched_metal",) and v13.loss.albedo_teacher == 2.0
    assert recipe_from_dict(json.loads(json.dumps(v13.to_dict()))) == v13


def test_albedo_teacher_term_covers_the_marked_samples_only() -> None:
    torch.manual_seed(0)
    pred = torch.rand(3, 8, 16, 16) + 0.1
    teacher = torch.rand(3, 8, 16, 16) + 0.1
    batch = {
        "normal": torch.rand(3, 3, 16, 16),
        "height": torch.rand(3, 1, 16, 16),
        "albedo": torch.rand(3, 3, 16, 16),
        "roughness": torch.rand(3, 1, 16, 16),
        "marked": torch.tensor([0.0, 1.0, 0.0]),
    }
    w = replace(_tiny_recipe().loss, albedo_teacher=2.0)
    terms = compute_losses(pred, batch, w, teacher)
    p, t = pred[1, 4:7].flatten(), teacher[1, 4:7].flatten()
    a = (p * t).sum() / (p * p).sum()
    hand = torch.sqrt(((a * p - t) ** 2).mean())
    assert torch.allclose(terms["albedo_teacher"], hand, atol=1e-6)
    without = compute_losses(pred, batch, replace(w, albedo_teacher=0.0), teacher)
    assert torch.allclose(terms["total"] - without["total"], 2.0 * hand, atol=1e-5)
    # A batch without a marked sample adds nothing.
    none = compute_losses(pred, {**batch, "marked": torch.zeros(3)}, w, teacher)
    assert float(none["albedo_teacher"]) == 0.0


def test_roughness_teacher_term_is_l1_to_the_teachers_roughness() -> None:
    torch.manual_seed(0)
    pred = torch.rand(2, 8, 16, 16)
    teacher = torch.rand(2, 8, 16, 16)
    batch = {
        "normal": torch.rand(2, 3, 16, 16),
        "height": torch.rand(2, 1, 16, 16),
        "albedo": torch.rand(2, 3, 16, 16),
        "roughness": torch.rand(2, 1, 16, 16),
    }
    w = replace(_tiny_recipe().loss, roughness_teacher=2.0)
    terms = compute_losses(pred, batch, w, teacher)
    hand = (pred[:, 7:8] - teacher[:, 7:8]).abs().mean()
    assert torch.allclose(terms["roughness_teacher"], hand)
    plain = compute_losses(pred, batch, w)
    assert "roughness_teacher" not in plain
    assert torch.allclose(terms["total"] - plain["total"], 2.0 * hand)
    assert float(compute_losses(pred, batch, w, pred)["roughness_teacher"]) == 0.0


def test_a_teacher_pulls_the_roughness_towards_its_own_and_stays_frozen(
    dataset: Path, tmp_path: Path
) -> None:
    """Only the teacher term trains: the student's roughness moves towards the teacher's, which
    differs from the ground truth, and the teacher file is read, logged and left as it was."""
    from safetensors.torch import load_file, save_file

    cfg = MaterialNetConfig(widths=(4, 8))
    torch.manual_seed(3)
    teacher = MaterialNet(cfg)
    with torch.no_grad():  # a teacher whose roughness is far from the fixture's (0.2 / 0.3)
        head = [m for m in teacher.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        assert head.bias is not None
        head.bias[7] = 3.0
    path = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(path))
    zero = {k: 0.0 for k in ("normal", "height_grad", "height_normal", "albedo_si", "albedo_l1", "roughness")}
    recipe = _tiny_recipe(steps=80, lr=3e-2, teacher=str(path))
    recipe = replace(recipe, model=cfg, loss=replace(recipe.loss, **zero, roughness_teacher=1.0))
    data = MaterialDataset(dataset, val_fraction=0.0)
    data.refresh()
    batch = data.batch(1, 0, 2, 32)
    teacher.eval()
    with torch.no_grad():
        target = teacher(batch["lit"])[:, 7:8]
    torch.manual_seed(recipe.seed)  # the student's own initialisation
    start = MaterialNet(cfg).eval()
    with torch.no_grad():
        before = float((start(batch["lit"])[:, 7:8] - target).abs().mean())
    res = train_material(recipe, data_dir=dataset, out_dir=tmp_path / "w", export_onnx=False)
    assert res.weights is not None
    student = MaterialNet(cfg)
    student.load_state_dict(load_file(str(res.weights)))
    student.eval()
    with torch.no_grad():
        after = float((student(batch["lit"])[:, 7:8] - target).abs().mean())
    assert after < 0.1 * before
    assert float(target.mean()) > 0.9  # the teacher's roughness, not the fixture's 0.2 / 0.3
    kept = load_file(str(path))
    assert all(torch.equal(kept[k], v) for k, v in teacher.state_dict().items())
    log = [json.loads(x) for x in (tmp_path / "w" / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "teacher" and log[0]["from"] == str(path) and len(log[0]["sha256"]) == 64
    assert "roughness_teacher" in log[-3]
    with pytest.raises(InputError, match="do not fit"):
        bad = replace(recipe, model=MaterialNetConfig(widths=(4, 6)))
        train_material(bad, data_dir=dataset, out_dir=tmp_path / "w2", export_onnx=False)


def test_cli_renders_missing_data_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --skip-render the command asks the factory for each data folder (its own and the
    ``also`` recipes'), with each recipe's own settings, and then trains on what was rendered."""
    from mlvfx.data import materials
    from mlvfx.train import cli

    calls: list[dict[str, object]] = []

    def fake_generate(root: Path, count: int, **kw: object) -> None:  # stands in for Blender
        calls.append({"root": Path(root), "count": count, **kw})
        for i in range(count):
            if not (Path(root) / f"s{i:06d}").exists():
                _write_sample(Path(root), i)

    monkeypatch.setattr(materials, "generate", fake_generate)
    base = _tiny_recipe()
    other = replace(
        base, name="other", data=replace(base.data, dir=str(tmp_path / "theirs"), count=3, lighting="wide")
    )
    main = replace(
        base, name="main", data=replace(base.data, dir=str(tmp_path / "mine"), count=2, also=("@other",))
    )
    (tmp_path / "other.json").write_text(json.dumps(other.to_dict()))
    (tmp_path / "main.json").write_text(json.dumps(main.to_dict()))
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    cli.register(parser.add_subparsers())
    argv = ["--json", "train", "material", "--recipe", str(tmp_path / "main.json")]
    args = parser.parse_args([*argv, "--out", str(tmp_path / "o"), "--steps", "1"])
    assert args.func(args) == 0
    assert [(c["root"], c["count"], c["seed"], c["lighting"]) for c in calls] == [
        (tmp_path / "mine", 2, main.data.seed, "studio"),
        (tmp_path / "theirs", 3, other.data.seed, "wide"),
    ]
    assert json.loads(capsys.readouterr().out)["steps_done"] == 1
    start = [json.loads(line) for line in (tmp_path / "o" / "log.jsonl").read_text().splitlines()]
    rec = next(r for r in start if r.get("event") == "start")
    assert rec["train_samples"] + rec["val_samples"] == 5


def test_an_interrupt_keeps_the_steps_done(dataset: Path, tmp_path: Path) -> None:
    recipe = _tiny_recipe(steps=3)

    def stop_at_2(record: dict[str, object]) -> None:
        if record.get("event") == "train" and record.get("step") == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_material(recipe, data_dir=dataset, out_dir=tmp_path / "cut", export_onnx=False, log=stop_at_2)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["step"] == 2
    done = train_material(recipe, data_dir=dataset, out_dir=tmp_path / "cut", resume=True, export_onnx=False)
    assert done.steps_done == 3


def test_skip_render_still_checks_the_renders_are_the_recipes(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlvfx.data import materials, splits
    from mlvfx.errors import InputError
    from mlvfx.train import cli

    recipe = _tiny_recipe()
    other = materials.dataset_settings(
        seed=recipe.data.seed + 4,
        size=recipe.data.size,
        samples=recipe.data.samples,
        families=materials.check_families(splits.expand_families(["train"])),
        lighting=recipe.data.lighting,
    )
    (dataset / "dataset.json").write_text(json.dumps(other))
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe.to_dict()))
    parser = argparse.ArgumentParser()
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--json", action="store_true")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(_argv(path, dataset, tmp_path))
    with pytest.raises(InputError, match=f"holds a dataset with seed={recipe.data.seed + 4}"):
        args.func(args)
    assert not (tmp_path / "o").exists()  # refused before any training


def test_an_interrupt_mid_update_leaves_the_last_checkpoint_alone(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Weights half-updated by the optimizer must not be saved as if the step had been taken.
    calls = {"n": 0}
    real_step = torch.optim.AdamW.step

    def step_then_interrupt(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # inside the update of the second step
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_material(_tiny_recipe(steps=3), data_dir=dataset, out_dir=tmp_path / "cut", export_onnx=False)
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()
    events = [json.loads(line) for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert not any(e["event"] == "interrupted" for e in events)


def test_an_interrupt_inside_the_forward_pass_resumes_to_the_uninterrupted_weights(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The forward pass had already moved BatchNorm's running statistics when Ctrl-C came: the
    # checkpoint held step t-1's weights with step t's statistics, and the resume differed (audit).
    from safetensors.torch import load_file

    from mlvfx.train import material as trainer

    recipe = _tiny_recipe(steps=3)
    full = train_material(recipe, data_dir=dataset, out_dir=tmp_path / "full", export_onnx=False)
    calls = {"n": 0}
    real = trainer.compute_losses

    def interrupt_the_third(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:  # step 3's forward pass has run, its loss not yet
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "compute_losses", interrupt_the_third)
    with pytest.raises(KeyboardInterrupt):
        train_material(recipe, data_dir=dataset, out_dir=tmp_path / "cut", export_onnx=False)
    monkeypatch.setattr(trainer, "compute_losses", real)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["step"] == 2
    done = train_material(recipe, data_dir=dataset, out_dir=tmp_path / "cut", resume=True, export_onnx=False)
    assert full.weights is not None and done.weights is not None
    a, b = load_file(str(full.weights)), load_file(str(done.weights))
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train", "log_every", 0, "log_every >= 1"),
        ("model", "widths", [], "widths must be a list"),
        ("model", "widths", [0, 8], "widths must be a list"),
        ("model", "widths", ["a"], "widths must be a list"),
        ("model", "blocks", 0, "blocks >= 1"),
        ("model", "context", -4, "context >= 0"),
        ("train", "crop", 33, "multiple of 16"),
        (None, "seed", -1, "0..2\\*\\*32-1"),
        (None, "seed", 2**70, "0..2\\*\\*32-1"),
        ("data", "seed", -3, "0..2\\*\\*32-1"),
        ("train", "lr_min", -1, "lr_min >= 0"),
        ("train", "budget_minutes", -1, "budget_minutes > 0"),
        ("loss", "normal", -1.0, "loss weights must be >= 0: normal"),
    ],
)
def test_recipe_values_training_cannot_use_are_refused_up_front(
    tmp_path: Path, section: str | None, key: str, value: object, message: str
) -> None:
    # Each was accepted and failed later as an internal error (after rendering, and after
    # --overwrite had removed the earlier run), or trained nothing and exited 0 (audit).
    d = load_recipe(ROOT / "model_zoo/recipes/material_v1.json").to_dict()
    (d if section is None else d[section])[key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(d))
    with pytest.raises(InputError, match=message) as err:
        load_recipe(path)
    assert err.value.path == str(path)


def test_a_run_stopped_early_says_how_to_resume(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlvfx.train import cli
    from mlvfx.train import material as trainer

    path = tmp_path / "r.json"
    path.write_text(json.dumps(_tiny_recipe(steps=3).to_dict()))
    parser = argparse.ArgumentParser()
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--json", action="store_true")
    cli.register(parser.add_subparsers())
    argv = [*[a for a in _argv(path, dataset, tmp_path) if a != "--json"][:-1], "3"]  # --steps 3
    real = trainer.compute_losses
    calls = {"n": 0}

    def interrupt_the_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "compute_losses", interrupt_the_second)
    args = parser.parse_args(argv)
    with pytest.raises(KeyboardInterrupt):
        args.func(args)
    err = capsys.readouterr().err
    hint = err.split("resume with: ", 1)[1].splitlines()[0]
    assert hint.startswith(f"mlvfx train material --recipe {path} --resume -o {tmp_path / 'o'}"), hint
    # with the options this run had: the hinted command goes on with the same length and data
    assert f"--data {dataset}" in hint and "--steps 3" in hint and "--skip-render" in hint, hint
    monkeypatch.setattr(trainer, "compute_losses", real)
    resumed = parser.parse_args(hint.split()[1:])
    assert resumed.func(resumed) == 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["steps_done"] == 3
    # Stopped by its time budget: the same command would stop at once, so a larger one is asked for.
    budget_run = [*argv[:-1], "4", "--budget-minutes", "0.0001", "-o", str(tmp_path / "b")]
    args = parser.parse_args(budget_run)
    slow = {"n": 0}

    def slow_losses(*a, **k):  # type: ignore[no-untyped-def]
        import time

        slow["n"] += 1
        time.sleep(0.02)
        return real(*a, **k)

    monkeypatch.setattr(trainer, "compute_losses", slow_losses)
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert (tmp_path / "b" / "checkpoint.pt").is_file() and slow["n"] >= 1
    assert "resume with a larger budget" in err and "--budget-minutes MINUTES" in err, err


def test_training_gives_back_torch_process_state(dataset: Path, tmp_path: Path) -> None:
    # A pipeline tool that trained and then ran inference in one process ran it on the recipe's
    # thread count, with deterministic kernels and a reseeded generator (audit, stop 27).
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        torch.manual_seed(123)
        expected = torch.rand(4)
        torch.manual_seed(123)
        train_material(_tiny_recipe(), data_dir=dataset, out_dir=tmp_path / "a", export_onnx=False)
        assert torch.get_num_threads() == 3
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.equal(torch.rand(4), expected)
    finally:
        torch.set_num_threads(threads)
