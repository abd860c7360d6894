"""build_addon.py's build version: the commit a build was made from, and its uncommitted changes."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _build_addon():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("build_addon", ROOT / "build_addon.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_addon"] = module
    spec.loader.exec_module(module)
    return module


def test_the_build_version_names_the_commit_and_hashes_changes_by_content(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    b = _build_addon()
    if b._git("rev-parse", "HEAD") is None:
        pytest.skip("not a git checkout")
    version = b.build_version()
    assert re.fullmatch(rf"{b.SEMVER_CORE}\+\d+\.g[0-9a-f]{{10}}(\.d[0-9a-f]{{8}})?", version), version
    # Byte caches never make a build dirty (they do not ship); a new module's contents do, and two
    # contents give two versions (the names alone were hashed: one version for two wheels, a review).
    assert b._shipped("core/mlvfx/x.py") and not b._shipped("core/mlvfx/__pycache__/x.cpython-311.pyc")
    scratch = ROOT / "core" / "mlvfx" / "_build_version_probe.py"
    try:
        scratch.write_text("x = 1\n")
        one = b.build_version()
        scratch.write_text("x = 2\n")
        two = b.build_version()
    finally:
        scratch.unlink(missing_ok=True)
    assert ".d" in one and ".d" in two and one != two
