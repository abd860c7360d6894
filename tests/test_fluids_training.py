"""The smoke surrogate's recipe, data, training loop, stepper, zoo loading, CLI and benchmark (tiny sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_zoo_support import ZooEnv, file_entry, model_entry, write_manifest, zoo_env  # noqa: F401

from mlvfx.errors import InputError, ModelNotFound
from mlvfx.fluids.reference import SmokeConfig, Stepper
from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import (
    CorrectionNet,
    SurrogateStepper,
    load_stepper,
    surrogate_from_state,
    surrogate_state,
)
from mlvfx.train.smoke import generate_data, load_smoke_recipe, train_surrogate, unroll_length

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {
    "name": "smoke2d_tiny",
    "dims": 2,
    "seed": 3,
    "data": {
        "res": 32,
        "train_shots": 2,
        "val_shots": 1,
        "steps": 12,
        "eval_steps": [5, 10],
        "families": ["plume", "obstacle"],
    },
    "model": {"factor": 4, "width": 4, "depth": 2},
    "train": {
        "iterations": 6,
        "curriculum": [[0, 2], [0.5, 3]],
        "checkpoint_minutes": 0.0,
        "log_every": 2,
        "threads": 1,
    },
}


def write_recipe(path: Path, **changes: object) -> Path:
    recipe = json.loads(json.dumps(TINY))
    recipe.update(changes)
    path.write_text(json.dumps(recipe))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Data + a 6-iteration run of the tiny recipe (shared by the tests below)."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("smoke_train")
    recipe_path = write_recipe(tmp / "tiny.json")
    recipe = load_smoke_recipe(recipe_path)
    data = generate_data(tmp / "data", recipe)
    train_surrogate(recipe, data_dir=data, out_dir=tmp / "run")
    return recipe_path, data, tmp / "run"


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("model", "factor", 0, "factor must be >= 1"),
        ("train", "curriculum", [[0]], "curriculum must be a list"),
        ("train", "curriculum", [["a", 2]], "curriculum must be a list"),
        ("train", "log_every", 0, "log_every >= 1"),
        ("train", "lr", -1.0, "lr >= 0"),
        ("data", "eval_steps", [], "eval_steps must be a non-empty list"),
        (None, "seed", 2**70, "0..2\\*\\*32-1"),
        ("data", "train_seed", -5, "0..2\\*\\*32-1"),
    ],
)
def test_recipe_values_training_cannot_use_are_refused_up_front(
    tmp_path: Path, section: str | None, key: str, value: object, message: str
) -> None:
    # Each passed validation and failed later as an internal error, after the shots were made (audit).
    recipe = json.loads(json.dumps(TINY))
    (recipe if section is None else recipe[section])[key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe))
    with pytest.raises(InputError, match=message) as err:
        load_smoke_recipe(path)
    assert err.value.path == str(path)


def test_recipe_validation(tmp_path: Path) -> None:
    recipe = load_smoke_recipe(write_recipe(tmp_path / "ok.json"))
    assert recipe.data.families == ("plume", "obstacle") and recipe.train.curriculum == ((0, 2), (0.5, 3))
    assert [unroll_length(recipe, i) for i in (0, 2, 3, 5)] == [2, 2, 3, 3]
    with pytest.raises(InputError, match="unknown keys: bogus"):
        load_smoke_recipe(write_recipe(tmp_path / "a.json", bogus=1))
    bad_data = dict(TINY["data"], val_seed=1)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="overlap"):
        load_smoke_recipe(write_recipe(tmp_path / "b.json", data=bad_data))
    with pytest.raises(InputError, match="reserved for the benchmark"):
        load_smoke_recipe(write_recipe(tmp_path / "c.json", data=dict(TINY["data"], val_seed=5000)))  # type: ignore[arg-type]
    # Not only seed 5000: the benchmark takes the first N held-out seeds.
    with pytest.raises(InputError, match="5000-5999 are reserved for the benchmark"):
        load_smoke_recipe(write_recipe(tmp_path / "c2.json", data=dict(TINY["data"], train_seed=5002)))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="vupres training seeds overlap"):
        load_smoke_recipe(
            write_recipe(
                tmp_path / "c3.json", data=dict(TINY["data"], train_seed=4990), vupres={"iterations": 1}
            )  # type: ignore[arg-type]
        )
    with pytest.raises(InputError, match="multiple of factor"):
        load_smoke_recipe(write_recipe(tmp_path / "d.json", data=dict(TINY["data"], res=30)))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="mass_weight must be >= 0"):
        load_smoke_recipe(write_recipe(tmp_path / "f.json", train=dict(TINY["train"], mass_weight=-1)))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="energy_weight must be >= 0"):
        load_smoke_recipe(write_recipe(tmp_path / "g.json", train=dict(TINY["train"], energy_weight=-1)))  # type: ignore[arg-type]
    (tmp_path / "e.json").write_text("{not json")
    with pytest.raises(InputError, match=r"e\.json"):
        load_smoke_recipe(tmp_path / "e.json")


def test_data_is_resumable_and_complete(trained: tuple[Path, Path, Path]) -> None:
    recipe_path, data, _ = trained
    files = sorted(p.name for p in data.glob("*.npz"))
    assert files == ["train_000000.npz", "train_000001.npz", "val_001000.npz"]
    with np.load(data / "train_000001.npz") as z:  # seed 1 -> the obstacle family
        assert z["density"].shape == (13, 8, 8) and z["vel0"].shape == (13, 8, 9) and "obstacles" in z.files
        assert json.loads(str(z["meta"]))["scenario"] == "obstacle"
    with np.load(data / "val_001000.npz") as z:
        assert sorted(k for k in z.files if k.startswith("fine_")) == ["fine_10", "fine_5"]
        assert z["fine_10"].shape == (32, 32) and float(z["fine_10"].sum()) > 0
    before = {p: p.stat().st_mtime_ns for p in data.glob("*.npz")}
    generate_data(data, load_smoke_recipe(recipe_path))  # a rerun skips finished shots
    assert before == {p: p.stat().st_mtime_ns for p in data.glob("*.npz")}
    other = json.loads(recipe_path.read_text())
    other["data"]["steps"] = 20
    with pytest.raises(InputError, match="steps"):
        generate_data(
            data, load_smoke_recipe(write_recipe(recipe_path.parent / "other.json", data=other["data"]))
        )


def test_training_writes_weights_log_and_resumes(trained: tuple[Path, Path, Path]) -> None:
    recipe_path, data, run = trained
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations_done"] == 6 and summary["stopped"] == "finished"
    v = summary["validation"]
    assert set(v) >= {"surrogate_t5", "surrogate_t10", "coarse_only_t10", "ratio_t10"}
    assert all(np.isfinite(x) and x > 0 for x in v.values())
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["event"] == "train"] == [2, 4, 6]
    net, factor = surrogate_from_state(
        __import__("mlvfx.zoo", fromlist=["load_state_dict"]).load_state_dict(
            run / "smoke2d_tiny.safetensors"
        )
    )
    assert factor == 4 and net.dims == 2 and net.width == 4 and net.conditions == 2
    if os.name == "posix":  # the normal output mode, not safetensors' own 0600
        from mlvfx.io.atomic import FILE_MODE

        assert (run / "smoke2d_tiny.safetensors").stat().st_mode & 0o777 == FILE_MODE
    # Resuming on a longer schedule continues from iteration 6, not from zero.
    recipe = load_smoke_recipe(recipe_path)
    res = train_surrogate(recipe, data_dir=data, out_dir=run, resume=True, iterations=8)
    assert res.iterations_done == 8
    starts = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in starts if r["event"] == "start"] == [0, 6]


def test_untrained_state_round_trip_and_bad_state() -> None:
    net = CorrectionNet(3, width=4, depth=3, conditions=2)
    back, factor = surrogate_from_state(surrogate_state(net, 4))
    assert factor == 4 and back.dims == 3 and back.depth == 3
    with pytest.raises(InputError, match="not a smoke surrogate"):
        surrogate_from_state({"body.0.weight": torch.zeros(4, 7, 3, 3)}, source="x.safetensors")


def test_stepper_matches_the_host_interface() -> None:
    cfg = SmokeConfig(shape=(32, 32), dt=1 / 24, buoyancy=1.0, boundary="open_top")
    sc = make_scenario("plume", 2, 32)
    net = CorrectionNet(2, width=4, depth=2, conditions=2)
    stepper = SurrogateStepper(cfg, net, 4)
    density, velocity = stepper.step(None, None, sc.sources)
    assert density.shape == (32, 32) and velocity.shape == (32, 32, 2)
    assert density.dtype == np.float32 and float(density.sum()) > 0 and float(density.min()) >= 0
    d2, _ = stepper.step(density, velocity, sc.sources)  # its own output: the coarse state carries on
    # Volume form in, volume form out (what the Blender bake and the Houdini SOP pass).
    d3, v3 = SurrogateStepper(cfg, net, 4).step(
        density[None], np.concatenate([velocity, np.zeros_like(velocity[..., :1])], axis=-1)[None], sc.sources
    )
    assert d3.shape == (1, 32, 32) and v3.shape == (1, 32, 32, 3)
    # An untrained surrogate is the coarse solver: total density grows by the restricted inflow.
    assert float(d2.sum()) > float(density.sum())
    with pytest.raises(InputError, match="NaN"):
        stepper.step(np.full((32, 32), np.nan, np.float32), None, sc.sources)
    with pytest.raises(InputError, match="3D"):
        SurrogateStepper(SmokeConfig(shape=(16, 16, 16)), net, 4)
    with pytest.raises(InputError, match="divisible"):
        SurrogateStepper(SmokeConfig(shape=(30, 32)), net, 4)
    with pytest.raises(InputError, match="too small"):
        SurrogateStepper(SmokeConfig(shape=(8, 8)), net, 4)
    # Same interface as the reference stepper.
    rd, rv = Stepper(cfg).step(None, None, sc.sources)
    assert rd.shape == density.shape and rv.shape == velocity.shape


def test_load_stepper_from_the_zoo(zoo_env: ZooEnv, trained: tuple[Path, Path, Path]) -> None:  # noqa: F811
    _, _, run = trained
    weights = run / "smoke2d_tiny.safetensors"
    data = weights.read_bytes()
    entry = model_entry("smoke2d", [file_entry("smoke2d.safetensors", data, [weights.as_uri()])])
    entry["task"] = "smoke.surrogate2d"  # load_stepper refuses other tasks before fetching
    write_manifest(zoo_env.manifest, [entry])
    stepper = load_stepper("smoke2d", SmokeConfig(shape=(32, 32)))
    density, _ = stepper.step(None, None, make_scenario("plume", 2, 32).sources)
    assert float(density.sum()) > 0
    with pytest.raises(ModelNotFound, match="smoke-missing"):
        load_stepper("smoke-missing", SmokeConfig(shape=(16, 16, 16)))


def test_cli_run_and_bench_with_local_weights(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, _, run = trained
    weights = str(run / "smoke2d_tiny.safetensors")
    exe = [sys.executable, "-m", "mlvfx.cli"]
    out = subprocess.run(
        [
            *exe,
            "smoke",
            "run",
            "--dims",
            "2",
            "--res",
            "32",
            "--frames",
            "3",
            "--weights",
            weights,
            "--vdb",
            "off",
            "-o",
            str(tmp_path / "shot"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["solver"] == "surrogate" and len(result["files"]) == 4  # 3 frames, then shot.json
    assert result["files"][-1].endswith("shot.json")
    assert result["model"].endswith("smoke2d_tiny.safetensors")  # which model ran is in the output
    with np.load(tmp_path / "shot" / "frame_0003.npz") as z:
        assert z["density"].shape == (1, 32, 32) and z["velocity"].shape == (1, 32, 32, 3)
    bench = subprocess.run(
        [
            *exe,
            "smoke",
            "bench",
            "--dims",
            "2",
            "--res",
            "32",
            "--weights",
            weights,
            "--shots",
            "2",
            "--steps",
            "5",
            "10",
            "--stability-steps",
            "12",
            "--timing-steps",
            "2",
            "--plot",
            str(tmp_path / "curves.png"),
            "--out-json",
            str(tmp_path / "bench.json"),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bench.returncode == 0, bench.stderr
    doc = json.loads((tmp_path / "bench.json").read_text())
    table = doc["table"]
    assert set(table) == {"reference", "coarse_only", "coarse_bicubic", "surrogate"}
    assert table["reference"]["speedup"] == pytest.approx(1.0)
    assert all(np.isfinite(table[m]["rel_l2_t10"]) for m in ("coarse_only", "coarse_bicubic", "surrogate"))
    assert table["reference"]["divergence"] < 1e-10
    stab = doc["stability"][0]
    assert stab["steps"] == 12 and stab["finite"]
    keys = (
        "total_density_ratio",
        "coarse_total_density_ratio",
        "last_quarter_ratio",
        "coarse_last_quarter_ratio",
    )
    assert all(np.isfinite(stab[k]) and stab[k] > 0 for k in keys)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = subprocess.run(
        [*exe, "smoke", "bench", "--weights", str(tmp_path / "nope.safetensors")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "nope.safetensors" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_upres_trains_on_the_surrogates_rollouts_and_ships_in_the_weights(tmp_path: Path) -> None:
    from mlvfx.fluids.surrogate import SurrogateSolver, prolong_density
    from mlvfx.train.smoke import generate_fine

    model = {"factor": 4, "width": 4, "depth": 2, "equivariant": True, "conserve_mass": True}
    upres = {"iterations": 4, "every": 3, "width": 4, "depth": 2, "batch": 2, "shots": 3, "val_every": 2}
    recipe = load_smoke_recipe(write_recipe(tmp_path / "up.json", model=model, upres=upres))
    data = generate_data(tmp_path / "data", recipe)
    generate_fine(data, recipe)
    with np.load(data / "fine_000000.npz") as z:
        assert z["steps"].tolist() == [3, 6, 9, 12] and z["density"].shape == (4, 32, 32)
        assert z["density"].dtype == np.float16 and float(z["density"][-1].sum()) > 0
    stamp = (data / "fine_000000.npz").stat().st_mtime_ns
    generate_fine(data, recipe)  # a rerun skips finished shots
    assert (data / "fine_000000.npz").stat().st_mtime_ns == stamp

    # An interrupt in the upres stage keeps the stage's iterations done, as in the correction's loop.
    def stop_upres_at_2(record: dict[str, object]) -> None:
        if record.get("event") == "upres" and record.get("iteration") == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "cut", log=stop_upres_at_2)
    assert torch.load(tmp_path / "cut" / "upres_checkpoint.pt", weights_only=True)["iteration"] == 2
    res = train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["upres"]["iterations"] == 4 and summary["upres"]["frames"] == 12  # 3 shots x 4
    assert (data / "fine_000002.npz").exists() and not (data / "train_000002.npz").exists()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    scores = {r["iteration"]: r["score"] for r in records if r["event"] == "upres_val"}
    assert sorted(scores) == [2, 4] and summary["upres"]["best_iteration"] in (0, 2, 4)
    assert summary["upres"]["val_score"] <= min(scores.values()) + 1e-5  # the best one is kept
    assert {"surrogate_t10", "surrogate_smooth_t10", "coarse_only_t10"} <= set(res.validation)
    state = __import__("mlvfx.zoo", fromlist=["load_state_dict"]).load_state_dict(res.weights)
    assert any(k.startswith("upres.") for k in state)
    net, factor = surrogate_from_state(state)
    assert net.upres is not None and net.equivariant and net.conserve_mass and factor == 4
    # The trained upres changes the output, keeps it non-negative, and the stepper uses it.
    sc = make_scenario("plume", 2, 32)
    sur = SurrogateSolver(sc.config, net, None, 4, dtype="float32")
    src = sur.prepare_sources(sc.sources)
    rho, vel = sur.solver.zeros()
    with torch.no_grad():
        for _ in range(6):
            rho, vel = sur.advance(rho, vel, src)
        learned = sur.output_density(rho, vel, src)
    smooth = prolong_density(rho, 4)
    assert float((learned - smooth).abs().max()) > 0 and float(learned.min()) >= 0
    density, _ = SurrogateStepper(sc.config, net, 4).step(None, None, sc.sources)
    assert density.shape == (32, 32) and float(density.min()) >= 0
    # The benchmark reports the surrogate through its upres and, separately, with smooth upsampling.
    from mlvfx.fluids.bench import BenchSpec, format_table, run_bench

    spec = BenchSpec(dims=2, res=32, shots=1, eval_steps=(5, 8), stability_steps=4, timing_steps=1)
    table = run_bench(net, 4, spec)["table"]
    assert set(table) == {"reference", "coarse_only", "coarse_bicubic", "surrogate", "surrogate_smooth"}
    assert table["surrogate"]["rel_l2_t8"] != table["surrogate_smooth"]["rel_l2_t8"]
    assert "surrogate smooth" in format_table({"spec": {"eval_steps": [5, 8]}, "table": table})
    (data / "fine_000001.npz").unlink()
    with pytest.raises(InputError, match=r"fine_000001\.npz: fine reference data for the upres is missing"):
        train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "run2")
    assert not (tmp_path / "run2" / "checkpoint.pt").exists()  # it failed before training


def test_bench_stability_reports_coarse_only_and_last_quarter_totals() -> None:
    from mlvfx.fluids.bench import BenchSpec, run_bench
    from mlvfx.fluids.surrogate import CorrectionNet

    net = CorrectionNet(2, width=4, depth=2, conditions=2)  # zero-initialised: the coarse solver
    spec = BenchSpec(dims=2, res=32, shots=0, stability_shots=1, stability_steps=8, timing_steps=1)
    stab = run_bench(net, 4, spec)["stability"][0]
    assert stab["finite"] and 0 < stab["total_density_ratio"] < 10
    assert stab["total_density_ratio"] == pytest.approx(stab["coarse_total_density_ratio"], rel=1e-6)
    assert stab["last_quarter_ratio"] == pytest.approx(stab["coarse_last_quarter_ratio"], rel=1e-6)
    assert stab["last_quarter_ratio"] != pytest.approx(stab["total_density_ratio"], rel=1e-9)


def test_bench_times_every_method_interleaved() -> None:
    from mlvfx.fluids.bench import BenchSpec, time_methods
    from mlvfx.fluids.surrogate import CorrectionNet

    spec = BenchSpec(dims=2, res=32, shots=0, stability_shots=0, timing_steps=3)
    times = time_methods(CorrectionNet(2, width=4, depth=2, conditions=2), 4, spec)
    assert set(times) == {"reference", "reference_float32", "coarse_only", "coarse_bicubic", "surrogate"}
    assert all(np.isfinite(t) and t > 0 for t in times.values())


def test_data_pass_keeps_the_upres_frames_of_the_same_run(tmp_path: Path) -> None:
    """``generate_data`` writes the fine frames of the upres's shots from its own reference run;
    they are what a separate ``generate_fine`` run writes, and it then has nothing left to do."""
    from mlvfx.train.smoke import generate_fine

    upres = {"iterations": 2, "every": 4, "width": 4, "depth": 2, "batch": 1, "shots": 3}
    recipe = load_smoke_recipe(write_recipe(tmp_path / "up.json", upres=upres))
    one = generate_data(tmp_path / "one", recipe)
    assert sorted(p.name for p in one.glob("fine_*.npz")) == ["fine_000000.npz", "fine_000001.npz"]
    stamp = (one / "fine_000000.npz").stat().st_mtime_ns
    generate_fine(one, recipe)  # only shot 2 (not a correction shot) is run again
    assert (one / "fine_000000.npz").stat().st_mtime_ns == stamp and (one / "fine_000002.npz").exists()
    other = generate_fine(tmp_path / "other", recipe)
    for seed in (0, 1, 2):
        with np.load(one / f"fine_{seed:06d}.npz") as a, np.load(other / f"fine_{seed:06d}.npz") as b:
            assert a["steps"].tolist() == b["steps"].tolist() == [4, 8, 12]
            assert np.array_equal(a["density"], b["density"]) and float(a["density"][-1].sum()) > 0


def test_training_starts_from_init_weights(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from mlvfx.zoo import load_state_dict

    _, _, run = trained
    source = run / "smoke2d_tiny.safetensors"
    init = load_state_dict(source)
    # lr 0: the weights stay the init's, so the file written is the init file's correction.
    recipe_path = write_recipe(
        tmp_path / "init.json",
        name="smoke2d_init",
        data=dict(TINY["data"], res=48),  # type: ignore[arg-type]
        train=dict(TINY["train"], init=str(source), lr=0.0, lr_min=0.0, iterations=2),  # type: ignore[arg-type]
    )
    recipe = load_smoke_recipe(recipe_path)
    data = generate_data(tmp_path / "data", recipe)
    res = train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "run")
    out = load_state_dict(res.weights)
    assert any(float(v.abs().max()) > 0 for k, v in init.items() if k.startswith("body."))
    assert all(torch.equal(out[k], v) for k, v in init.items())
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["from"] for r in records if r["event"] == "init"] == [str(source)]
    # A correction of another width does not fit: a clear error before any training.
    wide = write_recipe(
        tmp_path / "wide.json",
        model=dict(TINY["model"], width=6),  # type: ignore[arg-type]
        train=dict(TINY["train"], init=str(source)),  # type: ignore[arg-type]
    )
    with pytest.raises(InputError, match="init weights do not fit the recipe's correction net"):
        train_surrogate(load_smoke_recipe(wide), data_dir=data, out_dir=tmp_path / "run2")
    missing = write_recipe(tmp_path / "missing.json", train=dict(TINY["train"], init=str(tmp_path / "nope")))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="init weights not found"):
        train_surrogate(load_smoke_recipe(missing), data_dir=data, out_dir=tmp_path / "run3")


def test_init_weights_must_have_the_recipes_architecture_switches() -> None:
    """A file without a switch had its default; one with another value is another net."""
    from mlvfx.train.smoke import load_init

    net = CorrectionNet(2, width=4, depth=2, symmetric=True)
    state = dict(net.state_dict())
    load_init(net, {k: v for k, v in state.items() if k not in ("gain", "dilation")}, "old.safetensors")
    with pytest.raises(InputError, match="other symmetry settings"):
        load_init(net, state | {"symmetry": torch.zeros(1)}, "x.safetensors")
    with pytest.raises(InputError, match="other mass settings"):
        load_init(CorrectionNet(2, width=4, depth=2, symmetric=True, conserve_mass=True), state, "x")
    with pytest.raises(InputError, match="size mismatch"):
        load_init(CorrectionNet(2, width=6, depth=2, symmetric=True), state, "x")
    # Nets with non-default switches load their own kind of weights, and the weights are copied.
    switches: list[dict[str, object]] = [
        {"conserve_mass": True},
        {"density_gain": True},
        {"dilations": [1, 2]},
        {"equivariant": True},
    ]
    for kwargs in switches:
        source = CorrectionNet(2, width=4, depth=2, **kwargs)  # type: ignore[arg-type]
        with torch.no_grad():
            for p in source.parameters():
                p.add_(0.1)
        target = CorrectionNet(2, width=4, depth=2, **kwargs)  # type: ignore[arg-type]
        load_init(target, dict(source.state_dict()), "x")
        assert all(torch.equal(a, b) for a, b in zip(source.parameters(), target.parameters(), strict=True))


def test_default_model_follows_the_grid_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No model named: smoke3d_128 for 3D grids from 96 cells up (when the zoo has it), else smoke<d>d."""
    from mlvfx.fluids.surrogate import default_model

    monkeypatch.delenv("MLVFX_ZOO_MANIFEST", raising=False)
    assert default_model(3, 64) == "smoke3d" and default_model(3, 95) == "smoke3d"
    assert default_model(3, 96) == "smoke3d_128" and default_model(3, 128) == "smoke3d_128"
    assert default_model(2, 256) == "smoke2d"
    manifest = json.loads((Path(__file__).parents[1] / "model_zoo" / "manifest.json").read_text())
    manifest["models"] = [m for m in manifest["models"] if m["id"] != "smoke3d_128"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("MLVFX_ZOO_MANIFEST", str(tmp_path / "manifest.json"))
    assert default_model(3, 128) == "smoke3d"  # an older zoo without it


def test_upres_starts_from_the_init_files_upres_and_resume_needs_no_init(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from mlvfx.fluids.surrogate import UpresNet
    from mlvfx.zoo import load_state_dict

    source = CorrectionNet(2, width=4, depth=2, conditions=2)  # the tiny recipe's net
    source.upres = UpresNet(2, 4, width=4, depth=2, conditions=2)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.05)
    init_path = tmp_path / "init.safetensors"
    save_file(surrogate_state(source, 4), str(init_path))
    upres = {"iterations": 2, "every": 3, "width": 4, "depth": 2, "batch": 1, "val_every": 1}
    recipe = load_smoke_recipe(
        write_recipe(
            tmp_path / "r.json",
            upres=upres | {"lr": 0.0, "lr_min": 0.0},
            train=dict(TINY["train"], init=str(init_path), lr=0.0, lr_min=0.0, iterations=2),  # type: ignore[arg-type]
        )
    )
    data = generate_data(tmp_path / "data", recipe)
    res = train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "run")
    init, out = load_state_dict(init_path), load_state_dict(res.weights)
    upres_keys = [k for k in init if k.startswith("upres.")]
    assert upres_keys and all(torch.equal(out[k], init[k]) for k in upres_keys)  # lr 0: still the init's
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["init"] for r in records if r["event"] == "upres_start"] == [True]
    # Both stages finished: resuming needs neither the zoo nor the init file.
    init_path.unlink()
    again = train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "run", resume=True)
    assert again.iterations_done == 2


