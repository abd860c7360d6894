"""An extension upgrade as an artist does it: ``addon_upgrade.py ZIP WORK`` installs ZIP over
whatever HOME holds; ``addon_upgrade.py - WORK`` only starts Blender and enables what is installed.
Prints the core Blender then imports and what ``bridge.check_core`` says of it."""

from __future__ import annotations

import importlib
import json
import sys
import types

import bpy
from _extension import MODULE, install

if sys.argv[1] != "-":
    install()
else:
    bpy.ops.preferences.addon_enable(module=MODULE)

import mlvfx  # the wheel the installed extension carries

bridge = importlib.import_module(f"{MODULE}.bridge")
observed: dict[str, object] = {"version": mlvfx.__version__, "file": mlvfx.__file__}
bridge.check_core()  # the core this extension was built with: no complaint
stamp = importlib.import_module(f"{MODULE}._core_version")
observed["stamp"] = stamp.CORE_VERSION
# An extension built with another core than the one loaded (the old zip's core kept) is refused.
sys.modules[f"{MODULE}._core_version"] = types.SimpleNamespace(CORE_VERSION="0.0.1+1.gother")  # type: ignore[assignment]
try:
    bridge.check_core()
    observed["mismatch"] = None
except mlvfx.MlvfxError as exc:
    observed["mismatch"] = str(exc)
finally:
    sys.modules[f"{MODULE}._core_version"] = stamp
print("RESULT " + json.dumps(observed))
