"""Training the smoke surrogate (Solver-in-the-Loop) from the reference solver's own shots.

``mlvfx train smoke2d|smoke3d --recipe model_zoo/recipes/smoke3d_v2.json``:

1. **Data** (:func:`generate_data`): randomised shots (:func:`mlvfx.fluids.scenarios.make_scenario`
   with the recipe's families and seeds) run by the reference solver at the recipe's resolution
   and restricted to the coarse grid with the flux-preserving operators. One ``.npz`` per shot,
   written atomically; a rerun skips finished shots. Validation shots (a disjoint seed range)
   also keep the fine density at the evaluation steps.
2. **Training** (:func:`train_surrogate`): the correction net is trained through the
   differentiable coarse solver by unrolling ``k`` corrected steps from a noise-perturbed
   reference state (the unroll length follows the recipe's curriculum). Batches depend only on
   ``(seed, iteration)``, so a resumed run draws what an uninterrupted one would have. A
   checkpoint is written every few minutes, with the validation rollouts.
3. **Validation**: rollouts from an empty domain on the validation shots, density relative L2
   against the fine reference at the evaluation steps, for the surrogate and for coarse-only.
   The benchmark (``mlvfx smoke bench``) uses a third, disjoint seed range.
4. **Upres** (when the recipe's ``upres`` section has iterations; :func:`train_upres`): fine
   reference densities of ``upres.shots`` training shots (:func:`generate_fine`), and the learned
   upres trained on the frozen correction's own rollouts, early-stopped on the validation shots.
5. **Velocity upres** (the ``vupres`` section; :func:`train_vupres`): the same for the velocity,
   on the reference's cell-centred velocity at output resolution (:func:`generate_fine_velocity`).

A recipe with ``train.iterations`` 0 adds parts to a published model (``train.init``): its
correction is the init's, frozen, and so is its upres unless the recipe trains one.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import time
import zipfile
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlvfx.errors import InputError
from mlvfx.io.atomic import make_folder
from mlvfx.progress import ProgressFn, report
from mlvfx.train.runlog import (
    CHECKPOINT,
    SUMMARY,
    LogFn,
    load_checkpoint,
    run_logger,
    save_checkpoint,
    save_safetensors,
)
from mlvfx.train.torch_state import keeps_torch_state

DATA_VERSION = 1


@dataclass(frozen=True)
class SmokeData:
    """Reference shots: families, resolution, seeds and length."""

    dir: str = ""
    families: tuple[str, ...] = ("plume", "two_sources", "wind", "obstacle")
    res: int = 256
    train_shots: int = 32
    train_seed: int = 0
    val_shots: int = 6
    val_seed: int = 1000
    steps: int = 160
    eval_steps: tuple[int, ...] = (50, 100, 200)


@dataclass(frozen=True)
class SmokeModel:
    """Correction net size and the coarsening factor."""

    factor: int = 4
    width: int = 24
    depth: int = 4
    conditions: int = 2
    symmetric: bool = False
    equivariant: bool = False
    conserve_mass: bool = False
    density_gain: bool = False
    dilations: tuple[int, ...] | None = None
    mass_budget: bool = False


@dataclass(frozen=True)
class SmokeTrain:
    """Optimisation: unroll curriculum ``[[fraction_of_iterations, unroll], ...]``, noise, LR.

    ``early_fraction`` of the iterations start within the first ``early_start_max`` steps of a shot
    (from the empty domain, as a rollout does); the others start anywhere.

    ``init``: start from a published surrogate instead of a zero correction: ``zoo:<id>@<version>``
    (fetched and verified through the zoo) or a safetensors path. Its correction must have the
    recipe's architecture; its upres, if it has one that fits, is where the upres training starts.
    The coarsening factor and the grid size may differ (the nets are convolutional). With
    ``iterations`` 0 the init's correction is kept as it is (and its upres and velocity upres,
    unless the recipe trains new ones): the recipe then only adds parts.

    ``mass_weight``: weight of the total-density term of :func:`~mlvfx.fluids.surrogate.unrolled_loss`
    (0: off), aimed at long-run drift of the total. ``energy_weight``: the same for the flow's
    kinetic energy (the summed squared face velocities), aimed at the velocity correction stirring
    the flow up over long runs.
    """

    iterations: int = 3000
    curriculum: tuple[tuple[float, int], ...] = ((0.0, 4), (0.3, 8), (0.6, 16))
    noise: float = 0.02
    early_fraction: float = 0.0
    early_start_max: int = 0
    velocity_weight: float = 0.5
    mass_weight: float = 0.0
    energy_weight: float = 0.0
    lr: float = 1e-3
    lr_min: float = 2e-5
    budget_minutes: float = 150.0
    checkpoint_minutes: float = 5.0
    log_every: int = 20
    threads: int = 2
    init: str = ""


@dataclass(frozen=True)
class SmokeUpres:
    """The learned upres (coarse surrogate state -> output-resolution density); 0 iterations: none.

    ``shots``: training shots for the upres, seeds from ``data.train_seed`` (0: the correction's
    ``data.train_shots``; more only costs fine reference runs). Every ``val_every`` iterations
    the validation shots are scored and the best upres so far is kept (early stopping).
    """

    iterations: int = 0
    every: int = 4
    shots: int = 0
    val_every: int = 250
    width: int = 12
    depth: int = 3
    batch: int = 4
    lr: float = 1e-3
    lr_min: float = 2e-5


@dataclass(frozen=True)
class SmokeVelocityUpres:
    """The learned velocity upres (:class:`~mlvfx.fluids.surrogate.VelocityUpres`); 0 iterations: none.

    ``shots`` training shots (seeds from ``data.train_seed``) and the validation shots are run by
    the reference again, keeping the cell-centred velocity at output resolution every ``every``
    steps (:func:`generate_fine_velocity`). Every ``val_every`` iterations the validation frames
    are scored and the best net so far is kept.

    ``init``: take the velocity upres of another published surrogate (``zoo:<id>@<version>`` or a
    safetensors path; same coarsening factor and conditions): training starts from it, and with
    ``iterations`` 0 it is used as it is (no fine data is made or needed).
    """

    iterations: int = 0
    every: int = 4
    shots: int = 16
    val_every: int = 250
    width: int = 12
    depth: int = 3
    batch: int = 4
    lr: float = 5e-4
    lr_min: float = 2e-5
    init: str = ""


@dataclass(frozen=True)
class SmokeRecipe:
    """A full smoke surrogate recipe (``model_zoo/recipes/smoke3d_v2.json``)."""

    name: str
    dims: int
    seed: int
    data: SmokeData = field(default_factory=SmokeData)
    model: SmokeModel = field(default_factory=SmokeModel)
    train: SmokeTrain = field(default_factory=SmokeTrain)
    upres: SmokeUpres = field(default_factory=SmokeUpres)
    vupres: SmokeVelocityUpres = field(default_factory=SmokeVelocityUpres)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # type: ignore[no-any-return]


def load_smoke_recipe(path: str | os.PathLike[str]) -> SmokeRecipe:
    """Read and validate a smoke recipe JSON file (unknown keys are errors)."""
    from mlvfx.train.recipe import check_recipe_name, read_recipe_json, recipe_section

    raw, p = read_recipe_json(path)
    raw = dict(raw)
    raw.pop("comment", None)
    top = {"name", "dims", "seed", "data", "model", "train", "upres", "vupres"}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise InputError(f"recipe has unknown keys: {', '.join(unknown)}", path=p)
    for key in ("dims", "seed"):
        if key in raw and (not isinstance(raw[key], int) or isinstance(raw[key], bool)):
            raise InputError(f"recipe {key} must be a whole number, got {raw[key]!r}", path=p)
    try:
        recipe = SmokeRecipe(
            name=check_recipe_name(raw["name"], p),
            dims=int(raw["dims"]),
            seed=int(raw["seed"]),
            data=recipe_section(SmokeData, raw.get("data", {}), "data", p),
            model=recipe_section(SmokeModel, raw.get("model", {}), "model", p),
            train=recipe_section(SmokeTrain, raw.get("train", {}), "train", p),
            upres=recipe_section(SmokeUpres, raw.get("upres", {}), "upres", p),
            vupres=recipe_section(SmokeVelocityUpres, raw.get("vupres", {}), "vupres", p),
        )
    except KeyError as exc:
        raise InputError(f"recipe lacks {exc.args[0]!r}", path=p) from None
    _validate(recipe, p)
    return recipe


def _validate(r: SmokeRecipe, path: Path) -> None:
    from mlvfx.fluids import SCENARIO_NAMES
    from mlvfx.train.recipe import is_whole

    problems = []
    if r.dims not in (2, 3):
        problems.append(f"dims must be 2 or 3, got {r.dims}")
    if not all(0 <= seed < 2**32 for seed in (r.seed, r.data.train_seed, r.data.val_seed)):
        problems.append("seed, data.train_seed and data.val_seed must be in 0..2**32-1")
    if any(f not in SCENARIO_NAMES for f in r.data.families) or not r.data.families:
        problems.append(f"families must be among {', '.join(SCENARIO_NAMES)}")
    if r.model.factor < 1:
        problems.append(f"model.factor must be >= 1, got {r.model.factor}")
    elif r.data.res % r.model.factor or r.data.res // r.model.factor < 8:
        problems.append(f"res {r.data.res} must be a multiple of factor {r.model.factor}, >= 8 coarse cells")
    if not r.data.eval_steps or not all(is_whole(s) and s >= 1 for s in r.data.eval_steps):
        problems.append("data.eval_steps must be a non-empty list of whole numbers >= 1")
    pairs = r.train.curriculum
    if not all(
        isinstance(pair, tuple)
        and len(pair) == 2
        and isinstance(pair[0], (int, float))
        and not isinstance(pair[0], bool)
        and 0 <= pair[0] <= 1
        and is_whole(pair[1])
        and pair[1] >= 1
        for pair in pairs
    ):
        raise InputError(
            "train.curriculum must be a list of [fraction of iterations in 0..1, unroll >= 1] pairs",
            path=path,
        )
    t = r.train
    if t.log_every < 1 or t.lr < 0 or t.lr_min < 0 or t.budget_minutes <= 0 or t.checkpoint_minutes < 0:
        problems.append(
            "train needs log_every >= 1, lr >= 0, lr_min >= 0, budget_minutes > 0 and checkpoint_minutes >= 0"
        )
    if min(r.upres.lr, r.vupres.lr, r.upres.lr_min, r.vupres.lr_min) < 0:
        problems.append("upres and vupres need lr and lr_min >= 0")
    if r.data.train_shots < 1 or r.data.val_shots < 1:
        problems.append("train_shots and val_shots must be >= 1")
    train_seeds = set(range(r.data.train_seed, r.data.train_seed + r.data.train_shots))
    if train_seeds & set(range(r.data.val_seed, r.data.val_seed + r.data.val_shots)):
        problems.append("training and validation seed ranges overlap")
    bench = set(range(BENCH_SEED, BENCH_SEED + BENCH_RESERVED))
    if bench & (set(range(r.data.val_seed, r.data.val_seed + r.data.val_shots)) | train_seeds):
        last = BENCH_SEED + BENCH_RESERVED - 1
        problems.append(f"seeds {BENCH_SEED}-{last} are reserved for the benchmark's held-out shots")
    longest = max(u for _, u in r.train.curriculum) if r.train.curriculum else 0
    if not r.train.curriculum or longest >= r.data.steps:
        problems.append("the curriculum needs unroll lengths shorter than the shots")
    if not 0 <= r.train.early_fraction <= 1 or r.train.early_start_max < 0:
        problems.append("early_fraction must be in [0, 1] and early_start_max >= 0")
    dil = r.model.dilations
    if dil is not None and (len(dil) != r.model.depth or min(dil) < 1):
        problems.append(f"model.dilations needs {r.model.depth} (depth) integers >= 1")
    if r.train.mass_weight < 0 or r.train.velocity_weight < 0:
        problems.append("velocity_weight and mass_weight must be >= 0")
    if r.train.energy_weight < 0:
        problems.append("energy_weight must be >= 0")
    if r.train.iterations < 0 or r.train.threads < 1:
        problems.append("iterations must be >= 0 and threads >= 1")
    if r.train.iterations == 0 and not r.train.init:
        problems.append("train.iterations 0 (keep the init's correction) needs train.init")
    u = r.upres
    if u.iterations < 0 or u.every < 1 or u.width < 2 or u.depth < 2 or u.batch < 1 or u.val_every < 1:
        problems.append("upres needs iterations >= 0, every, val_every, batch >= 1, width and depth >= 2")
    upres_seeds = set(range(r.data.train_seed, r.data.train_seed + upres_shots(r)))
    if upres_seeds & set(range(r.data.val_seed, r.data.val_seed + r.data.val_shots)) or upres_seeds & bench:
        problems.append("upres training seeds overlap the validation or benchmark seeds")
    v = r.vupres
    if v.iterations < 0 or v.every < 1 or v.width < 2 or v.depth < 2 or v.batch < 1 or v.val_every < 1:
        problems.append("vupres needs iterations >= 0, every, val_every, batch >= 1, width and depth >= 2")
    if v.iterations > 0 and (v.shots < 1 or v.every > r.data.steps):
        problems.append("vupres needs shots >= 1 and every <= data.steps")
    vupres_seeds = set(range(r.data.train_seed, r.data.train_seed + v.shots))
    if v.iterations > 0 and (
        vupres_seeds & set(range(r.data.val_seed, r.data.val_seed + r.data.val_shots)) or vupres_seeds & bench
    ):
        problems.append("vupres training seeds overlap the validation or benchmark seeds")
    if problems:
        raise InputError("; ".join(problems), path=path)


BENCH_SEED = 5000
"""First seed of the benchmark's held-out shots."""
BENCH_RESERVED = 1000
"""Seeds ``BENCH_SEED`` to ``BENCH_SEED + BENCH_RESERVED - 1`` are the benchmark's: no recipe may use
them (``mlvfx smoke bench --shots N`` takes the first N)."""


