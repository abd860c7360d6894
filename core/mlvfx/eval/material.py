"""Material evaluation: metrics and the harness behind ``mlvfx eval material``.

Layout. A *truth* folder is a factory dataset (sample folders ``<name>/`` holding ``lit.png``,
``albedo.png``, ``normal.png``, ``height16.png``/``height.exr``, ``roughness.png`` and
``meta.json``) or a single such sample folder. A *prediction* folder mirrors it: one folder per
sample name holding any of ``normal.png``, ``albedo.png``, ``height.exr``/``height.png``/
``height16.png`` and ``roughness.png``. Maps a prediction lacks are reported as missing and are
left out of that metric's averages (the table shows how many samples each metric covers).

Metrics, per image, then averaged per family and overall (each sample weighs the same):

* normal: angular error in degrees (mean, median) and the share of pixels under 11.25 and 22.5
  degrees; both maps are decoded from ``n * 0.5 + 0.5`` and renormalised;
* albedo: scale-invariant RMSE in linear RGB, after the optimal per-image scalar;
* height: RMSE after the optimal per-image scale and shift, in units of the truth's height range
  (the truth is min-max normalised to [0, 1] first, so families are comparable);
* roughness: MAE in [0, 1].
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlvfx.data.splits import holds_out
from mlvfx.errors import ImageReadError, InputError

FloatArray = npt.NDArray[np.float32]

MAPS: tuple[str, ...] = ("normal", "albedo", "height", "roughness")
HEIGHT_FILES: tuple[str, ...] = ("height.exr", "height16.png", "height.png", "height.tif")
METRICS: tuple[str, ...] = (
    "normal_mean_deg",
    "normal_median_deg",
    "normal_within_11_25",
    "normal_within_22_5",
    "albedo_si_rmse",
    "height_rmse",
    "roughness_mae",
)
LOWER_IS_BETTER = {m: not m.startswith("normal_within") for m in METRICS}


# --------------------------------------------------------------------------------------------
# Metrics on arrays
# --------------------------------------------------------------------------------------------


def _same_shape(pred: npt.NDArray[Any], truth: npt.NDArray[Any], what: str) -> None:
    if pred.shape != truth.shape:
        raise InputError(f"{what}: prediction shape {pred.shape} differs from truth {truth.shape}")


def normal_errors(pred: FloatArray, truth: FloatArray) -> dict[str, float]:
    """Angular error statistics of two normal maps.

    Args:
        pred: (H, W, 3) normal vectors in [-1, 1] (need not be unit length).
        truth: (H, W, 3) normal vectors in [-1, 1].

    Returns:
        ``normal_mean_deg``, ``normal_median_deg``, ``normal_within_11_25`` and
        ``normal_within_22_5`` (fractions in [0, 1]).
    """
    _same_shape(pred, truth, "normal")
    p = pred.astype(np.float64)
    t = truth.astype(np.float64)
    p /= np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
    t /= np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-12)
    ang = np.degrees(np.arccos(np.clip(np.sum(p * t, axis=-1), -1.0, 1.0)))
    return {
        "normal_mean_deg": float(ang.mean()),
        "normal_median_deg": float(np.median(ang)),
        "normal_within_11_25": float(np.mean(ang < 11.25)),
        "normal_within_22_5": float(np.mean(ang < 22.5)),
    }


def si_rmse(pred: FloatArray, truth: FloatArray) -> float:
    """Scale-invariant RMSE: ``min_a sqrt(mean((a * pred - truth)^2))`` (for linear RGB albedo).

    Args:
        pred: (H, W, C) linear values.
        truth: (H, W, C) linear values.
    """
    _same_shape(pred, truth, "albedo")
    p = pred.astype(np.float64).ravel()
    t = truth.astype(np.float64).ravel()
    denom = float(p @ p)
    a = float(p @ t) / denom if denom > 0 else 0.0
    return float(np.sqrt(np.mean((a * p - t) ** 2)))


def affine_rmse(pred: FloatArray, truth: FloatArray) -> float:
    """RMSE after the optimal scale and shift: ``min_{a,b} sqrt(mean((a * pred + b - truth)^2))``.

    Args:
        pred: (H, W) values.
        truth: (H, W) values.
    """
    _same_shape(pred, truth, "height")
    p = pred.astype(np.float64).ravel()
    t = truth.astype(np.float64).ravel()
    pc = p - p.mean()
    tc = t - t.mean()
    denom = float(pc @ pc)
    a = float(pc @ tc) / denom if denom > 1e-20 else 0.0
    return float(np.sqrt(np.mean((a * pc - tc) ** 2)))


def normalise_height(h: FloatArray) -> FloatArray:
    """Min-max normalise a height map to [0, 1] (a flat map becomes zeros)."""
    lo, hi = float(h.min()), float(h.max())
    if hi - lo <= 0:
        return np.zeros_like(h, dtype=np.float32)
    return np.asarray((h - lo) / (hi - lo), dtype=np.float32)


def mae(pred: FloatArray, truth: FloatArray) -> float:
    """Mean absolute error."""
    _same_shape(pred, truth, "roughness")
    return float(np.mean(np.abs(pred.astype(np.float64) - truth.astype(np.float64))))


# --------------------------------------------------------------------------------------------
# Reading maps
# --------------------------------------------------------------------------------------------


def _read(path: Path, kind: str) -> FloatArray:
    from mlvfx.io import read_image

    img, _ = read_image(path, kind="color" if kind == "color" else "data")
    return np.asarray(img, dtype=np.float32)


def _gray(a: FloatArray) -> FloatArray:
    if a.ndim == 2:
        return a
    if a.shape[-1] in (1, 2):
        return np.asarray(a[..., 0], dtype=np.float32)
    return np.asarray(a[..., :3].mean(axis=-1), dtype=np.float32)


def read_map(folder: Path, name: str) -> FloatArray | None:
    """Read one map of a sample folder; ``None`` if absent.

    Returns:
        normal: (H, W, 3) in [-1, 1]; albedo: (H, W, 3) linear RGB; height, roughness: (H, W).
    """
    if name == "height":
        for fname in HEIGHT_FILES:
            if (folder / fname).is_file():
                return _gray(_read(folder / fname, "data"))
        return None
    path = folder / f"{name}.png"
    if not path.is_file():
        return None
    if name == "normal":
        n = _read(path, "data")
        if n.ndim != 3 or n.shape[-1] < 3:
            raise ImageReadError("a normal map needs 3 channels", path)
        return np.asarray(n[..., :3] * 2.0 - 1.0, dtype=np.float32)
    if name == "albedo":
        a = _read(path, "color")
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=-1)
        return np.asarray(a[..., :3], dtype=np.float32)
    if name == "roughness":
        return _gray(_read(path, "data"))
    raise InputError(f"unknown map {name!r}; choose from {', '.join(MAPS)}")


def sample_folders(root: str | os.PathLike[str]) -> list[Path]:
    """Sample folders under a dataset folder, or ``[root]`` if it is one sample."""
    base = Path(root)
    if not base.is_dir():
        raise InputError("folder not found", base)
    if (base / "lit.png").is_file() or (base / "meta.json").is_file():
        return [base]
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def sample_family(folder: Path) -> str:
    """The family named in a sample's meta.json, or "unknown"."""
    return sample_families(folder)[0]


