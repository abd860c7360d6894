"""``mlvfx smoke``: simulate a smoke shot to a frame sequence.

    mlvfx smoke run --scenario plume --dims 3 --res 64 --frames 48 --reference -o shots/plume

writes ``frame_0001.npz`` ... (arrays ``density`` (Z, Y, X) and ``velocity`` (Z, Y, X, 3),
components (x, y, z), float32; 2D shots are one voxel deep; and ``voxel_size``, ``origin`` (voxel
(0, 0, 0)'s centre, x y z), ``frame`` and ``frame_seconds``) and, where an ``openvdb`` module is
available (see :mod:`mlvfx.io.volume`), ``frame_0001.vdb`` ... with grids ``density`` and ``vel``,
Y-up (Houdini) or, with ``--up z``, Z-up (Blender), and last ``shot.json`` (what made the frames:
solver, model and weights' sha256, settings, the scenario's drawn values). Without ``--reference`` the learned
surrogate is used (the zoo's ``smoke<dims>d``, or ``--weights``); a model the zoo lacks is a clear
``ModelNotFound`` error. ``mlvfx smoke bench`` compares a surrogate with the reference, coarse-only
and coarse + smooth upsampling (bicubic in 2D, trilinear in 3D) on held-out shots.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mlvfx.errors import InputError, OutputExistsError
from mlvfx.io.atomic import output_path, write_bytes_atomic

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``smoke`` command group (``smoke run``)."""
    from mlvfx.fluids import SCENARIO_NAMES

    smoke = subparsers.add_parser("smoke", help="smoke simulation (reference solver, learned surrogate)")
    sub = smoke.add_subparsers(dest="smoke_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "run",
        help="simulate a scenario to a frame sequence (.npz, and .vdb when openvdb is available)",
        description="Simulate a generic smoke shot and write one file per frame.",
    )
    p.add_argument("--scenario", choices=SCENARIO_NAMES, default="plume", help="shot family (default: plume)")
    p.add_argument("--dims", type=int, choices=(2, 3), default=3, help="2 or 3 dimensions (default: 3)")
    p.add_argument("--res", type=int, default=64, help="cells per axis (default: 64)")
    p.add_argument("--frames", type=int, default=48, help="frames to write (default: 48)")
    p.add_argument("--steps-per-frame", type=int, default=1, help="solver steps per frame (default: 1)")
    p.add_argument("--fps", type=float, default=24.0, help="frames per second (default: 24)")
    p.add_argument(
        "--seed", type=int, default=None, help="randomise the shot reproducibly (default: canonical)"
    )
    p.add_argument(
        "--model",
        default=None,
        help="surrogate model id, or ID@VERSION to pin one (default: smoke3d, or smoke3d_128 from --res "
        "96 up; in 2D smoke2d, which is not published; a version MLVFX_SMOKE_MODELS pins, else the newest)",
    )
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="a local surrogate .safetensors instead of the zoo's (e.g. a training run's)",
    )
    p.add_argument("--reference", action="store_true", help="run the reference solver instead of a surrogate")
    p.add_argument(
        "--open-inflow",
        choices=("clean", "border"),
        default="clean",
        help="what air enters through open walls: clean (smoke-free, default) or border (the border "
        "cell's own smoke, the convention of the training data's reference runs)",
    )
    p.add_argument(
        "--vdb",
        choices=("auto", "on", "off"),
        default="auto",
        help="also write OpenVDB: auto = when openvdb is importable (default), on = required, off",
    )
    p.add_argument(
        "--device", default=None, help="torch device (default: MLVFX_DEVICE, else CUDA if present)"
    )
    p.add_argument(
        "--up",
        choices=("y", "z"),
        default="y",
        help="VDB up axis: y (Houdini, default) or z (Blender: the shot turned +90 degrees about X and "
        "moved back into the positive octant, so Blender Y = depth - z)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing frame files and shot.json")
    p.add_argument("-o", "--output", required=True, type=output_path, help="output folder")
    p.set_defaults(func=cmd_run)

    b = sub.add_parser(
        "bench",
        help="surrogate vs reference, coarse-only and coarse + smooth upsampling (bicubic in 2D, trilinear "
        "in 3D) on held-out shots",
        description="Density error against the reference at several steps, divergence, long-run "
        "stability and time per step, all in one run on held-out shots (seeds from 5000).",
    )
    b.add_argument(
        "--dims",
        type=int,
        choices=(2, 3),
        default=3,
        help="2 or 3 dimensions (default: 3; no 2D model is published, so 2D needs --weights)",
    )
    b.add_argument("--res", type=int, default=None, help="output resolution (default: 256 in 2D, 128 in 3D)")
    b.add_argument(
        "--model",
        default=None,
        help="zoo model id, or ID@VERSION (default: smoke3d, or smoke3d_128 from --res 96 up; in 2D smoke2d, "
        "which is not published)",
    )
    b.add_argument("--weights", type=Path, default=None, help="a local surrogate .safetensors instead")
    b.add_argument("--shots", type=int, default=4, help="held-out shots (default: 4; 0 = timing only)")
    b.add_argument("--steps", type=int, nargs="+", default=[50, 100, 200], help="evaluation steps")
    b.add_argument(
        "--stability-steps",
        type=int,
        default=None,
        help="long rollout for the stability check (default: 4x the training shots: 400 in 3D, 640 in 2D)",
    )
    b.add_argument(
        "--stability-shots",
        type=int,
        default=None,
        help="shots for the stability check (default 1; 0 with --shots 0)",
    )
    b.add_argument("--timing-steps", type=int, default=20, help="timed steps per method (default: 20)")
    b.add_argument(
        "--open-inflow",
        choices=("clean", "border"),
        default="clean",
        help="what air enters the surrogate's coarse grid through open walls (default: clean, as "
        "hosts and `smoke run` use; border: the reference's convention, as in older benchmark runs)",
    )
    b.add_argument("--plot", type=output_path, default=None, help="write the error curves as a PNG")
    b.add_argument("--out-json", type=output_path, default=None, help="write the full result as JSON")
    b.add_argument("--overwrite", action="store_true", help="replace existing --plot / --out-json files")
    b.set_defaults(func=cmd_bench)