# -- data -------------------------------------------------------------------------------------------


def shot_scenario(recipe: SmokeRecipe, seed: int) -> Any:
    """The reference shot of ``seed``: the family cycles with the seed, parameters are drawn from it."""
    from mlvfx.fluids.scenarios import make_scenario

    families = recipe.data.families
    return make_scenario(families[seed % len(families)], recipe.dims, recipe.data.res, seed=seed)


def _shot_path(root: Path, kind: str, seed: int) -> Path:
    return root / f"{kind}_{seed:06d}.npz"


def generate_data(
    root: str | os.PathLike[str], recipe: SmokeRecipe, progress: ProgressFn | None = None
) -> Path:
    """Run the reference shots that are missing under ``root`` (resumable; atomic per shot)."""
    from mlvfx.fluids.grid import face_shape, faces_to_centre
    from mlvfx.fluids.scenarios import simulate
    from mlvfx.fluids.surrogate import restrict_density, restrict_faces
    from mlvfx.io.atomic import write_bytes_atomic

    out = Path(root)
    make_folder(out, "run folder")
    d = recipe.data
    spec = {
        "version": DATA_VERSION,
        "dims": recipe.dims,
        "factor": recipe.model.factor,  # the shots are stored restricted by it
        **json.loads(json.dumps(asdict(d))),
    }
    spec.pop("dir")
    spec_path = out / "dataset.json"
    if spec_path.exists():
        try:
            old = json.loads(spec_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(
                f"not a readable smoke dataset description ({exc}); use another --data folder", path=spec_path
            ) from None
        if not isinstance(old, dict):
            raise InputError("not a smoke dataset description; use another --data folder", path=spec_path)
        keys = ["version", "dims", "res", "families", "steps"]
        keys += ["factor"] if "factor" in old else []  # folders made before it was recorded
        for key in keys:
            if old.get(key) != spec.get(key):
                raise InputError(
                    f"smoke data here was made with {key}={old.get(key)!r}, the recipe wants "
                    f"{spec.get(key)!r}; use another --data folder",
                    path=spec_path,
                )
        extra = sorted(set(d.eval_steps) - set(old.get("eval_steps", d.eval_steps)))
        if extra:
            raise InputError(
                f"smoke data here keeps validation frames at steps {old.get('eval_steps')}, the recipe "
                f"also wants {extra}; use another --data folder",
                path=spec_path,
            )
        if "eval_steps" in old:  # what the shots hold, not what this recipe reads of them
            spec["eval_steps"] = old["eval_steps"]
    write_bytes_atomic(spec_path, (json.dumps(spec, indent=1) + "\n").encode(), overwrite=True)
    # A recipe that keeps its init's correction (train.iterations 0) needs no training shots.
    train_shots = d.train_shots if recipe.train.iterations > 0 else 0
    jobs = [("train", s) for s in range(d.train_seed, d.train_seed + train_shots)]
    jobs += [("val", s) for s in range(d.val_seed, d.val_seed + d.val_shots)]
    factor = recipe.model.factor
    every = recipe.upres.every
    fine_seeds = set(range(d.train_seed, d.train_seed + upres_shots(recipe)))
    if recipe.upres.iterations == 0:
        fine_seeds = set()
    t0 = time.monotonic()
    for n, (kind, seed) in enumerate(jobs):
        path = _shot_path(out, kind, seed)
        report(progress, n / len(jobs), f"{kind} shot {seed}")
        if path.exists():
            continue
        # The upres's fine frames of this shot come from the same reference run (one run, not two).
        keep_fine = kind == "train" and seed in fine_seeds and not _fine_done(_fine_path(out, seed), recipe)
        fine_steps: list[int] = []
        fine_dens: list[np.ndarray[Any, Any]] = []
        sc = shot_scenario(recipe, seed)
        steps = max(d.eval_steps) if kind == "val" else d.steps
        # A validation shot's run also gives the velocity upres its fine frames when it is long enough.
        keep_vel = (
            kind == "val"
            and recipe.vupres.iterations > 0
            and steps >= d.steps
            and not _fine_velocity_done(_fine_velocity_path(out, seed), recipe)
        )
        vel_steps: list[int] = []
        vel_frames: list[np.ndarray[Any, Any]] = []
        dens, faces = [], [[] for _ in range(recipe.dims)]  # type: list[np.ndarray[Any, Any]], list[list[Any]]
        fine: dict[str, np.ndarray[Any, Any]] = {}
        zero = restrict_density(torch.zeros(sc.config.shape, dtype=torch.float64), factor)
        dens.append(zero.float().numpy())
        shape = sc.config.shape
        zero_faces = restrict_faces(
            [torch.zeros(face_shape(shape, c), dtype=torch.float64) for c in range(recipe.dims)], factor
        )
        for c in range(recipe.dims):
            faces[c].append(zero_faces[c].float().numpy())
        for i, rho, vel in simulate(sc, steps):
            dens.append(restrict_density(rho, factor).float().cpu().numpy())
            for c, v in enumerate(restrict_faces(vel, factor)):
                faces[c].append(v.float().cpu().numpy())
            if kind == "val" and i in d.eval_steps:
                fine[f"fine_{i}"] = rho.float().cpu().numpy()
            if keep_fine and i % every == 0:
                fine_steps.append(i)
                fine_dens.append(rho.cpu().numpy().astype(np.float16))
            if keep_vel and i % recipe.vupres.every == 0 and i <= d.steps:
                vel_steps.append(i)
                vel_frames.append(torch.stack(faces_to_centre(vel)).cpu().numpy().astype(np.float16))
        if keep_fine:
            _write_fine(_fine_path(out, seed), fine_steps, fine_dens, every)
        if keep_vel:
            _write_fine_velocity(_fine_velocity_path(out, seed), vel_steps, vel_frames, recipe.vupres.every)
        buf = io.BytesIO()
        arrays = {"density": np.stack(dens), **{f"vel{c}": np.stack(f) for c, f in enumerate(faces)}, **fine}
        if sc.obstacles is not None:
            arrays["obstacles"] = np.asarray(sc.obstacles, dtype=bool)
        meta = {"scenario": sc.name, "seed": seed, "params": sc.params, "kind": kind}
        np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **arrays)
        write_bytes_atomic(path, buf.getvalue(), overwrite=True)
        rate = (n + 1) / max(time.monotonic() - t0, 1e-6) * 60
        report(progress, (n + 1) / len(jobs), f"{kind} shot {seed} ({rate:.1f} shots/min)")
    report(progress, 1.0, "data ready")
    return out


