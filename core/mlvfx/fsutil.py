"""Reading files safely, with nothing heavy imported (the zoo and recipes use it before OpenCV)."""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["read_regular"]


def read_regular(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the regular file ``path``.

    A named pipe given as a photo, manifest or recipe blocked the read forever (a fuzz audit): the
    file is opened without blocking and refused unless it is a regular file.

    Raises:
        IsADirectoryError: it is a folder.
        OSError: it cannot be opened or read, or it is a pipe, socket or device (``strerror``
            "not a regular file (a pipe, socket or device)").
    """
    nonblock = getattr(os, "O_NONBLOCK", 0)
    flags = os.O_RDONLY | nonblock | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a pipe, socket or device)", os.fspath(path))
        if nonblock:  # (Windows has no O_NONBLOCK, and its set_blocking takes pipes only)
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            fd = -1  # the file object closes it
            return fh.read()
    finally:
        if fd >= 0:
            os.close(fd)
