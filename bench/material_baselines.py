"""Baselines on the public material validation set: trivial and classical methods.

Every learned material model is judged against the best of these. The script writes each
baseline's predictions into a temp folder, scores them with ``mlvfx.eval.material`` (the same
harness as ``mlvfx eval material``), prints markdown tables, and prints every metric as a ratio
against the trivial baseline measured in the same run. Optionally it writes contact sheets, also
for real photos without ground truth (scikit-image's brick, grass and gravel).

Usage:
    .venv/bin/python bench/material_baselines.py [--truth model_zoo/eval/materials_v1/256]
        [--sheets DIR] [--strengths 1 2 4 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mlvfx.eval.material import METRICS, EvalResult, evaluate, is_better, markdown_table, sample_folders
from mlvfx.io import read_image, write_image

Float = npt.NDArray[np.float32]
Maps = dict[str, Float]
Method = Callable[[Float], Maps]

ROOT = Path(__file__).resolve().parents[1]


def trivial(lit: Float) -> Maps:
    h, w = lit.shape[:2]
    flat = np.zeros((h, w, 3), np.float32)
    flat[..., 2] = 1.0
    return {
        "normal": flat,
        "albedo": lit,  # the photo itself as albedo
        "height": np.zeros((h, w), np.float32),  # constant: affine RMSE = std of the truth
        "roughness": np.full((h, w), 0.5, np.float32),
    }


def classical(strength: float) -> Method:
    from mlvfx.classical import delight_blur_divide, height_from_photo, height_to_normal, roughness_heuristic

    def run(lit: Float) -> Maps:
        height = height_from_photo(lit)
        return {
            "normal": height_to_normal(height, strength=strength),
            "albedo": delight_blur_divide(lit),
            "height": height,
            "roughness": roughness_heuristic(lit),
        }

    return run


def predict(method: Method, truth: Path, out: Path) -> float:
    """Write the method's maps for every sample; return mean seconds per image."""
    total = 0.0
    folders = sample_folders(truth)
    for folder in folders:
        lit, _ = read_image(folder / "lit.png", kind="color")
        t0 = time.perf_counter()
        maps = method(np.asarray(lit[..., :3], np.float32))
        total += time.perf_counter() - t0
        d = out / folder.name
        d.mkdir(parents=True, exist_ok=True)
        write_image(d / "normal.png", maps["normal"] * 0.5 + 0.5, kind="data", bit_depth=16)
        write_image(d / "albedo.png", maps["albedo"], kind="color", bit_depth=8)
        write_image(d / "height.exr", maps["height"], kind="data", bit_depth=32)
        write_image(d / "roughness.png", maps["roughness"], kind="data", bit_depth=8)
    return total / max(len(folders), 1)


def real_photo_inputs(out: Path, size: int = 256) -> Path:
    """scikit-image's real texture photos (brick, grass, gravel) as lit.png sample folders."""
    import cv2
    from skimage import data

    from mlvfx.color import srgb_to_linear

    for name in ("brick", "grass", "gravel"):
        img = np.asarray(getattr(data, name)(), np.float32) / 255.0
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        img = np.asarray(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA), np.float32)
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        write_image(d / "lit.png", np.asarray(srgb_to_linear(img), np.float32), kind="color", overwrite=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--truth", type=Path, default=ROOT / "model_zoo/eval/materials_v1/256")
    ap.add_argument(
        "--strengths",
        type=float,
        nargs="+",
        default=[1.0, 2.0, 4.0, 8.0],
        help="classical height_to_normal strengths to report (fixed, not fitted)",
    )
    ap.add_argument("--sheets", type=Path, default=None, help="write contact sheets into this folder")
    args = ap.parse_args()

    methods: dict[str, Method] = {"trivial (flat normal, photo albedo, const)": trivial}
    try:
        for s in args.strengths:
            methods[f"classical (normal strength {s:g})"] = classical(s)
    except ImportError:
        print("mlvfx.classical is not available; only the trivial baselines run")

    results: dict[str, EvalResult] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, method in methods.items():
            out = Path(tmp) / f"m{len(results)}"
            seconds[name] = predict(method, args.truth, out)
            results[name] = evaluate(out, args.truth)
            if args.sheets is not None:
                from mlvfx.eval.sheet import contact_sheet

                args.sheets.mkdir(parents=True, exist_ok=True)
                contact_sheet(
                    args.sheets / f"sheet_{len(results) - 1}.png",
                    truth=args.truth,
                    pred=out,
                    limit=12,
                    tile=128,
                    overwrite=True,
                )
        if args.sheets is not None and len(methods) > 1:
            from mlvfx.eval.sheet import contact_sheet

            real = real_photo_inputs(Path(tmp) / "real")
            name = next(n for n in methods if n.startswith("classical"))
            predict(methods[name], real, Path(tmp) / "real_pred")
            contact_sheet(
                args.sheets / "real_photos.png",
                truth=real,
                pred=Path(tmp) / "real_pred",
                tile=192,
                overwrite=True,
            )

    n = len(sample_folders(args.truth))
    print(f"truth: {args.truth} ({n} samples)\n")
    overall = {k: v.overall() for k, v in results.items()}
    print(markdown_table(overall, title="Overall", first_column="method"))
    print()
    print("| method | seconds / image |")
    print("|---|---:|")
    for k, s in seconds.items():
        print(f"| {k} | {s:.4f} |")
    print()

    base = overall["trivial (flat normal, photo albedo, const)"]
    print("**Ratios against the trivial baseline (same run; <1 is better for errors, >1 for shares)**\n")
    print("| method | " + " | ".join(METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    for k, agg in overall.items():
        cells = []
        for m in METRICS:
            a, b = agg.get(m), base.get(m)
            cells.append("–" if a is None or not b else f"{a / b:.3f}")
        print(f"| {k} | " + " | ".join(cells) + " |")
    print()

    best: dict[str, tuple[str, float]] = {}
    for k, agg in overall.items():
        for m in METRICS:
            if m not in best or is_better(m, agg.get(m), best[m][1]):
                if agg.get(m) is not None:
                    best[m] = (k, float(agg[m]))
    print("**Best baseline per metric (the bar every model must clear)**\n")
    print("| metric | best | method |")
    print("|---|---:|---|")
    for m, (k, v) in best.items():
        print(f"| {m} | {v:.4f} | {k} |")
    print()
    best_classical = min(
        (k for k in overall if k.startswith("classical")),
        key=lambda k: overall[k]["normal_mean_deg"] or 1e9,
        default=None,
    )
    for key in ("trivial (flat normal, photo albedo, const)", best_classical):
        if key is not None:
            print(results[key].to_markdown(title=f"Per family: {key}"))
            print()


if __name__ == "__main__":
    main()