def upres_shots(recipe: SmokeRecipe) -> int:
    """How many training shots the upres learns from (``upres.shots``, else ``data.train_shots``)."""
    return recipe.upres.shots or recipe.data.train_shots


def _fine_path(root: Path, seed: int) -> Path:
    return root / f"fine_{seed:06d}.npz"


def _frames_done(path: Path, every: int, steps: int) -> bool:
    """Whether ``path`` holds a finished file of fine frames every ``every`` steps of ``steps``."""
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return int(z["every"]) == every and int(z["steps"][-1]) == steps - steps % every
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile):
        return False  # a foreign, empty or damaged file is made again


def _write_frames(
    path: Path, key: str, steps: list[int], frames: list[np.ndarray[Any, Any]], every: int
) -> None:
    from mlvfx.io.atomic import write_bytes_atomic

    buf = io.BytesIO()
    np.savez_compressed(buf, **{key: np.stack(frames)}, steps=np.array(steps), every=np.array(every))
    write_bytes_atomic(path, buf.getvalue(), overwrite=True)


def _fine_done(path: Path, recipe: SmokeRecipe) -> bool:
    """Whether ``path`` holds a finished fine shot for ``recipe`` (its ``upres.every`` and length)."""
    return _frames_done(path, recipe.upres.every, recipe.data.steps)


def _write_fine(path: Path, steps: list[int], dens: list[np.ndarray[Any, Any]], every: int) -> None:
    _write_frames(path, "density", steps, dens, every)


def generate_fine(
    root: str | os.PathLike[str], recipe: SmokeRecipe, progress: ProgressFn | None = None
) -> Path:
    """Fine reference densities of the training shots every ``upres.every`` steps (for the upres).

    The same deterministic reference runs as :func:`generate_data`, keeping the output-resolution
    density (float16: display data, 4x smaller on disk). One ``fine_<seed>.npz`` per shot,
    written atomically; a rerun skips finished shots.
    """
    d = recipe.data
    seeds = list(range(d.train_seed, d.train_seed + upres_shots(recipe)))
    return _generate_frames(
        root,
        recipe,
        seeds,
        recipe.upres.every,
        label="fine",
        path_of=_fine_path,
        key="density",
        frame_of=lambda rho, vel: rho.cpu().numpy().astype(np.float16),
        progress=progress,
    )


