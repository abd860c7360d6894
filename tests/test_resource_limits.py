"""Full disks, file-size limits and a deleted working folder, caused for real in a subprocess
(stop 28's resource-exhaustion audit): one clear line, and nothing already written is lost."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")

SAMPLE = Path(__file__).resolve().parents[1] / "core" / "mlvfx" / "samples" / "sample_photo.png"
LIMITED = """
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
"""


def _photo_folder(tmp_path: Path) -> Path:
    """A folder of two copies of the sample photo (a batch)."""
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(SAMPLE, photos / name)
    return photos


def run_limited(code: str, limit: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh Python whose writes fail past ``limit`` bytes per file."""
    script = LIMITED.format(limit=limit) + textwrap.dedent(code)
    cmd = [sys.executable, "-c", script]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd, env=dict(os.environ))


def test_a_vdb_cut_short_by_a_full_disk_is_an_error_and_the_earlier_frame_stays(tmp_path: Path) -> None:
    from mlvfx.io.volume import openvdb_module

    if openvdb_module() is None:
        pytest.skip("no openvdb module")
    code = """
    import numpy as np
    from mlvfx.errors import ImageWriteError
    from mlvfx.io.volume import write_vdb
    d = np.random.default_rng(0).random((32, 32, 32)).astype(np.float32)
    try:
        write_vdb("frame.vdb", {"density": d * 2}, voxel_size=1 / 32, overwrite=True)
    except ImageWriteError as exc:
        print("ERROR", exc)
    """
    import numpy as np

    from mlvfx.io.volume import write_vdb

    good = np.random.default_rng(1).random((32, 32, 32)).astype(np.float32)
    write_vdb(tmp_path / "frame.vdb", {"density": good}, voxel_size=1 / 32)
    before = (tmp_path / "frame.vdb").read_bytes()
    proc = run_limited(code, 50_000, tmp_path)
    said = "ERROR frame.vdb: cannot write OpenVDB: the file written (50000 bytes) does not read back"
    assert said in proc.stdout, proc.stdout + proc.stderr
    assert (tmp_path / "frame.vdb").read_bytes() == before  # the good frame was replaced, exit 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.vdb"]  # no temp file left


def test_a_deleted_working_folder_is_one_line(tmp_path: Path) -> None:
    # torch's MKL aborted with "Cannot load libtorch_cpu.so" and exit 2 (an audit)
    gone = tmp_path / "gone"
    gone.mkdir()
    code = f"import os; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); "
    code += "from mlvfx.entry import main; raise SystemExit(main())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "mlvfx: error: the current folder no longer exists (cd to one that does)"


def test_a_checkpoint_the_disk_cannot_take_is_one_line_and_the_previous_one_stays(tmp_path: Path) -> None:
    # torch's writer says a full disk as "RuntimeError: [enforce fail at inline_container.cc...]",
    # which came out as an internal error without the file or what to do (an audit).
    import torch

    from mlvfx.train.runlog import save_checkpoint

    save_checkpoint(tmp_path / "checkpoint.pt", {"w": torch.zeros(10)})
    before = (tmp_path / "checkpoint.pt").read_bytes()
    code = """
    import torch
    from mlvfx.errors import ImageWriteError
    from mlvfx.train.runlog import save_checkpoint
    from pathlib import Path
    try:
        save_checkpoint(Path("checkpoint.pt"), {"w": torch.zeros(100_000)})
    except ImageWriteError as exc:
        print("ERROR", exc)
    """
    proc = run_limited(code, 50_000, tmp_path)
    assert "ERROR checkpoint.pt: cannot write the checkpoint:" in proc.stdout, proc.stdout + proc.stderr
    assert "the previous checkpoint is kept" in proc.stdout and "--resume" in proc.stdout
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    # The first checkpoint of an --overwrite run: nothing to resume; the earlier run is set aside
    # (the advice said --resume, which then found no checkpoint; a review).
    from mlvfx.train.runlog import check_run_folder

    check_run_folder(tmp_path, resume=False, overwrite=True)
    proc = run_limited(code, 50_000, tmp_path)
    assert "this run has no checkpoint yet; the earlier run is in" in proc.stdout, proc.stdout + proc.stderr
    assert "--resume" not in proc.stdout
    assert (tmp_path / ".overwritten" / "checkpoint.pt").read_bytes() == before


