"""``mlvfx texture tile|grow|paint`` and ``mlvfx eval texture`` through their own argparse parser."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_texture_support import material, noise_rgb

from mlvfx.errors import ImageReadError, InputError, MlvfxError, OutputExistsError
from mlvfx.io import read_image, write_image
from mlvfx.texture import cli as texture_cli
from mlvfx.texture import metrics


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlvfx")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--json", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    texture_cli.register(sub)
    ev = sub.add_parser("eval")
    texture_cli.add_eval_texture_parser(ev.add_subparsers(dest="eval_command", required=True))
    return parser


def run(*argv: str) -> int:
    args = _parser().parse_args(["--quiet", *argv])
    return int(args.func(args))


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    args = _parser().parse_args(["--json", *argv])
    assert args.func(args) == 0
    return dict(json.loads(capsys.readouterr().out))


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    p = tmp_path / "rock.png"
    write_image(p, noise_rgb(48, seed=2), kind="color", bit_depth=8)
    return p


@pytest.fixture
def material_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "rock_mat"
    mat = material(48, seed=3)
    maps, source = mat, texture_cli.Source(folder, True)
    texture_cli.write_maps(folder, maps, source, overwrite=False, note="test")
    return folder


def test_tile_equalize_is_for_colour_photos(tmp_path: Path, photo: Path, material_dir: Path) -> None:
    assert run("texture", "tile", str(photo), "--equalize", "-o", str(tmp_path / "eq.png")) == 0
    # A normal map's vectors would lose their length: refused, by its name.
    with pytest.raises(InputError, match="looks like a data map"):
        run("texture", "tile", str(material_dir / "normal.png"), "--equalize", "-o", str(tmp_path / "n.png"))
    from mlvfx.texture.cli import _data_map_name

    maps = ("Rock030_2K_NormalGL", "bricks_rough", "RockAO", "RoughnessMap", "rock_DISP16", "stone_heightmap")
    photos = ("metal_plate", "wall_photo", "rough_concrete", "metallic_car_paint", "normal_exposure")
    assert all(_data_map_name(n) for n in maps) and not any(_data_map_name(n) for n in photos)
    out = tmp_path / "eq_mat"
    assert run("texture", "tile", str(material_dir), "--equalize", "-o", str(out)) == 0  # its albedo only
    normal, _ = read_image(out / "normal.png", kind="data")
    length = np.linalg.norm(normal * 2 - 1, axis=2)
    assert abs(float(length.mean()) - 1.0) < 0.02


def test_tile_image(tmp_path: Path, photo: Path) -> None:
    out = tmp_path / "tiled.png"
    assert run("texture", "tile", str(photo), "-o", str(out)) == 0
    img, info = read_image(out)
    src, _ = read_image(photo)
    assert img.shape == src.shape and info.bit_depth == 8
    assert metrics.seam_score(img) < metrics.seam_score(src)
    with pytest.raises(OutputExistsError):
        run("texture", "tile", str(photo), "-o", str(out))
    assert run("texture", "tile", str(photo), "-o", str(out), "--overwrite") == 0
    old = tmp_path / "synthesis.png"
    assert run("texture", "tile", str(photo), "-o", str(old), "--method", "synthesis") == 0
    other, _ = read_image(old)
    assert other.shape == src.shape and metrics.seam_score(other) < metrics.seam_score(src)
    assert np.any(other != img)  # the two methods rebuild the band differently
    with pytest.raises(SystemExit):
        run("texture", "tile", str(photo), "-o", str(tmp_path / "q.png"), "--method", "quilt")


def test_grow_count_and_material_folder(tmp_path: Path, photo: Path, material_dir: Path) -> None:
    outdir = tmp_path / "grown"
    assert (
        run(
            "texture", "grow", str(photo), "--size", "80x64", "--seed", "3", "--count", "2", "-o", str(outdir)
        )
        == 0
    )
    files = sorted(p.name for p in outdir.iterdir())
    assert files == ["rock_s3.png", "rock_s4.png"]
    a, _ = read_image(outdir / "rock_s3.png")
    b, _ = read_image(outdir / "rock_s4.png")
    assert a.shape == (64, 80, 3)
    assert not np.array_equal(a, b)

    mdir = tmp_path / "grown_mat"
    assert run("texture", "grow", str(material_dir), "--size", "64", "-o", str(mdir)) == 0
    folder = mdir / "rock_mat_s0"
    names = {p.name for p in folder.iterdir()}
    assert {
        "albedo.png",
        "normal.png",
        "height.exr",
        "height16.png",
        "roughness.png",
        "material.json",
    } <= names
    from mlvfx import __version__

    assert json.loads((folder / "material.json").read_text())["mlvfx_version"] == __version__
    maps, src = texture_cli.read_maps(folder)
    assert src.is_folder and isinstance(maps, dict)
    assert maps["normal"].shape == (64, 64, 3) and maps["height"].shape == (64, 64, 1)
    # aligned map for map: the height file and the albedo's red channel (both = height) agree
    np.testing.assert_allclose(maps["albedo"][..., 0], maps["height"][..., 0], atol=0.01)
    # height16.png holds the same heights as height.exr (it was stretched to 0-1: an audit), so
    # material.json's height_scale_px holds for both
    h16, _ = read_image(folder / "height16.png", kind="data")
    assert np.ptp(maps["height"]) < 0.9  # a grown patch does not span the whole 0-1 range
    np.testing.assert_allclose(h16[..., 0], maps["height"][..., 0], atol=1e-4)
    n = np.linalg.norm(maps["normal"], axis=2)
    assert np.abs(n - 1).max() < 1e-3


def test_paint_with_colour_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    red = tmp_path / "red.png"
    blue = tmp_path / "blue.png"
    write_image(red, noise_rgb(48, seed=4, tint=(0.9, 0.05, 0.05)), kind="color")
    write_image(blue, noise_rgb(48, seed=5, tint=(0.05, 0.05, 0.9)), kind="color")
    labels = np.zeros((64, 96, 3), np.float32)
    labels[:, 48:] = (0.0, 1.0, 0.0)
    lab_png = tmp_path / "labels.png"
    write_image(lab_png, labels, kind="data", bit_depth=8)
    out = tmp_path / "painted.png"
    result = run_json(
        capsys,
        "texture",
        "paint",
        str(lab_png),
        "--exemplar",
        f"#000000={red}",
        "--exemplar",
        f"#00FF00={blue}",
        "-o",
        str(out),
    )
    assert result["written"] == [str(out)]
    img, _ = read_image(out)
    assert img.shape == (64, 96, 3)
    assert (img[:, :32, 0] > img[:, :32, 2]).mean() > 0.95
    assert (img[:, 64:, 2] > img[:, 64:, 0]).mean() > 0.95
    with pytest.raises(InputError, match="#00ff00"):
        run("texture", "paint", str(lab_png), "--exemplar", f"#000000={red}", "-o", str(tmp_path / "x.png"))


def test_paint_with_integer_labels(tmp_path: Path, photo: Path) -> None:
    lab = np.zeros((64, 64, 1), np.float32)
    lab[32:] = 2 / 255.0
    lab_png = tmp_path / "ids.png"
    write_image(lab_png, lab, kind="data", bit_depth=8)
    out = tmp_path / "p.png"
    assert (
        run(
            "texture",
            "paint",
            str(lab_png),
            "--exemplar",
            f"0={photo}",
            "--exemplar",
            f"2={photo}",
            "-o",
            str(out),
        )
        == 0
    )
    assert read_image(out)[0].shape == (64, 64, 3)
    with pytest.raises(InputError, match=r"\[2\]"):
        run("texture", "paint", str(lab_png), "--exemplar", f"0={photo}", "-o", str(tmp_path / "q.png"))


def test_eval_texture_json(tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outdir = tmp_path / "g"
    run("texture", "grow", str(photo), "--size", "96", "-o", str(outdir))
    result = run_json(
        capsys, "eval", "texture", str(outdir / "rock_s0.png"), "--exemplar", str(photo), "--quilting"
    )
    rows = result["results"]
    assert isinstance(rows, dict)
    ours = rows[str(outdir / "rock_s0.png")]
    assert set(ours) == {"seam_score", "look_distance", "verbatim_share"}
    assert ours["seam_score"] < 1.3 and ours["verbatim_share"] <= 0.3
    assert "image_quilting" in rows


def test_cli_errors(tmp_path: Path, photo: Path) -> None:
    with pytest.raises(ImageReadError):
        run("texture", "tile", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png"))
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(ImageReadError, match="material folder"):
        run("texture", "tile", str(empty), "-o", str(tmp_path / "o.png"))
    with pytest.raises(InputError, match="size"):
        run("texture", "grow", str(photo), "--size", "big", "-o", str(tmp_path / "g"))
    with pytest.raises(InputError, match=r"rock\.png: exemplar 48x48 is larger than the output"):
        run("texture", "grow", str(photo), "--size", "32", "-o", str(tmp_path / "g"))  # names the file
    with pytest.raises(InputError, match="KEY=PATH"):
        run("texture", "paint", str(photo), "--exemplar", "nonsense", "-o", str(tmp_path / "p.png"))
    with pytest.raises(MlvfxError):
        run("texture", "paint", str(photo), "--exemplar", "#12345=a.png", "-o", str(tmp_path / "p.png"))


def test_parse_size() -> None:
    assert texture_cli.parse_size("2048x1024") == (1024, 2048)
    assert texture_cli.parse_size("512") == (512, 512)


def test_outputs_and_inputs_are_checked_before_the_synthesis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlvfx.ops.texture as ops

    src = write_image(tmp_path / "rock.png", noise_rgb(32, seed=3), kind="color")
    (tmp_path / "taken.png").write_bytes(b"keep me")

    def never(*_a: object, **_k: object) -> None:
        raise AssertionError("the synthesis ran before the output was checked")

    monkeypatch.setattr(ops, "make_tileable", never)
    with pytest.raises(OutputExistsError, match="already exists"):
        run("texture", "tile", str(src), "-o", str(tmp_path / "taken.png"))
    with pytest.raises(InputError, match="extension"):
        run("texture", "tile", str(src), "-o", str(tmp_path / "no_extension"))
    assert (tmp_path / "taken.png").read_bytes() == b"keep me"
    with pytest.raises(SystemExit) as exit_info:  # an empty -o used to mean the current folder
        run("texture", "tile", str(src), "-o", "")
    assert exit_info.value.code == 2 and "the output path is empty" in capsys.readouterr().err
    tiny = write_image(tmp_path / "one.png", np.zeros((1, 1, 3), np.float32), kind="color")
    with pytest.raises(MlvfxError) as info:
        run("texture", "tile", str(tiny), "-o", str(tmp_path / "t.png"))
    assert str(info.value).startswith(str(tiny)) and "1x1" in str(info.value)


def test_float_images_stay_float(tmp_path: Path) -> None:
    # A 32-bit float TIFF with values above 1 came back as 8-bit sRGB, clipped (an audit found it);
    # grow keeps the source's extension, so the user never chose that.
    hdr = noise_rgb(48, seed=6) * 4.0
    src = tmp_path / "hdr.tif"
    write_image(src, hdr, kind="color", bit_depth=32)
    assert run("texture", "tile", str(src), "-o", str(tmp_path / "t.tif")) == 0
    img, info = read_image(tmp_path / "t.tif")
    assert info.sample == "float32" and img.max() > 1.5
    assert run("texture", "grow", str(src), "--size", "64", "-o", str(tmp_path / "g")) == 0
    assert read_image(tmp_path / "g" / "hdr_s0.tif")[1].sample == "float32"
    half = tmp_path / "half.exr"
    write_image(half, hdr, kind="color", bit_depth=16)
    assert run("texture", "tile", str(half), "-o", str(tmp_path / "h.exr")) == 0
    assert read_image(tmp_path / "h.exr")[1].sample == "float16"  # half stays half, not twice the size
    assert run("texture", "tile", str(src), "-o", str(tmp_path / "t.png")) == 0
    assert read_image(tmp_path / "t.png")[1].bit_depth == 16  # PNG: as deep as it can


def test_half_float_exr_label_maps_hold_the_labels(tmp_path: Path, photo: Path) -> None:
    lab = np.zeros((64, 64, 1), np.float32)
    lab[32:] = 1.0
    lab_exr = tmp_path / "ids.exr"
    write_image(lab_exr, lab, kind="data", bit_depth=16)  # half float: 16 bits, but not /65535
    out = tmp_path / "p.png"
    args = ["texture", "paint", str(lab_exr), "--exemplar", f"0={photo}", "--exemplar", f"1={photo}"]
    assert run(*args, "-o", str(out)) == 0


def test_material_json_keeps_the_normal_convention_and_says_when_paint_tiles(
    tmp_path: Path, material_dir: Path, photo: Path
) -> None:
    meta_file = material_dir / "material.json"
    meta = json.loads(meta_file.read_text())
    meta["normal_convention"] = "directx"
    meta_file.write_text(json.dumps(meta))
    assert run("texture", "tile", str(material_dir), "-o", str(tmp_path / "t")) == 0
    assert json.loads((tmp_path / "t" / "material.json").read_text())["normal_convention"] == "directx"
    lab = np.zeros((48, 48, 1), np.float32)
    lab[24:] = 1 / 255.0
    lab_png = tmp_path / "ids.png"
    write_image(lab_png, lab, kind="data", bit_depth=8)
    for flags, tiles in (([], False), (["--tileable"], True)):
        out = tmp_path / f"p{len(flags)}"
        args = ["texture", "paint", str(lab_png), "--exemplar", f"0={material_dir}"]
        assert run(*args, "--exemplar", f"1={material_dir}", *flags, "-o", str(out)) == 0
        meta = json.loads((out / "material.json").read_text())
        assert meta["tileable"] is tiles and meta["normal_convention"] == "directx"


def test_bad_outputs_and_sizes_fail_before_any_work(
    tmp_path: Path, photo: Path, material_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlvfx.ops.texture as ops

    def no_synthesis(*args: object, **kwargs: object) -> None:
        raise AssertionError("the synthesis ran before the check")

    rgba = tmp_path / "rgba.png"
    write_image(rgba, np.concatenate([noise_rgb(48, seed=7), np.ones((48, 48, 1), np.float32)], 2))
    monkeypatch.setattr(ops, "_run", no_synthesis)
    with pytest.raises(InputError, match="JPEG cannot store alpha"):
        run("texture", "tile", str(rgba), "-o", str(tmp_path / "x.jpg"))
    with pytest.raises(InputError, match=r"cannot write \.bmp"):
        run("texture", "tile", str(photo), "-o", str(tmp_path / "x.bmp"))
    grown = tmp_path / "grown"
    with pytest.raises(InputError, match="larger than the output"):
        run("texture", "grow", str(photo), "--size", "32", "-o", str(grown))
    with pytest.raises(InputError, match="names that folder"):
        run("texture", "grow", str(photo), "--size", "64", "-o", str(tmp_path / "out.png"))
    monkeypatch.setenv("MLVFX_MAX_PIXELS", str(100 * 100))
    with pytest.raises(InputError, match="MLVFX_MAX_PIXELS"):
        run("texture", "grow", str(photo), "--size", "128", "-o", str(grown))
    monkeypatch.delenv("MLVFX_MAX_PIXELS")
    assert not grown.exists() and not (tmp_path / "out.png").exists()  # no empty folders left behind
    # --count 3 into a folder where the second variation's albedo exists: refused before the first
    (grown / "rock_mat_s1").mkdir(parents=True)
    (grown / "rock_mat_s1" / "albedo.png").write_bytes(b"mine")
    with pytest.raises(OutputExistsError):
        run("texture", "grow", str(material_dir), "--size", "64", "--count", "3", "-o", str(grown))
    assert sorted(p.name for p in grown.iterdir()) == ["rock_mat_s1"]
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args(["texture", "grow", str(photo), "--seed", "99999999999999999999", "-o", "g"])
    assert stop.value.code == 2


def test_grow_names_a_folder_given_as_dot_after_the_folder(
    tmp_path: Path, material_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(material_dir)
    assert run("texture", "grow", ".", "--size", "64", "-o", str(tmp_path / "g")) == 0
    assert [p.name for p in (tmp_path / "g").iterdir()] == ["rock_mat_s0"]


def test_material_folders_read_only_the_maps_their_material_json_lists(
    tmp_path: Path, material_dir: Path
) -> None:
    # Overwriting a full set with a smaller one left the old normal/roughness files beside the new
    # albedo and height; a later grow then mixed them into the set. material.json says what belongs.
    out = tmp_path / "m"
    assert run("texture", "tile", str(material_dir), "-o", str(out)) == 0
    small = tmp_path / "small"
    maps, _ = texture_cli.read_maps(material_dir)
    texture_cli.write_maps(
        small,
        {k: maps[k] for k in ("albedo", "height")},
        texture_cli.Source(small, True),
        overwrite=False,
        note="t",
    )
    assert run("texture", "tile", str(small), "-o", str(out), "--overwrite") == 0
    assert (out / "normal.png").exists()  # the old file is still there (nothing is deleted) ...
    maps, _ = texture_cli.read_maps(out)
    assert sorted(maps) == ["albedo", "height"]  # ... but it is not part of the set any more


def test_grey_albedo_and_a_readable_layout_message(tmp_path: Path, photo: Path) -> None:
    grey = tmp_path / "grey_mat"
    grey.mkdir()
    write_image(grey / "albedo.png", noise_rgb(48, seed=8)[..., :1], kind="color")
    maps, _ = texture_cli.read_maps(grey)
    assert maps["albedo"].shape == (48, 48, 3)
    g1 = tmp_path / "g1.png"
    write_image(g1, noise_rgb(48, seed=9)[..., :1], kind="data")
    lab = np.zeros((48, 48, 1), np.float32)
    lab[24:] = 1 / 255.0
    write_image(tmp_path / "ids.png", lab, kind="data", bit_depth=8)
    args = [
        "texture",
        "paint",
        str(tmp_path / "ids.png"),
        "--exemplar",
        f"0={photo}",
        "--exemplar",
        f"1={g1}",
    ]
    with pytest.raises(
        InputError, match=r"holds an image of 1 channel but .*rock\.png holds an image of 3 channels"
    ):
        run(*args, "-o", str(tmp_path / "p.png"))


def test_paint_refuses_exemplars_of_mixed_normal_conventions(tmp_path: Path, material_dir: Path) -> None:
    import shutil

    dx = tmp_path / "dx_mat"
    shutil.copytree(material_dir, dx)
    meta = json.loads((dx / "material.json").read_text())
    meta["normal_convention"] = "directx"
    (dx / "material.json").write_text(json.dumps(meta))
    lab = np.zeros((48, 48, 1), np.float32)
    lab[24:] = 1 / 255.0
    write_image(tmp_path / "ids.png", lab, kind="data", bit_depth=8)
    args = ["texture", "paint", str(tmp_path / "ids.png"), "--exemplar", f"0={material_dir}"]
    with pytest.raises(InputError, match="mix normal conventions"):
        run(*args, "--exemplar", f"1={dx}", "-o", str(tmp_path / "p"))


def test_material_json_keeps_the_height_scale_and_lists_paint_sources(
    tmp_path: Path, material_dir: Path
) -> None:
    # tile and grow copy pixels, so the source's height scale (height.exr x height_scale_px =
    # pixels of relief) still holds; dropping it lost the way back to real relief (scale audit)
    meta_file = material_dir / "material.json"
    meta = json.loads(meta_file.read_text())
    meta.update({"method": "learned", "model": "material@0.8.0", "height_scale_px": 12.5, "relief_px": 0.48})
    meta_file.write_text(json.dumps(meta))
    assert run("texture", "tile", str(material_dir), "-o", str(tmp_path / "t")) == 0
    tiled = json.loads((tmp_path / "t" / "material.json").read_text())
    assert tiled["operation"] == "tile" and tiled["source"] == str(material_dir)
    assert tiled["height_scale_px"] == 12.5 and tiled["model"] == "material@0.8.0"
    assert tiled["method"] == "learned" and "sources" not in tiled
    other = tmp_path / "other_mat"
    shutil.copytree(material_dir, other)
    other_meta = json.loads((other / "material.json").read_text())
    other_meta["height_scale_px"] = 30.0
    (other / "material.json").write_text(json.dumps(other_meta))
    lab = np.zeros((48, 48, 1), np.float32)
    lab[24:] = 1 / 255.0
    lab_png = tmp_path / "ids.png"
    write_image(lab_png, lab, kind="data", bit_depth=8)
    for second, scale in ((material_dir, 12.5), (other, None)):
        out = tmp_path / f"paint_{second.name}"
        args = ["texture", "paint", str(lab_png), "--exemplar", f"0={material_dir}", "--exemplar"]
        assert run(*args, f"1={second}", "-o", str(out)) == 0
        painted = json.loads((out / "material.json").read_text())
        assert painted["sources"] == [str(material_dir), str(second)]
        assert painted.get("height_scale_px") == scale  # kept only where the exemplars agree
        assert painted["model"] == "material@0.8.0"


def test_grow_skip_existing_resumes_an_interrupted_count_run(
    tmp_path: Path, photo: Path, material_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = tmp_path / "full"
    assert run("texture", "grow", str(material_dir), "--size", "48", "--count", "3", "-o", str(full)) == 0
    # A farm job killed after the first variation: its folder is complete, the rest are not there.
    resumed = tmp_path / "resumed"
    shutil.copytree(full / "rock_mat_s0", resumed / "rock_mat_s0")
    mine = (resumed / "rock_mat_s0" / "albedo.png").stat().st_mtime_ns
    with pytest.raises(OutputExistsError):  # without the flag: refused, as before
        run("texture", "grow", str(material_dir), "--size", "48", "--count", "3", "-o", str(resumed))
    out = run_json(
        capsys, "texture", "grow", str(material_dir), "--size", "48", "--count", "3",
        "--skip-existing", "-o", str(resumed),
    )  # fmt: skip
    assert out["skipped"] == [str(resumed / "rock_mat_s0")]
    assert len(out["written"]) == 2 * len(list((full / "rock_mat_s0").iterdir()))  # type: ignore[arg-type]
    assert (resumed / "rock_mat_s0" / "albedo.png").stat().st_mtime_ns == mine  # left alone
    for seed in (1, 2):  # the same variations as the uninterrupted run: each depends on its seed only
        for f in (full / f"rock_mat_s{seed}").iterdir():
            if f.suffix == ".png":
                a, _ = read_image(f)
                b, _ = read_image(resumed / f"rock_mat_s{seed}" / f.name)
                assert np.array_equal(a, b), f.name
    # A half-written variation (a file missing) is not taken for done: refused, naming the folder to
    # delete (not "use --overwrite", which --skip-existing excludes).
    (resumed / "rock_mat_s2" / "material.json").unlink()
    with pytest.raises(InputError, match="delete this folder") as err:
        run(
            "texture", "grow", str(material_dir), "--size", "48", "--count", "3",
            "--skip-existing", "-o", str(resumed),
        )  # fmt: skip
    assert err.value.path == str(resumed / "rock_mat_s2")
    # Single images too, and the flag excludes --overwrite.
    single = tmp_path / "single"
    assert run("texture", "grow", str(photo), "--size", "48", "--count", "2", "-o", str(single)) == 0
    (single / "rock_s1.png").unlink()
    again = ("texture", "grow", str(photo), "--size", "48", "--count", "2", "-o", str(single))
    assert run(*again, "--skip-existing") == 0
    assert sorted(p.name for p in single.iterdir()) == ["rock_s0.png", "rock_s1.png"]
    with pytest.raises(InputError, match="exclude"):
        run(*again, "--skip-existing", "--overwrite")


def test_tile_refuses_a_device_that_is_not_there(
    tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stitching runs on the CPU, so "--device cuda" on a machine without CUDA was silently accepted.
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available"):
        run("texture", "tile", str(photo), "--device", "cuda", "-o", str(tmp_path / "t.png"))
    assert not (tmp_path / "t.png").exists()