def cmd_run(args: argparse.Namespace) -> int:
    """Handler of ``mlvfx smoke run``; returns the exit code."""
    from mlvfx.cli import emit, progress_bar
    from mlvfx.fluids.reference import Stepper
    from mlvfx.fluids.scenarios import make_scenario
    from mlvfx.io.volume import openvdb_module

    if args.frames < 1 or args.steps_per_frame < 1:
        raise InputError(
            f"--frames and --steps-per-frame must be >= 1, got {args.frames} and {args.steps_per_frame}"
        )
    if not (math.isfinite(args.fps) and 1.0 <= args.fps <= 1000.0):
        raise InputError(f"--fps must be between 1 and 1000, got {args.fps:g}")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    vdb = args.vdb == "on" or (args.vdb == "auto" and openvdb_module() is not None)
    if vdb and openvdb_module() is None:
        raise InputError("--vdb on needs the openvdb Python module (pip, Houdini or the bpy wheel)")
    dt = 1.0 / (args.fps * args.steps_per_frame)
    scenario = make_scenario(args.scenario, args.dims, args.res, seed=args.seed, dt=dt, device=args.device)
    outdir: Path = args.output
    names = [f"frame_{i:04d}" for i in range(1, args.frames + 1)]
    suffixes = (".npz", ".vdb") if vdb else (".npz",)
    if not args.overwrite:
        targets = [outdir / (name + suffix) for name in names for suffix in suffixes]
        for path in [*targets, outdir / SHOT_FILE]:
            if path.exists():
                raise OutputExistsError("already exists (pass --overwrite to replace it)", path)
    stepper: Any
    model = None
    model_sha256 = None
    if args.reference:
        stepper = Stepper(replace(scenario.config, open_inflow=args.open_inflow))
    else:
        from mlvfx.fluids.surrogate import dt_warning, resolution_warning

        stepper, model, model_sha256 = _surrogate_stepper(args, scenario.config)
        warnings = [dt_warning(scenario.config.dt)]
        if args.model and args.weights is None:  # a model named on the command line
            warnings.append(resolution_warning(args.model, args.dims, max(scenario.config.shape)))
        for warning in warnings:
            if warning is not None and not args.quiet:
                print(f"mlvfx: warning: {warning}", file=sys.stderr)
    start = time.perf_counter()
    # Replacing an earlier shot: the new one is written beside it and moved in once complete, so an
    # interrupted run leaves the earlier shot whole, not its tail behind the new shot's first frames.
    earlier = args.overwrite and outdir.is_dir() and bool(_stale_frames(outdir, []))
    staging = _staging_folder(outdir) if earlier else None
    try:
        with progress_bar(args, f"smoke {args.scenario}") as progress, _named_in(outdir, staging):
            written, solving = write_shot(
                stepper,
                scenario,
                names,
                staging or outdir,
                steps_per_frame=args.steps_per_frame,
                vdb=vdb,
                up=args.up,
                overwrite=args.overwrite and staging is None,
                progress=progress,
            )
            # Written last, beside the frames: a folder with shot.json holds a whole shot.
            sidecar = _shot_record(args, scenario, model, model_sha256, written, staging or outdir)
            written.append(
                str(write_bytes_atomic(sidecar[0], sidecar[1], overwrite=args.overwrite and staging is None))
            )
        with _signals_held():  # once the new shot goes in, it goes in whole, tail removed too
            if staging is not None:
                written = _move_in(staging, outdir, written)
            stale = _stale_frames(outdir, written) if args.overwrite else []
            for path in stale:  # an earlier, longer shot's frames, or .vdb beside a run with --vdb off
                path.unlink(missing_ok=True)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    elapsed = time.perf_counter() - start
    steps = args.frames * args.steps_per_frame
    emit(
        args,
        {
            "output": str(outdir),
            "frames": args.frames,
            "files": written,
            "vdb": vdb,
            "solver": "reference" if args.reference else "surrogate",
            "model": model,
            "ms_per_step": 1e3 * solving / steps,
            "seconds_total": elapsed,
            "removed_stale": [str(p) for p in stale],
            "params": scenario.params,
        },
        f"wrote {args.frames} frames to {outdir} in {elapsed:.1f} s ({1e3 * solving / steps:.1f} ms per "
        f"solver step{', with OpenVDB' if vdb else ''}; {model or 'reference solver'})",
    )
    return 0


