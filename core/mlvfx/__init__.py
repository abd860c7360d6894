"""mlvfx: machine-learning operators for visual-effects and texture artists.

The core package is host-agnostic: it never imports ``bpy`` or ``hou``. Hosts (the Blender
extension, the Houdini package, the CLI) convert their data to numpy, call one function here and
write the result back.

Importing ``mlvfx`` does no I/O and does not import torch; submodules load what they need.
"""

from mlvfx.errors import MlvfxError

__version__ = "0.1.0"
__all__ = ["MlvfxError", "__version__"]
