"""The ``mlvfx`` console script.

:func:`mlvfx.cli.main` turns Ctrl-C into one line, but only once it runs: the first fraction of a
second goes to importing numpy, OpenCV and the subcommands, and an interrupt there printed a
Python traceback. This wrapper imports nothing heavy itself and catches that too.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


EXIT_ERROR = 1


def main() -> int:
    import os

    try:
        os.getcwd()
    except FileNotFoundError:  # torch's MKL then aborted with "Cannot load libtorch_cpu.so" (an audit)
        print("mlvfx: error: the current folder no longer exists (cd to one that does)", file=sys.stderr)
        return EXIT_ERROR
    try:
        from mlvfx.cli import main as run
    except KeyboardInterrupt:  # while importing; later ones are handled by cli.main
        print("mlvfx: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ImportError, MemoryError) as exc:  # a memory limit too low to load OpenCV, a broken install
        print(f"mlvfx: error: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return run()
    except KeyboardInterrupt:  # while parsing; later ones are handled by cli.main
        print("mlvfx: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
