"""mlvfx_houdini passes a strict mypy check against types-houdini (the `hou` stubs), zero errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "hda" / "python3.11libs" / "mlvfx_houdini"


def _tool(name: str) -> Path:
    return Path(sys.executable).with_name(name)


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_hou_stubs_are_installed():
    stubs = [p for p in map(Path, sys.path) if (p / "hou-stubs" / "__init__.pyi").is_file()]
    assert stubs, "types-houdini (the hou-stubs package) is not installed in this environment"


@pytest.mark.slow  # about 5 s with a warm mypy cache, up to a minute cold (it reads torch's stubs)
@pytest.mark.skipif(not _tool("mypy").exists(), reason="mypy is not installed next to the interpreter")
def test_mlvfx_houdini_is_mypy_strict_clean():
    result = subprocess.run(
        [str(_tool("mypy")), "--config-file", "hda/mypy.ini", "--no-error-summary", str(PACKAGE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.slow
@pytest.mark.skipif(not _tool("mypy").exists(), reason="mypy is not installed next to the interpreter")
def test_the_check_really_sees_hou(tmp_path):
    """A wrong use of the hou API must fail, so a green check means the stubs were applied."""
    bad = tmp_path / "bad_hou_use.py"
    bad.write_text(
        "import hou\n\n\n"
        "def f(node: hou.SopNode) -> None:\n"
        "    geo = node.geometry()\n"
        "    geo.clear()  # geometry() is Optional in the stubs\n"
    )
    result = subprocess.run(
        [str(_tool("mypy")), "--config-file", "hda/mypy.ini", "--no-error-summary", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1
    assert "union-attr" in result.stdout and "None" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not _tool("pyright").exists(), reason="pyright is not installed next to the interpreter")
def test_mlvfx_houdini_is_pyright_strict_clean():
    """The same package under pyright's strict mode (config hda/pyrightconfig.json)."""
    result = subprocess.run(
        [str(_tool("pyright")), "--pythonpath", sys.executable, "--outputjson"],
        cwd=REPO / "hda",
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.skip(f"pyright could not run here: {(result.stdout + result.stderr)[-300:]}")
    diagnostics = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert diagnostics == [], diagnostics[:5]
    assert report["summary"]["filesAnalyzed"] >= 6
