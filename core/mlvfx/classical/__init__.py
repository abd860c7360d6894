"""Classical material maps: the fast mode and the baseline for every learned model."""

from mlvfx.classical.maps import (
    ao_from_height,
    delight_blur_divide,
    height_from_photo,
    height_to_normal,
    normal_to_height,
    roughness_heuristic,
)

__all__ = [
    "ao_from_height",
    "delight_blur_divide",
    "height_from_photo",
    "height_to_normal",
    "normal_to_height",
    "roughness_heuristic",
]
