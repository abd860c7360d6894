"""Factory logic that needs no Blender: specs, determinism, splits, resumability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlvfx.data import materials, splits
from mlvfx.data.families import FAMILIES, FAMILY_NAMES
from mlvfx.errors import InputError


def test_at_least_ten_families_with_distinct_parameters() -> None:
    assert len(FAMILY_NAMES) >= 10
    for name, fam in FAMILIES.items():
        a = fam.sample(np.random.default_rng(1))
        b = fam.sample(np.random.default_rng(2))
        assert a != b, name
        json.dumps(a)  # JSON-serialisable


def test_spec_is_deterministic_by_seed_and_index() -> None:
    a = materials.make_spec(5, 17, size=64)
    b = materials.make_spec(5, 17, size=64)
    assert a == b
    assert json.dumps(a.params, sort_keys=True) == json.dumps(b.params, sort_keys=True)
    assert materials.make_spec(6, 17, size=64) != a
    assert materials.make_spec(5, 18, size=64) != a


def test_specs_cover_families_round_robin() -> None:
    fams = [materials.make_spec(3, i).family for i in range(len(FAMILY_NAMES))]
    assert sorted(fams) == sorted(FAMILY_NAMES)


def test_family_filter_and_unknown_family() -> None:
    got = {materials.make_spec(0, i, families=["bricks", "bark"]).family for i in range(6)}
    assert got == {"bricks", "bark"}
    with pytest.raises(InputError, match="unknown material families"):
        materials.make_spec(0, 0, families=["nope"])


def test_lighting_ranges() -> None:
    for i in range(30):
        light = materials.make_spec(9, i).lighting
        assert light["hdri"] in materials.HDRI_NAMES
        assert np.radians(15) < light["sun"]["elevation"] < np.radians(80)
    assert any(materials.make_spec(9, i).lighting["area"] for i in range(30))
    assert not all(materials.make_spec(9, i).lighting["area"] for i in range(30))


def test_studio_lighting_is_what_the_factory_always_drew() -> None:
    # Pinned to sample s000000 of material_v1's renders (seed 7), made before lighting modes existed.
    spec = materials.make_spec(7, 0, families=splits.TRAIN_FAMILIES)
    assert spec == materials.make_spec(7, 0, families=splits.TRAIN_FAMILIES, lighting="studio")
    assert spec.family == "mixture" and spec.lighting["hdri"] == "night.exr"
    assert spec.lighting["sun"]["elevation"] == pytest.approx(0.9871174522447179, abs=1e-15)
    assert spec.lighting["area"]["power"] == pytest.approx(244.7773973891363, abs=1e-12)


def test_wide_lighting_covers_what_studio_never_shows() -> None:
    specs = [materials.make_spec(8, i, families=splits.TRAIN_FAMILIES, lighting="wide") for i in range(400)]
    studio = [materials.make_spec(8, i, families=splits.TRAIN_FAMILIES) for i in range(400)]
    # Only the lighting changes: the same (seed, index) is the same material.
    for w, s in zip(specs[:20], studio[:20], strict=True):
        assert (w.family, w.params, w.relief, w.transform) == (s.family, s.params, s.relief, s.transform)
    elev = np.degrees([s.lighting["sun"]["elevation"] for s in specs])
    assert elev.min() >= 5 and elev.max() <= 89
    assert (elev < 15).sum() > 20 and (elev > 80).sum() > 20
    overcast = [s for s in specs if s.lighting["sun"]["strength"] == 0.0]
    assert 25 < len(overcast) < 80
    assert all(s.lighting["area"] is None for s in overcast)
    colors = np.array([s.lighting["sun"]["color"] for s in specs])
    assert (colors[:, 2] < 0.5).sum() > 20  # strongly warm suns
    assert (colors[:, 0] < 0.8).sum() > 20  # strongly cool suns
    studio_colors = np.array([s.lighting["sun"]["color"] for s in studio])
    assert studio_colors.min() >= 0.8
    with pytest.raises(InputError, match="unknown lighting 'dusk'"):
        materials.make_spec(8, 0, lighting="dusk")


def test_generate_records_and_checks_the_lighting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(materials, "render_maps", _fake_maps)
    materials.generate(tmp_path / "w", 1, size=16, seed=2, lighting="wide")
    assert json.loads((tmp_path / "w" / "dataset.json").read_text())["lighting"] == "wide"
    meta = json.loads((tmp_path / "w" / "s000000" / "meta.json").read_text())
    assert meta["lighting"] == materials.make_spec(2, 0, size=16, lighting="wide").lighting
    with pytest.raises(InputError, match="lighting='wide'"):
        materials.generate(tmp_path / "w", 2, size=16, seed=2)
    # A dataset written before the setting existed has no "lighting" key: it is a studio one.
    materials.generate(tmp_path / "s", 1, size=16, seed=2)
    desc = tmp_path / "s" / "dataset.json"
    old = json.loads(desc.read_text())
    del old["lighting"]
    desc.write_text(json.dumps(old))
    assert materials.generate(tmp_path / "s", 2, size=16, seed=2).rendered == [1]
    with pytest.raises(InputError, match="lighting='studio'"):
        materials.generate(tmp_path / "s", 2, size=16, seed=2, lighting="wide")


def test_default_family_set_is_what_every_earlier_dataset_drew() -> None:
    from mlvfx.data.families import RELIEF_FAMILIES

    # Pinned: "all" (the public validation set) and "train" must keep drawing the same specs.
    assert FAMILY_NAMES == (
        "bricks", "tiles", "cobblestones", "pebbles", "rocky", "cracked_mud",
        "planks", "fabric", "scratched_metal", "bark", "mixture",
    )  # fmt: skip
    assert set(RELIEF_FAMILIES) <= set(FAMILIES) and not set(RELIEF_FAMILIES) & set(FAMILY_NAMES)
    assert splits.expand_families(["train"]) == list(splits.TRAIN_FAMILIES)
    assert splits.expand_families(None) is None
    mixed = splits.expand_families(["dunes", "train", "dunes"])
    assert mixed == ["dunes", *splits.TRAIN_FAMILIES]
    specs = [materials.make_spec(9, i, families=RELIEF_FAMILIES) for i in range(6)]
    assert sorted(s.family for s in specs) == sorted(RELIEF_FAMILIES * 2)
    for s in specs:
        lo, hi = FAMILIES[s.family].relief
        assert lo <= s.relief <= hi
        json.dumps(s.params)
    assert not {materials.make_spec(9, i).family for i in range(40)} & set(RELIEF_FAMILIES)


def test_splits_put_mixtures_with_a_held_out_part_in_val(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(materials, "render_maps", _fake_maps)
    materials.generate(tmp_path, 40, size=16, seed=7, families=["mixture"])
    parts = splits.split_dataset(tmp_path, val_fraction=0.0)
    refs = parts["train"] + parts["val"]
    assert all(len(r.parts) == 2 for r in refs)
    with_pebbles = [r for r in refs if "pebbles" in r.parts]
    assert with_pebbles and len(with_pebbles) < len(refs)
    assert all(r.holds_out for r in with_pebbles)
    assert {r.folder for r in parts["val"]} == {r.folder for r in with_pebbles}


def test_splits_hold_out_families_and_reserve_seeds() -> None:
    assert set(splits.HELD_OUT_FAMILIES).isdisjoint(splits.TRAIN_FAMILIES)
    assert splits.split_of(0, 0, "bark", 0.0) == "val"
    fracs = [splits.split_of(1, i, "bricks", 0.2) for i in range(2000)]
    assert 0.15 < fracs.count("val") / len(fracs) < 0.25
    with pytest.raises(InputError, match="reserved"):
        splits.check_train_seed(splits.VALIDATION_SEEDS["materials_v1"])


def _fake_maps(spec: materials.SampleSpec, **_: object) -> materials.RenderedMaps:
    s = spec.size
    rng = np.random.default_rng(spec.index)
    n = np.zeros((s, s, 3), np.float32)
    n[..., 2] = 1.0
    return materials.RenderedMaps(
        lit=rng.random((s, s, 3), dtype=np.float32),
        albedo=rng.random((s, s, 3), dtype=np.float32),
        normal=n,
        height=rng.random((s, s), dtype=np.float32) * 0.01,
        roughness=rng.random((s, s), dtype=np.float32),
        stats={},
    )


def test_generate_is_resumable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake(spec: materials.SampleSpec, **kw: object) -> materials.RenderedMaps:
        calls.append(spec.index)
        return _fake_maps(spec)

    monkeypatch.setattr(materials, "render_maps", fake)
    rep = materials.generate(tmp_path, 3, size=16, seed=4)
    assert rep.rendered == [0, 1, 2] and rep.skipped == []
    for i in range(3):
        assert materials.is_complete(tmp_path / materials.sample_dir_name(i))
    # A crash mid-sample leaves a hidden temp folder; a final folder missing files is incomplete too.
    (tmp_path / ".tmp-s000003-abc").mkdir()
    (tmp_path / ".tmp-s000003-abc" / "lit.png").write_bytes(b"partial")
    broken = tmp_path / "s000001"
    (broken / "meta.json").unlink()
    first_lit = (tmp_path / "s000000" / "lit.png").stat().st_mtime_ns
    calls.clear()
    rep = materials.generate(tmp_path, 4, size=16, seed=4)
    assert calls == [1, 3]
    assert rep.skipped == [0, 2]
    assert not list(tmp_path.glob(".tmp-*"))
    assert (tmp_path / "s000000" / "lit.png").stat().st_mtime_ns == first_lit
    meta = json.loads((tmp_path / "s000003" / "meta.json").read_text())
    assert meta["seed"] == 4 and meta["index"] == 3 and meta["family"] == materials.make_spec(4, 3).family


def test_generate_shards_partition_indices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(materials, "render_maps", _fake_maps)
    a = materials.generate(tmp_path, 5, size=16, seed=2, shard=0, num_shards=2)
    b = materials.generate(tmp_path, 5, size=16, seed=2, shard=1, num_shards=2)
    assert a.rendered == [0, 2, 4] and b.rendered == [1, 3]


def test_generate_refuses_mixing_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(materials, "render_maps", _fake_maps)
    materials.generate(tmp_path, 1, size=16, seed=2)
    with pytest.raises(InputError, match="seed=2"):
        materials.generate(tmp_path, 1, size=16, seed=3)


def test_shards_starting_together_agree_on_the_dataset_description(tmp_path: Path) -> None:
    # Six shards of one dataset started at once on a new folder: all pass, one description.
    from concurrent.futures import ThreadPoolExecutor

    settings = materials.dataset_settings(
        seed=2, size=16, samples=12, families=materials.check_families(None), lighting="studio"
    )
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: materials._check_dataset(tmp_path, settings), range(24)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [materials.DATASET_FILE]
    other = {**settings, "seed": 3}
    with pytest.raises(InputError, match="seed=2"):
        materials._check_dataset(tmp_path, other)


def test_crash_during_render_leaves_no_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(spec: materials.SampleSpec, **kw: object) -> materials.RenderedMaps:
        raise RuntimeError("render crashed")

    monkeypatch.setattr(materials, "render_maps", boom)
    with pytest.raises(RuntimeError):
        materials.generate(tmp_path, 1, size=16, seed=2)
    assert not (tmp_path / "s000000").exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        materials.generate(tmp_path, 1, size=8)
    with pytest.raises(InputError):
        materials.generate(tmp_path, 1, shard=2, num_shards=2)


def test_load_sample_without_exr_rescales_height16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlvfx.data.augment import load_sample

    monkeypatch.setattr(materials, "render_maps", _fake_maps)
    materials.generate(tmp_path, 1, size=16, seed=4)
    folder = tmp_path / "s000000"
    full = load_sample(folder)
    (folder / "height.exr").unlink()
    compact = load_sample(folder)
    assert np.allclose(compact.height, full.height, atol=1e-5)


def test_data_cli_runs_and_reports_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from mlvfx.data import cli

    monkeypatch.setattr(materials, "render_maps", _fake_maps)
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    cli.register(parser.add_subparsers())
    argv = [
        "--json",
        "data",
        "materials",
        "--count",
        "2",
        "--size",
        "16",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "ds"),
        "--families",
        "train",
    ]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rendered"] == 2 and doc["skipped"] == 0
    fams = {json.loads(p.read_text())["family"] for p in (tmp_path / "ds").glob("s*/meta.json")}
    assert fams.isdisjoint(splits.HELD_OUT_FAMILIES)
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 2
    bad = parser.parse_args(
        [
            "data",
            "materials",
            "--count",
            "1",
            "--out",
            str(tmp_path / "v"),
            "--seed",
            str(splits.VALIDATION_SEEDS["materials_v1"]),
        ]
    )
    with pytest.raises(InputError, match="reserved"):
        bad.func(bad)


def test_split_dataset_puts_held_out_families_in_val(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(materials, "render_maps", _fake_maps)
    materials.generate(tmp_path, 22, size=16, seed=8)
    parts = splits.split_dataset(tmp_path, val_fraction=0.0)
    assert len(parts["train"]) + len(parts["val"]) == 22
    assert {r.family for r in parts["val"] if r.family != "mixture"} == set(splits.HELD_OUT_FAMILIES)
    assert all(r.holds_out for r in parts["val"])
    assert not any(r.holds_out for r in parts["train"])
    again = splits.split_dataset(tmp_path, val_fraction=0.0)
    assert [r.folder for r in again["val"]] == [r.folder for r in parts["val"]]


def test_composite_family_spans_its_primitives_and_stays_out_of_the_default_set() -> None:
    from mlvfx.data.families import COMPOSITE_LAYERS, COMPOSITE_OPS, GENERIC_FAMILIES, RELIEF_FAMILIES

    assert GENERIC_FAMILIES == ("composite",)
    assert "composite" in FAMILIES and "composite" not in FAMILY_NAMES
    assert "composite" not in splits.TRAIN_FAMILIES and "composite" not in RELIEF_FAMILIES
    assert not {materials.make_spec(9, i).family for i in range(40)} & set(GENERIC_FAMILIES)
    specs = [materials.make_spec(10, i, families=["composite"]) for i in range(80)]
    assert specs[3] == materials.make_spec(10, 3, families=["composite"])  # deterministic
    kinds, ops, metallic, sources = set(), set(), set(), set()
    lo, hi = FAMILIES["composite"].relief
    for s in specs:
        p = s.params
        json.dumps(p)
        assert s.family == "composite" and lo <= s.relief <= hi
        assert 1 <= len(p["layers"]) <= 3 and "op" not in p["layers"][0]
        for layer in p["layers"]:
            kinds.add(layer["kind"])
            ops.add(layer.get("op"))
            # Pebbles' signature (spherical caps on Euclidean F1 distance) is never drawn.
            assert layer["kind"] != "cones" or layer["metric"] != "EUCLIDEAN"
            assert 0.0 < layer["stretch"] <= 1.0 and layer["scale"] > 0.0
        assert 0.0 < p["rough_lo"] <= p["rough_hi"] <= 1.0
        assert 2 <= len(p["palette"]) <= 4
        metallic.add(p["metallic"])
        sources.add(p["color_source"])
    assert kinds == set(COMPOSITE_LAYERS)
    assert ops == {None, *COMPOSITE_OPS} and len(COMPOSITE_OPS) == 3
    assert metallic == {True, False} and sources == {"noise", "cells", "bands"}
    # Roughness levels span the range, unlike any single family's.
    mids = [(s.params["rough_lo"] + s.params["rough_hi"]) / 2 for s in specs]
    assert min(mids) < 0.25 and max(mids) > 0.8


def test_render_guard_holds_signals_until_the_render_returns(capfd: pytest.CaptureFixture[str]) -> None:
    # Blender catches an interrupt raised inside its render callbacks, prints a traceback and goes
    # on; the guard notes the signal and raises once the render is done. Its log goes to stderr.
    import os
    import signal

    from mlvfx.data import materials

    # Python's own Ctrl-C handler, whatever this test process inherited (a shell's background job
    # starts with SIGINT ignored, and then the guard rightly ignores it too: checked below).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        reached = False
        with pytest.raises(KeyboardInterrupt):
            with materials._blender_render_guard():
                os.kill(os.getpid(), signal.SIGINT)
                os.write(1, b"Saved: 'render.exr'\n")  # what Blender prints from C
                reached = True
        assert reached
        out, err = capfd.readouterr()
        assert "Saved: 'render.exr'" in err and "Saved" not in out
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with materials._blender_render_guard():  # an ignored signal stays ignored
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, inherited)

    class Stop(Exception):
        pass

    def cli_handler(signum: int, frame: object) -> None:
        raise Stop(signum)

    old = signal.signal(signal.SIGTERM, cli_handler)
    try:
        with pytest.raises(Stop):
            with materials._blender_render_guard():
                os.kill(os.getpid(), signal.SIGTERM)
                reached = False
        assert reached is False  # the body ran to its end first
        assert signal.getsignal(signal.SIGTERM) is cli_handler
    finally:
        signal.signal(signal.SIGTERM, old)


def test_generate_checks_everything_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(materials, "render_maps", _fake_maps)
    with pytest.raises(InputError, match="seed must be from 0"):
        materials.generate(tmp_path / "neg", 1, size=16, seed=-1)
    assert not (tmp_path / "neg").exists()  # no dataset.json recording the bad seed
    with pytest.raises(InputError, match="number of shards must be at least 1, got 0"):
        materials.generate(tmp_path / "s", 1, size=16, seed=1, num_shards=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot create the output folder"):
        materials.generate(tmp_path / "file" / "sub", 1, size=16, seed=1)


def test_train_command_line_numbers_are_checked_by_the_parser() -> None:
    import argparse

    from mlvfx.train import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    for argv in (
        ["train", "material", "--recipe", "r.json", "--steps", "-3"],
        ["train", "material", "--recipe", "r.json", "--budget-minutes", "-1"],
        ["train", "smoke3d", "--recipe", "r.json", "--iterations", "-1"],
        ["train", "smoke2d", "--recipe", "r.json", "--budget-minutes", "nan"],
    ):
        with pytest.raises(SystemExit) as stop:
            parser.parse_args(argv)
        assert stop.value.code == 2