def test_velocity_upres_recipe_adds_to_a_frozen_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``train.iterations`` 0 keeps the init's correction and upres; the ``vupres`` stage trains a
    velocity upres on the reference's fine velocity and ships it in the weights."""
    from safetensors.torch import save_file

    from mlvfx.fluids.surrogate import SurrogateSolver, UpresNet, prolong_velocity
    from mlvfx.train.smoke import generate_fine_velocity
    from mlvfx.zoo import load_state_dict

    source = CorrectionNet(2, width=4, depth=2, conditions=2)  # the tiny recipe's net
    source.upres = UpresNet(2, 4, width=4, depth=2, conditions=2)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01)
    init_path = tmp_path / "init.safetensors"
    save_file(surrogate_state(source, 4), str(init_path))
    vupres = {"iterations": 4, "every": 3, "shots": 2, "width": 4, "depth": 2, "batch": 2, "val_every": 2}
    train = dict(TINY["train"], init=str(init_path), iterations=0)  # type: ignore[arg-type]
    long_val = dict(TINY["data"], eval_steps=[5, 12])  # type: ignore[arg-type]  # validation runs the whole shot
    recipe = load_smoke_recipe(write_recipe(tmp_path / "r.json", train=train, vupres=vupres, data=long_val))
    data = generate_data(tmp_path / "data", recipe)
    assert not list(data.glob("train_*.npz"))  # a kept correction needs no training shots
    # The validation shot's reference run also wrote its fine velocity (one run, not two).
    assert [f.name for f in data.glob("finevel_*.npz")] == ["finevel_001000.npz"]
    (data / "finevel_000001.npz").write_bytes(b"not an npz")  # damaged and empty files are made again
    (data / "finevel_000000.npz").write_bytes(b"")
    generate_fine_velocity(data, recipe)
    with np.load(data / "finevel_000000.npz") as z:
        assert z["steps"].tolist() == [3, 6, 9, 12] and z["velocity"].shape == (4, 2, 32, 32)
        assert z["velocity"].dtype == np.float16 and float(np.abs(z["velocity"][-1]).max()) > 0
    assert (data / "finevel_001000.npz").exists() and not (data / "finevel_000002.npz").exists()
    stamp = (data / "finevel_000000.npz").stat().st_mtime_ns
    generate_fine_velocity(data, recipe)  # a rerun skips finished shots
    assert (data / "finevel_000000.npz").stat().st_mtime_ns == stamp

    res = train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    info = summary["vupres"]
    assert info["iterations"] == 4 and info["frames"] == 8  # 2 shots x 4 frames, all with flow
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    scores = {r["iteration"]: r["score"] for r in records if r["event"] == "vupres_val"}
    (start,) = [r for r in records if r["event"] == "vupres_start"]
    assert (
        sorted(scores) == [2, 4] and start["init_score"] == start["linear_score"] == info["linear_val_score"]
    )
    # The best of the untrained net (= linear upsampling) and every scored iteration is kept.
    assert info["val_score"] == pytest.approx(min([info["linear_val_score"], *scores.values()]), abs=1e-5)
    assert info["best_iteration"] in (0, 2, 4)
    init, out = load_state_dict(init_path), load_state_dict(res.weights)
    kept = [k for k in init if k != "meta.factor"]
    assert all(torch.equal(out[k], init[k]) for k in kept)  # correction and upres: the init's
    assert any(k.startswith("vupres.") for k in out)
    net, factor = surrogate_from_state(out)
    assert net.upres is not None and net.vupres is not None
    # The stepper's velocity is the learned one, not the linear upsampling.
    sc = make_scenario("plume", 2, 32)
    sur = SurrogateSolver(sc.config, net, None, factor, dtype="float32")
    src = sur.prepare_sources(sc.sources)
    rho, vel = sur.solver.zeros()
    with torch.no_grad():
        for _ in range(6):
            rho, vel = sur.advance(rho, vel, src)
        learned, linear = sur.output_velocity(rho, vel, src), prolong_velocity(vel, factor)
    assert float((learned - linear).abs().max()) > 0
    # Resuming a finished run trains nothing more.
    again = train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "run", resume=True)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["vupres"]["iterations"] == 4
    assert torch.equal(load_state_dict(again.weights)["vupres.body.0.weight"], out["vupres.body.0.weight"])
    # A stage checkpoint made on another correction is set aside: the stage starts again.
    ckpt = tmp_path / "run" / "vupres_checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, "correction": "another"}, ckpt)
    train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "run", resume=True)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert records[-1]["event"] == "end"
    assert [r["event"] for r in records if r["event"].startswith("vupres_")][-4:] == [
        "vupres_restart",
        "vupres_start",
        "vupres_val",
        "vupres_val",
    ]
    assert [r["iteration"] for r in records if r["event"] == "vupres_start"][-1] == 0
    # The command line reports the velocity upres's validation against the linear upsampling.
    from mlvfx.cli import main

    args = ["train", "smoke2d", "--recipe", str(tmp_path / "r.json"), "--data", str(data)]
    assert main([*args, "--out", str(tmp_path / "run_cli"), "--skip-data"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("velocity upres: 4 iterations") and "(linear upsampling " in line
    # --iterations cannot turn a recipe that keeps its init's correction into one that trains it.
    with pytest.raises(InputError, match="cannot switch a recipe"):
        train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "run3", iterations=5)
    # Missing fine velocity is an error naming the file, before any training.
    (data / "finevel_001000.npz").unlink()
    with pytest.raises(InputError, match=r"finevel_001000\.npz: fine reference velocity .* missing"):
        train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "run2")
    assert not (tmp_path / "run2" / "checkpoint.pt").exists()


