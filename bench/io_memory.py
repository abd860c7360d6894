"""Peak memory of reading a large 8-bit colour image (sRGB decode to linear float32).

``mlvfx.color`` converts large arrays a band of rows at a time (``CHUNK_VALUES``). This writes a
side x side PNG from the bundled sample photo to a temporary folder, then reads it with
``mlvfx.io.read_image`` in two child processes, with the chunking as shipped and with it switched
off (``CHUNK_VALUES`` larger than the image, as before stop 23), and prints each one's time and
peak resident memory, and whether the pixels are identical.

    .venv/bin/python bench/io_memory.py [--side 8192]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def child(path: str, chunked: bool) -> None:
    import mlvfx.color as color
    from mlvfx.io import read_image

    if not chunked:
        color.CHUNK_VALUES = 1 << 62
    t = time.perf_counter()
    img, _ = read_image(path)
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    digest = hashlib.sha256(img.tobytes()).hexdigest()[:16]
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": rss, "sha": digest, "shape": list(img.shape)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=8192)
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1] == "chunked")
        return
    import cv2

    from mlvfx.io import read_image
    from mlvfx.samples import sample_photo

    with tempfile.TemporaryDirectory() as tmp:
        photo = read_image(sample_photo())[0][..., :3]
        big = cv2.resize(photo, (args.side, args.side), interpolation=cv2.INTER_CUBIC)
        srgb = (np.clip(big, 0.0, 1.0) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
        path = str(Path(tmp) / "big.png")
        cv2.imwrite(path, srgb[..., ::-1])
        del photo, big, srgb
        print("| side | colour conversion | s | peak RSS GiB |")
        print("|---:|---|---:|---:|")
        shas = []
        for mode in ("whole", "chunked"):
            cmd = [sys.executable, __file__, "--child", path, mode]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            shas.append(res["sha"])
            gib = res["peak_rss_bytes"] / 2**30
            print(f"| {args.side} | {mode} | {res['seconds']:.1f} | {gib:.2f} |")
        print(f"identical pixels: {shas[0] == shas[1]}")


if __name__ == "__main__":
    main()
