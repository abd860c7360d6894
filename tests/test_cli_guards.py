"""Behaviours a mutation audit (stop 27) found unprotected by any test: command-line behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_fluids_cli import _run as _smoke

from mlvfx.errors import OutputExistsError


def test_smoke_run_refuses_any_existing_frame_before_writing_one(tmp_path: Path) -> None:
    """Without --overwrite, a later frame already there must stop the run before it writes the
    earlier ones: otherwise the folder ends up with new frames 1-2 beside an old frame 3."""
    out = tmp_path / "shot"
    out.mkdir()
    (out / "frame_0003.npz").write_bytes(b"an earlier shot's frame")
    argv = ["smoke", "run", "--scenario", "plume", "--dims", "2", "--res", "16", "--frames", "4",
            "--reference", "--vdb", "off", "-o", str(out)]  # fmt: skip
    with pytest.raises(OutputExistsError, match=r"frame_0003\.npz"):
        _smoke(argv)
    assert sorted(p.name for p in out.iterdir()) == ["frame_0003.npz"]


def test_an_unexpected_exception_is_one_line_without_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    """README: errors are one line; tracebacks only with --debug. The existing tests raise only
    MlvfxErrors, so the last line of defence (_internal_error) was not covered."""
    import mlvfx.io
    from mlvfx.cli import main

    def broken(path: object) -> None:
        raise ValueError("something no one expected\nsecond line")

    monkeypatch.setattr(mlvfx.io, "describe", broken)
    monkeypatch.delenv("MLVFX_DEBUG", raising=False)
    code = main(["info", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "internal error: ValueError: something no one expected" in err
