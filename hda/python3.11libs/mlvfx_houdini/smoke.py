"""The ``mlvfx::Sop/smoke_surrogate::1.0`` SOP: advance smoke by one frame per cook.

Inputs (all optional):

0. the state: volumes ``density`` and ``vel.x``/``vel.y``/``vel.z`` (in a SOP Solver, wire
   ``Prev_Frame`` here). Its density volume also defines the grid; without one, the grid comes
   from the Domain parameters.
1. the emitter: a volume named ``source`` (or ``density``), an SDF (``surface`` or any volume
   flagged SDF: its inside emits), or points whose ``pscale`` is the emission radius.
2. the collision: an SDF (inside is solid) or a fog volume (>= 0.5 is solid).

Modes:

* **solver** (``mode = 0``): each cook reads input 0 and advances it by one frame
  (``substeps`` steps of ``1 / (fps * substeps)`` s). Use it inside a SOP Solver.
* **standalone** (``mode = 1``): the node simulates from ``start_frame`` to the current frame
  (frames after ``end_frame`` show the end frame) and keeps every frame in a cache (memory, plus
  ``.npz`` files in ``cache_dir`` when set), so scrubbing back is free and scrubbing forward only
  simulates the frames not cached yet. The "Reset Cache" button forgets the cache (its files in
  ``cache_dir`` too); the cache also resets when a parameter that changes the result changes.

Output: scalar volumes ``density``, ``vel.x``, ``vel.y``, ``vel.z`` on the grid's box. A grid with
one voxel along Z is simulated in 2D.

The model parameter picks the stepper: ``reference`` is the reference solver of
:mod:`mlvfx.fluids.reference`; other ids come from the model zoo (task ``smoke*``) and are run by
:func:`make_stepper`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from mlvfx_houdini._core import require_core

require_core("hou")  # one line on the node, not a traceback, when the venv is missing

from mlvfx.errors import InputError, ModelNotFound
from mlvfx.progress import CancelToken, ProgressFn, check_cancel, report, scaled
from mlvfx_houdini.volumes import (
    Bounds,
    FloatGrid,
    cubic_cell_size,
    resample_nearest,
    splat_spheres,
    split_velocity,
    stack_velocity,
)

if TYPE_CHECKING:
    import hou

    from mlvfx.fluids.reference import SmokeConfig, Source

__all__ = [
    "PARM_NAMES",
    "Domain",
    "FrameInputs",
    "SmokeParms",
    "SmokeSession",
    "StepperLike",
    "collision_mask",
    "cook",
    "domain_from_parms",
    "emitter_mask",
    "make_stepper",
    "model_menu",
    "on_deleted",
    "reset",
]

REFERENCE = "reference"
AUTO = "auto"
"""Model token: the zoo's surrogate for the grid's size (``mlvfx.fluids.surrogate.default_model``)."""
MODES = ("solver", "standalone")
BOUNDARIES = ("open_top", "closed", "open")
MAX_SUBSTEPS = 64
MIN_CELLS = 4
SURROGATE_FACTOR = 4
"""Coarsening factor of the zoo's smoke surrogates: a grid built for one is a multiple of it per axis."""
FAR = 1e30  # "far outside" for an SDF resampled beyond its box
MEMORY_BUDGET = 2 << 30  # bytes of frames all standalone nodes keep in memory (each one's newest stays)

# Every parameter the Python reads; tests/test_hou_hda.py checks each exists in the DialogScript.
PARM_NAMES = (
    "mode",
    "model",
    "substeps",
    "buoyancy",
    "density_dissipation",
    "velocity_dissipation",
    "boundary",
    "source_rate",
    "source_vel",
    "emit_radius",
    "divisions",
    "center",
    "size",
    "start_frame",
    "end_frame",
    "cache_dir",
)

State = tuple[FloatGrid, FloatGrid]  # density (Z, Y, X), velocity (Z, Y, X, 3)


class StepperLike(Protocol):
    """What the SOP needs from a smoke model: one step on numpy arrays (see ``Stepper.step``)."""

    def step(
        self,
        density: npt.NDArray[Any] | None,
        velocity: npt.NDArray[Any] | None,
        sources: Sequence[Source] | None = None,
        obstacles: npt.NDArray[Any] | None = None,
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]: ...


