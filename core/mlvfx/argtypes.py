"""argparse value types the commands share: a bad number is a usage error (exit 2) before any work."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole_number(least: int = 0) -> Callable[[str], int]:
    """A type for whole numbers ``>= least`` (``--steps``: 1, ``--iterations``: 0)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2**32 - 1."""
    value = whole_number(0)(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"a seed must be from 0 to {2**32 - 1}, got {value}")
    return value


def minutes(text: str) -> float:
    """A finite number of minutes >= 0 (a time budget)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of minutes, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of minutes >= 0, got {text}")
    return value
