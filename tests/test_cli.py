"""The mlvfx command: subcommands, one-line errors, exit codes, --json, batch folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlvfx.cli import main
from mlvfx.io import write_image


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return write_image(tmp_path / "photo.jpg", rng.random((48, 64, 3), dtype=np.float32), kind="color")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_material_writes_a_folder_and_prints_it(photo: Path, tmp_path: Path, capsys) -> None:
    code, out, err = run(capsys, "material", str(photo), "-o", str(tmp_path / "m"), "--maps", "normal,ao")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["ao.png", "material.json", "normal.png"]
    assert str(tmp_path / "m") in out


def test_existing_output_is_refused_then_overwritten(photo: Path, tmp_path: Path, capsys) -> None:
    args = ["material", str(photo), "-o", str(tmp_path / "m"), "--maps", "albedo", "-q"]
    assert run(capsys, *args)[0] == 0
    code, _, err = run(capsys, *args)
    assert code == 1 and err.count("\n") == 1 and "already exists" in err and "--overwrite" in err
    assert run(capsys, *args, "--overwrite")[0] == 0


def test_json_output(photo: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = run(capsys, "material", str(photo), "-o", str(tmp_path / "m"), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["failed"] == 0 and Path(doc["results"][0]["files"]["normal"]).is_file()
    code, out, _ = run(capsys, "info", str(photo), "--json")
    assert json.loads(out)["width"] == 64


def test_info_text(photo: Path, capsys) -> None:
    code, out, _ = run(capsys, "info", str(photo))
    assert code == 0 and "JPEG 64x48, 3 channel(s), 8-bit" in out


def test_bad_input_is_one_line_without_traceback(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    for argv, needle in [
        (["info", str(broken)], "truncated PNG"),
        (["material", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o")], "no such file"),
        (["material", str(broken), "-o", str(tmp_path / "o"), "--maps", "specular"], "unknown map"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code != 0
        assert err.count("\n") == 1 and "Traceback" not in err and needle in err, err


def test_debug_shows_the_traceback(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "--debug", "info", str(tmp_path / "missing.png"))
    assert code == 1 and "Traceback" in err


def test_batch_folder_continues_past_a_bad_file(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    rng = np.random.default_rng(1)
    write_image(folder / "a.png", rng.random((16, 16, 3), dtype=np.float32), kind="color")
    write_image(folder / "c.tif", rng.random((16, 16, 3), dtype=np.float32), kind="color")
    (folder / "b.png").write_bytes(b"not really a png")
    (folder / "notes.txt").write_text("ignored")
    code, _, err = run(capsys, "material", str(folder), "-o", str(tmp_path / "out"), "--maps", "normal")
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "c"]
    assert "b.png" in err and "1 of 3 images failed" in err


def _command_paths(parser, prefix=()):
    import argparse

    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _command_paths(child, (*prefix, name))


def test_help_everywhere(capsys) -> None:
    from mlvfx.cli import build_parser

    paths = list(_command_paths(build_parser()))
    assert ("zoo", "pull") in paths and ("eval", "texture") in paths and ("material",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as exc:
            main([*path, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: mlvfx") and "--json" in out, path


@pytest.mark.parametrize("how", ["script", "module"])
def test_console_script_runs_as_a_real_process(photo: Path, tmp_path: Path, how: str) -> None:
    # ``python -m mlvfx`` (what the Houdini TOP nodes' farm commands run) is the console script.
    exe = Path(sys.executable).with_name("mlvfx")
    cmd = [str(exe)] if exe.exists() and how == "script" else [sys.executable, "-m", "mlvfx"]
    env = {**os.environ, "MLVFX_MAX_PIXELS": "100"}
    proc = subprocess.run([*cmd, "info", str(photo)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("mlvfx: error:") and "larger than the limit" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_demo_writes_a_material_and_a_seamless_tile_and_never_overwrites(tmp_path: Path, capsys) -> None:
    code, out, _ = run(capsys, "demo", "-o", str(tmp_path / "demo"), "--json")
    assert code == 0
    doc = json.loads(out)
    assert Path(doc["output"]) == (tmp_path / "demo").resolve()
    names = sorted(p.name for p in (tmp_path / "demo" / "material").iterdir())
    assert names == [
        "albedo.png",
        "ao.png",
        "height.exr",
        "height16.png",
        "material.json",
        "normal.png",
        "roughness.png",
    ]
    assert (tmp_path / "demo" / "seamless.png").is_file()
    smoke = sorted(p.name for p in (tmp_path / "demo" / "smoke").glob("*.npz"))
    assert len(smoke) == 24 and smoke[0] == "frame_0001.npz" and doc["smoke"]["solver"]
    with np.load(tmp_path / "demo" / "smoke" / "frame_0024.npz") as z:
        assert float(z["density"].sum()) > 0
    # A second run goes to a fresh sibling folder instead of replacing the first.
    code, out, _ = run(capsys, "demo", "-o", str(tmp_path / "demo"), "--json")
    assert code == 0 and Path(json.loads(out)["output"]) == (tmp_path / "demo-1").resolve()


def test_demos_started_together_get_a_folder_each(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from mlvfx.cli import _fresh_folder

    with ThreadPoolExecutor(4) as pool:
        folders = list(pool.map(lambda _: _fresh_folder(tmp_path / "demo"), range(8)))
    assert len(set(folders)) == 8 and all(f.is_dir() for f in folders)


def test_ctrl_c_while_the_command_is_still_importing_is_one_line(monkeypatch, capsys) -> None:
    import types

    from mlvfx import entry

    slow = types.ModuleType("mlvfx.cli")

    def interrupted() -> int:
        raise KeyboardInterrupt

    slow.main = interrupted  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlvfx.cli", slow)
    assert entry.main() == 130
    assert capsys.readouterr().err == "mlvfx: interrupted\n"


def test_quality_high_is_recorded_in_the_material_file(photo: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m"
    args = ["material", str(photo), "-o", str(out), "--maps", "normal", "--quality", "high"]
    code, _, err = run(capsys, *args)
    assert code == 0, err
    doc = json.loads((out / "material.json").read_text())
    assert doc["quality"] == "high" and doc["model"].startswith("material@")


def test_running_out_of_memory_is_one_line_naming_the_image_and_a_batch_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlvfx.ops.material as op

    folder = tmp_path / "in"
    rng = np.random.default_rng(2)
    for name in ("a.png", "big.png", "c.png"):
        write_image(folder / name, rng.random((16, 16, 3), dtype=np.float32), kind="color")
    real = op.material_from_file

    def flaky(src, *args, **kw):  # type: ignore[no-untyped-def]
        if Path(src).name == "big.png":
            raise RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory")
        return real(src, *args, **kw)

    monkeypatch.setattr(op, "material_from_file", flaky)
    code, _, err = run(capsys, "material", str(folder), "-o", str(tmp_path / "out"), "--maps", "normal")
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "c"]
    assert "big.png: out of memory for this image" in err and "1 of 3 images failed" in err
    assert "Traceback" not in err and "internal error" not in err
    code, _, err = run(capsys, "material", str(folder / "big.png"), "-o", str(tmp_path / "one"))
    assert code == 1 and err.count("\n") == 1 and "big.png: out of memory" in err

    def no_memory(args):  # type: ignore[no-untyped-def]
        raise MemoryError

    import mlvfx.cli as cli_mod

    parser = cli_mod.build_parser()
    args = parser.parse_args(["info", str(folder / "a.png")])
    monkeypatch.setattr(cli_mod, "build_parser", lambda: _Fixed(parser, args, no_memory))
    code, _, err = run(capsys, "info", str(folder / "a.png"))
    assert code == 1
    assert err.strip() == "mlvfx: error: out of memory (try a smaller image, size or resolution)"


class _Fixed:
    """A parser whose parse_args returns ``args`` with ``func`` replaced."""

    def __init__(self, parser, args, func) -> None:  # type: ignore[no-untyped-def]
        self.parser, self.args, self.func = parser, args, func

    def parse_args(self, argv=None):  # type: ignore[no-untyped-def]
        self.args.func = self.func
        return self.args


def _images(folder: Path, *names: str) -> None:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_image(folder / name, rng.random((16, 16, 3), dtype=np.float32), kind="color")


def test_batch_output_folders_never_collide_and_hidden_files_are_left_out(tmp_path: Path, capsys) -> None:
    # rock.png and rock.jpg share a stem, so they get their full names; rock_png.jpg would then
    # land in rock_png/ too and silently replace it (an audit found that) unless it is renamed.
    _images(tmp_path / "in", "rock.png", "rock.jpg", "rock_png.jpg", "Slate.png", "slate.jpg")
    (tmp_path / "in" / "._rock.jpg").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    _images(tmp_path / "in", ".hidden.png")
    args = ["material", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--maps", "albedo", "--method"]
    code, out, err = run(capsys, *args, "classical", "--json")
    assert code == 0, err
    doc = json.loads(out)
    folders = {Path(r["input"]).name: Path(r["output"]).name for r in doc["results"]}
    assert folders == {
        "Slate.png": "Slate",
        "rock.jpg": "rock_jpg",
        "rock.png": "rock_png",
        "rock_png.jpg": "rock_png-2",
        "slate.jpg": "slate-2",  # Slate/ and slate/ are one folder on macOS and Windows shares
    }
    for r in doc["results"]:
        meta = json.loads((Path(r["output"]) / "material.json").read_text())
        assert meta["source"] == r["input"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(folders.values())


def test_batch_resumes_with_skip_existing(tmp_path: Path, capsys) -> None:
    _images(tmp_path / "in", "a.png", "b.png", "c.png")
    out_dir = tmp_path / "out"
    base = ["material", str(tmp_path / "in"), "-o", str(out_dir), "--maps", "normal,height", "--method"]
    # A batch stopped after one image: a.png is done.
    assert (
        run(
            capsys,
            "material",
            str(tmp_path / "in" / "a.png"),
            "-o",
            str(out_dir / "a"),
            "-q",
            "--maps",
            "normal,height",
            "--method",
            "classical",
        )[0]
        == 0
    )
    before = (out_dir / "a" / "normal.png").stat().st_mtime_ns
    code, out, err = run(capsys, *base, "classical", "--skip-existing", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["skipped"] == 1 and doc["failed"] == 0
    assert [r.get("skipped", False) for r in doc["results"]] == [True, False, False]
    assert (out_dir / "a" / "normal.png").stat().st_mtime_ns == before  # left alone
    assert all((out_dir / n / "height.exr").is_file() for n in "bc")
    # A folder missing one of the requested maps is not finished: it is refused, not skipped
    # (its other files exist and nothing is replaced without --overwrite).
    (out_dir / "b" / "height16.png").unlink()
    code, out, err = run(capsys, *base, "classical", "--skip-existing", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["skipped"] == 2 and doc["failed"] == 1
    assert doc["results"][1]["error_type"] == "OutputExistsError"
    code, _, err = run(capsys, *base, "classical", "--skip-existing", "--overwrite")
    assert code == 2 and "exclude each other" in err
    # A folder made otherwise (an earlier model, after an upgrade; here another convention) is
    # kept, and said: a resumed batch held two models' maps without a word (an upgrade audit).
    meta = json.loads((out_dir / "a" / "material.json").read_text())
    (out_dir / "a" / "material.json").write_text(json.dumps({**meta, "normal_convention": "directx"}))
    code, out, err = run(capsys, *base, "classical", "--skip-existing", "--json")
    doc = json.loads(out)
    assert doc["results"][0]["differs"] == "normal_convention directx (this run: opengl)"
    assert doc["results"][2]["differs"] is None
    code, out, err = run(capsys, *[a for a in base if a != "--json"], "classical", "--skip-existing")
    assert "a/ kept (--skip-existing) but made with normal_convention directx (this run: opengl)" in err
    code, out, err = run(capsys, *base, "classical", "--skip-existing", "--json", "--relief", "0.05")
    assert json.loads(out)["results"][2]["differs"] == "relief 0.01 (this run: 0.05)"


def test_skip_existing_names_a_folder_an_older_model_made(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MLVFX_ZOO_MIRRORS", str(Path(__file__).parent.parent / "model_zoo"))
    monkeypatch.setenv("MLVFX_OFFLINE", "1")
    monkeypatch.setenv("MLVFX_CACHE_DIR", str(tmp_path / "cache"))
    _images(tmp_path / "in", "a.png")
    out_dir = tmp_path / "out"
    argv = ["material", str(tmp_path / "in"), "-o", str(out_dir), "--maps", "normal", "-q"]
    assert run(capsys, *argv, "--model", "material@0.7.0")[0] == 0
    code, _, err = run(capsys, *argv[:-1], "--skip-existing")
    assert code == 0 and "made with model material@0.7.0 (this run: material@0.8.0)" in err
    code, _, err = run(capsys, *argv[:-1], "--skip-existing", "--model", "material@0.7.0")
    assert code == 0 and "warning" not in err


def test_batch_checks_its_options_once_before_any_work(tmp_path: Path, capsys) -> None:
    _images(tmp_path / "in", "a.png", "b.png")
    code, _, err = run(
        capsys, "material", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--relief", "-1"
    )
    assert code == 2 and err.count("\n") == 1 and "relief" in err
    assert not (tmp_path / "out").exists()


def test_batch_stops_when_the_model_cannot_be_had_and_json_says_what_finished(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlvfx.errors import DownloadError
    from mlvfx.ops import material as material_op

    _images(tmp_path / "in", "a.png", "b.png", "c.png")
    calls: list[str] = []
    real = material_op.material_from_file

    def flaky(path, outdir, *args, **kwargs):
        calls.append(Path(path).name)
        if Path(path).name == "b.png":
            raise DownloadError("material 0.8.0: gave up after 5 tries (HTTP 500)")
        return real(path, outdir, *args, **kwargs)

    monkeypatch.setattr(material_op, "material_from_file", flaky)
    code, out, err = run(
        capsys,
        "material",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "--maps",
        "albedo",
        "--method",
        "classical",
        "--json",
    )
    assert code == 1 and calls == ["a.png", "b.png"]  # c.png is not tried: it would fail the same way
    assert err.strip().splitlines() == ["mlvfx: error: material 0.8.0: gave up after 5 tries (HTTP 500)"]
    doc = json.loads(out)  # one document, with what finished before the stop
    assert [Path(r["input"]).name for r in doc["results"]] == ["a.png"]
    assert doc["stopped"]["error_type"] == "DownloadError"


def test_json_errors_are_a_json_document_too(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    code, out, err = run(capsys, "material", str(broken), "-o", str(tmp_path / "m"), "--json")
    assert code == 1 and "broken.png" in err
    doc = json.loads(out)
    assert doc["exit_code"] == 1 and doc["error_type"] == "ImageReadError" and "broken.png" in doc["error"]


@pytest.mark.parametrize(
    ("name", "code", "said"),
    [("SIGTERM", 143, "terminated")],  # SIGHUP: a real terminal, below
)
def test_sigterm_and_sighup_cancel_like_ctrl_c(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, name: str, code: int, said: str
) -> None:
    # SIGHUP (an SSH session closing on a training run) killed the process without its checkpoint.
    import signal

    import mlvfx.io

    sig = getattr(signal, name)

    def killed(path):
        os.kill(os.getpid(), sig)
        raise AssertionError(f"{name} should have stopped the command")

    monkeypatch.setattr(mlvfx.io, "describe", killed)
    before = signal.getsignal(sig)
    got, out, err = run(capsys, "info", str(tmp_path / "x.png"), "--json")
    assert got == code and err.strip().startswith(f"mlvfx: {said}")
    assert json.loads(out)["error_type"] == "Terminated"
    assert signal.getsignal(sig) == before  # the handler is only there while a command runs


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("mlvfx")
    proc = subprocess.Popen([str(exe), "zoo", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `mlvfx zoo list | head -0`: the reader is gone before the first line
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == b""


def test_a_broken_pipe_elsewhere_is_an_error_not_a_quiet_exit(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlvfx.io

    def broken(path):
        raise BrokenPipeError(32, "Broken pipe")  # a subprocess or socket, not stdout

    monkeypatch.setattr(mlvfx.io, "describe", broken)
    code, _, err = run(capsys, "info", str(tmp_path / "x.png"))
    assert code == 1 and "internal error: BrokenPipeError" in err


def test_progress_in_a_log_is_plain_lines(
    photo: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stderr here is not a terminal (a farm's log): no carriage-return redraws, plain lines, and
    # only every LOG_PROGRESS_SECONDS (0 here, so every update shows).
    import mlvfx.cli

    monkeypatch.setattr(mlvfx.cli, "LOG_PROGRESS_SECONDS", 0.0)
    code, _, err = run(capsys, "material", str(photo), "-o", str(tmp_path / "m"), "--method", "classical")
    assert code == 0 and "\r" not in err
    lines = err.strip().splitlines()
    assert len(lines) >= 2 and all(line.startswith("photo.jpg: ") and "%" in line for line in lines)
    monkeypatch.setattr(mlvfx.cli, "LOG_PROGRESS_SECONDS", 30.0)  # the default: a short job writes none
    code, _, err = run(capsys, "material", str(photo), "-o", str(tmp_path / "n"), "--method", "classical")
    assert code == 0 and err == ""


def test_long_commands_bars_in_a_log_are_plain_lines(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlvfx.cli

    monkeypatch.setattr(mlvfx.cli, "LOG_PROGRESS_SECONDS", 0.0)
    with mlvfx.cli.make_bar(total=4, desc="render", disable=False, unit="render") as bar:
        bar.n = 2
        bar.set_postfix_str("s000001", refresh=False)
        bar.refresh()
        bar.update(1)
    err = capsys.readouterr().err
    assert err.splitlines() == ["render: 2/4 s000001", "render: 3/4 s000001"] and "\r" not in err


def test_batch_names_the_files_it_does_not_read(tmp_path: Path, capsys) -> None:
    # A phone dump holds HEIC and sidecar files: they used to vanish from the report unmentioned.
    _images(tmp_path / "in", "a.png")
    (tmp_path / "in" / "IMG_0001.HEIC").write_bytes(b"\x00")
    (tmp_path / "in" / "a.xmp").write_text("<x/>")
    (tmp_path / "in" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    base = ["material", str(tmp_path / "in"), "--maps", "normal", "--method", "classical"]
    code, _, err = run(capsys, *base, "-o", str(tmp_path / "out"))
    assert code == 0
    assert (
        "not read, 3 file(s)" in err and "IMG_0001.HEIC (.heic)" in err and "gone.jpg (a broken link)" in err
    )
    code, out, _ = run(capsys, *base, "-o", str(tmp_path / "out2"), "--json")
    assert code == 0 and json.loads(out)["not_read"] == [
        "IMG_0001.HEIC (.heic)",
        "a.xmp (.xmp)",
        "gone.jpg (a broken link)",
    ]


def test_info_describes_the_readable_files_when_one_is_bad(photo: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png")
    code, out, err = run(capsys, "info", str(photo), str(tmp_path / "bad.png"))
    assert code == 1 and "photo.jpg: JPEG 64x48" in out and "bad.png" in err and "1 of 2 files" in err
    code, out, _ = run(capsys, "info", "--json", str(photo), str(tmp_path / "bad.png"))
    entries = json.loads(out)
    assert code == 1 and entries[0]["width"] == 64 and entries[1]["error_type"] == "ImageReadError"


def test_a_refused_overwrite_names_the_flag_not_the_python_argument(
    photo: Path, tmp_path: Path, capsys
) -> None:
    code, _, err = run(capsys, "texture", "tile", str(photo), "-o", str(photo))
    assert (
        code == 1 and "already exists (use --overwrite to replace it)" in err and "overwrite=True" not in err
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "-o", ""],
        ["data", "materials", "-o", " "],
        ["train", "material", "--recipe", "r.json", "-o", ""],
        ["eval", "sheet", "--truth", "t", "-o", ""],
        ["smoke", "bench", "--plot", ""],
    ],
)
def test_an_empty_output_path_is_a_usage_error_everywhere(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert "the output path is empty" in capsys.readouterr().err


def test_usage_errors_give_the_json_error_document_too(capsys) -> None:
    # A farm parsing stdout got nothing for argparse's own errors (a bad choice, a missing -o).
    for argv in (["material", "a.png", "--method", "bogus", "--json"], ["--json", "texture", "grow", "x"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        captured = capsys.readouterr()
        doc = json.loads(captured.out)
        assert doc["error_type"] == "UsageError" and doc["exit_code"] == 2
        assert doc["error"] in captured.err  # the same message as on stderr
    with pytest.raises(SystemExit):
        main(["material", "a.png", "--method", "bogus"])
    assert capsys.readouterr().out == ""  # without --json stdout stays empty


def test_quality_high_with_the_classical_method_is_said_to_do_nothing(
    photo: Path, tmp_path: Path, capsys
) -> None:
    code, _, err = run(capsys, "material", str(photo), "-o", str(tmp_path / "m"), "--method", "classical",
                       "--quality", "high")  # fmt: skip
    assert code == 0 and "--quality high applies to the learned method only" in err


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="POSIX terminals only")
def test_a_closed_terminal_stops_a_run_cleanly_with_129(tmp_path: Path) -> None:
    # SIGHUP (an SSH session or terminal closing) killed the process outright; then, handled, the
    # first write to the dead terminal raised EIO and the exit was 1 with a traceback (a review).
    import contextlib
    import signal
    import time

    master, slave = os.openpty()
    out = tmp_path / "shot"
    cmd = [sys.executable, "-m", "mlvfx", "smoke", "run", "--reference", "--dims", "2", "--res", "96",
           "--frames", "4000", "--vdb", "off", "-o", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    os.set_blocking(master, False)
    try:
        deadline = time.monotonic() + 60
        while not (out.is_dir() and any(out.glob("*.npz"))) and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                os.read(master, 65536)  # keep the terminal drained while it starts
            time.sleep(0.05)
        os.close(master)  # the terminal goes away: writes to it now fail with EIO
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=60) == 129
    finally:
        if proc.poll() is None:
            proc.kill()
