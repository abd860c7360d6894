"""``python -m mlvfx``: the same as the ``mlvfx`` console script (Ctrl-C while importing included)."""

import sys

from mlvfx.entry import main

sys.exit(main())
