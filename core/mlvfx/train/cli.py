"""``mlvfx train material``: render the training data if missing, then train the material model."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mlvfx.argtypes import minutes, whole_number
from mlvfx.io.atomic import output_path


def _run_folder_options(p: argparse.ArgumentParser) -> None:
    """``-o/--out``, ``--resume``, ``--budget-minutes`` and ``--overwrite``, as every trainer has them."""
    p.add_argument(
        "-o",
        "--out",
        "--output",
        dest="out",
        type=output_path,
        default=None,
        help="output folder (default: runs/<recipe name>)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument(
        "--budget-minutes",
        type=minutes,
        default=None,
        help="stop (with weights) after this long in all (a resumed run counts its earlier sessions)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in an OUT that holds a run (its files are replaced)",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``train`` (with its ``material`` subcommand) to the ``mlvfx`` command."""
    train = subparsers.add_parser("train", help="train models from their recipes")
    sub = train.add_subparsers(dest="train_command", required=True)
    p = sub.add_parser(
        "material",
        help="train the material model (photo -> normal, height, albedo, roughness)",
        description="Render the recipe's training set with Blender if it is incomplete (resumable), "
        "then train. Checkpoints are written every few minutes; --resume continues an interrupted "
        "run. Uses CUDA when available (or MLVFX_DEVICE=cuda / --device).",
    )
    p.add_argument("--recipe", required=True, help="recipe JSON, e.g. model_zoo/recipes/material_v1.json")
    p.add_argument("--data", default=None, help="dataset folder (default: the recipe's, else the cache)")
    _run_folder_options(p)
    p.add_argument("--steps", type=whole_number(1), default=None, help="override the recipe's step count")
    p.add_argument(
        "--skip-render",
        action="store_true",
        help="train on the samples already there instead of rendering the missing ones",
    )
    p.add_argument("--device", default=None, help="torch device (cpu, cuda, cuda:1, mps)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: the recipe's; fewer when the box is shared)",
    )
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export at the end")
    p.add_argument(
        "--allow-recipe-change",
        action="store_true",
        help="with --resume: continue a checkpoint another recipe wrote (say, on a new schedule)",
    )
    p.set_defaults(func=_material)
    for dims in (2, 3):
        q = sub.add_parser(
            f"smoke{dims}d",
            help=f"train the {dims}D smoke surrogate (Solver-in-the-Loop on the reference solver)",
            description="Run the recipe's reference shots if missing (resumable), then train the correction "
            "net through the coarse solver. Checkpoints every few minutes; --resume continues.",
        )
        q.add_argument(
            "--recipe", required=True, help=f"recipe JSON, e.g. model_zoo/recipes/smoke{dims}d_v2.json"
        )
        q.add_argument("--data", default=None, help="shot folder (default: the recipe's, else the cache)")
        _run_folder_options(q)
        q.add_argument(
            "--iterations", type=whole_number(0), default=None, help="override the recipe's iterations"
        )
        q.add_argument("--threads", type=int, default=None, help="CPU threads (default: the recipe's)")
        q.add_argument("--skip-data", action="store_true", help="train on the shots already there")
        q.add_argument(
            "--allow-recipe-change",
            action="store_true",
            help="with --resume: continue a checkpoint another recipe wrote",
        )
        q.set_defaults(func=_smoke, dims=dims)


def default_data_dir(name: str) -> Path:
    """Where a recipe's training data goes when neither the recipe nor ``--data`` names a folder."""
    from mlvfx.config import cache_dir

    return cache_dir() / "data" / f"{name}_train"


def recipe_data_dir(given: str | None, recipe_dir: str, recipe_name: str) -> Path:
    """The data folder: ``--data``, else the recipe's ``data.dir``, else the cache's folder for the
    recipe. A ``data.dir`` of ``@other`` means the cache folder of recipe ``other``: recipes that
    continue another one on the same renders share its data instead of rendering it again.
    """
    if given:
        return Path(given).expanduser()
    if recipe_dir.startswith("@"):
        other = recipe_dir[1:]
        if not other or "/" in other or "\\" in other or other in (".", ".."):
            from mlvfx.errors import InputError

            raise InputError(f"bad shared data name in the recipe: {recipe_dir!r}")
        return default_data_dir(other)
    return Path(recipe_dir or default_data_dir(recipe_name)).expanduser()