SHOT_FILE = "shot.json"


def _shot_record(
    args: argparse.Namespace,
    scenario: Any,
    model: str | None,
    model_sha256: str | None,
    written: list[str],
    folder: Path,
) -> tuple[Path, bytes]:
    """``shot.json``: what made the frames (solver, model and its bytes' hash, every setting and
    the scenario's drawn values), so a cache on a farm disk says how to make it again."""
    import json

    from mlvfx import __version__
    from mlvfx.config import torch_device

    config = scenario.config
    record = {
        "mlvfx": __version__,
        "solver": "reference" if args.reference else "surrogate",
        "model": model,
        "model_sha256": model_sha256,
        "scenario": args.scenario,
        "dims": args.dims,
        "res": args.res,
        "shape_zyx": [int(n) for n in config.shape],
        "frames": args.frames,
        "fps": args.fps,
        "steps_per_frame": args.steps_per_frame,
        "dt": config.dt,
        "voxel_size": config.dx,
        "seed": args.seed,
        "open_inflow": args.open_inflow,
        "vdb_up": args.up,
        "device": str(torch_device(config.device)),
        "params": scenario.params,
        "files": [Path(p).name for p in written],
    }
    return folder / SHOT_FILE, (json.dumps(record, indent=1, default=str) + "\n").encode()


@contextlib.contextmanager
def _named_in(outdir: Path, staging: Path | None) -> Iterator[None]:
    """An error about a file of the staging folder names the frame it was to become in ``outdir``:
    the staging folder is gone by the time the user reads the line (an audit)."""
    from mlvfx.errors import MlvfxError

    try:
        yield
    except MlvfxError as exc:
        if staging is None or exc.path is None or Path(exc.path).parent != staging:
            raise
        try:
            renamed = type(exc)(exc.message, outdir / Path(exc.path).name)
        except TypeError:  # a subclass with another signature: as it was
            raise exc from None
        raise renamed from None


