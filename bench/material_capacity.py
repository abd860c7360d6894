"""Is the material net too small to read organic relief under random lighting? (a GPU study)

Stop 8 found that 0.7.0, fine-tuned on 100 rocky renders under the factory's random lighting,
stays flat: it does not even fit its own training renders (12.52 deg against 12.58 deg for the flat
normal), while the same net under one fixed sun learns the relief (0.67x flat). This study asks
whether capacity or steps are what is missing: it trains nets of several sizes, from scratch, on
the same renders with the normal loss alone, many more steps than a CPU allows, and scores each on
unseen specs of the same family and on its own training renders.

Three steps:

* ``pack`` (here, CPU): sample folders -> one compressed ``.npz`` small enough to travel (the photo
  as 8-bit sRGB, as rendered; the normals' x and y rounded to 8 bits, z rebuilt, about 0.2 deg);
* ``train`` (on the GPU machine): one condition per process, several processes side by side on
  the one GPU, each for a wall-clock budget; the batch is made on the GPU (a random turn or mirror
  of the whole photo with its normals, colour jitter, the whole-photo thumbnail, a random crop).
  It writes each net's weights (float16) and a JSON of its scores;
* ``score`` (here, CPU): the returned weights through the real operator (``predict_material``)
  against the exact normals of the validation folders.

Usage:
    .venv/bin/python bench/material_capacity.py pack --train DIR --val DIR --out pack.npz
    python3 bench/material_capacity.py train --pack pack.npz --init material-0.7.0.safetensors \\
        --out $OUT --seconds 300          # GPU machine; all conditions side by side
    .venv/bin/python bench/material_capacity.py score --weights DIR/*.safetensors --val DIR
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))

#: name -> (width multiplier over the init net's, convolution pairs per encoder scale, width of an
#: extra coarsest scale or 0, start from the init weights)
CONDITIONS: dict[str, tuple[int, int, int, bool]] = {
    "base_init": (1, 1, 0, True),
    "base": (1, 1, 0, False),
    "wide2": (2, 1, 0, False),
    "wide4": (4, 1, 0, False),
    "wide2_deep": (2, 3, 0, False),
    "wide2_scale6": (2, 1, 256, False),
}


def pack(train: Path, val: Path, out: Path, max_train: int) -> None:
    import cv2

    from mlvfx.eval.material import read_map, sample_folders

    arrays: dict[str, Any] = {}
    for split, folder, limit in (("train", train, max_train), ("val", val, 10**9)):
        lits, normals, names = [], [], []
        for f in sample_folders(folder)[:limit]:
            lit = cv2.imread(str(f / "lit.png"), cv2.IMREAD_UNCHANGED)
            if lit is None or lit.dtype != np.uint8:
                raise SystemExit(f"{f / 'lit.png'}: expected an 8-bit PNG")
            n = read_map(f, "normal")
            assert n is not None
            lits.append(lit[..., 2::-1])  # BGR -> RGB, sRGB-encoded
            normals.append(np.clip(np.round(n[..., :2] * 127.0), -127, 127).astype(np.int8))  # z >= 0 follows
            names.append(f.name)
        arrays[f"{split}_lit"] = np.stack(lits)
        arrays[f"{split}_normal"] = np.stack(normals)
        arrays[f"{split}_names"] = np.array(names)
    np.savez_compressed(out, **arrays)
    print(
        f"{out}: {len(arrays['train_names'])} train, {len(arrays['val_names'])} val, "
        f"{out.stat().st_size / 1e6:.1f} MB"
    )


def _load_pack(path: Path, device: Any) -> dict[str, Any]:
    import torch

    from mlvfx.color import srgb_to_linear

    z = np.load(path)
    out: dict[str, Any] = {}
    for split in ("train", "val"):
        lit = srgb_to_linear(z[f"{split}_lit"].astype(np.float32) / 255.0)
        xy = z[f"{split}_normal"].astype(np.float32) / 127.0
        n = np.concatenate([xy, np.sqrt(np.clip(1.0 - (xy * xy).sum(-1, keepdims=True), 0.0, 1.0))], axis=-1)
        n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-8
        out[f"{split}_lit"] = (
            torch.from_numpy(np.ascontiguousarray(lit.transpose(0, 3, 1, 2))).float().to(device)
        )
        out[f"{split}_normal"] = torch.from_numpy(np.ascontiguousarray(n.transpose(0, 3, 1, 2))).to(device)
    return out


def turn(img: Any, normal: Any, k: int, mirror: bool) -> tuple[Any, Any]:
    """(3, H, W) photo and normals turned ``k`` quarter turns counter-clockwise, then mirrored left-right,
    as :func:`mlvfx.data.augment.dihedral` moves pixels and vectors."""
    import torch

    img = torch.rot90(img, k, dims=(1, 2))
    normal = torch.rot90(normal, k, dims=(1, 2))
    x, y, z = normal[0], normal[1], normal[2]
    for _ in range(k % 4):
        x, y = -y, x
    if mirror:
        img = img.flip(2)
        x, y, z = x.flip(1), y.flip(1), z.flip(1)
        x = -x
    return img, torch.stack([x, y, z])


def score_tensors(net: Any, lit: Any, normal: Any) -> dict[str, float]:
    """Mean over images of the mean angular error (deg), of the flat normal's, and of the tilts."""
    import torch

    errs, flats, tilt_p, tilt_t = [], [], [], []
    net.eval()
    with torch.no_grad():
        for i in range(lit.shape[0]):
            p = net(lit[i : i + 1])[0, 0:3]
            t = normal[i]
            ang = lambda a, b: torch.rad2deg(torch.acos((a * b).sum(0).clamp(-1.0, 1.0))).mean().item()  # noqa: E731
            up = torch.zeros_like(t)
            up[2] = 1.0
            errs.append(ang(p, t))
            flats.append(ang(up, t))
            tilt_p.append(ang(p, up))
            tilt_t.append(ang(t, up))
    net.train()
    return {
        "error": float(np.mean(errs)),
        "flat": float(np.mean(flats)),
        "ratio": float(np.mean(errs) / np.mean(flats)),
        "tilt_pred": float(np.mean(tilt_p)),
        "tilt_truth": float(np.mean(tilt_t)),
    }


