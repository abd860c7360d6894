"""Quality gates from the foundation issue: ruff and mypy are clean on core/ (and ruff on tests, bench)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run bash .ci/setup")
    return found


def test_ruff_is_clean() -> None:
    cmd = [_tool("ruff"), "check", "core", "tests", "bench", "addon", "build_addon.py", "docs/scripts"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean_on_core() -> None:
    proc = subprocess.run([_tool("mypy"), "core"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_core_never_imports_host_modules() -> None:
    offenders = []
    for path in (ROOT / "core" / "mlvfx").rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("import hou", "from hou ", "from hou.")):
                offenders.append(f"{path}: {stripped}")
            if stripped.startswith(("import bpy", "from bpy")) and line.startswith(("import", "from")):
                # bpy may only be imported lazily inside functions (the data factory), never at module level.
                offenders.append(f"{path}: {stripped}")
    assert not offenders, offenders
