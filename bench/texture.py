"""Texture synthesis benchmark: mlvfx.ops.texture.grow against Image Quilting, in the same run.

For each exemplar (256x256 crops of scikit-image's real brick, grass and gravel photos, tinted to
colour, plus a procedural colour texture), both methods grow a 1024x1024 texture; the script prints
wall time, the speed ratio, and the metrics of mlvfx.texture.metrics for both (look distance:
lower is better; verbatim share; seam score of the tileable output). Then a 4096x4096 output is
grown in a child process, which reports its time and peak resident memory (getrusage), and the
peak of Python-level allocations (tracemalloc; torch's own buffers are not traced, hence RSS).

Usage:
    python bench/texture.py                      # full run (about 10 minutes on 2 CPU cores)
    python bench/texture.py --size 512 --no-big  # quick look
    python bench/texture.py --sheet docs/texture_grow.png  # also write a contact sheet
    python bench/texture.py --sheets-only docs      # tile / paint / material contact sheets
    python bench/texture.py --validation model_zoo/eval/materials_v1/256 --limit 16 --size 512
        # the public validation set: each material folder grown jointly (all maps), scored on
        # albedo against Image Quilting on the albedo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np


def exemplars(side: int = 256) -> dict[str, np.ndarray]:
    """Linear-colour exemplars: real photos from scikit-image (tinted) and one procedural texture."""
    import cv2
    import skimage.data as sd

    out: dict[str, np.ndarray] = {}
    tints = {"brick": (1.0, 0.55, 0.4), "grass": (0.45, 0.9, 0.3), "gravel": (0.9, 0.85, 0.75)}
    for name, tint in tints.items():
        g = getattr(sd, name)().astype(np.float32) / 255.0
        g = g[:side, :side] if g.shape[0] >= side else cv2.resize(g, (side, side))
        lin = np.power(g, 2.2)  # the photos are sRGB-encoded grey
        out[name] = np.ascontiguousarray(lin[:, :, None] * np.asarray(tint, np.float32)).astype(np.float32)
    rng = np.random.default_rng(7)
    cells = cv2.resize(
        rng.random((8, 8, 3)).astype(np.float32), (side, side), interpolation=cv2.INTER_NEAREST
    )
    fine = cv2.GaussianBlur(rng.random((side, side, 3)).astype(np.float32), (0, 0), 2.0)
    out["cells"] = np.clip(0.7 * cells + 0.6 * (fine - 0.5), 0, 1).astype(np.float32)
    return out


def run_pair(name: str, ex: np.ndarray, size: int, seed: int) -> dict[str, Any]:
    from mlvfx.ops.texture import grow
    from mlvfx.texture import metrics
    from mlvfx.texture.quilting import quilt

    t0 = time.perf_counter()
    ours = grow(ex, (size, size), seed=seed, tileable=True)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    iq = quilt(ex, (size, size), seed=seed)
    t_iq = time.perf_counter() - t0
    assert isinstance(ours, np.ndarray)
    row = {
        "exemplar": name,
        "ours_s": t_ours,
        "quilting_s": t_iq,
        "speedup": t_iq / t_ours,
        "ours_look": metrics.look_distance(ours, ex),
        "quilting_look": metrics.look_distance(iq, ex),
        "ours_seam": metrics.seam_score(ours),
        "quilting_seam": metrics.seam_score(iq),
        "ours_verbatim": metrics.verbatim_share(ours, ex),
        "quilting_verbatim": metrics.verbatim_share(iq, ex),
    }
    row["_images"] = (ours, iq)
    return row


def child_big(size: int) -> None:
    """Grow one size x size texture and print time and peak memory as JSON (run in a subprocess)."""
    import resource
    import tracemalloc

    ex = exemplars()["gravel"]
    from mlvfx.ops.texture import grow

    grow(ex, (256, 256), seed=0)  # warm up imports and kernels
    tracemalloc.start()
    t0 = time.perf_counter()
    out = grow(ex, (size, size), seed=1, tileable=True)
    dt = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    assert isinstance(out, np.ndarray)
    from mlvfx.texture import metrics

    print(
        json.dumps(
            {
                "size": size,
                "seconds": dt,
                "peak_rss_bytes": rss,
                "tracemalloc_peak_bytes": py_peak,
                "seam": metrics.seam_score(out),
            }
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="output side for the comparison (default 1024)")
    ap.add_argument(
        "--big", type=int, default=4096, help="output side for the time/memory run (default 4096)"
    )
    ap.add_argument("--no-big", action="store_true", help="skip the big run")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per exemplar (default 1)")
    ap.add_argument("--sheet", default=None, help="write a contact sheet PNG (exemplar | ours | quilting)")
    ap.add_argument(
        "--sheets-only", default=None, metavar="DIR", help="write the docs contact sheets and exit"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for both methods (torch and OpenCV; default 1: fair on a shared machine)",
    )
    ap.add_argument("--validation", default=None, metavar="DIR", help="score on a material dataset folder")
    ap.add_argument("--limit", type=int, default=16, help="samples of --validation to use (evenly spaced)")
    ap.add_argument("--child-big", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import cv2

    os.environ["MLVFX_THREADS"] = str(args.threads)  # read by mlvfx.config.torch_device()
    cv2.setNumThreads(args.threads)
    if args.child_big:
        child_big(args.child_big)
        return 0
    if args.sheets_only:
        write_doc_sheets(args.sheets_only)
        return 0
    if args.validation:
        validation(args.validation, args.limit, args.size)
        return 0
    import torch

    from mlvfx.config import torch_device

    torch_device()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    rows = []
    sheet_rows = []
    from mlvfx.ops.texture import grow
    from mlvfx.texture.quilting import quilt

    warm = exemplars()["gravel"]  # one-time start-up (torch kernels, OpenCV) out of the timings
    grow(warm, (256, 256), seed=0)
    quilt(warm, (256, 256), seed=0)
    for name, ex in exemplars().items():
        for seed in range(args.seeds):
            r = run_pair(name, ex, args.size, seed)
            ours, iq = r.pop("_images")
            if seed == 0:
                sheet_rows.append((ex, ours, iq))
            rows.append(r)
            print(
                f"{name:7s} seed {seed}: ours {r['ours_s']:6.2f}s  quilting {r['quilting_s']:6.2f}s  "
                f"speedup {r['speedup']:5.2f}x | "
                f"look ours {r['ours_look']:.5f} iq {r['quilting_look']:.5f} | "
                f"verbatim ours {r['ours_verbatim']:.3f} iq {r['quilting_verbatim']:.3f} | "
                f"seam ours {r['ours_seam']:.3f} iq {r['quilting_seam']:.3f}",
                flush=True,
            )
    tot_ours = sum(r["ours_s"] for r in rows)
    tot_iq = sum(r["quilting_s"] for r in rows)
    wins = sum(r["ours_look"] <= r["quilting_look"] for r in rows)
    look_ours = np.mean([r["ours_look"] for r in rows])
    look_iq = np.mean([r["quilting_look"] for r in rows])
    print(
        f"\n{args.size}^2 from 256^2, total: ours {tot_ours:.2f}s, quilting {tot_iq:.2f}s, "
        f"speedup {tot_iq / tot_ours:.2f}x; mean look ours {look_ours:.5f} "
        f"vs quilting {look_iq:.5f} (ours <= quilting in {wins}/{len(rows)}); "
        f"max verbatim ours {max(r['ours_verbatim'] for r in rows):.3f}; "
        f"mean seam ours {np.mean([r['ours_seam'] for r in rows]):.3f}"
    )
    if args.sheet:
        write_sheet(args.sheet, sheet_rows)
    if not args.no_big:
        proc = subprocess.run(
            [sys.executable, __file__, "--child-big", str(args.big)],
            capture_output=True,
            text=True,
            check=True,
        )
        big = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{big['size']}^2 output: {big['seconds']:.1f}s, "
            f"peak RSS {big['peak_rss_bytes'] / 2**30:.2f} GiB, "
            f"tracemalloc peak {big['tracemalloc_peak_bytes'] / 2**20:.0f} MiB, seam {big['seam']:.3f}"
        )
    return 0


def write_sheet(path: str, rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], tile: int = 160) -> None:
    """exemplar | ours | quilting per row, outputs downscaled to ``tile`` x ``tile``, sRGB PNG."""
    import cv2

    from mlvfx.io import write_image

    lines = []
    for ex, ours, iq in rows:
        cells = [cv2.resize(a, (tile, tile), interpolation=cv2.INTER_AREA) for a in (ex, ours, iq)]
        lines.append(
            np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=1.0) for c in cells], 1)
        )
    write_image(path, np.concatenate(lines, 0), kind="color", overwrite=True)
    print(f"wrote {path}")


def validation(folder: str, limit: int, size: int) -> None:
    """Grow every (sampled) material folder jointly; score albedo against quilting on albedo."""
    from pathlib import Path

    from mlvfx.ops.texture import grow
    from mlvfx.texture import metrics
    from mlvfx.texture.cli import read_maps
    from mlvfx.texture.quilting import quilt

    samples = sorted(p for p in Path(folder).iterdir() if p.is_dir())
    if limit and len(samples) > limit:
        samples = [samples[round(i * (len(samples) - 1) / (limit - 1))] for i in range(limit)]
    rows = []
    for i, sample in enumerate(samples):
        maps, _ = read_maps(sample)
        assert isinstance(maps, dict)
        ex = maps["albedo"]
        t0 = time.perf_counter()
        ours = grow(maps, (size, size), seed=i)
        t_ours = time.perf_counter() - t0
        assert isinstance(ours, dict)
        t0 = time.perf_counter()
        iq = quilt(ex, (size, size), seed=i)
        t_iq = time.perf_counter() - t0
        a = ours["albedo"]
        r = {
            "sample": sample.name,
            "maps": len(maps),
            "ours_s": t_ours,
            "quilting_s": t_iq,
            "ours_look": metrics.look_distance(a, ex),
            "quilting_look": metrics.look_distance(iq, ex),
            "ours_verbatim": metrics.verbatim_share(a, ex),
            "ours_seam": metrics.seam_score(a),
        }
        rows.append(r)
        print(
            f"{r['sample']} ({r['maps']} maps): ours {t_ours:.2f}s (all maps) "
            f"quilting {t_iq:.2f}s (albedo) | look ours {r['ours_look']:.5f} iq {r['quilting_look']:.5f} | "
            f"verbatim {r['ours_verbatim']:.3f} | seam {r['ours_seam']:.3f}",
            flush=True,
        )
    wins = sum(r["ours_look"] <= r["quilting_look"] for r in rows)
    look_ours = np.mean([r["ours_look"] for r in rows])
    look_iq = np.mean([r["quilting_look"] for r in rows])
    seams = [r["ours_seam"] for r in rows]
    print(
        f"\nvalidation {folder}: {len(rows)} samples, {size}^2 from 256^2: look ours {look_ours:.5f} "
        f"vs quilting {look_iq:.5f} (ours <= quilting in {wins}/{len(rows)}); "
        f"verbatim max {max(r['ours_verbatim'] for r in rows):.3f}; "
        f"seam mean {np.mean(seams):.3f} max {max(seams):.3f}; "
        f"time ours {sum(r['ours_s'] for r in rows):.1f}s "
        f"vs quilting {sum(r['quilting_s'] for r in rows):.1f}s"
    )


def _pad(a: np.ndarray) -> np.ndarray:
    a = a if a.ndim == 3 else a[:, :, None]
    a = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[:, :, :3]
    return np.pad(a, ((2, 2), (2, 2), (0, 0)), constant_values=1.0)


def _fit(a: np.ndarray, side: int) -> np.ndarray:
    import cv2

    return cv2.resize(a, (side, side), interpolation=cv2.INTER_AREA)


def write_doc_sheets(folder: str) -> None:
    """texture_tile.png, texture_paint.png (labels | result) and texture_material.png (a material set
    grown jointly: albedo, normal, height, roughness).

    texture_tile.png shows every texture rolled by half its size, so the wrap is the cross through
    the middle, at full resolution: the original (its seam), ``make_tileable(method="synthesis")``
    and ``make_tileable`` (the default, "stitch")."""
    from pathlib import Path

    from mlvfx.io import read_image, write_image
    from mlvfx.ops.material import material
    from mlvfx.ops.texture import grow, make_tileable, paint

    out = Path(folder)
    ex = exemplars()
    from mlvfx.samples import sample_photo

    photo, _ = read_image(sample_photo(), kind="color")
    tiles = {"sample": np.ascontiguousarray(photo[:256, :256, :3])}
    tiles.update({k: ex[k] for k in ("brick", "gravel")})
    rows = []
    for e in tiles.values():
        h, w = e.shape[:2]
        shown = [e]
        for method in ("synthesis", "stitch"):
            t = make_tileable(e, seed=0, method=method)
            assert isinstance(t, np.ndarray)
            shown.append(t)
        rows.append(np.concatenate([_pad(np.roll(a, (h // 2, w // 2), (0, 1))) for a in shown], 1))
    write_image(out / "texture_tile.png", np.concatenate(rows, 0), kind="color", overwrite=True)

    small = exemplars(128)
    lab = np.zeros((320, 320), np.int64)
    yy, xx = np.mgrid[:320, :320]
    lab[(xx - 150) ** 2 + (yy - 140) ** 2 < 90**2] = 1
    lab[yy > 250 - 20 * np.sin(xx / 40.0)] = 2
    colours = np.array([[0.2, 0.2, 0.2], [0.1, 0.6, 0.1], [0.7, 0.2, 0.1]], np.float32)
    painted = paint(lab, {0: small["gravel"], 1: small["grass"], 2: small["brick"]}, seed=0)
    assert isinstance(painted, np.ndarray)
    write_image(
        out / "texture_paint.png",
        np.concatenate([_pad(colours[lab]), _pad(painted)], 1),
        kind="color",
        overwrite=True,
    )

    photo = _fit(photo, 256)
    mat = material(photo, ("albedo", "normal", "height", "roughness")).maps
    grown = grow(mat, (512, 512), seed=0)
    assert isinstance(grown, dict)
    h = grown["height"]
    h = (h - h.min()) / max(float(h.max() - h.min()), 1e-6)
    cells = [
        grown["albedo"],
        np.power(grown["normal"] * 0.5 + 0.5, 2.2),
        np.power(h, 2.2),
        np.power(grown["roughness"], 2.2),
    ]
    hx = mat["height"]
    hx = (hx - hx.min()) / max(float(hx.max() - hx.min()), 1e-6)
    src = [
        mat["albedo"],
        np.power(mat["normal"] * 0.5 + 0.5, 2.2),
        np.power(hx, 2.2),
        np.power(mat["roughness"], 2.2),
    ]
    sheet = np.concatenate(
        [
            np.concatenate([_pad(_fit(c, 128)) for c in src], 1),
            np.concatenate([_pad(_fit(c, 128)) for c in cells], 1),
        ],
        0,
    )
    write_image(out / "texture_material.png", sheet, kind="color", overwrite=True)
    print(f"wrote texture_tile.png, texture_paint.png, texture_material.png to {out}")


if __name__ == "__main__":
    raise SystemExit(main())
