"""Inference cost of the mirror-equivariant surrogate nets: cached kernels and split activations.

``MirrorConv`` projects its kernel onto the mirror-symmetric subspace at every call, and
``MirrorAct`` used to evaluate both tanh and GELU on every channel. At inference (no gradient) the
projected kernel is now cached and each activation runs on its half of the channels only. This
script times both paths in the same run (the old one by disabling the cache and the split) and
checks that they agree.

    .venv/bin/python bench/surrogate_net.py --threads 1
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from conv_onednn import median_ms  # bench/ is the script's folder, so it is on sys.path

from mlvfx.fluids.surrogate import CorrectionNet, MirrorAct, MirrorConv, UpresNet


def uncached(net: torch.nn.Module) -> None:
    """Switch ``net`` (in place) to the old code path: kernels projected every call, no split."""
    for m in net.modules():
        if isinstance(m, MirrorConv):
            m.projected = (  # type: ignore[method-assign]
                lambda m=m: (m.kernel(), 0.5 * (m.bias + m.bias_sign * m.bias[m.perm]))
            )
        if isinstance(m, MirrorAct):
            m._split = None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases: list[tuple[str, Callable[[], torch.nn.Module], tuple[int, ...]]] = [
        ("2D correction w12 d4, 64²", lambda: CorrectionNet(2, 12, 4, 2, equivariant=True), (64, 64)),
        (
            "2D correction w8 d4 dilated, 64²",
            lambda: CorrectionNet(2, 8, 4, 2, equivariant=True, dilations=(1, 2, 4, 1)),
            (64, 64),
        ),
        ("2D upres w12 d3, 64²", lambda: UpresNet(2, 4, 12, 3, 2), (64, 64)),
        ("3D upres w12 d3, 16³", lambda: UpresNet(3, 4, 12, 3, 2), (16, 16, 16)),
        ("3D upres w12 d3, 32³", lambda: UpresNet(3, 4, 12, 3, 2), (32, 32, 32)),
    ]
    print(f"threads {args.threads}")
    print("| net | before ms | after ms | speedup | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    for name, build, shape in cases:
        torch.manual_seed(0)
        net = build().eval()
        for p in net.parameters():  # non-zero heads, so the outputs are not trivially equal
            torch.nn.init.normal_(p, std=0.2)
        dims = len(shape)
        x = torch.randn((1, 1 + dims + 2 + 2, *shape))
        with torch.no_grad():
            new_out = net(x)
            after = median_ms(lambda n=net, a=x: n(a), args.repeats)
            uncached(net)
            old_out = net(x)
            before = median_ms(lambda n=net, a=x: n(a), args.repeats)
        diff = float((new_out - old_out).abs().max())
        print(f"| {name} | {before:.3f} | {after:.3f} | {before / after:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