def sample_families(folder: Path) -> tuple[str, ...]:
    """The family named in a sample's meta.json, then a mixture's two parts; ``("unknown",)``.

    Families and parts come as the factory wrote them; a meta.json that cannot be read, or a
    mixture without readable parts, gives what could be read.
    """
    meta = folder / "meta.json"
    if not meta.is_file():
        return ("unknown",)
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return ("unknown",)
    if not isinstance(data, dict):
        return ("unknown",)
    family = str(data.get("family", "unknown"))
    parts: list[str] = []
    params = data.get("params")
    if family == "mixture" and isinstance(params, dict):
        for key in ("a", "b"):
            part = params.get(key)
            if isinstance(part, dict) and "family" in part:
                parts.append(str(part["family"]))
    return (family, *parts)


# --------------------------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------------------------


@dataclass
class SampleResult:
    """Metrics of one sample; a metric is absent when the prediction lacks that map."""

    name: str
    family: str
    metrics: dict[str, float] = field(default_factory=dict)
    held_out: bool = False
    """The sample's family, or a part of its mixture, is one training never sees
    (:func:`mlvfx.data.splits.holds_out`)."""


@dataclass
class EvalResult:
    """Per-sample results plus per-family and overall means."""

    samples: list[SampleResult]
    missing: list[str] = field(default_factory=list)
    """Truth samples with no prediction to score (a partial prediction folder)."""

    def groups(self) -> dict[str, list[SampleResult]]:
        out: dict[str, list[SampleResult]] = {}
        for s in sorted(self.samples, key=lambda s: s.family):
            out.setdefault(s.family, []).append(s)
        return out

    @staticmethod
    def _mean(samples: Iterable[SampleResult]) -> dict[str, Any]:
        rows = list(samples)
        out: dict[str, Any] = {"count": len(rows)}
        for m in METRICS:
            vals = [s.metrics[m] for s in rows if m in s.metrics]
            out[m] = float(np.mean(vals)) if vals else None
            out[f"{m}_count"] = len(vals)
        return out

    def per_family(self) -> dict[str, dict[str, Any]]:
        return {fam: self._mean(rows) for fam, rows in self.groups().items()}

    def overall(self) -> dict[str, Any]:
        return self._mean(self.samples)

    def by_split(self) -> dict[str, dict[str, Any]]:
        """Means over the samples of training families and over those of held-out ones.

        Issue 5 sets its targets on the public validation set and asks for the held-out families
        to be reported separately. A split with no sample is left out.
        """
        out: dict[str, dict[str, Any]] = {}
        for label, held in (("trained families", False), ("held-out families", True)):
            rows = [s for s in self.samples if s.held_out == held]
            if rows:
                out[label] = self._mean(rows)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall(),
            "by_split": self.by_split(),
            "per_family": self.per_family(),
            "samples": [{"name": s.name, "family": s.family, **s.metrics} for s in self.samples],
            "missing": list(self.missing),
        }

    def to_markdown(self, title: str | None = None) -> str:
        split = {f"**overall, {k}**": v for k, v in self.by_split().items()}
        return markdown_table({**self.per_family(), "**overall**": self.overall(), **split}, title=title)


