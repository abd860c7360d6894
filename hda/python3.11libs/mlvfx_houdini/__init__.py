"""mlvfx_houdini: the thin Houdini layer of mlvfx.

HDA sections (PythonCook, parameter callbacks, menu scripts) and the PDG node types call one
function here each; these functions read parameters and geometry, call one :mod:`mlvfx` core
function and write the result back. The logic worth testing (voxel order, bounds, resampling,
frame caching, command lines) lives in plain functions on numpy arrays and strings:

* :mod:`mlvfx_houdini.volumes`: Houdini voxel order <-> numpy ``(Z, Y, X)``, bounds, splatting;
* :mod:`mlvfx_houdini.smoke`: the ``mlvfx::Sop/smoke_surrogate::1.0`` SOP;
* :mod:`mlvfx_houdini.tops`: the material-from-photo and texture-synthesis TOP nodes;
* :mod:`mlvfx_houdini.cop`: the ``mlvfx::Cop2/material_maps::1.0`` COP2 generator;
* :mod:`mlvfx_houdini.host`: MlvfxError -> ``hou.NodeError``, progress -> ``hou.InterruptableOperation``.

Importing this package imports neither ``hou`` nor torch.
"""

__version__ = "1.0.0"
__all__ = ["__version__"]