def _render_material_data(recipe: Any, data_dir: Path, quiet: bool) -> None:
    """Render (or finish rendering) the factory dataset a recipe's ``data`` section describes."""
    from mlvfx.cli import make_bar
    from mlvfx.data import materials, splits

    families = splits.expand_families(list(recipe.data.families))
    splits.check_train_seed(recipe.data.seed)
    bar = make_bar(total=recipe.data.count, desc=f"data {recipe.name}", disable=quiet, unit="render")

    def render_progress(fraction: float, message: str) -> None:
        bar.n = round(fraction * recipe.data.count)
        bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    try:
        materials.generate(
            data_dir,
            recipe.data.count,
            size=recipe.data.size,
            seed=recipe.data.seed,
            families=families,
            samples=recipe.data.samples,
            lighting=recipe.data.lighting,
            progress=render_progress,
        )
    finally:
        bar.close()


def _material(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mlvfx.cli import make_bar
    from mlvfx.errors import InputError
    from mlvfx.train.material import train_material, with_overrides
    from mlvfx.train.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        recipe = with_overrides(recipe, threads=args.threads)
    data_dir = recipe_data_dir(args.data, recipe.data.dir, recipe.name)
    # data.also: other recipes (in this recipe's folder) whose renders are trained on too.
    extra = []
    for other in recipe.data.also:
        other_recipe = load_recipe(Path(args.recipe).parent / f"{other[1:]}.json")
        extra.append((other_recipe, recipe_data_dir(None, other_recipe.data.dir, other_recipe.name)))
    out_dir = Path(args.out or Path("runs") / recipe.name)
    from mlvfx.train.runlog import check_run_folder

    # before any rendering; with --overwrite the earlier run's files go now
    check_run_folder(out_dir, resume=args.resume, overwrite=args.overwrite, weights_name=recipe.name)
    quiet = bool(getattr(args, "quiet", False)) or bool(getattr(args, "json", False))
    if not args.skip_render:
        _render_material_data(recipe, data_dir, quiet)
        for other_recipe, other_dir in extra:
            _render_material_data(other_recipe, other_dir, quiet)
    else:  # the renders already there must be the ones the recipes describe
        from mlvfx.data import materials, splits

        for r, folder in ((recipe, data_dir), *extra):
            materials.check_dataset(
                folder,
                seed=r.data.seed,
                size=r.data.size,
                samples=r.data.samples,
                families=splits.expand_families(list(r.data.families)),
                lighting=r.data.lighting,
            )
    total = args.steps or recipe.train.steps
    tbar = make_bar(total=total, desc="train", disable=quiet, unit="step")

    def log(record: dict[str, Any]) -> None:
        if record.get("event") == "start":
            tbar.n = int(record["step"])
        elif record.get("event") == "train":
            tbar.n = int(record["step"])
            tbar.set_postfix_str(f"loss {record['total']:.4f}", refresh=False)
        elif not quiet:
            tqdm.write(json.dumps(record), file=sys.stderr)
        tbar.refresh()

    try:
        res = train_material(
            recipe,
            data_dir=[data_dir, *(d for _, d in extra)],
            out_dir=out_dir,
            resume=args.resume,
            allow_recipe_change=args.allow_recipe_change,
            steps=args.steps,
            budget_minutes=args.budget_minutes,
            device=args.device,
            export_onnx=not args.no_onnx,
            log=log,
        )
    except KeyboardInterrupt:
        _say_how_to_resume(args, "material", out_dir)
        raise
    finally:
        tbar.close()
    summary = {
        "out": str(res.out),
        "steps_done": res.steps_done,
        "total_steps": res.total_steps,
        "stopped": res.stopped,
        "seconds": round(res.seconds, 1),
        "weights": None if res.weights is None else str(res.weights),
        "onnx": None if res.onnx is None else str(res.onnx),
    }
    if getattr(args, "json", False):
        print(json.dumps(summary))
    elif not getattr(args, "quiet", False):
        print(
            f"{res.steps_done}/{res.total_steps} steps ({res.stopped}) in {res.seconds / 60:.1f} min "
            f"-> {res.weights}"
        )
    if res.stopped != "finished":
        _say_how_to_resume(args, "material", out_dir, res.stopped, res.seconds)
    return 0


def _say_how_to_resume(
    args: argparse.Namespace, kind: str, out_dir: Path, stopped: str = "interrupted", seconds: float = 0.0
) -> None:
    """On stderr, after a run stopped early (Ctrl-C, SIGTERM, its budget): the command that goes on,
    with the options this run was given (its length, data, threads, device)."""
    import shlex
    import subprocess

    from mlvfx.train.runlog import CHECKPOINT

    join = subprocess.list2cmdline if os.name == "nt" else shlex.join  # cmd.exe knows no '...'

    if getattr(args, "quiet", False) or not (out_dir / CHECKPOINT).is_file():
        return
    command = ["mlvfx", "train", kind, "--recipe", str(args.recipe), "--resume", "-o", str(out_dir)]
    for flag, key in (("--data", "data"), ("--steps", "steps"), ("--iterations", "iterations"),
                      ("--threads", "threads"), ("--device", "device")):  # fmt: skip
        if getattr(args, key, None) is not None:
            command += [flag, str(getattr(args, key))]
    switches = ("skip_render", "skip_data", "no_onnx", "allow_recipe_change")
    command += ["--" + key.replace("_", "-") for key in switches if getattr(args, key, False)]
    if stopped == "budget":  # the budget counts every session: the same one stops again at once
        print(
            f"mlvfx: checkpointed after its time budget ({seconds / 60:.1f} min trained); resume with "
            f"a larger budget: {join(command)} --budget-minutes MINUTES",
            file=sys.stderr,
        )
        return
    if getattr(args, "budget_minutes", None) is not None:
        command += ["--budget-minutes", f"{args.budget_minutes:g}"]
    print(f"mlvfx: checkpointed; resume with: {join(command)}", file=sys.stderr)


def _smoke(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mlvfx.cli import make_bar
    from mlvfx.errors import InputError
    from mlvfx.train.smoke import generate_data, load_smoke_recipe, train_surrogate

    recipe = load_smoke_recipe(args.recipe)
    if recipe.dims != args.dims:
        raise InputError(f"recipe is for {recipe.dims}D, not smoke{args.dims}d", path=Path(args.recipe))
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    data_dir = Path(args.data or recipe.data.dir or default_data_dir(recipe.name)).expanduser()
    out_dir = Path(args.out or Path("runs") / recipe.name)
    from mlvfx.train.runlog import check_run_folder

    # before any reference shot; with --overwrite the earlier run's files go now
    check_run_folder(out_dir, resume=args.resume, overwrite=args.overwrite, weights_name=recipe.name)
    quiet = bool(getattr(args, "quiet", False)) or bool(getattr(args, "json", False))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.skip_data:
        with make_bar(total=1000, desc="shots", disable=quiet, bar_format="{l_bar}{bar}| {postfix}") as bar:

            def progress(fraction: float, message: str) -> None:
                bar.n = round(1000 * fraction)
                bar.set_postfix_str(message, refresh=False)
                bar.refresh()

            generate_data(data_dir, recipe, progress=progress)
            if recipe.upres.iterations > 0:
                from mlvfx.train.smoke import generate_fine

                generate_fine(data_dir, recipe, progress=progress)
            if recipe.vupres.iterations > 0:
                from mlvfx.train.smoke import generate_fine_velocity

                generate_fine_velocity(data_dir, recipe, progress=progress)
    total = args.iterations or recipe.train.iterations
    tbar = make_bar(total=total, desc="train", disable=quiet, unit="it")

    def log(record: dict[str, Any]) -> None:
        if record.get("event") in ("start", "train"):
            tbar.n = int(record["iteration"])
            if "loss" in record:
                tbar.set_postfix_str(f"loss {record['loss']:.4f} unroll {record['unroll']}", refresh=False)
        elif not quiet:
            tqdm.write(json.dumps(record), file=sys.stderr)
        tbar.refresh()

    try:
        res = train_surrogate(
            recipe,
            data_dir=data_dir,
            out_dir=out_dir,
            resume=args.resume,
            allow_recipe_change=args.allow_recipe_change,
            iterations=args.iterations,
            budget_minutes=args.budget_minutes,
            threads=args.threads,
            log=log,
        )
    except KeyboardInterrupt:
        _say_how_to_resume(args, f"smoke{recipe.dims}d", out_dir)
        raise
    finally:
        tbar.close()
    summary = {
        "out": str(res.out),
        "iterations_done": res.iterations_done,
        "stopped": res.stopped,
        "seconds": round(res.seconds, 1),
        "weights": None if res.weights is None else str(res.weights),
        "validation": res.validation,
        "vupres": res.vupres,
    }
    if getattr(args, "json", False):
        print(json.dumps(summary))
    elif not getattr(args, "quiet", False):
        v = res.validation
        ratios = ", ".join(f"t={k[7:]}: {v[k]:.2f}x" for k in v if k.startswith("ratio_t"))
        print(
            f"{res.iterations_done} iterations ({res.stopped}) in {res.seconds / 60:.1f} min -> "
            f"{res.weights}; validation error vs coarse-only {ratios}"
        )
        if res.vupres is not None:
            vu = res.vupres
            print(
                f"velocity upres: {vu['iterations']} iterations in {vu['seconds'] / 60:.1f} min; validation "
                f"velocity error {vu['val_score']:.3f} (linear upsampling {vu['linear_val_score']:.3f})"
            )
    if res.stopped != "finished":
        _say_how_to_resume(args, f"smoke{recipe.dims}d", out_dir, res.stopped, res.seconds)
    return 0
