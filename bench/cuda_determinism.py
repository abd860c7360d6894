"""On a machine with CUDA: does `mlvfx train smoke2d` give the same weights twice, and after a resume?

Trains the test suite's tiny smoke recipe (tests/test_fluids_training.py) on CUDA, in one process:

* twice, uninterrupted, with PyTorch's default CUDA kernels;
* twice with deterministic kernels asked for (cuDNN deterministic, no benchmark,
  ``torch.use_deterministic_algorithms(True, warn_only=True)``: ``grid_sample``'s backward and
  ``put_`` have no deterministic CUDA kernel, so PyTorch warns and uses the atomic ones);
* interrupted at iteration 4 and resumed, against a whole run: the checkpoint at iteration 4 of
  both, and the final weights, key by key.

Prints the largest weight difference of each pair. On the CPU all of them are 0 (the test suite
checks the resume bitwise there).

    python3 bench/cuda_determinism.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    from test_fluids_training import write_recipe

    from mlvfx.train.smoke import generate_data, load_smoke_recipe, train_surrogate
    from mlvfx.zoo import load_state_dict

    print(f"torch {torch.__version__}, CUDA {torch.cuda.is_available()}")
    tmp = Path(tempfile.mkdtemp())
    recipe = load_smoke_recipe(write_recipe(tmp / "tiny.json"))
    data = generate_data(tmp / "data", recipe)

    def weights(name: str) -> dict[str, torch.Tensor]:
        return load_state_dict(tmp / name / "smoke2d_tiny.safetensors")

    def diff(a: str, b: str) -> float:
        wa, wb = weights(a), weights(b)
        return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)

    for name in ("fast1", "fast2"):
        train_surrogate(recipe, data_dir=data, out_dir=tmp / name)
    print(f"default CUDA kernels, two whole runs: max weight difference {diff('fast1', 'fast2'):.3g}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)

    def keep_4(record: dict[str, object]) -> None:
        if record.get("event") == "val" and record.get("iteration") == 4:  # after the save at 4
            shutil.copy(tmp / "det1" / "checkpoint.pt", tmp / "whole4.pt")

    train_surrogate(recipe, data_dir=data, out_dir=tmp / "det1", log=keep_4)
    train_surrogate(recipe, data_dir=data, out_dir=tmp / "det2")
    print(
        f"deterministic kernels asked for, two whole runs: max weight difference {diff('det1', 'det2'):.3g}"
    )

    def stop_at_4(record: dict[str, object]) -> None:
        if record.get("event") == "train" and record.get("iteration") == 4:
            raise KeyboardInterrupt

    try:
        train_surrogate(recipe, data_dir=data, out_dir=tmp / "cut", log=stop_at_4)
    except KeyboardInterrupt:
        pass
    a = torch.load(tmp / "whole4.pt", weights_only=True)
    b = torch.load(tmp / "cut" / "checkpoint.pt", weights_only=True)
    dm = max(float((a["model"][k].double() - b["model"][k].double()).abs().max()) for k in a["model"])
    print(f"checkpoint at iteration {a['iteration']} / {b['iteration']}, whole vs interrupted: {dm:.3g}")
    train_surrogate(recipe, data_dir=data, out_dir=tmp / "cut", resume=True)
    print(f"interrupted + resumed vs whole: max weight difference {diff('det1', 'cut'):.3g}")
    wa, wb = weights("det1"), weights("cut")
    for k in wa:
        print(f"  {k}: {float((wa[k].double() - wb[k].double()).abs().max()):.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
