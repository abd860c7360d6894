"""Benchmark: a cold zoo pull against a plain ``requests`` copy of the same file, and a warm resolve.

A 50 MB (default) random blob is served by ``mlvfx.zoo.serve`` in a separate process on 127.0.0.1.
In the same run, alternating, the best of ``--repeats`` is taken for:

* baseline: ``requests.get(stream=True)`` + ``iter_content(1 MiB)`` written to a file;
* zoo: ``mlvfx.zoo.fetch`` into an empty cache (lock, temp file, streaming sha256, size check,
  ``os.replace``, stamp).

Then the warm resolve (the blob already cached: manifest memo, cache stat, stamp check) is timed
over many calls. Targets: throughput ratio zoo/baseline >= 0.8, warm resolve < 5 ms.

    .venv/bin/python bench/zoo.py [--mb 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from mlvfx.zoo import fetch, load_manifest

SERVER = """
import sys
from mlvfx.zoo.serve import RangeRequestHandler, make_server
class Quiet(RangeRequestHandler):
    quiet = True
server = make_server(sys.argv[1], "127.0.0.1", 0, Quiet)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def plain_copy(url: str, dest: Path) -> float:
    start = time.perf_counter()
    with requests.get(url, stream=True, timeout=(10, 60)) as r, open(dest, "wb") as f:
        r.raise_for_status()
        for chunk in r.iter_content(chunk_size=1 << 20):
            f.write(chunk)
    return time.perf_counter() - start


def zoo_pull(cache: Path, manifest: Path) -> tuple[float, Path]:
    os.environ["MLVFX_CACHE_DIR"] = str(cache)
    start = time.perf_counter()
    path = fetch("bench-blob", manifest=manifest)
    return time.perf_counter() - start, path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="blob size in MB (10^6 bytes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warm-calls", type=int, default=500)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlvfx-bench-zoo-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "xdg")
    os.environ.pop("MLVFX_OFFLINE", None)
    os.environ.pop("MLVFX_ZOO_URL", None)
    os.environ.pop("MLVFX_ZOO_MIRRORS", None)
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    served = work / "served"
    served.mkdir()
    data = os.urandom(args.mb * 1_000_000)
    name = "bench.safetensors"
    (served / name).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    del data

    server = subprocess.Popen([sys.executable, "-c", SERVER, str(served)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/{name}"
        manifest = work / "manifest.json"
        entry = {
            "id": "bench-blob",
            "version": "1.0",
            "task": "bench",
            "format": ["safetensors"],
            "license": "CC0-1.0",
            "files": [{"name": name, "sha256": digest, "size": args.mb * 1_000_000, "urls": [url]}],
            "io": {
                "inputs": [{"name": "x", "channels": 3, "color_space": "linear"}],
                "outputs": [{"name": "y", "channels": 3, "color_space": "data"}],
                "tile": 0,
                "scale": 1,
            },
            "metrics": {},
            "card": "cards/bench.md",
            "recipe": "recipes/bench.toml",
        }
        manifest.write_text(json.dumps({"schema_version": 1, "models": [entry]}), encoding="utf-8")
        load_manifest(manifest)

        plain_copy(url, work / "warmup")  # page cache and connection warm-up for both
        base_times, zoo_times = [], []
        for i in range(args.repeats):
            base_times.append(plain_copy(url, work / f"plain-{i}"))
            (work / f"plain-{i}").unlink()
            seconds, path = zoo_pull(work / f"cache-{i}", manifest)
            zoo_times.append(seconds)
            if i < args.repeats - 1:
                shutil.rmtree(work / f"cache-{i}")

        mb = args.mb
        base, zoo = min(base_times), min(zoo_times)
        ratio = base / zoo
        print(f"blob: {mb} MB over http://127.0.0.1 (server in a separate process)")
        print(
            f"plain requests copy: best {base * 1000:7.1f} ms  {mb / base:7.1f} MB/s  (all: "
            + ", ".join(f"{t * 1000:.0f}" for t in base_times)
            + " ms)"
        )
        print(
            f"zoo cold pull:       best {zoo * 1000:7.1f} ms  {mb / zoo:7.1f} MB/s  (all: "
            + ", ".join(f"{t * 1000:.0f}" for t in zoo_times)
            + " ms)"
        )
        print(
            f"throughput ratio zoo/plain: {ratio:.2f}  (target >= 0.8: {'PASS' if ratio >= 0.8 else 'FAIL'})"
        )

        assert fetch("bench-blob", manifest=manifest) == path
        start = time.perf_counter()
        for _ in range(args.warm_calls):
            fetch("bench-blob", manifest=manifest)
        warm = (time.perf_counter() - start) / args.warm_calls
        print(
            f"warm resolve: {warm * 1000:.3f} ms per fetch() over {args.warm_calls} calls "
            f"(target < 5 ms: {'PASS' if warm < 0.005 else 'FAIL'})"
        )
        return 0 if ratio >= 0.8 and warm < 0.005 else 1
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
