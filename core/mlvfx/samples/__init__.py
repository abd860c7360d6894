"""Sample data shipped with the package (rendered by mlvfx's own data factory)."""

from __future__ import annotations

from pathlib import Path

from mlvfx.errors import ImageReadError

_HERE = Path(__file__).parent


def sample_photo() -> Path:
    """Path of the bundled sample photo (a Cycles render of a relief material, sRGB PNG)."""
    path = _HERE / "sample_photo.png"
    if not path.is_file():
        raise ImageReadError("bundled sample photo is missing from this installation", path)
    return path