def _generate_frames(
    root: str | os.PathLike[str],
    recipe: SmokeRecipe,
    seeds: list[int],
    every: int,
    *,
    label: str,
    path_of: Callable[[Path, int], Path],
    key: str,
    frame_of: Callable[[torch.Tensor, Any], np.ndarray[Any, Any]],
    progress: ProgressFn | None,
) -> Path:
    """Reference runs of ``seeds`` keeping ``frame_of(density, face velocity)`` every ``every`` steps.

    One file per shot (``path_of(root, seed)``, the frames under ``key``), written atomically; a
    finished file is skipped.
    """
    from mlvfx.fluids.scenarios import simulate

    out = Path(root)
    make_folder(out, "run folder")
    t0 = time.monotonic()
    for n, seed in enumerate(seeds):
        path = path_of(out, seed)
        report(progress, n / len(seeds), f"{label} shot {seed}")
        if _frames_done(path, every, recipe.data.steps):
            continue
        steps, frames = [], []
        for i, rho, vel in simulate(shot_scenario(recipe, seed), recipe.data.steps, every=every):
            steps.append(i)
            frames.append(frame_of(rho, vel))
        _write_frames(path, key, steps, frames, every)
        rate = (n + 1) / max(time.monotonic() - t0, 1e-6) * 60
        report(progress, (n + 1) / len(seeds), f"{label} shot {seed} ({rate:.1f} shots/min)")
    report(progress, 1.0, f"{label} data ready")
    return out


def _fine_velocity_path(root: Path, seed: int) -> Path:
    return root / f"finevel_{seed:06d}.npz"


def fine_velocity_seeds(recipe: SmokeRecipe) -> dict[str, list[int]]:
    """The velocity upres's shots: ``{"train": seeds, "val": seeds}``."""
    d = recipe.data
    return {
        "train": list(range(d.train_seed, d.train_seed + recipe.vupres.shots)),
        "val": list(range(d.val_seed, d.val_seed + d.val_shots)),
    }


def _fine_velocity_done(path: Path, recipe: SmokeRecipe) -> bool:
    """Whether ``path`` holds a finished fine-velocity shot for ``recipe`` (``vupres.every``, length)."""
    return _frames_done(path, recipe.vupres.every, recipe.data.steps)


def generate_fine_velocity(
    root: str | os.PathLike[str], recipe: SmokeRecipe, progress: ProgressFn | None = None
) -> Path:
    """The reference's cell-centred velocity at output resolution every ``vupres.every`` steps.

    For the velocity upres's training shots and the validation shots: deterministic reference
    runs (the same shots as :func:`generate_data`'s), ``velocity`` ``(T, dims, *fine)`` in float16
    (x, y[, z] components). One ``finevel_<seed>.npz`` per shot, written atomically; a rerun skips
    finished shots.
    """
    from mlvfx.fluids.grid import faces_to_centre

    seeds = [s for kind in ("train", "val") for s in fine_velocity_seeds(recipe)[kind]]
    return _generate_frames(
        root,
        recipe,
        seeds,
        recipe.vupres.every,
        label="fine velocity",
        path_of=_fine_velocity_path,
        key="velocity",
        frame_of=lambda rho, vel: torch.stack(faces_to_centre(vel)).cpu().numpy().astype(np.float16),
        progress=progress,
    )


def _write_fine_velocity(path: Path, steps: list[int], vels: list[np.ndarray[Any, Any]], every: int) -> None:
    _write_frames(path, "velocity", steps, vels, every)


def check_fine_velocity(root: Path, recipe: SmokeRecipe) -> None:
    """Raise the error :func:`load_fine_velocity` would, without reading the frames."""
    for seeds in fine_velocity_seeds(recipe).values():
        for seed in seeds:
            _fine_velocity_file(root, recipe, seed)


def _fine_velocity_file(root: Path, recipe: SmokeRecipe, seed: int) -> Path:
    path = _fine_velocity_path(root, seed)
    if not _fine_velocity_done(path, recipe):
        raise InputError(
            "fine reference velocity for the velocity upres is missing or was made with other "
            "settings (run without --skip-data)",
            path=path,
        )
    return path


def load_fine_velocity(
    root: Path, recipe: SmokeRecipe, kind: str
) -> dict[int, tuple[list[int], torch.Tensor]]:
    """``{seed: (steps, velocities (T, dims, *fine) float16)}`` of the velocity upres's ``kind`` shots."""
    out = {}
    for seed in fine_velocity_seeds(recipe)[kind]:
        path = _fine_velocity_file(root, recipe, seed)
        with np.load(path, allow_pickle=False) as z:
            out[seed] = ([int(i) for i in z["steps"]], torch.from_numpy(z["velocity"]))
    return out


@dataclass
class Shot:
    """One shot on the coarse grid (torch tensors) and, for validation, fine snapshots."""

    seed: int
    scenario: Any
    density: torch.Tensor  # (T+1, *coarse)
    vel: list[torch.Tensor]  # per component (T+1, *face shape)
    fine: dict[int, torch.Tensor]


def load_shots(root: Path, recipe: SmokeRecipe, kind: str) -> list[Shot]:
    """The shots of one kind (``train``/``val``); missing files are an error naming them."""
    d = recipe.data
    seeds = (
        range(d.train_seed, d.train_seed + d.train_shots)
        if kind == "train"
        else range(d.val_seed, d.val_seed + d.val_shots)
    )
    shots = []
    for seed in seeds:
        path = _shot_path(root, kind, seed)
        if not path.exists():
            raise InputError("smoke training shot is missing (run without --skip-data)", path=path)
        with np.load(path, allow_pickle=False) as z:
            fine = {int(k.split("_")[1]): torch.from_numpy(z[k]) for k in z.files if k.startswith("fine_")}
            shots.append(
                Shot(
                    seed,
                    shot_scenario(recipe, seed),
                    torch.from_numpy(z["density"]),
                    [torch.from_numpy(z[f"vel{c}"]) for c in range(recipe.dims)],
                    fine,
                )
            )
    return shots


# -- training ---------------------------------------------------------------------------------------