@dataclass(frozen=True)
class SmokeParms:
    """The node's parameters, validated."""

    mode: str = "solver"
    model: str = REFERENCE
    substeps: int = 1
    buoyancy: float = 1.0
    density_dissipation: float = 0.0
    velocity_dissipation: float = 0.0
    boundary: str = "open_top"
    source_rate: float = 1.0
    source_vel: tuple[float, float, float] = (0.0, 0.0, 0.0)
    emit_radius: float = 0.05
    divisions: int = 32
    center: tuple[float, float, float] = (0.0, 0.5, 0.0)
    size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    start_frame: int = 1
    end_frame: int = 240
    cache_dir: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.model:
            raise InputError("choose a model (reference or a zoo smoke model)")
        if not 1 <= self.substeps <= MAX_SUBSTEPS:
            raise InputError(f"substeps must be in 1..{MAX_SUBSTEPS}, got {self.substeps}")
        if self.boundary not in BOUNDARIES:
            raise InputError(f"boundary must be one of {', '.join(BOUNDARIES)}, got {self.boundary!r}")
        for name in ("density_dissipation", "velocity_dissipation", "source_rate", "emit_radius"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InputError(f"{name} must be a finite number >= 0, got {value}")
        if not math.isfinite(self.buoyancy):
            raise InputError(f"buoyancy must be finite, got {self.buoyancy}")
        if self.divisions < MIN_CELLS:
            raise InputError(f"divisions must be at least {MIN_CELLS}, got {self.divisions}")
        if self.end_frame < self.start_frame:
            raise InputError(f"end frame {self.end_frame} is before start frame {self.start_frame}")
        if not all(math.isfinite(v) for v in (*self.source_vel, *self.center, *self.size)):
            raise InputError("source velocity, domain center and size must be finite")

    @staticmethod
    def read(value: Callable[[str], object], vector: Callable[[str], Sequence[object]]) -> SmokeParms:
        """Build from parameter getters: ``value(name)`` (``evalParm``) and ``vector(name)``.

        Menus arrive as their token strings or as their index; both are accepted.
        """

        def text(name: str, choices: Sequence[str] | None = None) -> str:
            raw = value(name)
            if choices is not None and isinstance(raw, int) and not isinstance(raw, bool):
                if not 0 <= raw < len(choices):
                    raise InputError(f"{name}: menu index {raw} out of range")
                return choices[raw]
            return str(raw).strip()

        def num(name: str) -> float:
            raw = value(name)
            if not isinstance(raw, int | float):
                raise InputError(f"{name} must be a number, got {raw!r}")
            return float(raw)

        def vec3(name: str) -> tuple[float, float, float]:
            raw = [float(v) for v in vector(name) if isinstance(v, int | float)]
            if len(raw) != 3:
                raise InputError(f"{name} must have 3 numeric components")
            return raw[0], raw[1], raw[2]

        return SmokeParms(
            mode=text("mode", MODES),
            model=text("model"),
            substeps=int(num("substeps")),
            buoyancy=num("buoyancy"),
            density_dissipation=num("density_dissipation"),
            velocity_dissipation=num("velocity_dissipation"),
            boundary=text("boundary", BOUNDARIES),
            source_rate=num("source_rate"),
            source_vel=vec3("source_vel"),
            emit_radius=num("emit_radius"),
            divisions=int(num("divisions")),
            center=vec3("center"),
            size=vec3("size"),
            start_frame=int(num("start_frame")),
            end_frame=int(num("end_frame")),
            cache_dir=text("cache_dir"),
        )


@dataclass(frozen=True)
class Domain:
    """The simulation grid: its box and resolution (nx, ny, nz)."""

    bounds: Bounds
    resolution: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (nz, ny, nx) of a scalar grid."""
        return self.resolution[2], self.resolution[1], self.resolution[0]

    @property
    def is_2d(self) -> bool:
        return self.resolution[2] == 1

    @property
    def cell_size(self) -> float:
        res = self.resolution if not self.is_2d else (self.resolution[0], self.resolution[1], 1)
        if self.is_2d:
            sizes = (self.bounds.size[0] / res[0], self.bounds.size[1] / res[1])
            if abs(sizes[0] - sizes[1]) > 1e-3 * sizes[0]:
                raise InputError(f"voxels must be square, got {sizes[0]:.6g} x {sizes[1]:.6g}")
            return sizes[0]
        return cubic_cell_size(self.bounds, res, "smoke grid")

    def config_shape(self) -> tuple[int, ...]:
        """Grid shape for :class:`SmokeConfig`: (Y, X) in 2D, (Z, Y, X) in 3D."""
        return self.shape[1:] if self.is_2d else self.shape


def domain_from_parms(
    center: Sequence[float], size: Sequence[float], divisions: int, multiple: int = 1
) -> Domain:
    """A grid of cubic voxels: ``divisions`` along X, the other axes rounded to whole voxels.

    The box keeps its centre; Y and Z are adjusted to a whole number of voxels (at least 4, or
    exactly 1 along Z when ``size`` z is 0, which makes a 2D simulation). With ``multiple`` (a
    learned surrogate's coarsening factor) every simulated axis is rounded to a multiple of it,
    X by changing the voxel size, Y and Z by adjusting the box.
    """
    if divisions < MIN_CELLS:
        raise InputError(f"divisions must be at least {MIN_CELLS}, got {divisions}")
    if multiple < 1:
        raise InputError(f"multiple must be >= 1, got {multiple}")
    sx, sy, sz = (float(v) for v in size)
    if sx <= 0 or sy <= 0 or sz < 0:
        raise InputError(f"domain size must be positive (z may be 0 for 2D), got {(sx, sy, sz)}")
    least = max(MIN_CELLS, 4 * multiple if multiple > 1 else MIN_CELLS)
    divisions = max(least, multiple * round(divisions / multiple))
    dx = sx / divisions
    ny = max(least, multiple * round(sy / dx / multiple))
    nz = 1 if sz == 0 else max(least, multiple * round(sz / dx / multiple))
    real = (divisions * dx, ny * dx, nz * dx)
    return Domain(Bounds.from_centre_size(center, real), (divisions, ny, nz))


@dataclass
class FrameInputs:
    """What the node reads at one frame, already on the smoke grid."""

    source_mask: FloatGrid | None = None
    obstacles: npt.NDArray[np.bool_] | None = None


def emitter_mask(
    domain: Domain,
    volumes: Mapping[str, tuple[FloatGrid, Bounds, bool]],
    points: npt.NDArray[np.float64] | None,
    radii: npt.NDArray[np.float64] | None,
) -> FloatGrid | None:
    """The [0, 1] emission mask on the smoke grid from the emitter input.

    Args:
        domain: the smoke grid.
        volumes: name -> (grid (Z, Y, X), bounds, is_sdf) of the emitter's volumes.
        points: (N, 3) point positions, used when there is no volume.
        radii: (N,) emission radii (``pscale`` or the default radius).

    Returns:
        float32 (Z, Y, X) mask, or None when the input holds nothing to emit from.
    """
    dx = domain.cell_size
    chosen = None
    for name in ("source", "density"):
        if name in volumes:
            chosen = volumes[name]
            break
    if chosen is None:
        sdfs = [v for k, v in volumes.items() if v[2] or k == "surface"]
        chosen = sdfs[0] if sdfs else next(iter(volumes.values()), None)
    if chosen is not None:
        grid, bounds, is_sdf = chosen
        if is_sdf:
            sdf = resample_nearest(grid, bounds, domain.bounds, domain.resolution, fill=FAR)
            return np.clip(0.5 - sdf / dx, 0.0, 1.0).astype(np.float32)
        fog = resample_nearest(grid, bounds, domain.bounds, domain.resolution, fill=0.0)
        return np.clip(fog, 0.0, 1.0).astype(np.float32)
    if points is not None and len(points):
        r = radii if radii is not None else np.zeros(len(points))
        if domain.is_2d:  # a 2D slice: points emit as discs, wherever they are along Z
            points = np.array(points, dtype=np.float64)
            points[:, 2] = domain.bounds.centre[2]
        return splat_spheres(points, r, domain.bounds, domain.resolution)
    return None


def collision_mask(
    domain: Domain, volumes: Mapping[str, tuple[FloatGrid, Bounds, bool]]
) -> npt.NDArray[np.bool_] | None:
    """Solid voxels from the collision input: SDF < 0 (or ``collision``/fog >= 0.5)."""
    if not volumes:
        return None
    preferred = [volumes[k] for k in ("collision", "surface") if k in volumes]
    sdfs = [v for v in volumes.values() if v[2]]
    grid, bounds, is_sdf = (preferred or sdfs or list(volumes.values()))[0]
    if is_sdf:
        sdf = resample_nearest(grid, bounds, domain.bounds, domain.resolution, fill=FAR)
        solid: npt.NDArray[np.bool_] = sdf < 0
        return solid
    fog = resample_nearest(grid, bounds, domain.bounds, domain.resolution, fill=0.0)
    solid = fog >= 0.5
    return solid


def source_velocity(velocity: Sequence[float], domain: Domain) -> tuple[float, ...]:
    """The emitter's inflow velocity for :class:`Source`: empty (leave velocity alone) when zero,
    (x, y) in 2D, (x, y, z) in 3D."""
    v = tuple(float(c) for c in velocity)
    if not any(v):
        return ()
    return v[:2] if domain.is_2d else v[:3]


def smoke_config(parms: SmokeParms, domain: Domain, fps: float) -> SmokeConfig:
    """The :class:`SmokeConfig` of one substep on ``domain`` at ``fps`` frames per second."""
    from mlvfx.fluids.reference import SmokeConfig
    from mlvfx.fluids.surrogate import INFERENCE_OPEN_INFLOW

    if not math.isfinite(fps) or fps <= 0:
        raise InputError(f"frames per second must be positive, got {fps}")
    return SmokeConfig(
        shape=domain.config_shape(),
        dt=1.0 / (fps * parms.substeps),
        domain_width=domain.bounds.size[0],
        buoyancy=parms.buoyancy,
        density_dissipation=parms.density_dissipation,
        velocity_dissipation=parms.velocity_dissipation,
        boundary=parms.boundary,
        open_inflow=INFERENCE_OPEN_INFLOW,  # smoke-free air through open walls, for either solver
    )


def dt_note(parms: SmokeParms, domain: Domain, fps: float) -> str | None:
    """A warning for the node when a learned model runs at a step it was not trained for, or a
    named one on a grid nearer the other published model's training size."""
    if parms.model == REFERENCE:
        return None
    from mlvfx.fluids.surrogate import dt_warning, resolution_warning

    notes = [dt_warning(smoke_config(parms, domain, fps).dt)]
    if parms.model != AUTO:
        notes.append(resolution_warning(parms.model, 3, max(domain.resolution)))
    found = [n for n in notes if n is not None]
    return "; ".join(found) if found else None


def model_menu() -> list[str]:
    """The model menu as Houdini wants it: ``[token, label, token, label, ...]``.

    ``reference`` first, then ``auto`` (the zoo's surrogate for the grid's size) and the zoo's
    smoke models (task starting with ``smoke``), newest version of each. A missing or broken
    manifest leaves just the reference solver.
    """
    items = [REFERENCE, "Reference solver (exact, slow)"]
    try:
        from mlvfx.zoo import load_manifest

        manifest = load_manifest()
    except Exception:
        return items
    smoke = [m for m in manifest.ids() if manifest.get(m).task.startswith("smoke")]
    if smoke:
        items += [
            AUTO,
            "Learned, by grid size (3D: smoke3d_128 from 96 voxels, else smoke3d; "
            "2D: smoke2d, not published yet)",
        ]
    for model_id in smoke:
        items += [model_id, f"{model_id} {_version_used(manifest, model_id)} (zoo)"]
    return items


def _pin_of(model_id: str) -> str | None:
    """The version ``MLVFX_SMOKE_MODELS`` pins ``model_id`` to; None without a pin, and with a core
    older than the pins (its newest, as before)."""
    pinned_version: Any = getattr(_runtime(model_id), "pinned_smoke_version", None)
    if pinned_version is None:
        return None
    found: Any = pinned_version(model_id)
    return str(found) if found is not None else None


def _version_used(manifest: Any, model_id: str) -> str:
    """The version of ``model_id`` a cook runs: the one ``MLVFX_SMOKE_MODELS`` pins, else the
    newest (a malformed or stale pin is the cook's error to report, not the menu's)."""
    try:
        pinned = _pin_of(model_id)
        return str(manifest.get(model_id, pinned).version)
    except Exception:
        return str(manifest.get(model_id).version)


def _runtime(model: str) -> Any:
    """The learned smoke runtime, ``mlvfx.fluids.surrogate``; ModelNotFound when this mlvfx lacks it."""
    try:
        return importlib.import_module("mlvfx.fluids.surrogate")
    except ImportError:
        raise ModelNotFound(
            f"zoo model {model!r} needs the learned smoke runtime (mlvfx.fluids.surrogate), "
            "which this mlvfx version does not have; use the reference model"
        ) from None


def resolve_model(model: str, config: SmokeConfig) -> str:
    """``model``, with ``auto`` replaced by the zoo's surrogate for the grid's size.

    Raises:
        ModelNotFound: ``auto`` with an mlvfx that cannot pick a model.
    """
    if model != AUTO:
        return model
    pick = getattr(_runtime(model), "default_model", None)
    if pick is None:
        raise ModelNotFound("this mlvfx version cannot pick a smoke model by grid size; choose one")
    return str(pick(len(config.shape), max(config.shape)))


def model_identity(model: str, config: SmokeConfig) -> str:
    """What the node's results depend on: ``reference``, or the resolved zoo model and its version.

    Part of a session's signature, so frames cached with one model are not reused when ``auto``
    resolves differently or the zoo brings a new version. Lookup failures return ``model`` as it
    is: :func:`make_stepper` reports them.
    """
    if model == REFERENCE:
        return model
    try:
        from mlvfx.zoo import load_manifest

        resolved = resolve_model(model, config)
        # a show's pin, if any (a core older than the pins has none: its newest, as before)
        pinned = _pin_of(resolved)
        return f"{resolved} {load_manifest().get(resolved, pinned).version}"
    except Exception:
        return model


def make_stepper(model: str, config: SmokeConfig) -> StepperLike:
    """The stepper for ``model``: the reference solver, or a learned surrogate from the zoo.

    Learned models (``auto``: the zoo's surrogate for the grid's size) are resolved through
    :mod:`mlvfx.zoo` and run by ``mlvfx.fluids.surrogate.load_stepper(model_id, config)`` (the
    surrogate runtime's entry point).

    Raises:
        ModelNotFound: the zoo has no such model, or this mlvfx has no surrogate runtime yet.
    """
    if model == REFERENCE:
        from mlvfx.fluids.reference import Stepper

        return Stepper(config)
    from mlvfx.zoo import load_manifest

    model = resolve_model(model, config)
    entry = load_manifest().get(model)  # raises ModelNotFound with the known ids
    if not entry.task.startswith("smoke"):
        raise ModelNotFound(f"zoo model {model!r} is a {entry.task} model, not a smoke model")
    stepper: StepperLike = _runtime(model).load_stepper(model, config)
    return stepper


def _signature(parms: SmokeParms, domain: Domain, fps: float, extra: str = "") -> str:
    values = asdict(parms)
    for unused in ("cache_dir", "end_frame"):  # where frames are kept or shown: same results
        values.pop(unused, None)
    data: dict[str, Any] = {
        "parms": values,
        "bounds": [domain.bounds.minimum, domain.bounds.maximum],
        "resolution": domain.resolution,
        "fps": fps,
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class SmokeSession:
    """A standalone simulation: the stepper and every frame simulated so far.

    Frame ``start`` holds the initial state advanced by one frame; frame ``f`` holds
    ``f - start + 1`` frames of simulation. Frames before ``start`` show the initial state.
    """

    signature: str
    stepper: StepperLike
    substeps: int
    source_rate: float
    source_vel: tuple[float, ...]
    cache_dir: Path | None = None
    frames: dict[int, State] = field(default_factory=lambda: dict[int, State]())
    budget: int = MEMORY_BUDGET

    def step_frame(
        self,
        state: State | None,
        inputs: FrameInputs,
        cancel: CancelToken | None = None,
        progress: ProgressFn | None = None,
    ) -> State:
        """Advance ``state`` (None = empty) by one frame of ``substeps`` steps.

        ``progress`` (if given) is called before each substep, which is where Esc is noticed.
        """
        from mlvfx.fluids.reference import Source

        sources: list[Source] = []
        if inputs.source_mask is not None and self.source_rate > 0:
            sources.append(Source(inputs.source_mask, self.source_rate, self.source_vel))
        density = None if state is None else state[0]
        velocity = None if state is None else state[1]
        for i in range(self.substeps):
            report(progress, i / self.substeps, f"substep {i + 1}/{self.substeps}")
            check_cancel(cancel)
            density, velocity = self.stepper.step(density, velocity, sources, inputs.obstacles)
        assert density is not None and velocity is not None
        return volume_form(density, velocity)

    def state_at(
        self,
        frame: int,
        start: int,
        initial: State | None,
        inputs_at: Callable[[int], FrameInputs],
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> State | None:
        """The state at ``frame``, simulating only the frames missing from the cache.

        Args:
            frame: the frame to show.
            start: the first simulated frame.
            initial: the state before ``start`` (None = empty).
            inputs_at: emitter and collision at a frame (evaluated only for frames simulated).
            progress: called with (fraction, message) once per frame simulated.
            cancel: checked before every substep.
        """
        if frame < start:
            return initial
        if frame in self.frames:
            return self.frames[frame]
        if self.cache_dir is not None:
            loaded = self._load(frame)
            if loaded is not None:
                self.frames[frame] = loaded
                return loaded
        done = [f for f in self.frames if start <= f < frame]
        first = max(done) + 1 if done else start
        state = self.frames[first - 1] if done else initial
        count = frame - first + 1
        for i, f in enumerate(range(first, frame + 1)):
            report(progress, i / count, f"frame {f}")
            check_cancel(cancel)
            # The progress reaches every substep, where Houdini notices Esc.
            part = scaled(progress, i / count, (i + 1) / count)
            state = self.step_frame(state, inputs_at(f), cancel, part)
            self.frames[f] = state
            if self.cache_dir is not None:
                self._save(f, state)
            self._trim(keep=f)
        report(progress, 1.0, "done")
        return state

    def _trim(self, keep: int) -> None:
        """Drop the oldest frames from memory beyond the budget (files in cache_dir stay).

        :data:`MEMORY_BUDGET` is for all standalone nodes together, shared equally; every node is
        trimmed to its share here, not only this one (per node, N nodes held N x 2 GiB; a node
        trimmed only on its own cook, a review). The frame just simulated (``keep``) and each
        node's newest frame always stay, so playing forward never re-simulates; scrubbing back to a
        dropped frame reloads it from ``cache_dir`` or simulates again from the nearest earlier
        frame still held.
        """
        with _lock:
            others = [s for s in _sessions.values() if s is not self]
        share = MEMORY_BUDGET // (len(others) + 1)
        self._trim_to(min(self.budget, share), keep)
        for other in others:
            other._trim_to(min(other.budget, share), None)

    def _trim_to(self, budget: int, keep: int | None) -> None:
        if not self.frames:
            return
        sizes = {f: s[0].nbytes + s[1].nbytes for f, s in self.frames.items()}
        total = sum(sizes.values())
        protected = {keep, max(self.frames)}
        for f in sorted(self.frames):
            if total <= budget:
                break
            if f not in protected:
                total -= sizes[f]
                del self.frames[f]

    def _file(self, frame: int) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"smoke.{self.signature}.{frame:05d}.npz"

    def _save(self, frame: int, state: State) -> None:
        from mlvfx.io import write_bytes_atomic

        buffer = io.BytesIO()
        np.savez(buffer, density=state[0], velocity=state[1])
        write_bytes_atomic(self._file(frame), buffer.getvalue(), overwrite=True)

    def _load(self, frame: int) -> State | None:
        path = self._file(frame)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                density = np.asarray(data["density"], np.float32)
                velocity = np.asarray(data["velocity"], np.float32)
        except (OSError, KeyError, ValueError):
            return None  # a damaged cache file is simply simulated again
        if velocity.shape != (*density.shape, 3):
            return None
        return density, velocity


def volume_form(density: npt.ArrayLike, velocity: npt.ArrayLike) -> State:
    """Bring a stepper's output to the volume layout: density (Z, Y, X), velocity (Z, Y, X, 3).

    2D results, ``(Y, X)`` and ``(Y, X, 2)``, become ``(1, Y, X)`` and ``(1, Y, X, 3)`` with a
    zero z component.
    """
    rho = np.asarray(density, np.float32)
    vel = np.asarray(velocity, np.float32)
    if rho.ndim == 2:
        rho = rho[None]
    if vel.ndim == 3 and vel.shape[-1] == 2:
        vel = np.concatenate([vel, np.zeros_like(vel[..., :1])], axis=-1)[None]
    if rho.ndim != 3 or vel.shape != (*rho.shape, 3):
        raise InputError(f"smoke model returned density {rho.shape} and velocity {vel.shape}")
    return rho, vel


_sessions: dict[str, SmokeSession] = {}
_solvers: dict[str, tuple[str, StepperLike]] = {}
_lock = threading.Lock()


def session_for(key: str, parms: SmokeParms, domain: Domain, fps: float, extra: str = "") -> SmokeSession:
    """The node's standalone session, recreated when any parameter or the grid changes."""
    config = smoke_config(parms, domain, fps)
    signature = _signature(parms, domain, fps, extra + "|" + model_identity(parms.model, config))
    cache = Path(parms.cache_dir).expanduser() if parms.cache_dir else None
    with _lock:
        current = _sessions.get(key)
        # The Cache Folder is not in the signature (the files in it carry it), so a new folder alone
        # kept the old session writing into the old folder (a review).
        if current is not None and current.signature == signature and current.cache_dir == cache:
            return current
    stepper = make_stepper(parms.model, config)
    session = SmokeSession(
        signature,
        stepper,
        parms.substeps,
        parms.source_rate,
        source_velocity(parms.source_vel, domain),
        cache,
    )
    # Every tweak wrote a complete new set of frames into Cache Folder and none was ever deleted
    # (7.7 GB per tweak at 128³ x 240 frames, an audit). A node keeps its current settings' frames
    # and those of the KEEP_EARLIER settings before them (Undo, a slider dragged back, a take
    # switched: reloaded, not simulated again); older sets go unless another node uses them.
    with _lock:
        replaced = _sessions.get(key)
        _sessions[key] = session
        earlier = [e for e in _earlier.get(key, []) if e != _set_of(session)]
        if replaced is not None and replaced.cache_dir is not None and _set_of(replaced) != _set_of(session):
            earlier = [e for e in earlier if e != _set_of(replaced)] + [_set_of(replaced)]
        dropped, _earlier[key] = earlier[:-KEEP_EARLIER], earlier[-KEEP_EARLIER:]
        in_use = _sets_in_use()
    for folder, signature in dropped:
        # Only in the folder the node writes to now: an artist who moved Cache Folder to v002
        # keeps v001 as it was (a review).
        if (folder, signature) not in in_use and folder == _set_of(session)[0]:
            _delete_frames(folder, signature)
    return session


KEEP_EARLIER = 2
"""Earlier settings per node whose frames stay in Cache Folder besides the current ones."""

_earlier: dict[str, list[tuple[str, str]]] = {}
"""Per node: (Cache Folder, signature) of its earlier settings, oldest first (see session_for)."""


def _set_of(session: SmokeSession) -> tuple[str, str]:
    """A session's frame set: its Cache Folder resolved (one folder spelled two ways is one folder,
    a review) and its signature."""
    folder = "" if session.cache_dir is None else os.path.normcase(os.path.realpath(session.cache_dir))
    return folder, session.signature


def _sets_in_use() -> set[tuple[str, str]]:
    """Frame sets some node plays now or keeps as an earlier setting (call under ``_lock``)."""
    return {_set_of(s) for s in _sessions.values()} | {e for sets in _earlier.values() for e in sets}


def _delete_frames(folder: str, signature: str) -> None:
    """Delete the frame files ``smoke.<signature>.*.npz`` (nothing else) from ``folder``."""
    if not folder:
        return
    for path in Path(folder).glob(f"smoke.{signature}.*.npz"):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def solver_stepper(key: str, parms: SmokeParms, domain: Domain, fps: float) -> SmokeSession:
    """The solver-mode session: no frame cache, but the stepper (and its exact state) is kept."""
    config = smoke_config(parms, domain, fps)
    signature = _signature(parms, domain, fps, model_identity(parms.model, config))
    with _lock:
        hit = _solvers.get(key)
    stepper = hit[1] if hit is not None and hit[0] == signature else None
    if stepper is None:
        stepper = make_stepper(parms.model, config)
        with _lock:
            _solvers[key] = (signature, stepper)
    return SmokeSession(
        signature, stepper, parms.substeps, parms.source_rate, source_velocity(parms.source_vel, domain)
    )


def forget(key: str, delete_files: bool = False) -> bool:
    """Drop a node's sessions. True if any existed.

    Files in ``cache_dir`` stay unless ``delete_files``: then the dropped standalone session's
    frames (``smoke.<signature>.*.npz``, nothing else) are deleted too.
    """
    with _lock:
        session = _sessions.pop(key, None)
        had = (_solvers.pop(key, None) is not None) or session is not None
        _thin_notes.pop(key, None)
        earlier = _earlier.pop(key, [])
        in_use = _sets_in_use()
    if delete_files and session is not None:
        # Reset: the node's earlier settings' frames too (a reset never reuses them); those another
        # node plays stay, as its current ones do.
        for folder, signature in [*earlier, _set_of(session)]:
            if (folder, signature) not in in_use:
                _delete_frames(folder, signature)
    return had


RESET_KEY = "mlvfx_reset"
"""Node user data counting Reset Cache presses; part of a standalone session's signature, so
frames cached before a reset (by this or an earlier Houdini session) are never reused."""


def reset_generation(node: hou.Node) -> str:
    """How many times the node's cache was reset (``"0"`` when never)."""
    return node.userData(RESET_KEY) or "0"


# ---------------------------------------------------------------------------------------------
# The hou layer: read geometry, call the above, write geometry. Kept as thin as possible.


def _volumes(geo: hou.Geometry | None) -> dict[str, tuple[FloatGrid, Bounds, bool]]:
    import hou

    from mlvfx_houdini.volumes import bounds_from_centres, voxels_to_grid

    out: dict[str, tuple[FloatGrid, Bounds, bool]] = {}
    if geo is None:
        return out
    has_name = geo.findPrimAttrib("name") is not None
    for index, prim in enumerate(geo.prims()):
        if isinstance(prim, hou.VDB):  # not a hou.Volume: without this it would be ignored silently
            vdb_name = (str(prim.attribValue("name")) if has_name else "") or f"primitive {index}"
            raise InputError(
                f"{vdb_name!r} is a VDB; convert it to a Houdini volume first "
                "(Convert VDB, Convert To: Volume)"
            )
        if not isinstance(prim, hou.Volume):
            continue
        name = str(prim.attribValue("name")) if has_name else ""
        name = name or f"volume{index}"
        if name in out:
            continue
        xform = prim.transform()
        off = [abs(xform.at(r, c)) for r in range(3) for c in range(3) if r != c]
        if max(off) > 1e-6 * max(abs(xform.at(i, i)) for i in range(3)):
            raise InputError(f"volume {name!r} is rotated; mlvfx needs axis-aligned volumes")
        resolution = prim.resolution()
        first, size = prim.indexToPos((0, 0, 0)), prim.voxelSize()
        bounds = bounds_from_centres([first[i] for i in range(3)], [size[i] for i in range(3)], resolution)
        grid = voxels_to_grid(np.frombuffer(prim.allVoxelsAsString(), dtype=np.float32), resolution, name)
        out[name] = (grid, bounds, prim.isSDF())
    return out


def _points(
    geo: hou.Geometry | None, default_radius: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    if geo is None or not geo.points():
        return None
    p = np.asarray(geo.pointFloatAttribValues("P"), dtype=np.float64).reshape(-1, 3)
    if geo.findPointAttrib("pscale") is not None:
        r = np.asarray(geo.pointFloatAttribValues("pscale"), dtype=np.float64)
    else:
        r = np.full(len(p), default_radius)
    return p, r


def _domain(state: Mapping[str, tuple[FloatGrid, Bounds, bool]], parms: SmokeParms) -> Domain:
    for name in ("density", "vel.x", "vel.y", "vel.z"):
        if name in state:
            grid, bounds, _ = state[name]
            return Domain(bounds, (grid.shape[2], grid.shape[1], grid.shape[0]))
    multiple = 1 if parms.model == REFERENCE else SURROGATE_FACTOR
    return domain_from_parms(parms.center, parms.size, parms.divisions, multiple)


def _state(volumes: Mapping[str, tuple[FloatGrid, Bounds, bool]], domain: Domain) -> State | None:
    density = volumes["density"][0] if "density" in volumes else None
    parts = [volumes[n][0] if n in volumes else None for n in ("vel.x", "vel.y", "vel.z")]
    for name, grid in (("density", density), ("vel.x", parts[0]), ("vel.y", parts[1]), ("vel.z", parts[2])):
        if grid is not None and grid.shape != domain.shape:
            raise InputError(f"input volume {name!r} has shape {grid.shape}, expected {domain.shape}")
    if density is None and all(p is None for p in parts):
        return None
    zero = np.zeros(domain.shape, np.float32)
    rho = density if density is not None else zero
    vel = stack_velocity(*(p if p is not None else zero for p in parts))
    return np.maximum(rho, 0.0).astype(np.float32), vel


def _write(geo: hou.Geometry, domain: Domain, state: State | None) -> None:
    import hou

    from mlvfx_houdini.volumes import grid_to_voxels

    geo.clear()
    if geo.findPrimAttrib("name") is None:
        geo.addAttrib(hou.attribType.Prim, "name", "")
    zero = np.zeros(domain.shape, np.float32)
    density, velocity = state if state is not None else (zero, np.zeros((*domain.shape, 3), np.float32))
    density = np.asarray(density, np.float32).reshape(domain.shape)
    velocity = np.asarray(velocity, np.float32).reshape((*domain.shape, 3))
    lo, hi = domain.bounds.minimum, domain.bounds.maximum
    for name, grid in (
        ("density", density),
        *zip(("vel.x", "vel.y", "vel.z"), split_velocity(velocity), strict=True),
    ):
        volume = geo.createVolume(*domain.resolution, bounding_box=hou.BoundingBox(*lo, *hi))
        volume.setAllVoxelsFromString(grid_to_voxels(grid).tobytes())
        volume.setAttribValue("name", name)


def _node_key(node: hou.Node) -> str:
    return f"{node.sessionId()}"


def cook(node: hou.Node) -> None:
    """PythonCook of ``mlvfx::Sop/smoke_surrogate::1.0``: ``mlvfx_houdini.smoke.cook(hou.pwd())``."""
    import hou

    from mlvfx_houdini.host import interruptible, node_errors

    if not isinstance(node, hou.SopNode):
        raise hou.NodeError("mlvfx smoke_surrogate must run as a SOP")
    with node_errors():
        parms = SmokeParms.read(node.evalParm, node.evalParmTuple)
        geo = node.geometry()
        if geo is None:
            raise InputError("the node has no writable geometry (is this a Python SOP?)")
        fps = hou.fps()
        connected = node.inputs()

        def input_geo(index: int, frame: float | None = None) -> hou.Geometry | None:
            if index >= len(connected) or connected[index] is None:
                return None
            if frame is None:
                return node.inputGeometry(index)
            return node.inputGeometryAtFrame(frame, index)

        # Standalone: the initial state is input 1 at the start frame (an animated input would
        # otherwise restart the simulation every frame).
        standalone = parms.mode == "standalone"
        state_vols = _volumes(input_geo(0, parms.start_frame if standalone else None))
        domain = _domain(state_vols, parms)
        initial = _state(state_vols, domain)
        note = dt_note(parms, domain, fps)
        if note is not None:
            node.addWarning(f"mlvfx: {note}")

        def inputs_at(frame: int | None) -> FrameInputs:
            emitter = input_geo(1, frame)
            pts = _points(emitter, parms.emit_radius)
            mask = emitter_mask(domain, _volumes(emitter), *(pts if pts else (None, None)))
            obstacles = collision_mask(domain, _volumes(input_geo(2, frame)))
            if domain.is_2d:
                obstacles = None if obstacles is None else obstacles.reshape(domain.shape)
            if parms.model != REFERENCE:
                thin_note(key, obstacles)
            return FrameInputs(mask, obstacles)

        key = _node_key(node)
        state: State | None
        if parms.mode == "solver":
            session = solver_stepper(key, parms, domain, fps)
            with interruptible("mlvfx smoke step", dialog=False) as (progress, cancel):
                state = session.step_frame(initial, inputs_at(None), cancel, progress)
        else:
            extra = "" if initial is None else hashlib.sha256(initial[0].tobytes()).hexdigest()
            session = session_for(key, parms, domain, fps, f"{extra}|reset {reset_generation(node)}")
            with interruptible("mlvfx smoke simulation") as (progress, cancel):
                state = session.state_at(
                    min(hou.intFrame(), parms.end_frame),
                    parms.start_frame,
                    initial,
                    lambda f: inputs_at(f),
                    progress,
                    cancel,
                )
        _write(geo, domain, state)
        thin = _thin_notes.get(key) if parms.model != REFERENCE else None
        if thin is not None and thin[1] is not None:  # from the frames simulated, cached ones too
            node.addWarning(f"mlvfx: {thin[1]}")


_thin_notes: dict[str, tuple[bytes, str | None]] = {}
"""Per node: the last obstacle mask's digest and its :func:`thin_obstacle_warning`."""


def thin_note(key: str, obstacles: npt.NDArray[np.bool_] | None) -> str | None:
    """The learned models' thin-wall warning for a node's obstacles, worked out once per mask."""
    if obstacles is None:
        _thin_notes.pop(key, None)
        return None
    digest = hashlib.sha256(np.packbits(obstacles).tobytes()).digest()
    hit = _thin_notes.get(key)
    if hit is not None and hit[0] == digest:
        return hit[1]
    from mlvfx.fluids.surrogate import thin_obstacle_warning

    note = thin_obstacle_warning(obstacles)
    _thin_notes[key] = (digest, note)
    return note


def on_deleted(kwargs: Mapping[str, Any]) -> None:
    """OnDeleted event of the asset: ``mlvfx_houdini.smoke.on_deleted(kwargs)``.

    Frees the node's frames held in memory (up to ``MEMORY_BUDGET``) and its stepper, which would
    otherwise stay until Houdini exits. Frames in ``cache_dir`` stay on disk: undoing the delete
    finds them again."""
    import hou

    node = kwargs.get("node")
    if isinstance(node, hou.Node):
        forget(_node_key(node))


def reset(kwargs: Mapping[str, Any]) -> None:
    """ "Reset Cache" button callback: ``mlvfx_houdini.smoke.reset(kwargs)``."""
    import hou

    node = kwargs["node"]
    if isinstance(node, hou.Node):
        # Upstream edits are not in the cache's signature: a reset must also keep the frames on
        # disk from coming back, in this Houdini session (deleted) and in later ones (new signature).
        forget(_node_key(node), delete_files=True)
        try:
            generation = int(reset_generation(node)) + 1
        except ValueError:
            generation = 1
        node.setUserData(RESET_KEY, str(generation))
        if isinstance(node, hou.SopNode):
            node.cook(force=True)
