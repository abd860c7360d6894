"""The ``mlvfx`` console script.

:func:`mlvfx.cli.main` turns Ctrl-C into one line, but only once it runs: the first fraction of a
second goes to importing numpy, OpenCV and the subcommands, and an interrupt there printed a
Python traceback. This wrapper imports nothing heavy itself and catches that too.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def main() -> int:
    try:
        from mlvfx.cli import main as run

        return run()
    except KeyboardInterrupt:  # while importing or parsing; later ones are handled by cli.main
        print("mlvfx: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
