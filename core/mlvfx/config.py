"""Settings read from the environment, in one place.

``MLVFX_CACHE_DIR``     model cache folder (default: platformdirs' user cache dir for "mlvfx")
``MLVFX_ZOO_URL``       base URL of the model zoo (overrides the manifest's URLs)
``MLVFX_ZOO_MIRRORS``   local mirror folders, separated by ``os.pathsep``
``MLVFX_ZOO_MANIFEST``  a zoo manifest file to use instead of the built-in one (read by mlvfx.zoo)
``MLVFX_OFFLINE``       "1" forbids all network access
``MLVFX_ZOO_TIMEOUT``   seconds a zoo download may wait for the next bytes before the attempt is
                        dropped (default 60); a URL is given up after 5 such attempts in a row
``MLVFX_ZOO_MIN_RATE``  bytes per second a zoo download must average over each timeout window
                        before the attempt is cut and resumed (default 1024; 0 turns it off)
``MLVFX_DEVICE``        "cpu", "cuda", "cuda:1", "mps" (default: CUDA when present, else CPU)
``MLVFX_THREADS``       torch intra-op threads (default: torch's own choice)
``MLVFX_MAX_PIXELS``    largest image accepted, in pixels (default 16384 * 16384)

Nothing is read at import time: each function looks at the environment when called, so hosts
can change a setting (Blender preferences, a Houdini parameter) without restarting.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from mlvfx.errors import InputError

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_PIXELS = 16384 * 16384
_TRUE = {"1", "true", "yes", "on"}


_FALSE = {"", "0", "false", "no", "off"}


def env_flag(name: str, strict: bool = True) -> bool:
    """An on/off environment variable: 1/true/yes/on or 0/false/no/off (any case), unset = off.
    Not ``strict`` (where an error cannot be raised, as while reporting one), other values are off.

    Raises:
        InputError: another value, naming the variable: ``MLVFX_OFFLINE=2`` or ``enabled`` meant
            online before, and a farm that meant offline went to the network (an audit).
    """
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE or not strict:
        return False
    raise InputError(f"{name} must be 1 or 0 (or true/false, yes/no, on/off), got {raw!r}")


def offline() -> bool:
    return env_flag("MLVFX_OFFLINE")


def cache_dir() -> Path:
    override = os.environ.get("MLVFX_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    try:
        return Path(platformdirs.user_cache_dir("mlvfx"))
    except RuntimeError:  # no HOME and a uid without a passwd entry (a container): an internal error before
        raise InputError("no home folder for the model cache: set MLVFX_CACHE_DIR (or HOME)") from None


def zoo_url() -> str | None:
    return os.environ.get("MLVFX_ZOO_URL") or None


def zoo_mirrors() -> list[Path]:
    raw = os.environ.get("MLVFX_ZOO_MIRRORS", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def max_pixels() -> int:
    raw = os.environ.get("MLVFX_MAX_PIXELS")
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"MLVFX_MAX_PIXELS must be an integer, got {raw!r}") from None
    if value <= 0:
        raise InputError(f"MLVFX_MAX_PIXELS must be positive, got {value}")
    return value


def zoo_timeout() -> float | None:
    """``MLVFX_ZOO_TIMEOUT`` in seconds, or None when unset.

    Raises:
        InputError: not a finite number > 0.
    """
    raw = os.environ.get("MLVFX_ZOO_TIMEOUT")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"MLVFX_ZOO_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"MLVFX_ZOO_TIMEOUT must be a positive number of seconds, got {raw!r}")
    return value


def zoo_min_rate() -> float | None:
    """``MLVFX_ZOO_MIN_RATE`` in bytes per second, or None when unset.

    Raises:
        InputError: not a finite number >= 0.
    """
    raw = os.environ.get("MLVFX_ZOO_MIN_RATE")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"MLVFX_ZOO_MIN_RATE must be a number of bytes per second, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InputError(f"MLVFX_ZOO_MIN_RATE must be a number of bytes per second >= 0, got {raw!r}")
    return value


def threads() -> int | None:
    raw = os.environ.get("MLVFX_THREADS")
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"MLVFX_THREADS must be an integer, got {raw!r}") from None
    if value <= 0:
        raise InputError(f"MLVFX_THREADS must be positive, got {value}")
    return value


_thread_counts: dict[str, int | None] = {"original": None, "applied": None}
"""torch's thread count before ``MLVFX_THREADS`` was first applied in this process, and the count
applied since (None: never applied)."""
_thread_lock = threading.Lock()


def torch_device(requested: str | None = None) -> torch.device:
    """The torch device to run on: ``requested``, else ``MLVFX_DEVICE``, else CUDA if present, else CPU."""
    import torch

    n = threads()
    with _thread_lock:
        # torch's count is per thread, and a thread starts with the last count set anywhere. So
        # the count before MLVFX_THREADS is kept for the process, and a thread still at the
        # applied count gets it back once the setting is cleared (a host preference set to
        # automatic again), whichever thread applied it. Counts set by others stay alone.
        if n is not None:
            if _thread_counts["original"] is None:
                _thread_counts["original"] = torch.get_num_threads()
            _thread_counts["applied"] = n
            if torch.get_num_threads() != n:
                torch.set_num_threads(n)
        elif _thread_counts["original"] is not None and torch.get_num_threads() == _thread_counts["applied"]:
            torch.set_num_threads(_thread_counts["original"])
    name = requested or os.environ.get("MLVFX_DEVICE") or ""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (use cpu, cuda, cuda:N or mps)") from None
    if device.type not in ("cpu", "cuda", "mps"):  # xpu, meta, vulkan...: nothing mlvfx runs on
        raise InputError(f"unsupported device {name!r} (use cpu, cuda, cuda:N or mps)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {name!r} requested but MPS is not available")
    return device
