"""Material metrics and the harness, on small generated datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlvfx.data import materials
from mlvfx.errors import InputError
from mlvfx.eval import cli as eval_cli
from mlvfx.eval.material import affine_rmse, evaluate, mae, normal_errors, si_rmse
from mlvfx.io import write_image


def _tilt(angle_deg: float, shape: tuple[int, int]) -> np.ndarray[Any, np.dtype[np.float32]]:
    a = np.radians(angle_deg)
    n = np.zeros((*shape, 3), np.float32)
    n[..., 0] = np.sin(a)
    n[..., 2] = np.cos(a)
    return n


def test_normal_errors_known_angles() -> None:
    flat = _tilt(0.0, (8, 8))
    e = normal_errors(_tilt(10.0, (8, 8)), flat)
    assert e["normal_mean_deg"] == pytest.approx(10.0, abs=1e-4)
    assert e["normal_within_11_25"] == 1.0
    mixed = _tilt(0.0, (8, 8))
    mixed[:4] = _tilt(30.0, (4, 8))
    e = normal_errors(mixed * 3.0, flat)  # length must not matter
    assert e["normal_mean_deg"] == pytest.approx(15.0, abs=1e-4)
    assert e["normal_within_22_5"] == pytest.approx(0.5)
    with pytest.raises(InputError):
        normal_errors(flat[:4], flat)


def test_albedo_height_roughness_invariances() -> None:
    rng = np.random.default_rng(0)
    t = rng.random((6, 6, 3), dtype=np.float32)
    assert si_rmse(t * 0.37, t) == pytest.approx(0.0, abs=1e-6)
    assert si_rmse(np.ones_like(t), t) > 0.05
    h = rng.random((6, 6), dtype=np.float32)
    assert affine_rmse(-3.0 * h + 7.0, h) == pytest.approx(0.0, abs=1e-6)
    assert affine_rmse(np.zeros_like(h), h) == pytest.approx(float(h.std()), rel=1e-5)
    assert mae(h + 0.1, h) == pytest.approx(0.1, abs=1e-6)


def _truth(root: Path, n: int = 3, size: int = 16) -> None:
    for i in range(n):
        spec = materials.make_spec(77, i, size=size, families=["bricks", "tiles"])
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[0:size, 0:size] / size
        height = (0.01 * np.sin(6 * xx + i) * np.cos(4 * yy)).astype(np.float32)
        from mlvfx.data.augment import normals_from_height

        maps = materials.RenderedMaps(
            lit=rng.random((size, size, 3), dtype=np.float32),
            albedo=(0.1 + 0.8 * rng.random((size, size, 3))).astype(np.float32),
            normal=normals_from_height(height, 1.0 / size),
            height=height,
            roughness=rng.random((size, size), dtype=np.float32),
        )
        d = root / spec.name
        d.mkdir(parents=True)
        materials.write_sample(d, spec, maps)


def test_harness_perfect_and_flat_predictions(tmp_path: Path) -> None:
    truth, perfect, flat = tmp_path / "truth", tmp_path / "perfect", tmp_path / "flat"
    _truth(truth)
    for d in sorted(truth.iterdir()):
        p = perfect / d.name
        p.mkdir(parents=True)
        for f in ("normal.png", "albedo.png", "height16.png", "roughness.png"):
            (p / f).write_bytes((d / f).read_bytes())
        q = flat / d.name
        q.mkdir(parents=True)
        write_image(q / "normal.png", _tilt(0.0, (16, 16)) * 0.5 + 0.5, kind="data", bit_depth=16)
    res = evaluate(perfect, truth)
    o = res.overall()
    assert o["count"] == 3
    assert o["normal_mean_deg"] < 0.05 and o["normal_within_11_25"] == 1.0
    assert o["albedo_si_rmse"] < 0.01 and o["height_rmse"] < 1e-3 and o["roughness_mae"] < 0.003
    assert set(res.per_family()) == {"bricks", "tiles"}
    fo = evaluate(flat, truth).overall()
    assert fo["normal_mean_deg"] > 1.0
    assert fo["albedo_si_rmse"] is None and fo["albedo_si_rmse_count"] == 0
    md = res.to_markdown()
    assert "| bricks |" in md and "**overall**" in md


def _relabel(folder: Path, family: str, parts: tuple[str, str] | None = None) -> None:
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["family"] = family
    if parts is not None:
        meta["params"] = {"a": {"family": parts[0]}, "b": {"family": parts[1]}}
    meta_path.write_text(json.dumps(meta))


def test_held_out_families_reported_separately(tmp_path: Path) -> None:
    """Issue 5: the held-out families (and mixtures with a held-out part) get their own mean."""
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    _truth(truth, n=4)
    folders = sorted(truth.iterdir())
    _relabel(folders[0], "bricks")
    _relabel(folders[1], "bark")
    _relabel(folders[2], "mixture", ("tiles", "pebbles"))
    _relabel(folders[3], "mixture", ("bricks", "tiles"))
    tilts = [0.0, 10.0, 20.0, 30.0]  # a different flat tilt per sample: the two means differ
    for d, tilt in zip(folders, tilts, strict=True):
        (pred / d.name).mkdir(parents=True)
        normal = _tilt(tilt, (16, 16)) * 0.5 + 0.5
        write_image(pred / d.name / "normal.png", normal, kind="data", bit_depth=16)
    res = evaluate(pred, truth)
    assert [s.held_out for s in res.samples] == [False, True, True, False]
    split = res.by_split()
    assert split["trained families"]["count"] == 2 and split["held-out families"]["count"] == 2
    per_sample = {s.name: s.metrics["normal_mean_deg"] for s in res.samples}
    names = [d.name for d in folders]
    assert split["trained families"]["normal_mean_deg"] == pytest.approx(
        (per_sample[names[0]] + per_sample[names[3]]) / 2
    )
    assert split["held-out families"]["normal_mean_deg"] == pytest.approx(
        (per_sample[names[1]] + per_sample[names[2]]) / 2
    )
    assert res.to_dict()["by_split"] == split
    md = res.to_markdown()
    assert "**overall, trained families**" in md and "**overall, held-out families**" in md
    only_trained = evaluate(pred, truth, names=[names[0], names[3]])
    assert set(only_trained.by_split()) == {"trained families"}


def test_cli_json_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    _truth(truth, n=2)
    for d in sorted(truth.iterdir()):
        (pred / d.name).mkdir(parents=True)
        (pred / d.name / "roughness.png").write_bytes((d / "roughness.png").read_bytes())
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    eval_cli.register(parser.add_subparsers())
    args = parser.parse_args(["--json", "eval", "material", "--pred", str(pred), "--truth", str(truth)])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["overall"]["count"] == 2 and doc["overall"]["roughness_mae"] < 0.003
    assert len(doc["samples"]) == 2
    args = parser.parse_args(["eval", "material", "--pred", str(pred), "--truth", str(truth)])
    assert args.func(args) == 0
    assert "roughness MAE" in capsys.readouterr().out


def test_no_matching_predictions(tmp_path: Path) -> None:
    truth = tmp_path / "truth"
    _truth(truth, n=1)
    (tmp_path / "pred").mkdir()
    with pytest.raises(InputError, match="no predicted maps"):
        evaluate(tmp_path / "pred", truth)
    with pytest.raises(InputError, match="not found"):
        evaluate(tmp_path / "missing", truth)


def test_contact_sheet(tmp_path: Path) -> None:
    from mlvfx.eval.sheet import contact_sheet
    from mlvfx.io import read_image

    truth = tmp_path / "truth"
    _truth(truth, n=2)
    real = tmp_path / "real" / "photo"
    real.mkdir(parents=True)
    write_image(real / "lit.png", np.full((20, 30, 3), 0.5, np.float32))
    out = contact_sheet(tmp_path / "sheet.png", truth=truth, pred=truth, tile=48)
    img, _ = read_image(out, kind="data")
    assert img.shape[:2] == (2 * 48, 48 * 9)
    # a real photo without truth: no truth columns; no prediction: the hatched "missing" tile
    out2 = contact_sheet(tmp_path / "real.png", truth=tmp_path / "real", tile=48, maps=["normal"])
    img2, _ = read_image(out2, kind="data")
    assert img2.shape[:2] == (48, 48 * 2)
    assert float(img2[:, 48:].std()) > 0.0
    from mlvfx.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        contact_sheet(tmp_path / "sheet.png", truth=truth)


def test_a_partial_prediction_folder_is_named_not_hidden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    _truth(truth, n=3)
    first = sorted(truth.iterdir())[0]
    (pred / first.name).mkdir(parents=True)
    (pred / first.name / "roughness.png").write_bytes((first / "roughness.png").read_bytes())
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    eval_cli.register(parser.add_subparsers())
    args = parser.parse_args(["--json", "eval", "material", "--pred", str(pred), "--truth", str(truth)])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["overall"]["count"] == 1 and len(doc["missing"]) == 2
    assert "2 of 3 truth samples have no prediction" in captured.err


def test_contact_sheet_checks_its_output_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlvfx.errors import OutputExistsError
    from mlvfx.eval import sheet

    truth = tmp_path / "truth"
    _truth(truth, n=1)
    monkeypatch.setattr(sheet, "sample_folders", lambda *a: pytest.fail("the sheet was built first"))
    with pytest.raises(InputError, match=r"name a \.png"):
        sheet.contact_sheet(tmp_path / "sheet.exr", truth=truth)
    (tmp_path / "sheet.png").write_bytes(b"mine")
    with pytest.raises(OutputExistsError):
        sheet.contact_sheet(tmp_path / "sheet.png", truth=truth)
