"""The one exception hierarchy of mlvfx.

Every error a user can cause (bad input, missing model, network fault) is an ``MlvfxError`` whose
``str()`` is a single line that names the file or object and the problem. Hosts show that line:
the CLI on stderr, Blender through ``Operator.report``, Houdini through ``hou.NodeError``.
"""

from __future__ import annotations

import os


class MlvfxError(Exception):
    """Base class for all errors mlvfx raises on purpose."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class InputError(MlvfxError):
    """An argument or option is invalid."""


class ImageReadError(MlvfxError):
    """An image file is missing, corrupt, truncated, empty or unsupported."""


class ImageWriteError(MlvfxError):
    """An image could not be written."""


class ImageTooLargeError(ImageReadError):
    """An image is larger than the configured pixel limit."""


class InvalidImageDataError(MlvfxError):
    """An array holds NaN or inf, has the wrong shape, or too many channels."""


class OutputExistsError(MlvfxError):
    """An output file exists and overwriting was not asked for."""


class Cancelled(MlvfxError):
    """The user cancelled a long operation."""

    def __init__(self, message: str = "cancelled by the user") -> None:
        super().__init__(message)


class OutOfMemoryError(MlvfxError):
    """The machine ran out of memory (RAM or GPU) for this input."""


def out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure: ``MemoryError``, torch's CPU allocator, CUDA out of memory."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "DefaultCPUAllocator" in text or "out of memory" in text or "can't allocate memory" in text
    )


class SolverError(MlvfxError):
    """A numerical solver failed (a pressure solve that diverged or stalled far from its tolerance)."""


class ModelError(MlvfxError):
    """Base class for model-zoo errors."""


class ModelNotFound(ModelError):
    """The zoo has no model with this id or version."""


class ManifestError(ModelError):
    """The zoo manifest is malformed or unsafe."""


class IntegrityError(ModelError):
    """A downloaded or cached file does not match its size or sha256."""


class OfflineError(ModelError):
    """A model is needed, is not cached, and the network may not be used."""


class DownloadError(ModelError):
    """A download failed after all retries and mirrors."""
