"""Peak memory of ``grow`` and ``make_tileable(method="synthesis")`` with large exemplars.

The synthesiser's atlas holds, per level, full-resolution features of the whole exemplar (about
16 floats per exemplar pixel). Since stop 23 a level is built when synthesis reaches it and the
previous one is dropped; before, all of them were built up front and kept. This runs both ways,
each in its own child process (so each peak resident memory is its own), on the bundled sample
photo resized to the exemplar side, and checks that the outputs are identical.

    .venv/bin/python bench/texture_memory.py [--sides 1024 2048] [--threads 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time

import numpy as np


def child(side: int, op: str, keep_all: bool, threads: int) -> None:
    import cv2
    import torch

    import mlvfx.ops.texture as ops
    from mlvfx.io import read_image
    from mlvfx.samples import sample_photo
    from mlvfx.texture import patchmatch

    torch.set_num_threads(threads)
    patchmatch._Levels.keep_all = keep_all
    photo = read_image(sample_photo())[0][..., :3]
    img = np.ascontiguousarray(cv2.resize(photo, (side, side), interpolation=cv2.INTER_CUBIC), np.float32)
    t = time.perf_counter()
    if op == "grow":
        out = ops.grow(img, (side, side), seed=0)
    else:
        out = ops.make_tileable(img, seed=0, method="synthesis")
    seconds = time.perf_counter() - t
    assert isinstance(out, np.ndarray)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    digest = hashlib.sha256(out.tobytes()).hexdigest()[:16]
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": rss, "sha": digest}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument(
        "--ops", nargs="+", default=["grow", "tile-synthesis"], choices=["grow", "tile-synthesis"]
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.child[2] == "all", args.threads)
        return
    print("| exemplar = output side | op | levels kept | s | peak RSS GiB | same output |")
    print("|---:|---|---|---:|---:|---|")
    for side in args.sides:
        for op in args.ops:
            res = {}
            for keep in ("all", "one"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    str(side),
                    op,
                    keep,
                    "--threads",
                    str(args.threads),
                ]
                res[keep] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            same = "yes" if res["all"]["sha"] == res["one"]["sha"] else "NO"
            for keep in ("all", "one"):
                r = res[keep]
                gib = r["peak_rss_bytes"] / 2**30
                print(f"| {side} | {op} | {keep} | {r['seconds']:.1f} | {gib:.2f} | {same} |")


if __name__ == "__main__":
    main()
