"""Tests of ``mlvfx smoke run`` (handler driven through its own parser) and the frame writers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from mlvfx.errors import InputError, MlvfxError, ModelNotFound, OutputExistsError
from mlvfx.fluids import cli


def _offline_zoo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The zoo from this checkout's model_zoo/, offline, cached under tmp_path."""
    monkeypatch.setenv("MLVFX_ZOO_MIRRORS", str(Path(__file__).parent.parent / "model_zoo"))
    monkeypatch.setenv("MLVFX_OFFLINE", "1")
    monkeypatch.setenv("MLVFX_CACHE_DIR", str(tmp_path / "cache"))


def _run(argv: list[str], quiet: bool = True) -> int:
    """``mlvfx smoke ...`` in this process (warnings are not printed when ``quiet``)."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.quiet, args.json = quiet, False
    code: int = args.func(args)
    return code


def test_run_writes_npz_frames(tmp_path: Path) -> None:
    out = tmp_path / "shot"
    argv = ["smoke", "run", "--scenario", "obstacle", "--dims", "2", "--res", "16", "--frames", "3"]
    assert _run([*argv, "--reference", "--vdb", "off", "-o", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["frame_0001.npz", "frame_0002.npz", "frame_0003.npz", "shot.json"]
    with np.load(out / "frame_0003.npz") as frame:
        assert frame["density"].shape == (1, 16, 16) and frame["density"].dtype == np.float32
        assert frame["velocity"].shape == (1, 16, 16, 3)
        assert frame["density"].max() > 0 and np.isfinite(frame["velocity"]).all()
        # The frame stands alone: where its voxels are and when it is (1/16 domain, 24 fps).
        assert float(frame["voxel_size"]) == pytest.approx(1 / 16)
        assert frame["origin"].tolist() == pytest.approx([1 / 32] * 3)
        assert int(frame["frame"]) == 3 and float(frame["frame_seconds"]) == pytest.approx(1 / 24)
    with pytest.raises(OutputExistsError):
        _run([*argv, "--reference", "--vdb", "off", "-o", str(out)])
    assert _run([*argv, "--reference", "--vdb", "off", "--overwrite", "-o", str(out)]) == 0


def test_run_brings_clean_air_through_open_walls_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlvfx.fluids import reference

    seen: list[str] = []

    class Spy(reference.Stepper):
        def __init__(self, config: reference.SmokeConfig) -> None:
            seen.append(config.open_inflow)
            super().__init__(config)

    monkeypatch.setattr(reference, "Stepper", Spy)
    argv = ["smoke", "run", "--scenario", "wind", "--dims", "2", "--res", "16", "--frames", "1"]
    argv.append("--reference")
    assert _run([*argv, "--vdb", "off", "-o", str(tmp_path / "a")]) == 0
    assert _run([*argv, "--open-inflow", "border", "--vdb", "off", "-o", str(tmp_path / "b")]) == 0
    assert seen == ["clean", "border"]


def test_run_3d_frame_layout(tmp_path: Path) -> None:
    argv = ["smoke", "run", "--dims", "3", "--res", "8", "--frames", "1", "--reference", "--vdb", "off"]
    assert _run([*argv, "-o", str(tmp_path)]) == 0
    with np.load(tmp_path / "frame_0001.npz") as frame:
        assert frame["density"].shape == (8, 8, 8) and frame["velocity"].shape == (8, 8, 8, 3)


def test_run_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="--reference"):
        _run(["smoke", "run", "--dims", "2", "--res", "16", "-o", str(tmp_path)])
    with pytest.raises(InputError, match="resolution"):
        _run(
            ["smoke", "run", "--dims", "2", "--res", "0", "--reference", "--vdb", "off", "-o", str(tmp_path)]
        )
    with pytest.raises(InputError, match="frames"):
        _run(["smoke", "run", "--frames", "0", "--reference", "-o", str(tmp_path)])
    for option, value in (("--fps", "0"), ("--fps", "nan"), ("--seed", "-1")):
        with pytest.raises(InputError, match=f"{option} must be"):
            argv = ["smoke", "run", "--dims", "2", "--res", "16", option, value, "--reference"]
            _run([*argv, "-o", str(tmp_path)])
    assert not any(tmp_path.iterdir())


def test_run_writes_vdb_when_available(tmp_path: Path) -> None:
    from mlvfx.io.volume import openvdb_module

    vdb = openvdb_module()
    if vdb is None:
        pytest.skip("no openvdb module (neither installed nor bundled with bpy)")
    argv = ["smoke", "run", "--dims", "3", "--res", "8", "--frames", "2", "--reference", "--vdb", "on"]
    assert _run([*argv, "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "frame_0001.npz",
        "frame_0001.vdb",
        "frame_0002.npz",
        "frame_0002.vdb",
        "shot.json",
    ]
    with np.load(tmp_path / "frame_0002.npz") as frame:
        density = frame["density"]
    grid = vdb.read(str(tmp_path / "frame_0002.vdb"), "density")
    back = np.zeros((8, 8, 8), np.float32)  # VDB index order (x, y, z), Y-up
    grid.copyToArray(back)
    assert np.allclose(back.transpose(2, 1, 0), density)
    assert grid.transform.voxelSize()[0] == pytest.approx(1 / 8)
    # a velocity, which VDB Transform (with "Transform Vectors") turns with the grid; it was
    # "invariant", which nothing turns (an audit)
    vel = vdb.read(str(tmp_path / "frame_0002.vdb"), "vel")
    assert vel.vectorType == vdb.VectorType.CONTRAVARIANT_RELATIVE


def test_bench_defaults_to_3d_and_checks_its_arguments_before_any_work(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    assert parser.parse_args(["smoke", "bench"]).dims == 3
    with pytest.raises(InputError, match="--plot needs an evaluation step of 10 or more"):
        _run(["smoke", "bench", "--res", "32", "--steps", "2", "4", "--plot", str(tmp_path / "c.png")])
    with pytest.raises(InputError, match="--stability-shots cannot exceed --shots"):
        _run(["smoke", "bench", "--shots", "1", "--stability-shots", "2"])
    with pytest.raises(InputError, match="--stability-steps must be >= 1, got 0"):
        _run(["smoke", "bench", "--stability-steps", "0"])
    assert not any(tmp_path.iterdir())


def test_bench_script_runs_the_cli_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    """``bench/smoke.py surrogate ...`` is ``mlvfx smoke bench ...``: same parser, same errors."""
    from bench_scripts import load_bench

    mod = load_bench("smoke")
    assert mod.surrogate(["--shots", "1", "--stability-shots", "2"]) != 0
    assert "--stability-shots cannot exceed --shots" in capsys.readouterr().err


def test_overwrite_leaves_no_frames_of_the_earlier_shot(tmp_path: Path) -> None:
    # A shorter rerun kept the earlier shot's last frames, and --vdb off kept its .vdb files beside
    # the new .npz: one folder held two shots. Other files in the folder are left alone.
    out = tmp_path / "shot"
    argv = ["smoke", "run", "--dims", "2", "--res", "16", "--reference", "--vdb", "off", "-o", str(out)]
    assert _run([*argv, "--scenario", "plume", "--frames", "3"]) == 0
    (out / "frame_0002.vdb").write_bytes(b"an earlier run's VDB")
    (out / "notes.txt").write_text("mine")
    assert _run([*argv, "--scenario", "wind", "--frames", "2", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "frame_0001.npz",
        "frame_0002.npz",
        "notes.txt",
        "shot.json",
    ]
    assert json.loads((out / "shot.json").read_text())["scenario"] == "wind"


def test_shot_json_says_what_made_the_frames_and_is_written_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from mlvfx import zoo

    _offline_zoo(monkeypatch, tmp_path)
    out = tmp_path / "shot"
    argv = ["smoke", "run", "--dims", "3", "--res", "16", "--frames", "2", "--vdb", "off", "--seed", "7"]
    assert _run([*argv, "--model", "smoke3d@0.2.0", "-o", str(out)]) == 0
    shot = json.loads((out / "shot.json").read_text())
    weights = zoo.fetch("smoke3d", "0.2.0", fmt="safetensors")
    assert shot["solver"] == "surrogate" and shot["model"] == "smoke3d 0.2.0"
    assert shot["model_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (shot["seed"], shot["res"], shot["frames"], shot["shape_zyx"]) == (7, 16, 2, [16, 16, 16])
    assert shot["files"] == ["frame_0001.npz", "frame_0002.npz"] and shot["device"] == "cpu"
    assert shot["params"]["source_x"] and shot["dt"] == pytest.approx(1 / 24)
    # Local weights are named by path and hashed too; the reference names no model.
    assert _run([*argv, "--weights", str(weights), "--overwrite", "-o", str(out)]) == 0
    shot = json.loads((out / "shot.json").read_text())
    assert shot["model"] == str(weights)
    assert shot["model_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert _run([*argv, "--reference", "--overwrite", "-o", str(out)]) == 0
    shot = json.loads((out / "shot.json").read_text())
    assert (shot["solver"], shot["model"], shot["model_sha256"]) == ("reference", None, None)
    # A shot stopped half way leaves frames but no shot.json: its presence means a whole shot.
    import mlvfx.io.volume as volume

    real = volume.write_volume_npz

    def stopped(path: Path, *a: object, **k: object) -> Path:
        if path.name == "frame_0002.npz":
            raise KeyboardInterrupt
        return real(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(volume, "write_volume_npz", stopped)
    with pytest.raises(KeyboardInterrupt):
        _run([*argv, "--reference", "-o", str(tmp_path / "stopped")])
    assert sorted(p.name for p in (tmp_path / "stopped").iterdir()) == ["frame_0001.npz"]
    # An earlier shot's shot.json alone is not replaced without --overwrite.
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "shot.json").write_text("{}")
    monkeypatch.setattr(volume, "write_volume_npz", real)
    with pytest.raises(OutputExistsError, match=r"shot\.json"):
        _run([*argv, "--reference", "-o", str(tmp_path / "alone")])
    assert (tmp_path / "alone" / "shot.json").read_text() == "{}"


def test_an_interrupted_overwrite_leaves_the_earlier_shot_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C (or a farm's SIGTERM) half way through replacing a shot: the folder held the new
    # shot's first frames and the earlier shot's tail. Now the new shot is moved in only when done.
    out = tmp_path / "shot"
    argv = ["smoke", "run", "--dims", "2", "--res", "16", "--reference", "--vdb", "off", "-o", str(out)]
    assert _run([*argv, "--scenario", "plume", "--frames", "4"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import mlvfx.io.volume as volume  # write_shot imports its writer from here at each call

    real = volume.write_volume_npz
    calls = []

    def interrupted(path: Path, *a: object, **k: object) -> Path:
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(volume, "write_volume_npz", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run([*argv, "--scenario", "wind", "--frames", "4", "--overwrite"])
    # Written into a hidden folder inside it (same disk even when the folder is a link elsewhere).
    assert calls[0].parent.parent == out and calls[0].parent.name.startswith(".smoke-staging-")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot"]  # no staging folder left
    monkeypatch.setattr(volume, "write_volume_npz", real)
    assert _run([*argv, "--scenario", "wind", "--frames", "4", "--overwrite"]) == 0
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(after) == sorted(before) and all(after[n] != before[n] for n in after)


def test_bench_refuses_existing_outputs_before_any_work_and_times_with_shots_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "v.json").write_text("important")
    with pytest.raises(OutputExistsError):
        _run(["smoke", "bench", "--res", "32", "--out-json", str(tmp_path / "v.json")])
    assert (tmp_path / "v.json").read_text() == "important"
    with pytest.raises(InputError, match="--res must be >= 1"):
        _run(["smoke", "bench", "--res", "0"])
    with pytest.raises(InputError, match="--shots 0 times the methods only"):  # exited 0 with no plot
        _run(["smoke", "bench", "--shots", "0", "--plot", str(tmp_path / "c.png")])
    from mlvfx.fluids.bench import method_label

    assert method_label("coarse_bicubic", 3) == "coarse + trilinear"
    assert method_label("coarse_bicubic", 2) == "coarse + bicubic"
    # "--shots 0 = timing only" was refused: --stability-shots defaulted to 1 > 0 shots.
    import mlvfx.fluids.bench as bench

    seen = []

    def fake_bench(net: object, factor: int, spec: object, progress: object = None) -> dict[str, object]:
        seen.append(spec)
        raise KeyboardInterrupt  # the spec is all this test needs

    monkeypatch.setattr(bench, "run_bench", fake_bench)
    with pytest.raises(KeyboardInterrupt):
        _run(["smoke", "bench", "--res", "32", "--shots", "0"])
    assert seen[0].shots == 0 and seen[0].stability_shots == 0  # type: ignore[attr-defined]


def test_the_stepper_api_takes_what_a_host_passes_and_names_what_it_refuses() -> None:
    # An audit of the Python API hosts call: flipped arrays crashed inside torch, a single Source
    # (not in a list) raised TypeError, a negative rate made negative density that the next call
    # refused, a surrogate named source shapes at the coarse grid's size, and a material model
    # name gave a cryptic error after fetching its weights.
    from mlvfx.fluids.reference import SmokeConfig, Source, Stepper
    from mlvfx.fluids.scenarios import make_scenario
    from mlvfx.fluids.surrogate import load_stepper

    sc = make_scenario("plume", 3, 16)
    src = sc.sources[0]
    plain = Stepper(sc.config).step(None, None, [src])
    mirrored = np.flip(src.mask, 2)  # a view with negative strides (torch refused them)
    assert any(st < 0 for st in mirrored.strides)
    flipped = Stepper(sc.config).step(None, None, Source(mirrored, src.rate))  # one Source, no list
    np.testing.assert_allclose(np.flip(flipped[0], 2), plain[0], atol=1e-5)  # the plume is symmetric
    d, v = plain
    again = Stepper(sc.config).step(np.flip(d, 2), v, [src])
    assert np.isfinite(again[0]).all()
    with pytest.raises(InputError, match="rate must be finite and >= 0"):
        Stepper(sc.config).step(None, None, [Source(src.mask, rate=-5.0)])
    with pytest.raises(InputError, match="must be a real numeric array"):
        Stepper(sc.config).step(d.astype(np.complex64), v, [src])
    with pytest.raises(InputError, match="must be a tuple"):
        SmokeConfig(shape=32)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="whole numbers"):
        SmokeConfig(shape=(32.0, 32.0, 32.0))  # type: ignore[arg-type]
    big = make_scenario("plume", 3, 32)
    surrogate = load_stepper("smoke3d", big.config)
    with pytest.raises(InputError, match=r"source 0 mask has shape \(16, 16, 16\), expected \(32, 32, 32\)"):
        surrogate.step(None, None, [Source(np.ones((16, 16, 16), np.float32))])
    with pytest.raises(InputError, match=r"is a material\.pbr model, not a smoke surrogate"):
        load_stepper("material", big.config)


def test_unsupported_devices_are_named() -> None:
    from mlvfx.config import torch_device

    for name in ("meta", "xpu"):
        with pytest.raises(InputError, match=r"unsupported device|unknown device"):
            torch_device(name)


def test_a_time_step_the_surrogates_were_not_trained_with_is_warned_about() -> None:
    from mlvfx.fluids.reference import SmokeConfig
    from mlvfx.fluids.surrogate import dt_warning

    assert dt_warning(SmokeConfig(shape=(16, 16, 16)).dt) is None  # the default 1/24 s, as trained
    message = dt_warning(1.0 / 96.0)
    assert message is not None and "1/96 s" in message and "outside their training" in message


def test_a_named_3d_model_off_its_training_resolution_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The issue's own example, --res 128 --model smoke3d, ran the 64³ model at 128³ in silence
    # (0.99x coarse-only there; smoke3d_128 0.72x).
    from mlvfx.fluids.surrogate import resolution_warning

    assert resolution_warning("smoke3d", 3, 64) is None
    assert resolution_warning("smoke3d_128", 3, 128) is None
    assert resolution_warning("smoke3d", 3, 80) is None  # nearer 64 than 128
    assert resolution_warning("smoke3d", 2, 128) is None and resolution_warning("mine", 3, 128) is None
    for model, cells, better in (("smoke3d", 128, "smoke3d_128"), ("smoke3d@0.2.0", 112, "smoke3d_128")):
        message = resolution_warning(model, 3, cells)
        assert message is not None and f"{better} (trained for 128³" in message, message
    assert "smoke3d (trained for 64³" in (resolution_warning("smoke3d_128", 3, 48) or "")

    argv = ["smoke", "run", "--res", "48", "--frames", "1", "--vdb", "off", "--model", "smoke3d_128"]
    assert _run([*argv, "-o", str(tmp_path / "named")], quiet=False) == 0
    assert "smoke3d_128 was trained for 128³ output" in capsys.readouterr().err
    auto = ["smoke", "run", "--res", "48", "--frames", "1", "--vdb", "off", "-o", str(tmp_path / "auto")]
    assert _run(auto, quiet=False) == 0
    assert "trained for" not in capsys.readouterr().err  # the automatic choice says nothing


def test_a_smoke_model_version_can_be_pinned(tmp_path: Path) -> None:
    from mlvfx.errors import ModelNotFound
    from mlvfx.fluids.surrogate import load_surrogate

    _, factor, version = load_surrogate("smoke3d@0.2.0")
    assert version == "0.2.0" and factor == 4
    assert load_surrogate("smoke3d")[2] != "0.2.0"  # the newest otherwise
    with pytest.raises(ModelNotFound, match="versions: "):
        load_surrogate("smoke3d@9.9")
    from mlvfx.errors import InputError

    with pytest.raises(InputError, match="names no version"):
        load_surrogate("smoke3d@")


def test_a_show_pins_smoke_models_in_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hosts name smoke models without a version; after an upgrade a re-bake moved to the newest
    # model (an audit). MLVFX_SMOKE_MODELS pins them (Blender's Smoke Models preference sets it).
    from mlvfx.fluids.scenarios import make_scenario
    from mlvfx.fluids.surrogate import load_stepper, load_surrogate, pinned_smoke_version

    monkeypatch.setenv("MLVFX_SMOKE_MODELS", "smoke3d@0.2.0, smoke3d_128@0.2.0")
    assert pinned_smoke_version("smoke3d") == "0.2.0" and pinned_smoke_version("smoke2d") is None
    assert load_surrogate("smoke3d")[2] == "0.2.0"
    assert load_surrogate("smoke3d@0.3.0")[2] == "0.3.0"  # a version named outright wins
    assert load_stepper("smoke3d", make_scenario("plume", 3, 16).config) is not None
    out = tmp_path / "shot"
    argv = ["smoke", "run", "--res", "16", "--frames", "1", "--vdb", "off", "-o", str(out)]
    assert _run(argv) == 0  # the default model for the grid, pinned
    assert json.loads((out / "shot.json").read_text())["model"] == "smoke3d 0.2.0"
    monkeypatch.setenv("MLVFX_SMOKE_MODELS", "smoke3d@9.9")
    with pytest.raises(ModelNotFound, match="pinned by MLVFX_SMOKE_MODELS"):
        load_surrogate("smoke3d")
    monkeypatch.setenv("MLVFX_SMOKE_MODELS", "smoke3D@0.2.0")  # a typo pinned nothing, unsaid
    with pytest.raises(InputError, match="pins 'smoke3D', which the model zoo does not have: smoke3d"):
        load_surrogate("smoke3d")
    # a pin of a model this zoo does not have yet (one list for several installs) is left alone
    for pins in ("smoke3d@0.2.0,smoke4d_512@1.0.0", "smoke3d@0.2.0 smoke2d@0.1.0 smoke3d_512@0.1.0"):
        monkeypatch.setenv("MLVFX_SMOKE_MODELS", pins)
        assert load_surrogate("smoke3d")[2] == "0.2.0"
    monkeypatch.setenv("MLVFX_SMOKE_MODELS", "smoke3d@0.2.0,smoke_3d_128@0.2.0")
    with pytest.raises(InputError, match="smoke3d_128"):
        load_surrogate("smoke3d")
    monkeypatch.setenv("MLVFX_SMOKE_MODELS", "smoke3d=0.2.0")
    with pytest.raises(InputError, match="lists pins as ID@VERSION"):
        load_surrogate("smoke3d")


def test_a_frame_that_cannot_be_replaced_leaves_the_earlier_shot_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # On Windows a frame open in a viewer cannot be replaced: the frames before it were already new,
    # the rest old, and the error was an internal PermissionError (an audit). Now all or nothing.
    import os

    out = tmp_path / "shot"
    argv = ["smoke", "run", "--dims", "2", "--res", "16", "--reference", "--vdb", "off", "-o", str(out)]
    assert _run([*argv, "--scenario", "plume", "--frames", "4"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_replace = os.replace

    def held_open(src: object, dst: object) -> None:  # the old frame 3 can be neither moved nor replaced
        if str(out / "frame_0003.npz") in (str(src), str(dst)):
            raise PermissionError(13, "The process cannot access the file", str(dst))
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", held_open)
    with pytest.raises(MlvfxError, match=r"frame_0003\.npz"):
        _run([*argv, "--scenario", "wind", "--frames", "4", "--overwrite"])
    monkeypatch.setattr(os, "replace", real_replace)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_frame_that_cannot_be_written_during_an_overwrite_is_named_where_it_was_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The error named a file in the hidden staging folder, gone by the time it was read (an audit).
    from mlvfx.errors import ImageWriteError

    out = tmp_path / "shot"
    argv = ["smoke", "run", "--dims", "2", "--res", "16", "--reference", "--vdb", "off", "-o", str(out)]
    assert _run([*argv, "--frames", "3"]) == 0
    import mlvfx.io.volume as volume

    real = volume.write_volume_npz

    def full(path: Path, *a: object, **k: object) -> Path:
        if path.name == "frame_0002.npz":
            raise ImageWriteError("cannot write: No space left on device", path)
        return real(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(volume, "write_volume_npz", full)
    with pytest.raises(ImageWriteError) as info:
        _run([*argv, "--frames", "3", "--overwrite"])
    assert str(info.value) == f"{out / 'frame_0002.npz'}: cannot write: No space left on device"


def test_weights_that_are_not_a_surrogate_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shape mismatch printed every mismatch over several lines; another model's weights, or NaN
    # or huge meta values, were internal errors (a fuzz audit).
    import torch

    _offline_zoo(monkeypatch, tmp_path)
    from safetensors.torch import load_file, save_file

    from mlvfx.nets.infer import load_material_net
    from mlvfx.zoo import fetch

    weights = fetch("smoke3d", fmt="safetensors")
    state = load_file(str(weights))
    key = next(k for k in state if k.startswith("body.") and k.endswith(".weight"))
    state[key] = torch.zeros(3, 3)
    shaped = tmp_path / "shape.safetensors"
    save_file(state, str(shaped))
    argv = ["smoke", "run", "--res", "16", "--frames", "1", "--vdb", "off", "-o", str(tmp_path / "s")]
    with pytest.raises(InputError, match="not a smoke surrogate") as info:
        _run([*argv, "--weights", str(shaped)])
    assert "\n" not in str(info.value)
    state = load_file(str(weights)) | {"meta.factor": torch.tensor([2.0**62])}
    huge = tmp_path / "huge.safetensors"
    save_file(state, str(huge))
    with pytest.raises(InputError, match=r"huge\.safetensors"):
        _run([*argv, "--weights", str(huge)])
    with pytest.raises(MlvfxError, match=r"not a material model"):
        load_material_net(weights)


def test_a_step_that_goes_non_finite_is_an_error_not_nan_arrays(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Finite but huge inputs came back from the surrogate as NaN arrays without a word (a fuzz audit).
    from mlvfx.errors import SolverError
    from mlvfx.fluids.scenarios import make_scenario
    from mlvfx.fluids.surrogate import load_stepper

    _offline_zoo(monkeypatch, tmp_path)
    sc = make_scenario("plume", 3, 16)
    stepper = load_stepper("smoke3d", sc.config)
    d, v = stepper.step(None, None, sc.sources)
    with pytest.raises(SolverError, match="went non-finite"):
        stepper.step(np.full_like(d, 1e38), v, sc.sources)
    d2, _ = stepper.step(d, v, sc.sources)  # the stepper goes on from sane inputs
    assert np.isfinite(d2).all()
