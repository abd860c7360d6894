"""Time Blender's own Mantaflow (inside bpy) baking the canonical 3D plume, against our reference solver.

Issue 7 asks for the smoke solver and surrogate to be timed against Mantaflow baking the same plume
at the same resolution, as a ratio. This script:

1. builds, in a child process that imports ``bpy`` (HOME pointed at a temporary folder), a Mantaflow
   gas domain over the unit cube at ``--res`` cells per axis with a spherical smoke inflow that
   matches ``make_scenario("plume", dims=3, res=N)`` (centre, radius, upward inflow velocity,
   walls open at the top only, no dissipation, vorticity; buoyancy as ``alpha = buoyancy / g`` with
   no heat), one solver step per frame of ``dt`` seconds (``--substeps blender`` keeps Blender's
   adaptive 1-4 steps per frame instead), and bakes ``--frames`` frames into a temporary cache with
   ``bpy.ops.fluid.bake_all()``, timing the wall clock around the bake;
2. runs our reference solver on the same scenario for the same number of steps (``--no-reference``
   skips it) and prints the ratio ``ours ms/step / Mantaflow ms/frame`` (above 1: ours is slower).

The physics match is approximate (Blender's buoyancy, vorticity and emission conventions are not
ours); the shot, resolution, time step and step count are the same, which is what the timing needs.
Blender's bake also writes an OpenVDB cache file per frame; that is part of its cost here.

The known obstacle. In the ``bpy`` *module* (not the Blender binary) a Mantaflow bake aborts with
``AttributeError: 'LevelsetGrid' object has no attribute 'setConst'``. Cause: Mantaflow's Python
types are created when the ``manta`` module is imported, which module-mode bpy does at import time,
before Mantaflow's registry copies each base class's methods into its subclasses (that happens in
``Pb::setup``, on the first solver); so ``LevelsetGrid``, ``FlagGrid``, ``MACGrid``... lack every
inherited method (``setConst``, ``getSizeX``, ...). The workaround here (on unless
``--no-workaround``) adds the missing inherited methods to the subclass types before baking: for
each method of a base type it takes the C method table entry from the base's method descriptor
and makes a new descriptor for the subclass with CPython's ``PyDescr_NewMethod`` (through ctypes),
which is what Mantaflow's own registry would have produced. The script says so on stderr and in
its JSON. Without the workaround, or if the bake still fails, it reports ``"status": "failed"``
with a one-line reason and no Mantaflow number.

    .venv/bin/python bench/smoke_mantaflow.py --res 64 --frames 50 --json /tmp/mantaflow.json

The machine's load average is printed with the numbers: on a shared box, timings are only
comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Mantaflow's class hierarchy in Python type names (the registry's ``Pb::Register(class, pyname,
# base)`` entries of extern/mantaflow/preprocessed/{grid,levelset,shapes,mesh,particle}.h.reg.cpp).
MANTA_PARENTS = {
    "GridBase": "PbClass",
    "Grid_int": "GridBase",
    "Grid_Real": "GridBase",
    "Grid_Vec3": "GridBase",
    "FlagGrid": "Grid_int",
    "MACGrid": "Grid_Vec3",
    "LevelsetGrid": "Grid_Real",
    "Shape": "PbClass",
    "Box": "Shape",
    "Cylinder": "Shape",
    "NullShape": "Shape",
    "Slope": "Shape",
    "Sphere": "Shape",
    "Mesh": "PbClass",
    "MeshDataBase": "PbClass",
    "MeshDataImpl_int": "MeshDataBase",
    "MeshDataImpl_Real": "MeshDataBase",
    "MeshDataImpl_Vec3": "MeshDataBase",
    "ParticleBase": "PbClass",
    "ParticleSystem_BasicParticleData": "ParticleBase",
    "ParticleSystem_ParticleIndexData": "ParticleBase",
    "BasicParticleSystem": "ParticleSystem_BasicParticleData",
    "ParticleIndexSystem": "ParticleSystem_ParticleIndexData",
    "ParticleDataBase": "PbClass",
    "ParticleDataImpl_int": "ParticleDataBase",
    "ParticleDataImpl_Real": "ParticleDataBase",
    "ParticleDataImpl_Vec3": "ParticleDataBase",
}

WORKAROUND_TEXT = (
    "bpy module mode creates Mantaflow's Python types before its registry adds inherited methods, "
    "so e.g. LevelsetGrid lacks Grid<Real>.setConst; the missing inherited methods were added to "
    "the manta subclass types (new method descriptors from the base types' C method tables, via "
    "ctypes PyDescr_NewMethod) before baking"
)


def log(msg: str) -> None:
    print(f"[smoke_mantaflow] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Child process: inside bpy


def patch_manta_inheritance() -> dict[str, Any]:
    """Give Mantaflow's subclass types the inherited methods module-mode bpy leaves out."""
    import ctypes
    import gc

    import manta  # type: ignore[import-not-found]  # bpy registers it in sys.modules

    api = ctypes.pythonapi
    api.PyDescr_NewMethod.restype = ctypes.py_object
    api.PyDescr_NewMethod.argtypes = [ctypes.py_object, ctypes.c_void_p]
    api.PyType_Modified.argtypes = [ctypes.py_object]
    api.PyType_Modified.restype = None
    # PyMethodDescrObject: PyObject_HEAD, d_type, d_name, d_qualname, then PyMethodDef *d_method.
    d_method_offset = object.__basicsize__ + 3 * ctypes.sizeof(ctypes.c_void_p)
    method_descriptor = type(str.join)
    added: dict[str, int] = {}
    for child, parent in MANTA_PARENTS.items():
        ctype = getattr(manta, child, None)
        if not isinstance(ctype, type):
            continue
        # The type's real dict behind the read-only mappingproxy.
        real_dict = gc.get_referents(ctype.__dict__)[0]
        assert isinstance(real_dict, dict)
        count = 0
        base: str | None = parent
        while base is not None:
            btype = getattr(manta, base, None)
            if isinstance(btype, type):
                for name, descr in list(btype.__dict__.items()):
                    if type(descr) is not method_descriptor or name in real_dict:
                        continue
                    method_def = ctypes.c_void_p.from_address(id(descr) + d_method_offset).value
                    # PyMethodDef starts with ``const char *ml_name``: check the layout before use.
                    ml_name = ctypes.c_char_p.from_address(method_def).value if method_def else None
                    if ml_name is None or ml_name.decode() != name:
                        raise RuntimeError(f"unexpected method descriptor layout for {base}.{name}")
                    real_dict[name] = api.PyDescr_NewMethod(ctype, method_def)
                    count += 1
            base = MANTA_PARENTS.get(base)
        api.PyType_Modified(ctype)
        if count:
            added[child] = count
    return added