def init_state(spec: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights a recipe's ``train.init`` names, and a log record (source and sha256)."""
    from mlvfx.fluids.surrogate import FACTOR_KEY
    from mlvfx.train.runlog import init_weights_file
    from mlvfx.zoo import load_state_dict

    path, record = init_weights_file(spec)
    return {k: v for k, v in load_state_dict(path, device="cpu").items() if k != FACTOR_KEY}, record


def _is_output_part(key: str) -> bool:
    return key.startswith(("upres.", "vupres."))


def init_parts(
    state: dict[str, torch.Tensor], recipe: SmokeRecipe, names: Sequence[str], source: str
) -> dict[str, Any]:
    """The parts ``names`` (``"upres"``, ``"vupres"``) an init file has, loaded (absent ones left out).

    Raises:
        InputError: a part does not fit the recipe's model (another coarsening factor or conditions).
    """
    from mlvfx.fluids.surrogate import UpresNet, VelocityUpres

    m = recipe.model
    classes = {"upres": UpresNet, "vupres": VelocityUpres}
    parts: dict[str, Any] = {}
    for name in names:
        own = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        convs = [k for k in own if k.startswith("body.") and k.endswith(".weight")]
        if not convs:
            continue
        width = int(own["body.0.weight"].shape[0])
        part = classes[name](recipe.dims, m.factor, width=width, depth=len(convs), conditions=m.conditions)
        try:
            part.load_state_dict(own)
        except RuntimeError:
            raise InputError(
                f"the init's {name} does not fit the recipe's model (factor {m.factor}, "
                f"{m.conditions} conditions); a recipe that keeps the init needs the init's factor",
                path=source,
            ) from None
        parts[name] = part.float().eval()
    return parts


def _vupres_from(recipe: SmokeRecipe, spec: str) -> tuple[Any, dict[str, Any]]:
    """The velocity upres of the surrogate ``spec`` names (``vupres.init``), and a log record.

    It must fit the recipe's model (coarsening factor, conditions) and, when the recipe trains it
    further, the recipe's ``vupres`` width and depth.
    """
    from mlvfx.fluids.surrogate import surrogate_from_state
    from mlvfx.train.runlog import init_weights_file
    from mlvfx.zoo import load_state_dict

    path, record = init_weights_file(spec)
    donor, factor = surrogate_from_state(load_state_dict(path, device="cpu"), source=str(path))
    vupres = donor.vupres
    m, v = recipe.model, recipe.vupres
    if vupres is None:
        raise InputError("vupres.init has no velocity upres", path=path)
    if factor != m.factor or donor.conditions != m.conditions or donor.dims != recipe.dims:
        raise InputError(
            f"vupres.init is for a {donor.dims}D {factor}x model with {donor.conditions} conditions, "
            f"the recipe's is {recipe.dims}D {m.factor}x with {m.conditions}",
            path=path,
        )
    if v.iterations > 0 and (vupres.width, vupres.depth) != (v.width, v.depth):
        raise InputError(
            f"vupres.init has width {vupres.width} and depth {vupres.depth}, the recipe's vupres "
            f"{v.width} and {v.depth}",
            path=path,
        )
    return vupres.float(), record


def load_init(net: Any, state: dict[str, torch.Tensor], source: str) -> None:
    """Load the correction part of ``state`` (all but ``upres.*``, ``vupres.*``) into ``net``; every
    tensor must fit.

    The net itself refuses weights made with other architecture switches (symmetry, mass, gain,
    dilation; a file without a switch had its default): that becomes a one-line error here.
    """
    body = {k: v for k, v in state.items() if not _is_output_part(k)}
    body.setdefault("symmetry", torch.zeros(1))  # as surrogate_from_state: no flag, no symmetry
    try:
        result = net.load_state_dict(body, strict=False)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1].strip()
        raise InputError(
            f"init weights do not fit the recipe's correction net ({detail})", path=source
        ) from None
    bad = [k for k in result.missing_keys if not _is_output_part(k)] + list(result.unexpected_keys)
    if bad:
        raise InputError(f"init weights do not fit the recipe's correction net ({bad[0]!r})", path=source)


def unroll_length(recipe: SmokeRecipe, iteration: int) -> int:
    """The curriculum's unroll length at ``iteration``."""
    frac = iteration / max(recipe.train.iterations, 1)
    length = recipe.train.curriculum[0][1]
    for start, unroll in recipe.train.curriculum:
        if frac >= start:
            length = unroll
    return int(length)


def learning_rate(recipe: SmokeRecipe, iteration: int) -> float:
    t = recipe.train
    cos = 0.5 * (1 + math.cos(math.pi * min(iteration / max(t.iterations, 1), 1.0)))
    return t.lr_min + (t.lr - t.lr_min) * cos


@dataclass
class SmokeTrainResult:
    out: Path
    iterations_done: int
    seconds: float
    stopped: str
    weights: Path | None
    validation: dict[str, Any]
    vupres: dict[str, Any] | None = None


