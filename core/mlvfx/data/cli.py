"""``mlvfx data materials``: render a material dataset with the Blender factory."""

from __future__ import annotations

import argparse
import json

from mlvfx.errors import InputError
from mlvfx.io.atomic import output_path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``data`` (with its ``materials`` subcommand) to the ``mlvfx`` command."""
    data = subparsers.add_parser("data", help="generate training data")
    sub = data.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser(
        "materials",
        help="render material samples (photo + exact albedo/normal/height/roughness) with Blender",
        description="Render material samples with Blender (Cycles, CPU). Deterministic by seed; "
        "a rerun skips finished samples, so an interrupted run can simply be restarted.",
    )
    p.add_argument("--count", type=int, required=True, help="number of sample indices to cover")
    p.add_argument("--size", type=int, default=256, help="square resolution in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument(
        "-o", "--out", "--output", dest="out", type=output_path, required=True, help="output folder"
    )
    p.add_argument(
        "--families",
        nargs="+",
        default=None,
        help="families to draw from (default all; 'train' = all but the held-out ones; "
        "dunes, plaster, terraces and composite only when named)",
    )
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel (default 16)")
    p.add_argument(
        "--lighting",
        choices=("studio", "wide"),
        default="studio",
        help="lighting distribution: studio (default; sun 18-75 deg, near white) or wide "
        "(sun 5-89 deg, tinted suns, overcast)",
    )
    p.add_argument("--start", type=int, default=0, help="first sample index (default 0)")
    p.add_argument("--shard", type=int, default=0, help="this worker's shard, 0-based (default 0)")
    p.add_argument("--num-shards", type=int, default=1, help="number of workers (default 1)")
    p.add_argument(
        "--allow-validation-seed",
        action="store_true",
        help="allow a seed reserved for a published validation set",
    )
    p.set_defaults(func=_materials)


def _materials(args: argparse.Namespace) -> int:
    from mlvfx.cli import make_bar
    from mlvfx.data import materials, splits

    families = splits.expand_families(args.families)
    if not args.allow_validation_seed:
        splits.check_train_seed(args.seed)
    if args.count < 0:
        raise InputError(f"--count must be non-negative, got {args.count}")
    quiet = bool(getattr(args, "quiet", False)) or bool(getattr(args, "json", False))
    shards = max(args.num_shards, 1)
    mine = sum(1 for i in range(args.start, args.start + args.count) if i % shards == args.shard)
    bar = make_bar(total=mine, desc="render", disable=quiet, unit="render", dynamic_ncols=True)

    def progress(fraction: float, message: str) -> None:
        bar.n = round(fraction * mine)
        bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    try:
        rep = materials.generate(
            args.out,
            args.count,
            size=args.size,
            seed=args.seed,
            families=families,
            samples=args.samples,
            start=args.start,
            shard=args.shard,
            num_shards=args.num_shards,
            lighting=args.lighting,
            progress=progress,
        )
    finally:
        bar.close()
    summary = {
        "out": rep.out,
        "rendered": len(rep.rendered),
        "skipped": len(rep.skipped),
        "seconds": round(rep.seconds, 2),
        "renders_per_minute": round(rep.renders_per_minute, 2),
    }
    if getattr(args, "json", False):
        print(json.dumps(summary))
    elif not getattr(args, "quiet", False):
        print(
            f"{summary['rendered']} rendered, {summary['skipped']} already there, "
            f"{summary['renders_per_minute']} renders/min -> {rep.out}"
        )
    return 0