def set_borders(domain: Any, boundary: Any) -> None:
    """Map our wall spec onto Blender's collision borders (ours: +Y up; Blender: +Z up, Y = 1 - z)."""
    if isinstance(boundary, str):
        specs = {"closed": [True] * 6, "open": [False] * 6, "open_top": [True, True, True, False, True, True]}
        if boundary not in specs:
            raise ValueError(f"unsupported boundary {boundary!r}")
        walls = specs[boundary]
    else:
        walls = [w == "closed" for w in boundary]
    x_low, x_high, y_low, y_high, z_low, z_high = walls
    domain.use_collision_border_left = x_low
    domain.use_collision_border_right = x_high
    domain.use_collision_border_bottom = y_low
    domain.use_collision_border_top = y_high
    domain.use_collision_border_back = z_low  # our z = 0 is Blender's Y = 1
    domain.use_collision_border_front = z_high


def run_worker(cfg: dict[str, Any], out_path: Path) -> int:
    import bpy
    import numpy as np

    result: dict[str, Any] = {"blender": bpy.app.version_string, "status": "failed"}
    workaround: dict[str, Any] | None = None
    if cfg["workaround"]:
        added = patch_manta_inheritance()
        workaround = {"applied": True, "what": WORKAROUND_TEXT, "methods_added": added}
        log(f"WORKAROUND APPLIED: {WORKAROUND_TEXT} ({sum(added.values())} methods on {len(added)} types)")
    result["workaround"] = workaround or {"applied": False}

    res, frames, dt = cfg["res"], cfg["frames"], cfg["dt"]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = 24
    scene.render.fps_base = 24 * dt  # fps / fps_base = 1 / dt
    scene.frame_start, scene.frame_end = 1, frames

    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.5, 0.5, 0.5))
    dom = bpy.context.active_object
    mod = dom.modifiers.new("Fluid", "FLUID")
    mod.fluid_type = "DOMAIN"
    d = mod.domain_settings
    d.domain_type = "GAS"
    d.resolution_max = res
    d.alpha = cfg["buoyancy"] / 9.81  # Blender scales density buoyancy by the scene gravity
    d.beta = 0.0  # our solver has no temperature
    d.vorticity = cfg["vorticity"]
    d.use_dissolve_smoke = False
    d.use_noise = False
    set_borders(d, cfg["boundary"])
    if cfg["substeps"] == "one":
        d.use_adaptive_timesteps = False
        d.timesteps_min = 1
        d.timesteps_max = 1
    d.cache_type = "ALL"
    d.cache_directory = cfg["cache"]
    d.cache_frame_start, d.cache_frame_end = 1, frames

    x, y, z = cfg["center"]  # ours, +Y up
    bpy.ops.mesh.primitive_uv_sphere_add(
        segments=32, ring_count=16, radius=cfg["radius"], location=(x, 1.0 - z, y)
    )
    src = bpy.context.active_object
    fmod = src.modifiers.new("Fluid", "FLUID")
    fmod.fluid_type = "FLOW"
    f = fmod.flow_settings
    f.flow_type = "SMOKE"
    f.flow_behavior = "INFLOW"
    f.flow_source = "MESH"
    f.volume_density = 1.0  # fill the sphere, like our source mask
    f.density = 1.0
    f.use_initial_velocity = True
    vx, vy, vz = cfg["inflow_velocity"]
    f.velocity_coord = (vx, -vz, vy)

    bpy.context.view_layer.objects.active = dom
    t_wall = time.time()
    t0 = time.perf_counter()
    with bpy.context.temp_override(active_object=dom, object=dom):
        ret = bpy.ops.fluid.bake_all()
    seconds = time.perf_counter() - t0
    data_dir = Path(cfg["cache"]) / "data"
    files = sorted(data_dir.glob("fluid_data_*")) if data_dir.is_dir() else []
    result.update({"operator": sorted(ret), "bake_seconds": seconds, "frames_written": len(files)})
    if "FINISHED" not in ret or len(files) != frames:
        result["reason"] = f"bake_all returned {sorted(ret)} and wrote {len(files)} of {frames} frames"
    else:
        mtimes = [p.stat().st_mtime for p in files]
        scene.frame_set(frames)
        dd = dom.evaluated_get(bpy.context.evaluated_depsgraph_get()).modifiers["Fluid"].domain_settings
        density = np.asarray(dd.density_grid[:], dtype=np.float64)
        grid = density.reshape(res, res, res) if density.size == res**3 else None  # (Z up, Y, X)
        result.update(
            {
                "status": "ok",
                "seconds_per_frame": seconds / frames,
                "first_frame_seconds": mtimes[0] - t_wall,
                "seconds_per_frame_after_first": (mtimes[-1] - mtimes[0]) / max(frames - 1, 1),
                "grid_cells": int(density.size),
                "cache_format": d.cache_data_format,
                "substeps": cfg["substeps"],
                "final_density_sum": float(density.sum()),
                "final_density_max": float(density.max()),
            }
        )
        if grid is not None and grid.sum() > 0:
            up = (np.arange(res) + 0.5) / res
            result["final_centroid_up"] = float((grid.sum(axis=(1, 2)) * up).sum() / grid.sum())
        else:
            result["status"] = "failed"
            result["reason"] = f"bake wrote {frames} frames but the final density is empty or not {res}^3"
    out_path.write_text(json.dumps(result, indent=2))
    # Free the fluid before exit: tearing down a live Mantaflow solver at interpreter exit aborts.
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return 0