def test_a_file_where_a_folder_should_be_is_named(tmp_path: Path) -> None:
    from mlvfx.cli import main

    (tmp_path / "afile").write_text("")
    photo = SAMPLE
    proc = subprocess.run(
        [sys.executable, "-m", "mlvfx", "texture", "tile", str(photo), "-o", "afile/t.png"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == "mlvfx: error: afile/t.png: cannot create output: afile is a file, not a folder"
    )
    assert main(["demo", "-o", str(tmp_path / "afile" / "demo"), "--quiet"]) == 1


def test_exr_goes_through_the_temp_folder_named_by_tmpdir_and_fails_in_one_line(tmp_path: Path) -> None:
    # OpenCV's in-memory EXR codec wrote /tmp/__opencv_temp.* whatever TMPDIR said, printed its
    # assertion over three lines when that failed and left the file behind (an audit).
    temp = tmp_path / "temp"
    temp.mkdir()
    code = f"""
    import os, sys, tempfile
    os.environ["TMPDIR"] = {str(temp)!r}
    tempfile.tempdir = None
    from mlvfx.entry import main
    sys.argv = ["mlvfx", "material", {str(SAMPLE)!r}, "-o", "out", "--method", "classical"]
    sys.argv += ["--maps", "height"]
    raise SystemExit(main())
    """
    proc = run_limited(code, 20_000, tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlvfx: error: out/height.exr: cannot encode EXR: no room")
    assert f"in {temp} " in lines[0] and list(temp.iterdir()) == []  # nothing left in the temp folder
    assert not (tmp_path / "out" / "height.exr").exists()


def test_a_full_model_cache_uses_the_mirror_copy_in_place(tmp_path: Path) -> None:
    # The copy into a full cache failed and the model was refused, with advice to set up the
    # mirror that was already set up (an audit). A good mirror copy is used where it is.
    zoo = Path(__file__).resolve().parents[1] / "model_zoo"
    code = f"""
    import os
    os.environ.update(MLVFX_CACHE_DIR="cache", MLVFX_ZOO_MIRRORS={str(zoo)!r}, MLVFX_OFFLINE="1")
    os.environ.update(XDG_CACHE_HOME=os.path.abspath("xdg"), HOME=os.path.abspath("."))
    from mlvfx import zoo
    path = zoo.fetch("smoke3d", fmt="safetensors")
    print("USED", path)
    """
    proc = run_limited(code, 100_000, tmp_path)
    assert f"USED {zoo}" in proc.stdout, proc.stdout + proc.stderr
    assert "has no room" in proc.stderr and "used from the mirror in place" in proc.stderr
    blobs = tmp_path / "cache" / "zoo" / "sha256"
    assert not blobs.exists() or not [p for p in blobs.iterdir() if p.stat().st_size > 0]


def test_a_batch_that_cannot_write_its_output_stops_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every image was computed, then refused one by one (an audit: hours of a learned batch).
    from mlvfx.cli import main
    from mlvfx.ops import material as material_op

    photos = _photo_folder(tmp_path)
    (tmp_path / "afile").write_text("")
    computed: list[object] = []
    monkeypatch.setattr(material_op, "material", lambda *a, **k: computed.append(a))
    code = main(["material", str(photos), "-o", str(tmp_path / "afile" / "out"), "--method", "classical"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and computed == [] and len(err) == 1
    said = f"cannot create the output folder: {tmp_path / 'afile'} is a file, not a folder"
    assert err[0].endswith(said)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_named_pipe_given_as_a_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    # Reading a FIFO given as a photo, manifest or recipe blocked forever (a fuzz audit). In a
    # subprocess with a timeout: a regression must fail here, not hang the suite.
    for name in ("photo.png", "manifest.json", "w.safetensors"):
        os.mkfifo(tmp_path / name)
    code = """
    from mlvfx.errors import MlvfxError
    from mlvfx.io import read_image
    from mlvfx.train.smoke import load_smoke_recipe
    from mlvfx.zoo.manifest import load_manifest
    from mlvfx.zoo import load_state_dict
    reads = [(read_image, "photo.png"), (load_manifest, "manifest.json"), (load_state_dict, "w.safetensors")]
    for read, name in [*reads, (load_smoke_recipe, "manifest.json")]:
        try:
            read(name)
        except MlvfxError as exc:
            print("REFUSED", exc)
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REFUSED")]
    assert len(lines) == 4 and all("not a regular file" in ln for ln in lines), proc.stdout + proc.stderr
    assert "photo.png: cannot read: not a regular file" in lines[0]
    from mlvfx.errors import InputError
    from mlvfx.fluids import cli as smoke_cli

    parser = argparse.ArgumentParser()
    smoke_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["smoke", "run", "--weights", str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "s")]
    )
    args.quiet = args.json = True
    with pytest.raises(InputError, match=r"surrogate weights is not a regular file"):  # not "not found"
        args.func(args)


def test_a_link_to_an_unmounted_disk_is_named_as_such(tmp_path: Path) -> None:
    from mlvfx.errors import ImageWriteError
    from mlvfx.io.atomic import make_folder

    (tmp_path / "shots").symlink_to(tmp_path / "not_mounted" / "shots")
    with pytest.raises(ImageWriteError, match=r"shots links to .*not_mounted/shots, which does not exist"):
        make_folder(tmp_path / "shots" / "a")


def test_a_finished_batch_does_not_check_its_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A finished batch resumed with --skip-existing on a read-only disk failed the write check it
    # no longer needed (a review).
    from mlvfx.cli import main
    from mlvfx.io import atomic

    photos = _photo_folder(tmp_path)
    argv = ["material", str(photos), "-o", str(tmp_path / "out"), "--method", "classical", "-q"]
    assert main(argv) == 0

    def read_only(folder: Path, what: str = "") -> None:
        raise AssertionError("checked")

    monkeypatch.setattr(atomic, "check_folder_writable", read_only)
    assert main([*argv, "--skip-existing"]) == 0