@keeps_torch_state
def train_surrogate(
    recipe: SmokeRecipe,
    *,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    iterations: int | None = None,
    budget_minutes: float | None = None,
    threads: int | None = None,
    log: LogFn | None = None,
    allow_recipe_change: bool = False,
) -> SmokeTrainResult:
    """Train the correction net on the shots under ``data_dir``; checkpoints and weights in ``out_dir``.

    ``allow_recipe_change``: resume a checkpoint another recipe wrote (the differing keys are
    logged); refused otherwise.
    """
    from mlvfx.fluids.surrogate import CorrectionNet, SurrogateSolver, surrogate_state, unrolled_loss
    from mlvfx.io.atomic import write_bytes_atomic

    if iterations is not None:
        from dataclasses import replace

        if (iterations == 0) != (recipe.train.iterations == 0):
            raise InputError(
                "--iterations cannot switch a recipe between training its correction and keeping "
                f"its init's (the recipe has train.iterations {recipe.train.iterations})"
            )
        recipe = replace(recipe, train=replace(recipe.train, iterations=iterations))
    t = recipe.train
    out = Path(out_dir)
    make_folder(out, "run folder")
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(threads or t.threads)
    root = Path(data_dir)
    frozen = t.iterations == 0  # the init's correction, kept as it is (validated: init is set)
    train = [] if frozen else load_shots(root, recipe, "train")
    val = load_shots(root, recipe, "val")
    if recipe.vupres.iterations > 0:  # fail now, not after hours of training
        check_fine_velocity(root, recipe)
    if recipe.upres.iterations > 0:
        for seed in range(recipe.data.train_seed, recipe.data.train_seed + upres_shots(recipe)):
            if not _fine_path(root, seed).exists():
                raise InputError(
                    "fine reference data for the upres is missing (run without --skip-data)",
                    path=_fine_path(root, seed),
                )
    m = recipe.model
    net = CorrectionNet(
        recipe.dims,
        width=m.width,
        depth=m.depth,
        conditions=m.conditions,
        symmetric=m.symmetric,
        equivariant=m.equivariant,
        conserve_mass=m.conserve_mass,
        density_gain=m.density_gain,
        dilations=m.dilations,
        mass_budget=m.mass_budget,
    ).float()
    solvers = [
        SurrogateSolver(
            s.scenario.config, net, s.scenario.obstacles, m.factor, dtype="float32", differentiable=True
        )
        for s in train
    ]
    sources = [sv.prepare_sources(s.scenario.sources) for sv, s in zip(solvers, train, strict=True)]
    ckpt = out / CHECKPOINT
    init_upres: dict[str, torch.Tensor] | None = None
    init_record = None
    # The init file is needed unless both stages resume from their checkpoints (an offline resume
    # on a fresh machine must not need the zoo).
    resumed = resume and ckpt.is_file()
    upres_resumed = recipe.upres.iterations == 0 or (resume and (out / UPRES_CHECKPOINT).is_file())
    vupres_resumed = recipe.vupres.iterations == 0 or (resume and (out / VUPRES_CHECKPOINT).is_file())
    # A kept (frozen) init is the model itself: it is always read (the zoo caches it).
    if t.init and (frozen or not (resumed and upres_resumed and vupres_resumed)):
        init, init_record = init_state(t.init)
        load_init(net, init, t.init)  # checked even when the checkpoint then replaces it
        init_upres = {k[len("upres.") :]: v for k, v in init.items() if k.startswith("upres.")} or None
        if frozen:  # the parts the recipe does not train are the init's
            keep = [
                n
                for n, stage in (("upres", recipe.upres), ("vupres", recipe.vupres))
                if stage.iterations == 0
            ]
            for name, part in init_parts(init, recipe, keep, t.init).items():
                setattr(net, name, part)
    vupres_init, vupres_record = None, None
    if recipe.vupres.init and (recipe.vupres.iterations == 0 or not vupres_resumed):
        vupres_init, vupres_record = _vupres_from(recipe, recipe.vupres.init)
    opt = torch.optim.Adam(net.parameters(), lr=t.lr)
    start, prior = 0, 0.0
    recipe_changes: list[str] = []
    if resume and ckpt.is_file():
        state, recipe_changes = load_checkpoint(ckpt, recipe.to_dict(), allow_changes=allow_recipe_change)
        try:
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            detail = str(exc).splitlines()[0]
            raise InputError(f"checkpoint does not match the recipe's model ({detail})", path=ckpt) from None
        start, prior = int(state["iteration"]), float(state["seconds"])

    emit = run_logger(out, log)
    if recipe_changes:
        emit({"event": "resume_changes", "iteration": start, "keys": recipe_changes})

    def save(iteration: int, seconds: float) -> None:
        state = {
            "model": net.state_dict(),
            "optimizer": opt.state_dict(),
            "iteration": iteration,
            "seconds": seconds,
            "recipe": recipe.to_dict(),
        }
        save_checkpoint(ckpt, state)

    emit(
        {
            "event": "start",
            "iteration": start,
            "iterations": t.iterations,
            "train_shots": len(train),
            "val_shots": len(val),
            "params": sum(p.numel() for p in net.parameters()),
        }
    )
    if init_record is not None and start == 0:
        emit(init_record)
    if vupres_record is not None and start == 0:
        emit({**vupres_record, "part": "vupres"})
    budget = 60.0 * (budget_minutes if budget_minutes is not None else t.budget_minutes)
    t0 = time.monotonic()
    last_ckpt = t0
    it = start
    stopped = "finished"
    running = None
    skipped = 0
    steps = recipe.data.steps
    updating = False
    try:
        while it < t.iterations:
            if prior + time.monotonic() - t0 >= budget:
                stopped = "budget"
                break
            rng = random.Random(recipe.seed * 1_000_003 + it)  # noqa: S311 (batch sampling)
            k = rng.randrange(len(train))
            unroll = unroll_length(recipe, it)
            if rng.random() < t.early_fraction:
                s0 = rng.randrange(0, min(t.early_start_max, steps - unroll) + 1)
            else:
                s0 = rng.randrange(0, steps - unroll + 1)
            shot = train[k]
            gen = torch.Generator().manual_seed(recipe.seed * 7919 + it)
            for g in opt.param_groups:
                g["lr"] = learning_rate(recipe, it)
            loss = unrolled_loss(
                solvers[k],
                shot.density[s0],
                [v[s0] for v in shot.vel],
                list(shot.density[s0 + 1 : s0 + 1 + unroll]),
                [[v[s0 + j] for v in shot.vel] for j in range(1, unroll + 1)],
                sources[k],
                noise=t.noise,
                generator=gen,
                velocity_weight=t.velocity_weight,
                mass_weight=t.mass_weight,
                energy_weight=t.energy_weight,
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            if torch.isfinite(grad_norm):
                updating = True  # the weights are half-updated until it counts it
                opt.step()
            else:  # one bad unroll must not poison the weights; it is logged and skipped
                skipped += 1
                emit({"event": "skipped", "iteration": it, "shot": shot.seed, "start": s0, "unroll": unroll})
            it += 1
            updating = False
            value = float(loss.detach())
            running = value if running is None else 0.95 * running + 0.05 * value
            if it % t.log_every == 0 or it == t.iterations:
                emit(
                    {
                        "event": "train",
                        "iteration": it,
                        "loss": round(running, 5),
                        "unroll": unroll,
                        "lr": learning_rate(recipe, it),
                        "seconds": round(prior + time.monotonic() - t0, 1),
                    }
                )
            if time.monotonic() - last_ckpt >= 60.0 * t.checkpoint_minutes:
                save(it, prior + time.monotonic() - t0)
                last_ckpt = time.monotonic()
                emit({"event": "val", "iteration": it, **validate(net, val, recipe)})
    except KeyboardInterrupt:
        # Ctrl-C, or SIGTERM from a farm's scheduler (the CLI raises it as an interrupt): keep the
        # iterations done since the last periodic checkpoint, unless the weights were mid-update.
        if it > start and not updating:
            save(it, prior + time.monotonic() - t0)
            emit({"event": "interrupted", "iteration": it, "checkpoint": True})
        raise
    seconds = prior + time.monotonic() - t0
    save(it, seconds)
    result = validate(net, val, recipe)
    emit({"event": "val", "iteration": it, **result})
    upres_info = None
    if recipe.upres.iterations > 0 and stopped == "finished":
        upres_info = train_upres(
            recipe, net, data_dir=root, out_dir=out, resume=resume, log=log, init=init_upres
        )
        result = validate(net, val, recipe)
        emit({"event": "val", "iteration": it, "upres": True, **result})
    vupres_info = None
    if recipe.vupres.iterations > 0 and stopped == "finished":
        vupres_info = train_vupres(
            recipe, net, data_dir=root, out_dir=out, resume=resume, log=log, init=vupres_init
        )
    elif recipe.vupres.iterations == 0 and vupres_init is not None:
        net.vupres = vupres_init.to(next(net.parameters()).device)  # used as it is
    weights = None
    if it > 0 or frozen:
        weights = save_safetensors(surrogate_state(net, m.factor), out / f"{recipe.name}.safetensors")
    summary = {
        "recipe": recipe.to_dict(),
        "iterations_done": it,
        "stopped": stopped,
        "seconds": round(seconds, 1),
        "validation": result,
        "torch": torch.__version__,
        "threads": threads or t.threads,
        "skipped_updates": skipped,
        "params": sum(p.numel() for p in net.body.parameters()),
        "upres": upres_info,
        "vupres": vupres_info,
    }
    write_bytes_atomic(out / SUMMARY, (json.dumps(summary, indent=1) + "\n").encode(), overwrite=True)
    emit({"event": "end", "iteration": it, "stopped": stopped, "seconds": round(seconds, 1)})
    return SmokeTrainResult(out, it, seconds, stopped, weights, result, vupres_info)


UPRES_CHECKPOINT = "upres_checkpoint.pt"


def load_fine(root: Path, recipe: SmokeRecipe) -> dict[int, tuple[list[int], torch.Tensor]]:
    """``{seed: (steps, fine densities)}`` of the training shots (:func:`generate_fine`)."""
    out = {}
    for seed in range(recipe.data.train_seed, recipe.data.train_seed + upres_shots(recipe)):
        path = _fine_path(root, seed)
        if not path.exists():
            raise InputError(
                "fine reference data for the upres is missing (run without --skip-data)", path=path
            )
        with np.load(path, allow_pickle=False) as z:
            out[seed] = ([int(i) for i in z["steps"]], torch.from_numpy(z["density"].astype(np.float32)))
    return out


def _rollout(net: Any, scenario: Any, factor: int, steps: Collection[int]) -> Iterator[tuple[Any, ...]]:
    """The frozen surrogate's rollout of ``scenario`` from the empty domain, as at inference:
    ``(step, surrogate solver, density, velocity, prepared sources)`` at each of ``steps``."""
    from mlvfx.fluids.surrogate import SurrogateSolver

    sur = SurrogateSolver(
        scenario.config, net, scenario.obstacles, factor, dtype="float32", only_move_smoke=False
    )
    src = sur.prepare_sources(scenario.sources)
    rho, vel = sur.solver.zeros()
    for i in range(1, max(steps, default=0) + 1):
        rho, vel = sur.advance(rho, vel, src)
        if i in steps:
            yield i, sur, rho, vel, src


def train_upres(
    recipe: SmokeRecipe,
    net: Any,
    *,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    log: LogFn | None = None,
    init: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Train ``net.upres`` (attached here) on the frozen correction's own rollouts.

    ``init``: the upres weights to start from (a published model's ``upres.*``, without the
    prefix); ignored when their shapes do not fit the recipe's upres.

    Inputs are the surrogate's coarse states on the training shots, rolled out from the empty
    domain exactly as at inference; targets are the reference's fine densities at the same steps
    (:func:`generate_fine`). The loss is the relative squared error per sample, the benchmark's
    metric. Every ``upres.val_every`` iterations the validation shots' frames are scored and the
    best upres is kept (with few shots it overfits: measured). Batches depend only on
    ``(seed, iteration)``; a checkpoint is written at the end and every
    ``train.checkpoint_minutes``.
    """
    from mlvfx.config import torch_device
    from mlvfx.fluids.bench import rel_l2
    from mlvfx.fluids.surrogate import UpresNet, prolong_density

    u, m = recipe.upres, recipe.model
    root, out = Path(data_dir), Path(out_dir)
    fine = load_fine(root, recipe)
    val = load_shots(root, recipe, "val")
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    upres = UpresNet(recipe.dims, m.factor, width=u.width, depth=u.depth, conditions=m.conditions).float()
    # The frozen correction runs where the surrogate solvers put it (CUDA when present); the
    # upres trains on the same device, on targets moved there from the CPU-loaded data.
    dev = torch_device(None)  # what SmokeConfig(device=None), as in every shot's scenario, resolves to
    init_used = False
    if init is not None:
        own = upres.state_dict()
        if set(init) == set(own) and all(tuple(own[k].shape) == tuple(v.shape) for k, v in init.items()):
            upres.load_state_dict(init)
            init_used = True
    upres = upres.to(dev)
    xs: list[torch.Tensor] = []
    smooth: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    with torch.no_grad():
        for seed, (steps, dens) in fine.items():
            wanted = dict(zip(steps, dens, strict=True))
            for i, sur, rho, vel, src in _rollout(net, shot_scenario(recipe, seed), m.factor, wanted):
                target = wanted[i]
                if float(target.float().pow(2).sum()) > 0:
                    xs.append(sur.inputs(rho, vel, src)[0].clone())
                    smooth.append(prolong_density(rho, m.factor)[None].clone())
                    targets.append(target[None].float().to(dev))
        # The validation frames: the frozen correction's rollouts at the evaluation steps.
        val_frames: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        for shot in val:
            for i, sur, rho, vel, src in _rollout(net, shot.scenario, m.factor, shot.fine):
                frame = (sur.inputs(rho, vel, src).clone(), prolong_density(rho, m.factor).clone())
                val_frames.append((*frame, shot.fine[i].float(), sur.fine_solid))
    if not xs:
        raise InputError("no non-empty fine reference frames to train the upres on", path=root)

    @torch.no_grad()
    def score() -> float:
        """Mean density rel. L2 of the upres on the validation frames (lower is better)."""
        upres.eval()
        errors = []
        for x, base, truth, solid in val_frames:
            pred = upres.upsample(base, x)
            if solid is not None:
                pred = pred.masked_fill(solid, 0.0)
            errors.append(rel_l2(pred, truth))
        upres.train()
        return float(np.mean(errors)) if errors else 0.0

    def batch(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([xs[k] for k in idx])
        base = torch.stack([smooth[k] for k in idx])
        return upres.upsample(base, x), torch.stack([targets[k] for k in idx])

    summary = _fit_part(
        recipe,
        upres,
        u,
        name="upres",
        salt=1_000_033,
        batch=batch,
        score=score,
        checkpoint=out / UPRES_CHECKPOINT,
        resume=resume,
        emit=run_logger(out, log),
        correction=correction_fingerprint(net),
        start_info={"frames": len(xs), "init": init_used},
    )
    net.upres = upres
    return summary


def correction_fingerprint(net: Any) -> str:
    """sha256 of a surrogate's correction weights (not its output parts): what its rollouts depend on."""
    import hashlib

    digest = hashlib.sha256()
    for key, value in sorted(net.state_dict().items()):
        if not _is_output_part(key):
            digest.update(key.encode())
            digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _fit_part(
    recipe: SmokeRecipe,
    part: torch.nn.Module,
    stage: SmokeUpres | SmokeVelocityUpres,
    *,
    name: str,
    salt: int,
    batch: Callable[[list[int]], tuple[torch.Tensor, torch.Tensor]],
    score: Callable[[], float],
    checkpoint: Path,
    resume: bool,
    emit: LogFn,
    start_info: dict[str, Any],
    correction: str,
) -> dict[str, Any]:
    """The training loop an output part (upres, velocity upres) shares; returns its summary
    (iterations, best iteration and validation score, seconds, frames, parameters) with the best
    part loaded, in eval mode and frozen.

    ``batch(indices)`` gives ``(prediction, target)`` for frames drawn from ``start_info["frames"]``
    (batches depend only on ``(recipe.seed, salt, iteration)``). Loss: the relative squared error
    per frame. Adam with the stage's cosine learning rate, gradients clipped at 1. Every
    ``stage.val_every`` iterations ``score()`` (lower is better) decides the best part so far,
    which starts as the part itself. Checkpoints at the end and every ``train.checkpoint_minutes``;
    ``resume`` continues from one made on the same correction (``correction``, its
    :func:`correction_fingerprint`). A checkpoint made on another correction (a short test run
    resumed by the full one) is set aside and the stage starts again: its part learned another
    model's rollouts.
    """
    opt = torch.optim.Adam(part.parameters(), lr=stage.lr)
    start, prior = 0, 0.0
    first = score()
    best: dict[str, Any] = {"score": first, "iteration": 0, "model": copy.deepcopy(part.state_dict())}
    state = None
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=next(part.parameters()).device, weights_only=True)
        made_on = state.get("correction", correction)  # older checkpoints do not say
        if made_on != correction:
            emit({"event": f"{name}_restart", "reason": "its checkpoint was made on another correction"})
            state = None
    if state is not None:
        try:
            part.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            detail = str(exc).splitlines()[0]
            raise InputError(
                f"checkpoint does not match the recipe's {name} ({detail})", path=checkpoint
            ) from None
        start, prior = int(state["iteration"]), float(state["seconds"])
        best = {
            "score": float(state["best_score"]),
            "iteration": int(state["best_iteration"]),
            "model": state["best_model"],
        }

    def save(iteration: int, seconds: float) -> None:
        state = {
            "model": part.state_dict(),
            "optimizer": opt.state_dict(),
            "iteration": iteration,
            "seconds": seconds,
            "best_model": best["model"],
            "best_score": best["score"],
            "best_iteration": best["iteration"],
            "correction": correction,
        }
        save_checkpoint(checkpoint, state)

    frames = int(start_info["frames"])
    emit(
        {
            "event": f"{name}_start",
            "iteration": start,
            "iterations": stage.iterations,
            **start_info,
            "init_score": round(first, 5) if start == 0 else None,
            "params": sum(p.numel() for p in part.parameters()),
        }
    )
    t0 = last = time.monotonic()
    running = None
    it = start
    updating = False
    try:
        while it < stage.iterations:
            rng = random.Random(recipe.seed * salt + it)  # noqa: S311 (batch sampling)
            idx = [rng.randrange(frames) for _ in range(stage.batch)]
            cos = 0.5 * (1 + math.cos(math.pi * it / max(stage.iterations, 1)))
            for g in opt.param_groups:
                g["lr"] = stage.lr_min + (stage.lr - stage.lr_min) * cos
            pred, target = batch(idx)
            dims = tuple(range(1, pred.dim()))
            loss = ((pred - target).pow(2).sum(dims) / target.pow(2).sum(dims).clamp(min=1e-12)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(part.parameters(), 1.0)
            updating = True  # the weights are half-updated until it counts it
            opt.step()
            it += 1
            updating = False
            value = float(loss.detach())
            running = value if running is None else 0.95 * running + 0.05 * value
            if it % recipe.train.log_every == 0 or it == stage.iterations:
                emit(
                    {
                        "event": name,
                        "iteration": it,
                        "loss": round(running, 5),
                        "seconds": round(prior + time.monotonic() - t0, 1),
                    }
                )
            if it % stage.val_every == 0 or it == stage.iterations:
                value = score()
                if value < best["score"]:
                    best = {"score": value, "iteration": it, "model": copy.deepcopy(part.state_dict())}
                emit(
                    {
                        "event": f"{name}_val",
                        "iteration": it,
                        "score": round(value, 5),
                        "best": round(best["score"], 5),
                        "best_iteration": best["iteration"],
                    }
                )
            if time.monotonic() - last >= 60.0 * recipe.train.checkpoint_minutes:
                save(it, prior + time.monotonic() - t0)
                last = time.monotonic()
    except KeyboardInterrupt:  # as the correction's loop: keep the iterations done
        if it > start and not updating:
            save(it, prior + time.monotonic() - t0)
            emit({"event": f"{name}_interrupted", "iteration": it, "checkpoint": True})
        raise
    seconds = prior + time.monotonic() - t0
    save(it, seconds)
    part.load_state_dict(best["model"])
    part.eval()
    for p in part.parameters():
        p.requires_grad_(False)
    return {
        "iterations": it,
        "best_iteration": best["iteration"],
        "val_score": round(best["score"], 5),
        "seconds": round(seconds, 1),
        "frames": frames,
        "params": sum(p.numel() for p in part.parameters()),
    }


VUPRES_CHECKPOINT = "vupres_checkpoint.pt"


def _velocity_frames(
    recipe: SmokeRecipe, net: Any, fine: dict[int, tuple[list[int], torch.Tensor]], device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(inputs, coarse centred velocity, fine velocity)`` at the fine frames' steps of each shot.

    The coarse state is the frozen surrogate's own rollout from the empty domain, as at inference.
    Frames where the reference has no flow yet are left out (nothing to learn, no relative error).
    The fine velocity stays float16 on the CPU (64³ x 3 components is 1.5 MB a frame).
    """
    from mlvfx.fluids.grid import faces_to_centre

    frames = []
    for seed, (steps, vels) in fine.items():
        wanted = dict(zip(steps, vels, strict=True))
        for i, sur, rho, vel, src in _rollout(net, shot_scenario(recipe, seed), recipe.model.factor, wanted):
            target = wanted[i]
            if bool(target.any()):
                x = sur.inputs(rho, vel, src)[0].float().to(device)
                frames.append((x, torch.stack(faces_to_centre(vel)).float().to(device), target))
    return frames


def train_vupres(
    recipe: SmokeRecipe,
    net: Any,
    *,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    log: LogFn | None = None,
    init: Any = None,
) -> dict[str, Any]:
    """Train ``net.vupres`` (attached here) on the frozen surrogate's own rollouts.

    ``init``: a :class:`~mlvfx.fluids.surrogate.VelocityUpres` to start from (``vupres.init``).

    As :func:`train_upres`, for the velocity: inputs are the surrogate's coarse states rolled out
    from the empty domain, the base is the linear upsampling of its velocity (what hosts got
    before), targets the reference's cell-centred velocity at the same steps
    (:func:`generate_fine_velocity`). Loss: the relative squared error per frame. Every
    ``vupres.val_every`` iterations the validation shots' frames are scored (mean relative L2)
    and the best net is kept; its score at iteration 0 is the linear upsampling's. Batches depend
    only on ``(seed, iteration)``; checkpoints at the end and every ``train.checkpoint_minutes``.
    """
    from mlvfx.config import torch_device
    from mlvfx.fluids.bench import rel_l2
    from mlvfx.fluids.surrogate import VelocityUpres, prolong_centred

    v, m = recipe.vupres, recipe.model
    root, out = Path(data_dir), Path(out_dir)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    dev = torch_device(None)  # where the surrogate solvers put the frozen net (see train_upres)
    vupres = VelocityUpres(recipe.dims, m.factor, width=v.width, depth=v.depth, conditions=m.conditions)
    if init is not None:
        vupres.load_state_dict(init.state_dict())
    vupres = vupres.float().to(dev)
    with torch.no_grad():
        train = _velocity_frames(recipe, net, load_fine_velocity(root, recipe, "train"), dev)
        val = _velocity_frames(recipe, net, load_fine_velocity(root, recipe, "val"), dev)
    if not train:
        raise InputError("no fine reference velocity with any flow to train the velocity upres on", path=root)

    @torch.no_grad()
    def score() -> float:
        """Mean velocity rel. L2 on the validation frames (lower is better)."""
        vupres.eval()
        errors = []
        for x, centred, truth in val:
            pred = vupres.upsample(prolong_centred(centred, m.factor), x[None])
            errors.append(rel_l2(pred, truth.float()))
        vupres.train()
        return float(np.mean(errors)) if errors else 0.0

    with torch.no_grad():
        linear = float(np.mean([rel_l2(prolong_centred(c, m.factor), t.float()) for _, c, t in val] or [0.0]))

    def batch(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([train[k][0] for k in idx])
        base = torch.stack([prolong_centred(train[k][1], m.factor) for k in idx])
        target = torch.stack([train[k][2] for k in idx]).to(dev).float()
        return base + vupres(x), target

    summary = _fit_part(
        recipe,
        vupres,
        v,
        name="vupres",
        salt=1_000_037,
        batch=batch,
        score=score,
        checkpoint=out / VUPRES_CHECKPOINT,
        resume=resume,
        emit=run_logger(out, log),
        correction=correction_fingerprint(net),
        start_info={"frames": len(train), "val_frames": len(val), "linear_score": round(linear, 5)},
    )
    net.vupres = vupres
    return {**summary, "linear_val_score": round(linear, 5)}


@torch.no_grad()
def validate(net: Any, shots: list[Shot], recipe: SmokeRecipe) -> dict[str, Any]:
    """Rollouts from an empty domain: mean density rel. L2 against the fine reference.

    Reported for the surrogate (through its upres when it has one), for coarse-only (the same
    coarse solver without the net, smooth upsampling) and, with an upres, for the surrogate with
    the smooth upsampling instead (``surrogate_smooth``).
    """
    from mlvfx.fluids.bench import rel_l2
    from mlvfx.fluids.surrogate import SurrogateSolver, prolong_density

    was_training = net.training
    net.eval()
    m = recipe.model
    evals = sorted(recipe.data.eval_steps)
    names = ["surrogate", "coarse_only"] + (["surrogate_smooth"] if net.upres is not None else [])
    errors: dict[str, dict[int, list[float]]] = {name: {} for name in names}
    for shot in shots:
        sc = shot.scenario
        surrogate = SurrogateSolver(
            sc.config, net, sc.obstacles, m.factor, dtype="float32", only_move_smoke=False
        )
        sources = surrogate.prepare_sources(shot.scenario.sources)
        for name in ("surrogate", "coarse_only"):
            rho, vel = surrogate.solver.zeros()
            for i in range(1, evals[-1] + 1):
                step = surrogate.advance if name == "surrogate" else surrogate.solver.advance
                rho, vel = step(rho, vel, sources)
                if i in shot.fine:
                    truth = shot.fine[i].double()
                    if name == "surrogate":
                        up = surrogate.output_density(rho, vel, sources).double()
                        errors[name].setdefault(i, []).append(rel_l2(up, truth))
                        if net.upres is not None:
                            smooth = prolong_density(rho.double(), m.factor)
                            errors["surrogate_smooth"].setdefault(i, []).append(rel_l2(smooth, truth))
                    else:
                        up = prolong_density(rho.double(), m.factor)
                        errors[name].setdefault(i, []).append(rel_l2(up, truth))
    net.train(was_training)
    out: dict[str, Any] = {}
    for name, per in errors.items():
        for i, values in per.items():
            out[f"{name}_t{i}"] = round(float(np.mean(values)), 5)
    for i in evals:
        if f"coarse_only_t{i}" in out and out[f"coarse_only_t{i}"] > 0:
            out[f"ratio_t{i}"] = round(out[f"surrogate_t{i}"] / out[f"coarse_only_t{i}"], 4)
    return out
