"""Is the normal error limited by render noise? Re-render validation photos with more samples.

The public validation photos are Cycles renders at 32 samples per pixel, without denoising. Detail
finer than about 2 px carries most of the remaining normal error (``bench/material_bands.py``), and
that is where path-tracing noise lives too. For one or more samples per family this script
re-renders the photo from the same spec at the set's own sample count (to check the render is
reproducible) and at ``--clean`` samples, then:

* runs the model on both photos (whole, with its own thumbnail) and scores the normals against the
  stored truth;
* measures the noise in the photo's fine band: the RMS of ``highpass(noisy - clean)`` over the RMS
  of ``highpass(clean)``, luminance, highpass = x - Gaussian(x, 2 px).

If the clean photo's normal error is much lower, the model is noise-limited, and cleaner photos
(or a denoiser in front) would help; if not, the limit is the model.

    .venv/bin/python bench/material_noise.py --weights model_zoo/weights/material-0.4.0.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from material_bands import angle_deg  # noqa: E402

from mlvfx.data.materials import make_spec, render_maps, write_sample  # noqa: E402
from mlvfx.eval.material import read_map, sample_folders  # noqa: E402
from mlvfx.io import read_image  # noqa: E402
from mlvfx.nets.infer import load_material_net  # noqa: E402
from mlvfx.nets.material import MaterialNet, context_thumbnail  # noqa: E402

LUMA = np.array([0.2126, 0.7152, 0.0722])


def highpass(x: np.ndarray) -> np.ndarray:
    return x - gaussian_filter(x, 2.0, mode="reflect")


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def predict_normal(net: MaterialNet, lit: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(lit[..., :3].transpose(2, 0, 1), dtype=np.float32))[None]
    thumb = context_thumbnail(x) if net.config.context else None
    with torch.inference_mode():
        y = net(x, thumb)[0].numpy().transpose(1, 2, 0)
    return y[..., 0:3]


def render_lit(spec: object, samples: int, tmp: Path) -> np.ndarray:
    """Render ``spec`` at ``samples`` and read its lit.png back (the same 8-bit path as the set)."""
    spec = replace(spec, samples=samples)  # type: ignore[type-var]
    folder = tmp / f"s{samples}"
    folder.mkdir(exist_ok=True)
    write_sample(folder, spec, render_maps(spec, work_dir=tmp))  # type: ignore[arg-type]
    lit, _ = read_image(folder / "lit.png", kind="color")
    return np.asarray(lit[..., :3], dtype=np.float64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--truth", type=Path, default=ROOT / "model_zoo/eval/materials_v1/256")
    ap.add_argument("--clean", type=int, default=256, help="samples per pixel of the clean render")
    ap.add_argument("--per-family", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = load_material_net(args.weights)
    assert isinstance(net, MaterialNet)
    settings = json.loads((args.truth / "dataset.json").read_text())
    taken: dict[str, int] = {}
    rows = []
    t0 = time.perf_counter()
    for folder in sample_folders(args.truth):
        meta = json.loads((folder / "meta.json").read_text())
        fam = meta["family"]
        if taken.get(fam, 0) >= args.per_family:
            continue
        taken[fam] = taken.get(fam, 0) + 1
        truth = read_map(folder, "normal")
        assert truth is not None
        stored, _ = read_image(folder / "lit.png", kind="color")
        spec = make_spec(
            settings["seed"],
            meta["index"],
            size=settings["size"],
            samples=settings["samples"],
            families=settings["families"],
        )
        assert spec.family == fam, (spec.family, fam)
        with tempfile.TemporaryDirectory(prefix="mlvfx-noise-") as tmp_s:
            tmp = Path(tmp_s)
            noisy = render_lit(spec, settings["samples"], tmp)
            clean = render_lit(spec, args.clean, tmp)
        repro = float(np.abs(noisy - stored[..., :3]).max())
        y_noisy, y_clean = noisy @ LUMA, clean @ LUMA
        row = {
            "family": fam,
            "index": meta["index"],
            "repro_max_diff": repro,
            "noise_to_detail": rms(highpass(y_noisy - y_clean)) / max(rms(highpass(y_clean)), 1e-12),
            "normal_noisy": angle_deg(predict_normal(net, noisy), truth),
            "normal_clean": angle_deg(predict_normal(net, clean), truth),
        }
        flat = np.zeros_like(truth)
        flat[..., 2] = 1.0
        row["normal_flat"] = angle_deg(flat, truth)
        rows.append(row)
        print(
            f"{fam} s{meta['index']:06d}: noisy {row['normal_noisy']:.2f}° clean {row['normal_clean']:.2f}° "
            f"flat {row['normal_flat']:.2f}° noise/detail {row['noise_to_detail']:.2f} "
            f"(re-render vs stored max diff {repro:.3g}; {time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    print()
    print(
        f"{args.weights.name}: {len(rows)} validation photos, {settings['samples']} spp as stored "
        f"vs {args.clean} spp re-rendered"
    )
    spp = settings["samples"]
    print(f"| family | normal mean° at {spp} spp | at {args.clean} spp | flat | noise / fine detail |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['family']} | {r['normal_noisy']:.2f} | {r['normal_clean']:.2f} | {r['normal_flat']:.2f} "
            f"| {r['noise_to_detail']:.2f} |"
        )
    m = {k: float(np.mean([r[k] for r in rows])) for k in ("normal_noisy", "normal_clean", "normal_flat")}
    nd = float(np.mean([r["noise_to_detail"] for r in rows]))
    means = " | ".join(f"{m[k]:.2f}" for k in ("normal_noisy", "normal_clean", "normal_flat"))
    print(f"| **mean** | {means} | {nd:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
