"""Image and volume I/O with colour management, atomic writes and typed errors."""

from mlvfx.io.atomic import write_bytes_atomic
from mlvfx.io.image import (
    ImageInfo,
    check_image,
    describe,
    encode_image,
    is_image_file,
    read_image,
    write_image,
)

__all__ = [
    "ImageInfo",
    "check_image",
    "describe",
    "encode_image",
    "is_image_file",
    "read_image",
    "write_bytes_atomic",
    "write_image",
]