def test_velocity_upres_taken_from_another_model_as_is_or_as_a_start(tmp_path: Path) -> None:
    """``vupres.init``: another surrogate's velocity upres, used as it is (0 iterations: no fine
    data needed) or where training starts; a donor that does not fit is refused before training."""
    from safetensors.torch import save_file

    from mlvfx.fluids.surrogate import VelocityUpres
    from mlvfx.train.smoke import generate_fine_velocity
    from mlvfx.zoo import load_state_dict

    base = CorrectionNet(2, width=4, depth=2, conditions=2)
    base_path = tmp_path / "base.safetensors"
    save_file(surrogate_state(base, 4), str(base_path))
    donor = CorrectionNet(2, width=4, depth=2, conditions=2)
    donor.vupres = VelocityUpres(2, 4, width=4, depth=2, conditions=2)
    with torch.no_grad():
        torch.nn.init.normal_(donor.vupres.body[-1].weight, std=0.01)
    donor_path = tmp_path / "donor.safetensors"
    save_file(surrogate_state(donor, 4), str(donor_path))
    train = dict(TINY["train"], init=str(base_path), iterations=0)  # type: ignore[arg-type]

    as_is = load_smoke_recipe(
        write_recipe(tmp_path / "a.json", train=train, vupres={"init": str(donor_path)})
    )
    data = generate_data(tmp_path / "data", as_is)
    res = train_surrogate(as_is, data_dir=data, out_dir=tmp_path / "run_a")
    assert not list(data.glob("finevel_*.npz"))
    out, given = load_state_dict(res.weights), load_state_dict(donor_path)
    vkeys = [k for k in given if k.startswith("vupres.")]
    assert vkeys and all(torch.equal(out[k], given[k]) for k in vkeys)
    assert all(torch.equal(out[k], v) for k, v in load_state_dict(base_path).items())  # the base's correction
    records = [json.loads(line) for line in (tmp_path / "run_a" / "log.jsonl").read_text().splitlines()]
    assert [r["from"] for r in records if r.get("part") == "vupres"] == [str(donor_path)]

    tuned = {"init": str(donor_path), "iterations": 2, "shots": 1, "every": 4, "width": 4, "depth": 2}
    start = load_smoke_recipe(
        write_recipe(tmp_path / "b.json", train=train, vupres=tuned | {"lr": 0.0, "lr_min": 0.0})
    )
    generate_fine_velocity(data, start)
    res = train_surrogate(start, data_dir=data, out_dir=tmp_path / "run_b")
    out = load_state_dict(res.weights)
    assert all(torch.equal(out[k], given[k]) for k in vkeys)  # lr 0: still the donor's
    info = json.loads((tmp_path / "run_b" / "summary.json").read_text())["vupres"]
    assert info["val_score"] != info["linear_val_score"]  # the start was the donor, not linear

    wide = load_smoke_recipe(write_recipe(tmp_path / "c.json", train=train, vupres=tuned | {"width": 6}))
    with pytest.raises(InputError, match=r"vupres\.init has width 4 and depth 2"):
        train_surrogate(wide, data_dir=data, out_dir=tmp_path / "run_c")
    plain = load_smoke_recipe(write_recipe(tmp_path / "d.json", train=train, vupres={"init": str(base_path)}))
    with pytest.raises(InputError, match=r"base\.safetensors: vupres\.init has no velocity upres"):
        train_surrogate(plain, data_dir=data, out_dir=tmp_path / "run_d")
    assert not (tmp_path / "run_c" / "checkpoint.pt").exists()


