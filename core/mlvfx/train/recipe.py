"""Training recipes: a JSON file with the data, model, training and loss settings of one model.

A recipe is complete: together with the code at a commit it determines the trained weights
(given the same data, thread count and torch version). Unknown keys are rejected so a typo
cannot silently fall back to a default.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mlvfx.errors import InputError
from mlvfx.fsutil import read_regular
from mlvfx.nets.material import MaterialNetConfig


@dataclass(frozen=True)
class DataSpec:
    """Training data: a factory dataset rendered with these settings (see ``mlvfx data materials``).

    ``lighting``: the factory's lighting distribution (``studio`` or ``wide``).
    ``also``: more training data, as ``@<recipe>`` names of recipes in the same folder; their data
    (rendered with their own settings when missing) is trained on too, after this recipe's own.
    ``skip_metallic``: families whose metallic samples are left out of training and monitoring, in
    every data folder (``("composite",)`` keeps the composites' colour variety but not their
    random-palette metals).
    """

    dir: str = ""
    count: int = 600
    size: int = 256
    seed: int = 7
    families: tuple[str, ...] = ("train",)
    samples: int = 16
    val_fraction: float = 0.05
    lighting: str = "studio"
    also: tuple[str, ...] = ()
    skip_metallic: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation settings.

    ``init``: start from these weights instead of a random initialisation: ``zoo:<id>@<version>``
    (fetched and verified through the zoo) or a safetensors path. Layers the init weights lack
    (a new context branch) keep their fresh initialisation.

    ``illumination``: if > 0, half the training photos get a smooth light falloff across the
    sample, spanning up to this much in natural log units (see
    :func:`mlvfx.data.augment.relight_smoothly`); 0 (the default) leaves batches as they were.

    ``first_steps`` / ``first_data``: a curriculum in one run. For the first ``first_steps``
    steps, batches come only from these data folders, named as in ``data.also``
    (``"@material_v1"``); the recipe's own folder is ``"@<name>"`` or its ``data.dir``. After
    that, batches come from every folder. The learning-rate schedule runs over all steps.
    ``first_steps = 0`` (the default) draws from every folder from the start.

    ``teacher``: a frozen model (``zoo:<id>@<version>`` or a safetensors path, of this recipe's
    architecture) run in inference mode on every training batch. Its outputs are the targets of
    the ``*_teacher`` loss terms (``loss.roughness_teacher``): the student learns those maps from
    the teacher instead of (or besides) the ground truth, so a continuation can keep a map as
    the teacher made it while the other maps learn from new data.

    ``teacher_albedo_families``: the families (a mixture counts when one of its parts is named)
    whose samples also learn their albedo from the teacher (``loss.albedo_teacher``).
    """

    steps: int = 4000
    batch: int = 8
    crop: int = 96
    lr: float = 2e-3
    lr_min: float = 5e-5
    warmup: int = 100
    budget_minutes: float = 170.0
    checkpoint_minutes: float = 4.0
    log_every: int = 10
    threads: int = 2
    val_samples: int = 16
    init: str = ""
    illumination: float = 0.0
    first_steps: int = 0
    first_data: tuple[str, ...] = ()
    teacher: str = ""
    teacher_albedo_families: tuple[str, ...] = ()


@dataclass(frozen=True)
class LossSpec:
    """Weights of the loss terms (see :mod:`mlvfx.train.losses`)."""

    normal: float = 1.0
    height_grad: float = 0.5
    height_normal: float = 0.5
    albedo_si: float = 1.0
    albedo_l1: float = 0.2
    roughness: float = 1.0
    albedo_si_linear: float = 0.0
    light: float = 0.0
    """Weight of the light-direction loss: a linear head on the context vector predicts each
    photo's sun direction (1 - cosine). Needs a context branch. The head is training-only."""
    roughness_teacher: float = 0.0
    """Weight of the L1 distance between the roughness and the ``train.teacher`` model's
    roughness on the same batch. Needs ``train.teacher``."""
    albedo_teacher: float = 0.0
    """Weight of the linear scale-invariant RMSE between the albedo and the ``train.teacher``
    model's albedo, over the batch's samples of ``train.teacher_albedo_families`` only (0 for a
    batch without one)."""