# ----------------------------------------------------------------------------------------------
# Parent process


def last_error_line(stderr: str) -> str | None:
    """The last ``SomethingError: ...`` (or Mantaflow ``what():``) line of a child's stderr."""
    lines = [ln.strip() for ln in stderr.splitlines()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line):
            return line
    for line in reversed(lines):
        if line.startswith("what():"):
            return line
    return None


def bake_mantaflow(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mlvfx_mantaflow_") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        cfg = {**cfg, "cache": str(Path(tmp) / "cache")}
        out_path = Path(tmp) / "result.json"
        env = {**os.environ, "HOME": str(home)}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(cfg), str(out_path)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"bake did not finish within {timeout:.0f} s"}
        wall = time.perf_counter() - t0
        for line in proc.stderr.splitlines():
            if line.startswith("[smoke_mantaflow]"):
                print(line, file=sys.stderr)
        result: dict[str, Any] = {"status": "failed"}
        if out_path.exists():
            result = json.loads(out_path.read_text())
        if "workaround" not in result:  # the child died before writing its report
            result["workaround"] = {"applied": cfg["workaround"], "note": "child exited before reporting"}
        result["child_returncode"] = proc.returncode
        result["child_wall_seconds"] = wall
        error = last_error_line(proc.stderr)
        if error is not None:
            result["mantaflow_error"] = error
        if result["status"] != "ok":
            result["reason"] = error or result.get("reason") or f"bake child exited with {proc.returncode}"
            result.pop("seconds_per_frame", None)
            tail = "\n".join(proc.stderr.splitlines()[-15:])
            log(f"Mantaflow bake FAILED: {result['reason']}\n--- child stderr (tail) ---\n{tail}")
        return result


