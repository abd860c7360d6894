"""``mlvfx eval material`` and ``mlvfx eval sheet``."""

from __future__ import annotations

import argparse
import json
import sys

from mlvfx.eval.material import MAPS
from mlvfx.io.atomic import output_path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eval`` (with ``material`` and ``sheet``) to the ``mlvfx`` command."""
    ev = subparsers.add_parser("eval", help="evaluate predictions against ground truth")
    sub = ev.add_subparsers(dest="eval_command", required=True)

    m = sub.add_parser(
        "material",
        help="score predicted material maps against factory ground truth",
        description="Per-family and overall metrics: normal angular error, albedo scale-invariant "
        "RMSE, height RMSE after scale+shift, roughness MAE. PRED mirrors TRUTH: one folder per "
        "sample with any of normal.png, albedo.png, height.(exr|png), roughness.png.",
    )
    m.add_argument("--pred", required=True, help="prediction folder")
    m.add_argument("--truth", required=True, help="ground-truth dataset folder (or one sample)")
    m.add_argument("--per-sample", action="store_true", help="also list every sample (JSON always does)")
    m.set_defaults(func=_material)

    s = sub.add_parser(
        "sheet",
        help="write a PNG contact sheet: input | prediction | truth per map",
        description="One row per sample: the input photo, then prediction and truth for each map. "
        "TRUTH may hold real photos without ground truth (folders with only lit.png).",
    )
    s.add_argument("--truth", required=True, help="sample folders with lit.png (+ truth maps if any)")
    s.add_argument("--pred", default=None, help="prediction folder mirroring --truth")
    s.add_argument("-o", "--out", "--output", dest="out", type=output_path, required=True, help="output PNG")
    s.add_argument("--maps", nargs="+", default=list(MAPS), choices=list(MAPS), help="maps to show")
    s.add_argument("--tile", type=int, default=160, help="tile size in pixels (default 160)")
    s.add_argument("--limit", type=int, default=None, help="at most this many rows")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    s.set_defaults(func=_sheet)


def _material(args: argparse.Namespace) -> int:
    from mlvfx.eval.material import evaluate

    result = evaluate(args.pred, args.truth)
    if result.missing:  # a partial prediction folder: the table covers fewer samples than the truth
        total = len(result.samples) + len(result.missing)
        print(
            f"mlvfx: warning: {len(result.missing)} of {total} truth samples have no prediction in "
            f"{args.pred} (first: {result.missing[0]}); the table scores the other {len(result.samples)}",
            file=sys.stderr,
        )
    if getattr(args, "json", False):
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    print(result.to_markdown())
    if args.per_sample:
        print()
        for s in result.samples:
            cells = ", ".join(f"{k}={v:.4g}" for k, v in s.metrics.items())
            print(f"{s.name} ({s.family}): {cells}")
    return 0


def _sheet(args: argparse.Namespace) -> int:
    from mlvfx.eval.sheet import contact_sheet

    path = contact_sheet(
        args.out,
        truth=args.truth,
        pred=args.pred,
        maps=args.maps,
        tile=args.tile,
        limit=args.limit,
        overwrite=args.overwrite,
    )
    if getattr(args, "json", False):
        print(json.dumps({"out": str(path)}))
    elif not getattr(args, "quiet", False):
        print(f"wrote {path}")
    return 0
