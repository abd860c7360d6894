"""Shared fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shipped_extension_run(
    script: str, *args: str, env: dict[str, str], timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``tests/bpy_scripts/SCRIPT ARGS...`` in a fresh bpy process that sees the extension as an
    artist's Blender would: ``python -S`` runs no ``.pth`` file, so this checkout's editable core is
    not importable, and ``mlvfx`` comes from the wheel inside the extension zip. The venv's
    packages (bpy, torch, ...) come in through PYTHONPATH. The model zoo is reached the way a studio
    reaches it offline: the checkout's ``model_zoo/`` as a mirror.
    """
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    env = {
        **env,
        "PYTHONPATH": site,
        "MLVFX_ZOO_MIRRORS": str(ROOT / "model_zoo"),
        "MLVFX_SHIPPED_ONLY": "1",  # _extension.install() checks where mlvfx was imported from
    }
    return subprocess.run(
        [sys.executable, "-S", str(ROOT / "tests" / "bpy_scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module's tests with one torch thread: on tiny grids, on a shared 2-core CI box, one
    thread is several times faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Blender extension built once per session with build_addon.py (the add-on test files share it)."""
    pytest.importorskip("bpy")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "build_addon.py"),
            "--core-only",
            "--platforms",
            "linux-x64",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    zips = sorted(out.glob("*.zip"))
    assert len(zips) == 1, zips
    return zips[0]


@pytest.fixture
def run_in_blender(extension_zip: Path, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Run ``tests/bpy_scripts/SCRIPT EXTENSION_ZIP WORKDIR [ARGS...]`` in a fresh bpy process.

    HOME is a temporary folder (the extension installs under it, not into the user's Blender),
    and so is the model cache. The script prints one ``RESULT {json}`` line; that is returned.
    """

    def run(script: str, *args: str, timeout: int = 600) -> dict[str, Any]:
        home, work = tmp_path / "home", tmp_path / "work"
        home.mkdir(exist_ok=True)
        work.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home), "MLVFX_CACHE_DIR": str(tmp_path / "cache")}
        proc = shipped_extension_run(script, str(extension_zip), str(work), *args, env=env, timeout=timeout)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        # Blender's false "Could not find grid with name vel" error after bakes (audit, stop 26)
        assert "Could not find grid" not in proc.stdout + proc.stderr
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
        result: dict[str, Any] = json.loads(line[len("RESULT ") :])
        return result

    return run