def test_a_kept_init_with_another_factor_is_a_one_line_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from mlvfx.fluids.surrogate import UpresNet

    source = CorrectionNet(2, width=4, depth=2, conditions=2)
    source.upres = UpresNet(2, 2, width=4, depth=2, conditions=2)  # a 2x model's upres
    init_path = tmp_path / "init2x.safetensors"
    save_file(surrogate_state(source, 2), str(init_path))
    train = dict(TINY["train"], init=str(init_path), iterations=0)  # type: ignore[arg-type]
    recipe = load_smoke_recipe(write_recipe(tmp_path / "r.json", train=train))
    data = generate_data(tmp_path / "data", recipe)
    with pytest.raises(InputError, match=r"init2x\.safetensors: the init's upres does not fit .*factor 4"):
        train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "run")
    # Without --iterations 0 a recipe that trains its correction cannot skip it.
    trains = load_smoke_recipe(write_recipe(tmp_path / "t.json"))
    with pytest.raises(InputError, match="cannot switch a recipe"):
        train_surrogate(trains, data_dir=data, out_dir=tmp_path / "run", iterations=0)


def test_velocity_upres_recipe_validation(tmp_path: Path) -> None:
    frozen = dict(TINY["train"], iterations=0)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"iterations 0 .* needs train\.init"):
        load_smoke_recipe(write_recipe(tmp_path / "a.json", train=frozen))
    with pytest.raises(InputError, match="vupres training seeds overlap"):
        load_smoke_recipe(write_recipe(tmp_path / "b.json", vupres={"iterations": 2, "shots": 1001}))
    with pytest.raises(InputError, match="vupres needs"):
        load_smoke_recipe(write_recipe(tmp_path / "c.json", vupres={"iterations": 2, "every": 0}))
    with pytest.raises(InputError, match=r"every <= data\.steps"):
        load_smoke_recipe(write_recipe(tmp_path / "e.json", vupres={"iterations": 2, "every": 13}))
    with pytest.raises(InputError, match="unknown"):
        load_smoke_recipe(write_recipe(tmp_path / "d.json", vupres={"iterations": 2, "speed": 1}))


