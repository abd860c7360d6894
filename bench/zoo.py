"""Benchmark: a cold zoo pull against a plain ``requests`` copy of the same file, and a warm resolve.

A random blob (50 MB by default) is served by ``mlvfx.zoo.serve`` in a separate process on
127.0.0.1. For each server speed (unlimited loopback, then ``--rate`` MB/s, a LAN-like link) the
best of ``--repeats`` alternating runs is taken for:

* plain: ``requests.get(stream=True)`` + ``iter_content(1 MiB)`` written to a file (no checks);
* plain+sha256: the same, then ``hashlib.sha256`` of the file: the cheapest *verified* copy;
* zoo: ``mlvfx.zoo.fetch`` into an empty cache (lock, temp file, streaming sha256 on a helper
  thread, size check, ``os.replace``, stamp).

Then a warm resolve (the blob cached: manifest memo, a stat, a stamp check) is timed over many
calls. Targets from issue 3: zoo/plain throughput >= 0.8; warm resolve < 5 ms.

    .venv/bin/python bench/zoo.py [--mb 50] [--repeats 5] [--rate 100]
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
import sys, time
from mlvfx.zoo.serve import RangeRequestHandler, make_server
rate = float(sys.argv[2]) * 1e6  # bytes per second; 0 = unlimited

class Handler(RangeRequestHandler):
    quiet = True

    def send_body(self, f, start, length):
        if not rate:
            return super().send_body(f, start, length)
        t0, sent, step = time.perf_counter(), 0, 256 * 1024
        while sent < length:
            n = min(step, length - sent)
            self.connection.sendfile(f, start + sent, n)
            sent += n
            ahead = sent / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)

server = make_server(sys.argv[1], "127.0.0.1", 0, Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def plain_copy(url: str, dest: Path, verify: str | None = None) -> float:
    start = time.perf_counter()
    with requests.get(url, stream=True, timeout=(10, 60)) as r, open(dest, "wb") as f:
        r.raise_for_status()
        for chunk in r.iter_content(chunk_size=1 << 20):
            f.write(chunk)
    if verify is not None:
        digest = hashlib.sha256()
        with open(dest, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        assert digest.hexdigest() == verify
    return time.perf_counter() - start


def zoo_pull(cache: Path, manifest: Path) -> tuple[float, Path]:
    os.environ["MLVFX_CACHE_DIR"] = str(cache)
    start = time.perf_counter()
    path = fetch("bench-blob", manifest=manifest)
    return time.perf_counter() - start, path


def write_manifest(path: Path, url: str, name: str, digest: str, size: int) -> None:
    entry = {
        "id": "bench-blob",
        "version": "1.0",
        "task": "bench",
        "format": ["safetensors"],
        "license": "CC0-1.0",
        "files": [{"name": name, "sha256": digest, "size": size, "urls": [url]}],
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
    path.write_text(json.dumps({"schema_version": 1, "models": [entry]}), encoding="utf-8")


def run_speed(work: Path, served: Path, name: str, digest: str, mb: int, rate: float, repeats: int) -> float:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(served), str(rate)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/{name}"
        manifest = work / f"manifest-{rate:g}.json"
        write_manifest(manifest, url, name, digest, mb * 1_000_000)
        load_manifest(manifest)
        plain_copy(url, work / "warmup")  # page cache and server warm-up
        times: dict[str, list[float]] = {"plain": [], "plain+sha256": [], "zoo": []}
        for i in range(repeats):
            times["plain"].append(plain_copy(url, work / "plain"))
            times["plain+sha256"].append(plain_copy(url, work / "plain", verify=digest))
            (work / "plain").unlink()
            cache = work / f"cache-{rate:g}-{i}"
            seconds, _ = zoo_pull(cache, manifest)
            times["zoo"].append(seconds)
            shutil.rmtree(cache)
        speed = "unlimited loopback" if not rate else f"server limited to {rate:g} MB/s"
        print(f"\n{mb} MB blob, {speed}, best of {repeats}:")
        best = {k: min(v) for k, v in times.items()}
        for key, values in times.items():
            all_ms = ", ".join(f"{t * 1000:.0f}" for t in values)
            print(f"  {key:<13} {best[key] * 1000:8.1f} ms {mb / best[key]:8.1f} MB/s   (all: {all_ms} ms)")
        ratio = best["plain"] / best["zoo"]
        print(f"  throughput ratio zoo/plain:        {ratio:.2f}  (target >= 0.8)")
        print(f"  throughput ratio zoo/plain+sha256: {best['plain+sha256'] / best['zoo']:.2f}")
        return ratio
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="blob size in MB (10^6 bytes)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rate", type=float, default=100.0, help="MB/s of the limited run (0: skip it)")
    parser.add_argument("--warm-calls", type=int, default=1000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlvfx-bench-zoo-"))
    for var in ("MLVFX_OFFLINE", "MLVFX_ZOO_URL", "MLVFX_ZOO_MIRRORS", "MLVFX_ZOO_MANIFEST"):
        os.environ.pop(var, None)
    os.environ["XDG_CACHE_HOME"] = str(work / "xdg")
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    try:
        served = work / "served"
        served.mkdir()
        data = os.urandom(args.mb * 1_000_000)
        name = "bench.safetensors"
        (served / name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        start = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        hash_s = time.perf_counter() - start
        del data
        print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
        print(f"sha256 alone (in memory): {hash_s * 1000:.1f} ms ({args.mb / hash_s:.0f} MB/s)")

        ratios = [run_speed(work, served, name, digest, args.mb, 0.0, args.repeats)]
        if args.rate:
            ratios.append(
                run_speed(work, served, name, digest, args.mb, args.rate, max(2, args.repeats // 2))
            )

        manifest = work / "manifest-0.json"
        cache = work / "warm-cache"
        (cache / "zoo" / "sha256").mkdir(parents=True)
        shutil.copyfile(served / name, cache / "zoo" / "sha256" / digest)
        _, path = zoo_pull(cache, manifest)  # first call hashes and stamps the pre-filled blob
        start = time.perf_counter()
        for _ in range(args.warm_calls):
            assert fetch("bench-blob", manifest=manifest) == path
        warm = (time.perf_counter() - start) / args.warm_calls
        print(
            f"\nwarm resolve: {warm * 1000:.3f} ms per fetch() over {args.warm_calls} calls (target < 5 ms)"
        )
        ok = ratios[0] >= 0.8 and warm < 0.005
        print("all targets met" if ok else "a target was missed (see above)")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