_HEADERS = (
    ("count", "n", "{:d}"),
    ("normal_mean_deg", "normal mean°", "{:.2f}"),
    ("normal_median_deg", "normal median°", "{:.2f}"),
    ("normal_within_11_25", "<11.25°", "{:.1%}"),
    ("normal_within_22_5", "<22.5°", "{:.1%}"),
    ("albedo_si_rmse", "albedo si-RMSE", "{:.4f}"),
    ("height_rmse", "height RMSE", "{:.4f}"),
    ("roughness_mae", "roughness MAE", "{:.4f}"),
)


def markdown_table(
    rows: dict[str, dict[str, Any]], title: str | None = None, first_column: str = "family"
) -> str:
    """A markdown table of aggregated metrics, one row per key of ``rows``."""
    head = [first_column] + [h for _, h, _ in _HEADERS]
    lines = [f"**{title}**", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(_HEADERS)) + "|"]
    for name, agg in rows.items():
        cells = [name]
        for key, _, fmt in _HEADERS:
            v = agg.get(key)
            cells.append("–" if v is None else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_sample(pred_folder: Path, truth_folder: Path) -> SampleResult:
    """Compare the maps of one predicted sample with its truth (see module docstring)."""
    families = sample_families(truth_folder)
    res = SampleResult(truth_folder.name, families[0], held_out=holds_out(families))
    for name in MAPS:
        pred = read_map(pred_folder, name)
        if pred is None:
            continue
        truth = read_map(truth_folder, name)
        if truth is None:
            continue
        try:
            if name == "normal":
                res.metrics.update(normal_errors(pred, truth))
            elif name == "albedo":
                res.metrics["albedo_si_rmse"] = si_rmse(pred, truth)
            elif name == "height":
                res.metrics["height_rmse"] = affine_rmse(pred, normalise_height(truth))
            else:
                res.metrics["roughness_mae"] = mae(pred, truth)
        except InputError as exc:
            raise InputError(exc.message, pred_folder) from None
    return res


def evaluate(
    pred_dir: str | os.PathLike[str], truth_dir: str | os.PathLike[str], *, names: Sequence[str] | None = None
) -> EvalResult:
    """Evaluate every sample of ``truth_dir`` that has a prediction folder in ``pred_dir``.

    Args:
        pred_dir: prediction root (one folder per sample) or a single sample's folder.
        truth_dir: factory dataset root or a single sample folder.
        names: restrict to these sample names.

    Returns:
        The per-sample metrics with per-family and overall aggregation.

    Raises:
        InputError: a folder is missing, or no prediction matches any truth sample.
    """
    truths = sample_folders(truth_dir)
    pred_root = Path(pred_dir)
    if not pred_root.is_dir():
        raise InputError("prediction folder not found", pred_root)
    single = len(truths) == 1 and Path(truth_dir) == truths[0]
    results: list[SampleResult] = []
    missing: list[str] = []
    for t in truths:
        if names is not None and t.name not in names:
            continue
        p = pred_root if single and not (pred_root / t.name).is_dir() else pred_root / t.name
        if not p.is_dir():
            missing.append(t.name)
            continue
        r = evaluate_sample(p, t)
        if r.metrics:
            results.append(r)
        else:
            missing.append(t.name)
    if not results:
        raise InputError(f"no predicted maps match the samples of {truth_dir}", pred_root)
    return EvalResult(results, missing)


def is_better(metric: str, a: float | None, b: float | None) -> bool:
    """True if value ``a`` of ``metric`` beats ``b`` (missing values never win)."""
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return False
    if b is None:
        return True
    return a < b if LOWER_IS_BETTER[metric] else a > b