def train_one(args: argparse.Namespace) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from mlvfx.nets.material import (
        MaterialNet,
        MaterialNetConfig,
        config_from_state_dict,
        count_flops_per_pixel,
    )
    from mlvfx.train.losses import chord_loss

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    mult, blocks, extra, from_init = CONDITIONS[args.condition]
    init = load_file(str(args.init))
    base_cfg = config_from_state_dict(init)
    widths = tuple(w * mult for w in base_cfg.widths) + ((extra,) if extra else ())
    cfg = MaterialNetConfig(widths=widths, blocks=blocks, context=base_cfg.context, detail=base_cfg.detail)
    torch.manual_seed(args.seed)
    net = MaterialNet(cfg)
    if from_init:
        net.load_state_dict(init)
    flops = count_flops_per_pixel(net)
    params = sum(p.numel() for p in net.parameters())
    net.to(dev)
    data = _load_pack(args.pack, dev)
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    lr_peak = args.lr_init if from_init else args.lr
    opt = torch.optim.Adam(net.parameters(), lr=lr_peak)
    log = []
    before = score_tensors(net, data["val_lit"], data["val_normal"])
    t0 = time.perf_counter()
    step, progress = 0, 0.0
    while progress < 1.0:
        elapsed = time.perf_counter() - t0
        progress = max(step / args.max_steps, elapsed / args.seconds)
        warm = min(1.0, (step + 1) / 300)
        lr = lr_peak * warm * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        for pg in opt.param_groups:
            pg["lr"] = max(lr, lr_peak * 0.02)
        # the batch is drawn on the CPU generator's schedule, made on the GPU
        gg = torch.Generator(device=dev).manual_seed(args.seed * 1000003 + step)
        rgb, thumb, nrm = _batch(data, g, gg, args)
        pred = net(rgb, thumb=thumb)
        loss = chord_loss(pred[:, 0:3], nrm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if step % 500 == 0:
            log.append({"step": step, "s": round(time.perf_counter() - t0, 1), "loss": loss.item(), "lr": lr})
            print(args.condition, log[-1], flush=True)
        step += 1
    trained = time.perf_counter() - t0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    after = score_tensors(net, data["val_lit"], data["val_normal"])
    on_train = score_tensors(net, data["train_lit"][: args.fit_count], data["train_normal"][: args.fit_count])
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(args.out / f"{args.condition}.safetensors"))
    res = {
        "condition": args.condition,
        "widths": list(widths),
        "blocks": blocks,
        "from_init": from_init,
        "params": params,
        "flops_per_px": flops,
        "steps": step,
        "train_s": round(trained, 1),
        "batch": args.batch,
        "crop": args.crop,
        "turns": not args.no_turns,
        "lr_peak": lr_peak,
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
        "before_val": before,
        "after_val": after,
        "after_train": on_train,
        "log": log,
    }
    (args.out / f"{args.condition}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "log"}), flush=True)


def _batch(data: dict[str, Any], g: Any, gg: Any, args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """A training batch made on the data's device: whole photos turned or mirrored with their normals
    (which photos, turns and crops drawn on the CPU generator ``g``), the factory's photometric jitter
    (exposure, white balance, saturation, gamma; drawn on the device generator ``gg``), the whole-photo
    thumbnail, then the crops."""
    import torch

    from mlvfx.nets.material import context_thumbnail

    n, _, h, w = data["train_lit"].shape
    b, crop = args.batch, args.crop
    idx = torch.randint(0, n, (b,), generator=g).tolist()
    ops = torch.randint(0, 8, (b,), generator=g).tolist()
    tops = torch.randint(0, h - crop + 1, (b,), generator=g).tolist()
    lefts = torch.randint(0, w - crop + 1, (b,), generator=g).tolist()
    photos, normals = [], []
    for i, op in zip(idx, ops, strict=True):
        if getattr(args, "no_turns", False):  # a fixed light stays on its side of the image
            op = 0
        p, m = turn(data["train_lit"][i], data["train_normal"][i], op % 4, op >= 4)
        photos.append(p)
        normals.append(m)
    whole = torch.stack(photos)
    u = torch.rand(b, 6, generator=gg, device=whole.device) * 2.0 - 1.0
    gain = (2.0 ** (0.5 * u[:, 0:1])) * (1.0 + 0.08 * u[:, 1:4])
    whole = whole * gain[:, :, None, None]
    lum = torch.tensor([0.2126, 0.7152, 0.0722], device=whole.device)[None, :, None, None]
    grey = (whole * lum).sum(1, keepdim=True)
    whole = (grey + (whole - grey) * (1.0 + 0.25 * u[:, 4, None, None, None])).clamp(0.0, 1.0)
    whole = whole ** (1.0 + 0.15 * u[:, 5, None, None, None])
    thumb = context_thumbnail(whole)
    rgb = torch.stack(
        [whole[j, :, t : t + crop, s : s + crop] for j, (t, s) in enumerate(zip(tops, lefts, strict=True))]
    )
    nrm = torch.stack(
        [normals[j][:, t : t + crop, s : s + crop] for j, (t, s) in enumerate(zip(tops, lefts, strict=True))]
    )
    return rgb, thumb, nrm


def train_all(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    procs = []
    for cond in args.conditions:
        cmd = [
            sys.executable,
            __file__,
            "_one",
            "--condition",
            cond,
            "--pack",
            str(args.pack),
            "--init",
            str(args.init),
            "--out",
            str(args.out),
            "--seconds",
            str(args.seconds),
            "--batch",
            str(args.batch),
            "--crop",
            str(args.crop),
            "--threads",
            str(args.threads),
            "--seed",
            str(args.seed),
            "--max-steps",
            str(args.max_steps),
            "--lr",
            str(args.lr),
            "--lr-init",
            str(args.lr_init),
            "--fit-count",
            str(args.fit_count),
            *(["--no-turns"] if args.no_turns else []),
        ]
        with open(args.out / "train.log", "a") as log:  # the child keeps its own copy of the handle
            procs.append(
                subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1")
                )
            )
    codes = [p.wait() for p in procs]
    print("exit codes", dict(zip(args.conditions, codes, strict=True)))
    table(args.out)


def table(out: Path) -> None:
    print(
        "| condition | params | kFLOPs/px | steps | train s | val: tilt / error (flat) / ratio "
        "| own training renders: tilt / error (flat) / ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for f in sorted(out.glob("*.json")):
        r = json.loads(f.read_text())
        if "after_val" not in r:
            continue
        a, t = r["after_val"], r["after_train"]
        print(
            f"| {r['condition']} | {r['params']:,} | {r['flops_per_px'] / 1e3:.0f} | {r['steps']} "
            f"| {r['train_s']:.0f} "
            f"| {a['tilt_pred']:.1f}° / {a['error']:.2f}° ({a['flat']:.2f}°) / {a['ratio']:.3f} "
            f"| {t['tilt_pred']:.1f}° / {t['error']:.2f}° ({t['flat']:.2f}°) / {t['ratio']:.3f} |"
        )


def score(args: argparse.Namespace) -> None:
    import torch
    from safetensors.torch import load_file

    from mlvfx.eval.material import normal_errors, read_map, sample_folders
    from mlvfx.io import read_image
    from mlvfx.nets.infer import predict_material
    from mlvfx.nets.material import material_net_from_state_dict

    torch.set_num_threads(args.threads)
    for w in args.weights:
        net = material_net_from_state_dict({k: v.float() for k, v in load_file(str(w)).items()}).eval()
        for folder in args.val:
            err, flat, tilt = [], [], []
            for f in sample_folders(folder):
                lit, _ = read_image(f / "lit.png", kind="color")
                t = read_map(f, "normal")
                assert t is not None
                up = np.zeros_like(t)
                up[..., 2] = 1.0
                p = predict_material(net, np.asarray(lit[..., :3], np.float32), integrate=False).normal
                err.append(normal_errors(p, t)["normal_mean_deg"])
                flat.append(normal_errors(up, t)["normal_mean_deg"])
                tilt.append(normal_errors(p, up)["normal_mean_deg"])
            print(
                f"{w.stem} on {folder}: {len(err)} photos, tilt {np.mean(tilt):.1f}°, "
                f"error {np.mean(err):.2f}° "
                f"(flat {np.mean(flat):.2f}°), ratio {np.mean(err) / np.mean(flat):.3f}",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--val", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-train", type=int, default=10**9)
    for name in ("train", "_one"):
        t = sub.add_parser(name)
        t.add_argument("--pack", type=Path, required=True)
        t.add_argument("--init", type=Path, required=True)
        t.add_argument("--out", type=Path, required=True)
        t.add_argument("--seconds", type=float, default=300.0)
        t.add_argument("--max-steps", type=int, default=200000)
        t.add_argument("--batch", type=int, default=16)
        t.add_argument("--crop", type=int, default=128)
        t.add_argument("--seed", type=int, default=20261127)
        t.add_argument("--threads", type=int, default=2)
        t.add_argument("--lr", type=float, default=1e-3)
        t.add_argument("--lr-init", type=float, default=4e-4)
        t.add_argument("--fit-count", type=int, default=40)
        t.add_argument(
            "--no-turns", action="store_true", help="no turns or mirrors (renders under one fixed sun)"
        )
        if name == "train":
            t.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
        else:
            t.add_argument("--condition", required=True, choices=list(CONDITIONS))
    s = sub.add_parser("score")
    s.add_argument("--weights", type=Path, nargs="+", required=True)
    s.add_argument("--val", type=Path, nargs="+", required=True)
    s.add_argument("--threads", type=int, default=2)
    s2 = sub.add_parser("table")
    s2.add_argument("out", type=Path)
    args = ap.parse_args()
    if args.cmd == "pack":
        pack(args.train, args.val, args.out, args.max_train)
    elif args.cmd == "train":
        train_all(args)
    elif args.cmd == "_one":
        args.out.mkdir(parents=True, exist_ok=True)
        train_one(args)
    elif args.cmd == "score":
        score(args)
    else:
        table(args.out)


if __name__ == "__main__":
    main()