def time_reference(res: int, steps: int) -> dict[str, Any]:
    import torch

    from mlvfx.fluids.scenarios import make_scenario, simulate

    sc = make_scenario("plume", 3, res)
    times = []
    t0 = last = time.perf_counter()
    density = None
    for _, density, _ in simulate(sc, steps):
        if density.is_cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    total = time.perf_counter() - t0
    out: dict[str, Any] = {
        "steps": steps,
        "seconds": total,
        "ms_per_step": 1e3 * total / steps,
        "ms_per_step_after_first": 1e3 * sum(times[1:]) / max(len(times) - 1, 1),
        "device": str(density.device) if density is not None else None,
        "dtype": sc.config.dtype,
        "torch_threads": torch.get_num_threads(),
    }
    if density is not None and float(density.sum()) > 0:
        d = density.double().cpu()
        up = (torch.arange(res, dtype=torch.float64) + 0.5) / res
        out["final_centroid_up"] = float((d.sum(dim=(0, 2)) * up).sum() / d.sum())  # (Z, Y up, X)
    return out


def time_surrogate(weights: Path, res: int, steps: int) -> dict[str, Any]:
    """Our learned surrogate through the host stepper (coarse solve + net + full-resolution output)."""
    import torch

    from mlvfx.fluids.scenarios import make_scenario
    from mlvfx.fluids.surrogate import SurrogateStepper, surrogate_from_state
    from mlvfx.zoo import load_state_dict

    net, factor = surrogate_from_state(load_state_dict(weights), source=str(weights))
    sc = make_scenario("plume", 3, res)
    stepper = SurrogateStepper(sc.config, net, factor)
    density = velocity = None
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        density, velocity = stepper.step(density, velocity, sc.sources, sc.obstacles)
        times.append(time.perf_counter() - t)
    return {
        "weights": str(weights),
        "factor": factor,
        "steps": steps,
        "ms_per_step": 1e3 * sum(times) / steps,
        "ms_per_step_after_first": 1e3 * sum(times[1:]) / max(len(times) - 1, 1),
        "torch_threads": torch.get_num_threads(),
        "output_shape": list(density.shape) if density is not None else None,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return run_worker(json.loads(argv[1]), Path(argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res", type=int, default=64, help="cells per axis (default 64)")
    ap.add_argument("--frames", type=int, default=50, help="frames to bake = reference steps (default 50)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--no-reference", action="store_true", help="skip our reference solver")
    ap.add_argument(
        "--no-workaround", action="store_true", help="bake without the module-mode Mantaflow workaround"
    )
    ap.add_argument(
        "--substeps",
        choices=("one", "blender"),
        default="one",
        help="one solver step per frame (default, like ours) or Blender's adaptive 1-4 steps",
    )
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed for the bake")
    ap.add_argument(
        "--surrogate", type=Path, default=None, help="also time this smoke surrogate (.safetensors)"
    )
    args = ap.parse_args(argv)
    if args.res < 8 or args.frames < 1:
        ap.error("--res must be >= 8 and --frames >= 1")

    from mlvfx.fluids.scenarios import make_scenario

    sc = make_scenario("plume", 3, args.res)
    p = sc.params
    cfg = {
        "res": args.res,
        "frames": args.frames,
        "dt": sc.config.dt,
        "center": [p["source_x"][0], p["source_y"], p["source_z"]],
        "radius": p["radius"],
        "inflow_velocity": [0.0, p["inflow"], 0.0],
        "buoyancy": sc.config.buoyancy,
        "vorticity": sc.config.vorticity,
        "boundary": sc.config.boundary,
        "substeps": args.substeps,
        "workaround": not args.no_workaround,
    }
    result: dict[str, Any] = {
        "scenario": "plume",
        "res": args.res,
        "frames": args.frames,
        "setup": cfg,
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }
    log(f"baking Mantaflow plume {args.res}^3 for {args.frames} frames ...")
    manta = bake_mantaflow(cfg, args.timeout)
    result["mantaflow"] = manta
    if manta["status"] == "ok":
        log(f"Mantaflow: {manta['seconds_per_frame']:.3f} s/frame ({manta['bake_seconds']:.1f} s bake)")
    if not args.no_reference:
        log(f"running our reference solver {args.res}^3 for {args.frames} steps ...")
        ref = time_reference(args.res, args.frames)
        result["reference"] = ref
        log(f"reference: {ref['ms_per_step']:.1f} ms/step on {ref['device']} ({ref['dtype']})")
        if manta["status"] == "ok":
            ms_frame = 1e3 * manta["seconds_per_frame"]
            ratio = ref["ms_per_step"] / ms_frame
            after = ref["ms_per_step_after_first"] / (1e3 * manta["seconds_per_frame_after_first"])
            result["ratio_reference_ms_per_step_over_mantaflow_ms_per_frame"] = ratio
            result["ratio_after_first"] = after
            log(
                f"ratio ours ms/step / Mantaflow ms/frame: {ratio:.2f} (after the first step/frame: "
                f"{after:.2f}); above 1 = ours slower"
            )
        else:
            result["ratio_reference_ms_per_step_over_mantaflow_ms_per_frame"] = None
    if args.surrogate is not None:
        log(f"running our surrogate {args.surrogate} at {args.res}^3 for {args.frames} steps ...")
        sur = time_surrogate(args.surrogate, args.res, args.frames)
        result["surrogate"] = sur
        if manta["status"] == "ok":
            ratio = sur["ms_per_step"] / (1e3 * manta["seconds_per_frame"])
            result["ratio_surrogate_ms_per_step_over_mantaflow_ms_per_frame"] = ratio
            log(f"surrogate: {sur['ms_per_step']:.1f} ms/step; ratio to Mantaflow ms/frame: {ratio:.3f}")
    result["load_average_after"] = list(os.getloadavg())
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0 if manta["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
