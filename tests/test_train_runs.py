"""Training run folders and recipes: no silent rerun over a run, resume checks, recipe value types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlvfx.errors import InputError
from mlvfx.train.recipe import load_recipe
from mlvfx.train.runlog import check_run_folder, load_checkpoint, save_checkpoint
from mlvfx.train.smoke import load_smoke_recipe

RECIPES = Path(__file__).resolve().parents[1] / "model_zoo" / "recipes"


def test_a_run_folder_is_not_trained_over_and_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    check_run_folder(out, resume=False, overwrite=False)  # nothing there: fine
    with pytest.raises(InputError, match=r"no checkpoint\.pt to continue from"):
        check_run_folder(out, resume=True, overwrite=False)
    out.mkdir()
    (out / "log.jsonl").write_text("{}\n")  # a run that stopped before its first checkpoint
    with pytest.raises(InputError, match="no checkpoint to continue from: pass --overwrite") as err:
        check_run_folder(out, resume=False, overwrite=False)
    assert "--resume" not in str(err.value)  # it cannot be resumed: do not send the user round in a loop
    (out / "checkpoint.pt").write_bytes(b"")
    (out / "summary.json").write_text("{}")
    with pytest.raises(
        InputError, match=r"holds a run already \(checkpoint.pt, summary.json, log.jsonl\).*--resume"
    ):
        check_run_folder(out, resume=False, overwrite=False)
    check_run_folder(out, resume=True, overwrite=False)
    with pytest.raises(InputError, match="exclude each other"):
        check_run_folder(out, resume=True, overwrite=True)
    # --overwrite clears the earlier run's files first: no old log, summary or weights beside the new
    for name in ("upres_checkpoint.pt", "r.safetensors", "r.onnx", "notes.txt"):
        (out / name).write_text("old")
    old_run = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "notes.txt"}
    check_run_folder(out, resume=False, overwrite=True, weights_name="r")
    assert sorted(p.name for p in out.iterdir()) == [".overwritten", "notes.txt"]  # the user's file stays
    # ... set aside until the new run's first checkpoint: a rerun that fails before it (a full
    # disk) lost the earlier run too (a resource audit). A second failed rerun keeps it too.
    assert {p.name: p.read_bytes() for p in (out / ".overwritten").iterdir()} == old_run
    (out / "log.jsonl").write_text("the failed rerun's log\n")
    check_run_folder(out, resume=False, overwrite=True, weights_name="r")
    assert {p.name: p.read_bytes() for p in (out / ".overwritten").iterdir()} == old_run
    assert not (out / "log.jsonl").exists()
    save_checkpoint(out / "checkpoint.pt", {"iteration": 1})
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "notes.txt"]


def test_resume_refuses_a_checkpoint_of_another_recipe_or_a_broken_one(tmp_path: Path) -> None:
    recipe = load_smoke_recipe(RECIPES / "smoke3d_v14.json").to_dict()
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, {"model": {}, "recipe": recipe, "iteration": 3})
    assert load_checkpoint(ckpt, recipe)[0]["iteration"] == 3
    # what a resumed run may change: its time budget, threads, how far it goes, the comment
    later = json.loads(json.dumps(recipe))
    later["train"]["budget_minutes"] = 999
    later["train"]["threads"] = 1
    later["vupres"]["iterations"] = 10
    later["comment"] = "edited"
    assert load_checkpoint(ckpt, later) == (load_checkpoint(ckpt, recipe)[0], [])
    other = json.loads(json.dumps(recipe))
    other["seed"] += 1
    other["train"]["lr"] = 0.5
    with pytest.raises(
        InputError, match=r"another recipe \(it differs in seed, train.lr\).*--allow-recipe-change"
    ):
        load_checkpoint(ckpt, other)
    assert load_checkpoint(ckpt, other, allow_changes=True)[1] == ["seed", "train.lr"]
    # a key an older checkpoint's recipe lacks is not a difference
    newer = json.loads(json.dumps(recipe))
    newer["train"]["a_setting_added_later"] = 1
    assert load_checkpoint(ckpt, newer)[1] == []
    ckpt.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        load_checkpoint(ckpt, recipe)
    # the material trainer stores its recipe as a JSON string, tuples as lists: not a difference
    material = load_recipe(RECIPES / "material_v14.json").to_dict()
    save_checkpoint(ckpt, {"recipe": json.dumps(material), "step": 1})
    assert load_checkpoint(ckpt, material)[0]["step"] == 1
    assert torch.load(ckpt, weights_only=True)["step"] == 1
    # foreign files torch can read were internal errors (a list, a step that is a list, a recipe
    # string that is not JSON): one line naming the file now
    for state in ([1, 2], {"step": [1]}, {"iteration": -2}, {"seconds": "x"}, {"recipe": "{not json"}):
        save_checkpoint(ckpt, state)  # type: ignore[arg-type]
        with pytest.raises(InputError, match="not an mlvfx checkpoint") as err:
            load_checkpoint(ckpt, material)
        assert err.value.path == str(ckpt)


def test_temp_files_of_a_killed_checkpoint_write_are_cleared_on_resume_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    save_checkpoint(out / "checkpoint.pt", {"step": 1})
    for name in (".checkpoint.pt.4242.tmp", ".upres_checkpoint.pt.17.tmp"):  # kill -9 mid-write
        (out / name).write_bytes(b"half")
    (out / ".notes.tmp").write_text("mine")
    check_run_folder(out, resume=True, overwrite=False)
    assert sorted(p.name for p in out.iterdir()) == [".notes.tmp", "checkpoint.pt"]
    (out / ".checkpoint.pt.4242.tmp").write_bytes(b"half")
    check_run_folder(out, resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".notes.tmp", ".overwritten"]  # the earlier run, aside


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train", "steps", "10", "train.steps must be a whole number"),
        ("train", "lr", "fast", "train.lr must be a number"),
        ("train", "batch", True, "train.batch must be a whole number"),
        ("train", "steps", 2.5, "train.steps must be a whole number"),
        ("data", "count", "six", "data.count must be a whole number"),
    ],
)
def test_recipe_values_of_the_wrong_kind_are_named(
    tmp_path: Path, section: str, key: str, value: object, message: str
) -> None:
    raw = json.loads((RECIPES / "material_v1.json").read_text())
    raw[section][key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=message) as err:
        load_recipe(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["../../escaped", "a/b", ".hidden", "", None, 3])
def test_recipe_names_cannot_leave_the_output_folders(tmp_path: Path, name: object) -> None:
    for recipe in ("material_v1.json", "smoke3d_v2.json"):
        raw = json.loads((RECIPES / recipe).read_text())
        raw["name"] = name
        path = tmp_path / recipe
        path.write_text(json.dumps(raw))
        loader = load_smoke_recipe if recipe.startswith("smoke") else load_recipe
        with pytest.raises(InputError, match="'name' of letters, digits"):
            loader(path)


def test_smoke_recipe_top_level_numbers(tmp_path: Path) -> None:
    raw = json.loads((RECIPES / "smoke3d_v2.json").read_text())
    raw["dims"] = "two"
    path = tmp_path / "s.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match="dims must be a whole number"):
        load_smoke_recipe(path)
    raw["dims"], raw["seed"], raw["model"]["factor"] = 3, 1.7, 4
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match="seed must be a whole number"):
        load_smoke_recipe(path)


def test_the_documented_v1_to_v2_continuation_needs_the_flag(tmp_path: Path) -> None:
    # docs/BENCHMARKS.md run F: material_v1's checkpoint resumed with material_v2.json (larger crops)
    v1 = load_recipe(RECIPES / "material_v1.json").to_dict()
    v2 = load_recipe(RECIPES / "material_v2.json").to_dict()
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, {"recipe": json.dumps(v1), "step": 12000})
    with pytest.raises(InputError, match="--allow-recipe-change"):
        load_checkpoint(ckpt, v2)
    state, changes = load_checkpoint(ckpt, v2, allow_changes=True)
    assert state["step"] == 12000 and "train.crop" in changes and "name" in changes


def test_a_recipe_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    # Windows Notepad writes UTF-8 with a BOM; the locale codec (cp1252) garbled accents (an audit).
    d = load_recipe(RECIPES / "material_v1.json").to_dict()
    d["comment"] = "béton — Ávila"
    path = tmp_path / "r.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(d, ensure_ascii=False).encode("utf-8"))
    assert load_recipe(path).name == d["name"]