def _staging_folder(outdir: Path) -> Path:
    """A hidden folder inside ``outdir``: the same filesystem as the frames (moving them in is a
    rename, also when ``outdir`` is a link to another disk), and no write access to its parent
    needed. Frame files are matched by name, so it is never taken for one."""
    from mlvfx.errors import ImageWriteError
    from mlvfx.io.atomic import make_temp_dir

    try:
        return make_temp_dir(outdir, ".smoke-staging-")
    except OSError as exc:
        raise ImageWriteError(f"cannot create output: {exc.strerror or exc}", outdir) from None


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (a few renames), where the platform allows."""
    import signal

    held = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):  # Windows, or not the main thread's business
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _move_in(staging: Path, outdir: Path, written: list[str]) -> list[str]:
    """Move a finished shot's frames from ``staging`` into ``outdir``, replacing the earlier ones:
    all or none (a frame held open on Windows left a shot half old, half new; an audit)."""
    from mlvfx.io.atomic import replace_files

    moves = [(Path(name), outdir / Path(name).name) for name in written]
    replace_files(moves)
    return [str(target) for _, target in moves]


def _stale_frames(outdir: Path, written: list[str]) -> list[Path]:
    """Frame files in ``outdir`` (``frame_NNNN.npz`` / ``.vdb``) that this run did not write.

    With ``--overwrite`` they are an earlier shot's: left in place, a folder would hold frames of
    two shots (a longer earlier run's tail, or .vdb files beside a run with ``--vdb off``).
    Removed only after every frame of the new shot is written.
    """
    import re

    keep = {Path(p).name for p in written}
    pattern = re.compile(r"frame_\d{4,}\.(npz|vdb)")
    return sorted(
        p for p in outdir.iterdir() if pattern.fullmatch(p.name) and p.name not in keep and p.is_file()
    )


def write_shot(
    stepper: Any,
    scenario: Any,
    names: list[str],
    outdir: Path,
    *,
    steps_per_frame: int = 1,
    vdb: bool = False,
    up: Literal["y", "z"] = "y",
    overwrite: bool = False,
    progress: Any = None,
) -> tuple[list[str], float]:
    """Step ``scenario`` with ``stepper`` and write one ``.npz`` (and ``.vdb``) per name.

    Returns the files written and the seconds spent in the solver.
    """
    from mlvfx.io.volume import write_vdb, write_volume_npz

    dx = scenario.config.dx
    density: np.ndarray[Any, Any] | None = None
    velocity: np.ndarray[Any, Any] | None = None
    written: list[str] = []
    solving = 0.0
    for index, name in enumerate(names):
        tick = time.perf_counter()
        for _ in range(steps_per_frame):
            density, velocity = stepper.step(density, velocity, scenario.sources, scenario.obstacles)
        solving += time.perf_counter() - tick
        assert density is not None and velocity is not None
        vol_d, vol_v = _volume(density, velocity)
        # Where the voxels are and when the frame is, so the .npz stands alone as the VDB does:
        # voxel (0, 0, 0)'s centre at ``origin`` (x, y, z; +Y up), one frame every ``frame_seconds``.
        path = write_volume_npz(
            outdir / f"{name}.npz",
            vol_d,
            vol_v,
            overwrite=overwrite,
            voxel_size=np.array(dx),
            origin=np.full(3, 0.5 * dx),
            frame=np.array(index + 1),
            frame_seconds=np.array(steps_per_frame * scenario.config.dt),
        )
        written.append(str(path))
        if vdb:
            path = write_vdb(
                outdir / f"{name}.vdb",
                {"density": vol_d, "vel": vol_v},
                voxel_size=dx,
                origin=(0.5 * dx,) * 3,  # the domain starts at 0; voxel centres sit half a cell in
                up=up,
                overwrite=overwrite,
            )
            written.append(str(path))
        if progress is not None:
            progress((index + 1) / len(names), f"frame {index + 1}/{len(names)}")
    return written, solving


def _load_surrogate(args: argparse.Namespace, res: int) -> tuple[Any, int, str, str]:
    """``(net, factor, name, sha256)`` from ``--weights`` or the zoo's ``--model`` (else the default
    for ``res``); ``sha256`` is the weights' bytes' (the manifest's, checked when fetched)."""
    from mlvfx.fluids.surrogate import surrogate_from_state
    from mlvfx.zoo import load_state_dict

    if args.weights is not None:
        if not args.weights.is_file():
            what = "is not a regular file" if args.weights.exists() else "not found"
            raise InputError(f"surrogate weights {what}", path=args.weights)
        net, factor = surrogate_from_state(load_state_dict(args.weights), source=str(args.weights))
        return net, factor, str(args.weights), _weights_sha256(args.weights)
    from mlvfx import zoo
    from mlvfx.fluids.surrogate import default_model, load_surrogate

    model = args.model or default_model(args.dims, res)
    net, factor, version = load_surrogate(model)
    model_id = model.partition("@")[0]
    sha = zoo.load_manifest().get(model_id, version).file(None, "safetensors").sha256
    return net, factor, f"{model_id} {version}", sha


def _weights_sha256(path: Path) -> str:
    """The sha256 of a local weights file."""
    from mlvfx.errors import ImageReadError
    from mlvfx.zoo.cache import sha256_file

    try:
        return sha256_file(path)
    except OSError as exc:
        raise ImageReadError(f"cannot read surrogate weights: {exc.strerror or exc}", path) from None


def _surrogate_stepper(args: argparse.Namespace, config: Any) -> tuple[Any, str, str]:
    """The surrogate stepper for ``config``, the model's name (``id version`` or the weights' path)
    and the weights' sha256."""
    from mlvfx.fluids.surrogate import SurrogateStepper

    net, factor, name, sha = _load_surrogate(args, max(config.shape))
    return SurrogateStepper(config, net, factor, open_inflow=args.open_inflow), name, sha


def cmd_bench(args: argparse.Namespace) -> int:
    """Handler of ``mlvfx smoke bench``."""
    import json

    from mlvfx.cli import emit, progress_bar
    from mlvfx.fluids.bench import BenchSpec, format_table, plot_curves, run_bench
    from mlvfx.io.atomic import check_writable, write_bytes_atomic

    if args.res is not None and args.res < 1:
        raise InputError(f"--res must be >= 1, got {args.res}")
    res = args.res or (256 if args.dims == 2 else 128)
    stability_shots = min(1, args.shots) if args.stability_shots is None else args.stability_shots
    if args.shots < 0 or stability_shots < 0 or args.timing_steps < 1 or min(args.steps) < 1:
        raise InputError("--timing-steps and --steps must be >= 1, --shots and --stability-shots >= 0")
    if stability_shots > args.shots:
        raise InputError("--stability-shots cannot exceed --shots")
    for out in (args.plot, args.out_json):  # before the bench's minutes of work, not after
        if out is not None:
            check_writable(out, args.overwrite)
    if args.plot is not None and args.shots == 0:
        raise InputError("--plot draws the error curves of the shots; --shots 0 times the methods only")
    if args.plot is not None and args.shots > 0 and max(args.steps) < 10:
        raise InputError(
            "--plot needs an evaluation step of 10 or more (the curves are sampled every 10 steps)"
        )
    stability_steps = (
        args.stability_steps if args.stability_steps is not None else (640 if args.dims == 2 else 400)
    )
    if stability_steps < 1:
        raise InputError(f"--stability-steps must be >= 1, got {stability_steps}")
    net, factor, name, _ = _load_surrogate(args, res)
    spec = BenchSpec(
        dims=args.dims,
        res=res,
        shots=args.shots,
        eval_steps=tuple(sorted(set(args.steps))),
        stability_steps=stability_steps,
        stability_shots=stability_shots,
        timing_steps=args.timing_steps,
        open_inflow=args.open_inflow,
    )
    with progress_bar(args, "smoke bench") as progress:
        result = run_bench(net, factor, spec, progress=progress)
    result["model"] = name
    if args.plot is not None and result["curves"]:
        plot_curves(result, args.plot, overwrite=args.overwrite)
    if args.out_json is not None:
        data = (json.dumps(result, indent=1) + "\n").encode()
        write_bytes_atomic(args.out_json, data, overwrite=args.overwrite)
    stab = "; ".join(
        f"{s['scenario']} {s['steps']} steps: {'finite' if s['finite'] else 'NaN'}, total density "
        f"{100 * (s['total_density_ratio'] - 1):+.1f}% vs reference ({'ok' if s['ok'] else 'FAIL'}; "
        f"coarse-only {100 * (s['coarse_total_density_ratio'] - 1):+.1f}%; last-quarter mean "
        f"{100 * (s['last_quarter_ratio'] - 1):+.1f}%, coarse-only "
        f"{100 * (s['coarse_last_quarter_ratio'] - 1):+.1f}%)"
        for s in result["stability"]
    )
    text = (
        f"model {name} ({args.open_inflow} inflow), {args.dims}D {res} on {result['device']}, "
        f"{args.shots} held-out shots, load average "
        f"{result['load_average']:.1f}\n{format_table(result)}\nstability: {stab or 'not run'}"
    )
    emit(args, result, text)
    return 0


def _volume(
    density: np.ndarray[Any, Any], velocity: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], ...]:
    """2D stepper output ``(Y, X)`` / ``(Y, X, 2)`` as one-voxel-deep volumes; 3D unchanged."""
    if density.ndim == 2:
        vel3 = np.concatenate([velocity, np.zeros_like(velocity[..., :1])], axis=-1)
        return density[None], vel3[None]
    return density, velocity