def test_every_shipped_smoke_recipe_loads() -> None:
    """A recipe in model_zoo/recipes that no longer validates would only fail hours into a run."""
    root = Path(__file__).resolve().parents[1] / "model_zoo" / "recipes"
    paths = sorted(root.glob("smoke*.json"))
    assert len(paths) >= 10
    for path in paths:
        recipe = load_smoke_recipe(path)
        assert recipe.name == path.stem and recipe.dims in (2, 3)


def test_an_interrupt_keeps_the_iterations_done_and_resume_goes_on(
    trained: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C / a farm's SIGTERM used to lose everything since the last periodic checkpoint.
    # On the CPU, because the check is bitwise: on CUDA, grid_sample's backward adds with atomics
    # in any order (no deterministic kernel exists), so two whole runs already differ, and Adam
    # turns that round-off into steps of a bias whose gradient is zero (bench/cuda_determinism.py).
    monkeypatch.setenv("MLVFX_DEVICE", "cpu")
    recipe_path, data, _ = trained
    recipe = load_smoke_recipe(recipe_path)

    def stop_at_4(record: dict[str, object]) -> None:
        if record.get("event") == "train" and record.get("iteration") == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "cut", log=stop_at_4)
    state = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 4
    events = [json.loads(line) for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert {"event": "interrupted", "iteration": 4, "checkpoint": True} in events
    res = train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "cut", resume=True)
    assert res.iterations_done == 6
    from mlvfx.zoo import load_state_dict

    # the same weights as an uninterrupted run: nothing was lost or done twice
    train_surrogate(recipe, data_dir=data, out_dir=tmp_path / "full")
    a = load_state_dict(tmp_path / "full" / "smoke2d_tiny.safetensors")
    b = load_state_dict(tmp_path / "cut" / "smoke2d_tiny.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_data_folder_made_for_another_factor_or_fewer_eval_steps_is_refused(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, data, _ = trained
    spec_before = json.loads((data / "dataset.json").read_text())
    assert spec_before["factor"] == 4 and spec_before["eval_steps"] == [5, 10]
    factor2 = load_smoke_recipe(write_recipe(tmp_path / "f.json", model=dict(TINY["model"], factor=2)))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="made with factor=4, the recipe wants 2"):
        generate_data(data, factor2)
    more = load_smoke_recipe(
        write_recipe(tmp_path / "e.json", data=dict(TINY["data"], eval_steps=[5, 10, 12]))  # type: ignore[arg-type]
    )
    with pytest.raises(InputError, match=r"also wants \[12\]"):
        generate_data(data, more)
    fewer = load_smoke_recipe(write_recipe(tmp_path / "g.json", data=dict(TINY["data"], eval_steps=[10])))  # type: ignore[arg-type]
    generate_data(data, fewer)  # a subset is there: fine, and the description keeps what the shots hold
    assert json.loads((data / "dataset.json").read_text())["eval_steps"] == [5, 10]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match="not a readable smoke dataset description"):
        generate_data(tmp_path / "broken", fewer)


def test_training_gives_back_torch_process_state(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    recipe_path, data, _ = trained
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        torch.manual_seed(7)
        expected = torch.rand(4)
        torch.manual_seed(7)
        train_surrogate(load_smoke_recipe(recipe_path), data_dir=data, out_dir=tmp_path / "run", iterations=2)
        assert torch.get_num_threads() == 3
        assert torch.equal(torch.rand(4), expected)
    finally:
        torch.set_num_threads(threads)