@dataclass(frozen=True)
class Recipe:
    """A full training recipe."""

    name: str
    seed: int
    data: DataSpec = field(default_factory=DataSpec)
    model: MaterialNetConfig = field(default_factory=MaterialNetConfig)
    train: TrainSpec = field(default_factory=TrainSpec)
    loss: LossSpec = field(default_factory=LossSpec)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (round-trips through :func:`recipe_from_dict`)."""
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["data"]["families"] = list(self.data.families)
        d["data"]["also"] = list(self.data.also)
        d["data"]["skip_metallic"] = list(self.data.skip_metallic)
        d["train"]["teacher_albedo_families"] = list(self.train.teacher_albedo_families)
        return d


def recipe_section(cls: type[Any], raw: Any, where: str, path: Path | None) -> Any:
    """Build the dataclass ``cls`` from a recipe section; unknown keys and bad values are errors.

    JSON lists become tuples (nested ones too), as the frozen dataclasses expect.
    """
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise InputError(f"recipe section {where!r} must be an object", path)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"unknown key(s) in recipe section {where!r}: {', '.join(unknown)}", path)
    kw = {k: _tuples(v) for k, v in raw.items()}
    _check_types(cls, kw, where, path)
    for key in ("families", "also", "first_data", "skip_metallic", "teacher_albedo_families"):
        if key in kw:
            if not isinstance(kw[key], tuple):
                raise InputError(f"recipe section {where!r}: {key!r} must be a list", path)
            kw[key] = tuple(str(f) for f in kw[key])
    if "widths" in kw:
        widths = kw["widths"]
        if not isinstance(widths, tuple) or not widths or not all(is_whole(w) and w >= 1 for w in widths):
            raise InputError(
                f"recipe {where}.widths must be a list of whole numbers >= 1, got {widths!r}", path
            )
    try:
        return cls(**kw)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad recipe section {where!r}: {exc}", path) from None


def is_whole(value: Any) -> bool:
    """An int that is not a bool (JSON's ``true`` is one in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_types(cls: type[Any], kw: dict[str, Any], where: str, path: Path | None) -> None:
    """Each value of the kind its field's default is: ``"10"`` for a step count, ``true`` for a
    batch size or ``1.7`` for an integer became internal errors deep in training, or were silently
    rounded (an audit, stop 22). Integers are fine where a float is expected; a field whose default
    is None takes anything its own checks allow."""
    for f in fields(cls):
        if f.name not in kw:
            continue
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            continue
        value = kw[f.name]
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            kind = "a number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        elif isinstance(default, tuple):
            ok, kind = isinstance(value, tuple), "a list"
        else:
            continue
        if not ok:
            raise InputError(f"recipe {where}.{f.name} must be {kind}, got {value!r}", path)


def check_recipe_name(name: Any, path: Path | None) -> str:
    """A recipe name: letters, digits, ``.``, ``_`` and ``-``, not starting with a dot. It names
    the run folder, the weights file and the data folder, so ``../x`` must not get through."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}", name):
        raise InputError(
            "a recipe needs a 'name' of letters, digits, '.', '_' and '-' (not starting with '.'), "
            f"got {name!r}",
            path,
        )
    return name


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def read_recipe_json(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """The parsed JSON object of a recipe file.

    Raises:
        InputError: the file is missing, unreadable, not JSON, or not an object.
    """
    p = Path(path)
    try:
        d = json.loads(read_regular(p).decode("utf-8-sig"))  # UTF-8, with Notepad's BOM or without
    except FileNotFoundError:
        raise InputError("recipe not found", p) from None
    except OSError as exc:
        raise InputError(f"unreadable recipe: {exc.strerror or exc}", p) from None
    except ValueError as exc:
        raise InputError(f"unreadable recipe: {str(exc).splitlines()[0][:160]}", p) from None
    except RecursionError:
        raise InputError("unreadable recipe: JSON nested too deeply", p) from None
    if not isinstance(d, dict):
        raise InputError("a recipe must be a JSON object", p)
    return d, p


def recipe_from_dict(d: dict[str, Any], path: Path | None = None) -> Recipe:
    """Validate and build a :class:`Recipe` from parsed JSON."""
    unknown = sorted(set(d) - {"name", "seed", "data", "model", "train", "loss", "comment"})
    if unknown:
        raise InputError(f"unknown top-level recipe key(s): {', '.join(unknown)}", path)
    check_recipe_name(d.get("name"), path)
    if not is_whole(d.get("seed")):
        raise InputError("a recipe needs a string 'name' and an integer 'seed'", path)
    if not 0 <= d["seed"] < 2**32:
        raise InputError(f"recipe seed must be in 0..2**32-1, got {d['seed']}", path)
    recipe = Recipe(
        name=d["name"],
        seed=d["seed"],
        data=recipe_section(DataSpec, d.get("data"), "data", path),
        model=recipe_section(MaterialNetConfig, d.get("model"), "model", path),
        train=recipe_section(TrainSpec, d.get("train"), "train", path),
        loss=recipe_section(LossSpec, d.get("loss"), "loss", path),
    )
    from mlvfx.data.materials import LIGHTING_MODES

    if recipe.data.lighting not in LIGHTING_MODES:
        raise InputError(
            f"recipe data.lighting must be one of {', '.join(LIGHTING_MODES)}, got {recipe.data.lighting!r}",
            path,
        )
    from mlvfx.data.families import FAMILY_NAMES, GENERIC_FAMILIES, RELIEF_FAMILIES

    known = (*FAMILY_NAMES, *RELIEF_FAMILIES, *GENERIC_FAMILIES)
    unknown_skip = [f for f in recipe.data.skip_metallic if f not in known]
    if unknown_skip:
        raise InputError(f"recipe data.skip_metallic names unknown families: {', '.join(unknown_skip)}", path)
    for other in recipe.data.also:
        name = other[1:]
        if not other.startswith("@") or not name or any(c in name for c in "/\\") or name in (".", ".."):
            raise InputError(f"recipe data.also entries must be '@<recipe name>', got {other!r}", path)
    m = recipe.model
    if m.blocks < 1 or m.context < 0 or m.detail < 0:
        raise InputError("recipe 'model' needs blocks >= 1, context >= 0 and detail >= 0", path)
    if not 0 <= recipe.data.seed < 2**32:
        raise InputError(f"recipe data.seed must be in 0..2**32-1, got {recipe.data.seed}", path)
    t = recipe.train
    multiple = 2 ** (len(m.widths) - 1)
    if t.crop % multiple:
        raise InputError(
            f"recipe train.crop must be a multiple of {multiple} (the model's {len(m.widths) - 1} "
            f"downsamplings), got {t.crop}",
            path,
        )
    if t.log_every < 1 or t.val_samples < 0 or t.warmup < 0:
        raise InputError("recipe 'train' needs log_every >= 1, val_samples >= 0 and warmup >= 0", path)
    if t.lr_min < 0 or t.budget_minutes <= 0 or t.checkpoint_minutes < 0:
        raise InputError(
            "recipe 'train' needs lr_min >= 0, budget_minutes > 0 and checkpoint_minutes >= 0", path
        )
    negative = [f.name for f in fields(LossSpec) if getattr(recipe.loss, f.name) < 0]
    if negative:
        raise InputError(f"recipe loss weights must be >= 0: {', '.join(negative)}", path)
    if not 0.0 <= t.illumination <= 2.0:
        raise InputError(f"recipe train.illumination must be in 0..2, got {t.illumination}", path)
    if t.steps < 1 or t.batch < 1 or t.crop < 16 or t.lr <= 0 or t.threads < 1:
        raise InputError("recipe 'train' needs steps, batch, threads >= 1, crop >= 16 and lr > 0", path)
    if t.first_steps < 0 or bool(t.first_steps) != bool(t.first_data):
        raise InputError("recipe train.first_steps (>= 1) and train.first_data go together", path)
    for entry in t.first_data:
        data_folder_index(recipe, entry, path)
    w = recipe.loss
    if w.roughness_teacher < 0 or w.albedo_teacher < 0:
        raise InputError("recipe loss.*_teacher weights must be >= 0", path)
    if bool(w.roughness_teacher or w.albedo_teacher) != bool(t.teacher):
        raise InputError("recipe train.teacher and a loss.*_teacher term (> 0) go together", path)
    if bool(w.albedo_teacher) != bool(t.teacher_albedo_families):
        raise InputError(
            "recipe loss.albedo_teacher (> 0) and train.teacher_albedo_families go together", path
        )
    unknown_teach = [f for f in t.teacher_albedo_families if f not in known]
    if unknown_teach:
        raise InputError(
            f"recipe train.teacher_albedo_families names unknown families: {', '.join(unknown_teach)}", path
        )
    return recipe


def data_folder_index(recipe: Recipe, entry: str, path: Path | None = None) -> int:
    """Position of a ``train.first_data`` entry among the recipe's data folders.

    The folders are, in order, the recipe's own (named ``"@<name>"`` or by its ``data.dir``) and
    then ``data.also``; this is the order :mod:`mlvfx.train.cli` passes them to training.

    Raises:
        InputError: ``entry`` names none of them.
    """
    if entry in (f"@{recipe.name}", recipe.data.dir) and entry:
        return 0
    if entry in recipe.data.also:
        return 1 + recipe.data.also.index(entry)
    names = ", ".join([f"@{recipe.name}", *([recipe.data.dir] if recipe.data.dir else []), *recipe.data.also])
    raise InputError(
        f"recipe train.first_data entry {entry!r} is not one of its data folders ({names})", path
    )


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read a recipe JSON file.

    Raises:
        InputError: the file is missing, not JSON, or has unknown/invalid settings.
    """
    d, p = read_recipe_json(path)
    return recipe_from_dict(d, p)
