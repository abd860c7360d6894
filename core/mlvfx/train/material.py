"""Training loop of the material model (``mlvfx train material``).

Resumable: a checkpoint (model, optimiser, step, elapsed seconds) is written atomically every few
minutes into the output folder, and ``resume=True`` continues from it. Deterministic by seed:
weights are initialised from ``recipe.seed`` and batch ``t`` is drawn from ``(recipe.seed, t)``,
so an interrupted-and-resumed run matches an uninterrupted one (same data, threads and torch).

Output folder:
    checkpoint.pt            the latest checkpoint (our own file; loaded with ``weights_only``)
    log.jsonl                one JSON line per logged step / validation
    <name>.safetensors       final weights (state dict; the architecture follows from the shapes)
    <name>.onnx              ONNX export of the final weights (when ``export_onnx``)
    summary.json             recipe, steps, seconds, parameters, FLOPs/px, last losses
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mlvfx.errors import InputError
from mlvfx.io import write_bytes_atomic
from mlvfx.io.atomic import make_folder
from mlvfx.nets.material import MaterialNet, count_flops_per_pixel, count_parameters
from mlvfx.train import losses as L
from mlvfx.train.dataset import MaterialDataset
from mlvfx.train.recipe import LossSpec, Recipe, data_folder_index
from mlvfx.train.runlog import (
    CHECKPOINT,
    SUMMARY,
    LogFn,
    load_checkpoint,
    run_logger,
    save_checkpoint,
    save_safetensors,
)
from mlvfx.train.torch_state import keeps_torch_state


def compute_losses(
    pred: torch.Tensor,
    batch: dict[str, torch.Tensor],
    w: LossSpec,
    teacher: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Loss terms and their weighted sum ``"total"``.

    Args:
        pred: (B, 8, H, W) output of :class:`MaterialNet`.
        batch: (B, C, H, W) tensors from :func:`mlvfx.train.dataset.to_batch`.
        w: loss weights.
        teacher: (B, 8, H, W) output of the recipe's frozen teacher on the same batch; adds the
            ``roughness_teacher`` term (L1 to the teacher's roughness) and, with
            ``w.albedo_teacher``, the ``albedo_teacher`` term: the scale-invariant RMSE to the
            teacher's albedo over the samples ``batch["marked"]`` marks (0 when none is).
    """
    normal, height, albedo, rough = pred[:, 0:3], pred[:, 3:4], pred[:, 4:7], pred[:, 7:8]
    terms = {
        "normal": L.chord_loss(normal, batch["normal"]),
        "height_grad": L.height_gradient_loss(height, batch["height"]),
        "height_normal": L.height_normal_consistency(height, normal),
        "albedo_si": L.scale_invariant_log_loss(albedo, batch["albedo"]),
        "albedo_l1": L.l1_loss(albedo, batch["albedo"]),
        "roughness": L.l1_loss(rough, batch["roughness"]),
    }
    if w.albedo_si_linear:
        terms["albedo_si_linear"] = L.scale_invariant_rmse(albedo, batch["albedo"])
    if teacher is not None:
        terms["roughness_teacher"] = L.l1_loss(rough, teacher[:, 7:8])
        if w.albedo_teacher:
            marked = batch["marked"] > 0.5
            terms["albedo_teacher"] = (
                L.scale_invariant_rmse(albedo[marked], teacher[marked, 4:7])
                if bool(marked.any())
                else torch.zeros((), device=pred.device)
            )
    total = sum((getattr(w, k) * v for k, v in terms.items()), torch.zeros(()))
    terms["total"] = total
    return terms


def learning_rate(step: int, recipe: Recipe, total_steps: int) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``lr_min`` over ``total_steps``."""
    t = recipe.train
    if step < t.warmup:
        return t.lr * (step + 1) / t.warmup
    frac = min(1.0, (step - t.warmup) / max(1, total_steps - t.warmup))
    return t.lr_min + 0.5 * (t.lr - t.lr_min) * (1.0 + math.cos(math.pi * frac))


@dataclass
class TrainResult:
    """What a (possibly partial) training run did."""

    out: Path
    steps_done: int
    total_steps: int
    seconds: float
    stopped: str  # "finished", "budget" or "paused"
    weights: Path | None
    onnx: Path | None
    last: dict[str, float] = field(default_factory=dict)


def _save_checkpoint(
    path: Path,
    net: MaterialNet,
    opt: torch.optim.Optimizer,
    step: int,
    seconds: float,
    recipe: Recipe,
    light_head: torch.nn.Module | None = None,
) -> None:
    state = {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "seconds": seconds,
        "recipe": json.dumps(recipe.to_dict()),
    }
    if light_head is not None:
        state["light_head"] = light_head.state_dict()
    save_checkpoint(path, state)


def light_loss(pred: torch.Tensor, light: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos`` between predicted (B, 3) and true sun directions, over samples with a sun."""
    cos = (torch.nn.functional.normalize(pred, dim=1) * light).sum(dim=1)
    return ((1.0 - cos) * mask).sum() / mask.sum().clamp_min(1.0)


def init_weights(net: MaterialNet, spec: str) -> dict[str, Any]:
    """Load the recipe's ``train.init`` weights into ``net`` (see :class:`TrainSpec`).

    Every tensor of the init file must exist in ``net`` with the same shape; tensors of ``net``
    the file lacks must belong to blocks that start as the identity: the context branch (``ctx_*``)
    and the full-resolution detail block (``detail.*``).

    Returns:
        A log record: source, sha256 and which of the net's tensors stayed fresh.
    """
    from mlvfx.train.runlog import init_weights_file
    from mlvfx.zoo import load_state_dict

    path, record = init_weights_file(spec)
    state = load_state_dict(path, device="cpu")
    own = net.state_dict()
    bad = [k for k, v in state.items() if k not in own or tuple(own[k].shape) != tuple(v.shape)]
    if bad:
        raise InputError(f"init weights do not fit this model ({len(bad)} tensors, e.g. {bad[0]!r})", path)
    fresh = sorted(k for k in own if k not in state)
    lacking = [k for k in fresh if not k.startswith(("ctx_", "detail."))]
    if lacking:
        raise InputError(f"init weights lack {lacking[0]!r}", path)
    net.load_state_dict(state, strict=False)
    return record | {"fresh_tensors": len(fresh)}


def load_teacher(recipe: Recipe, device: torch.device) -> tuple[MaterialNet, dict[str, Any]]:
    """The recipe's frozen ``train.teacher`` (inference mode, no gradients) and a log record.

    Raises:
        InputError: the weights are missing or do not fit the recipe's architecture.
    """
    from mlvfx.train.runlog import init_weights_file
    from mlvfx.zoo import load_state_dict

    path, record = init_weights_file(recipe.train.teacher)
    teacher = MaterialNet(recipe.model)
    state = load_state_dict(path, device="cpu")
    own = teacher.state_dict()
    if set(state) != set(own) or any(tuple(own[k].shape) != tuple(v.shape) for k, v in state.items()):
        raise InputError("teacher weights do not fit the recipe's model", path)
    teacher.load_state_dict(state)
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, {**record, "event": "teacher"}


def _deterministic(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


@keeps_torch_state
def train_material(
    recipe: Recipe,
    *,
    data_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    steps: int | None = None,
    budget_minutes: float | None = None,
    device: str | None = None,
    export_onnx: bool = True,
    max_steps_this_run: int | None = None,
    log: LogFn | None = None,
    allow_recipe_change: bool = False,
) -> TrainResult:
    """Train :class:`MaterialNet` on a factory dataset.

    Args:
        recipe: the recipe (see :mod:`mlvfx.train.recipe`).
        data_dir: factory dataset folder (training families only), or several, read in order.
        out_dir: where checkpoints, logs and final weights go.
        resume: continue from ``out_dir/checkpoint.pt`` if present.
        allow_recipe_change: resume a checkpoint another recipe wrote (e.g. the same run on a new
            schedule); the differing keys are logged. Refused otherwise.
        steps: override ``recipe.train.steps`` (the LR schedule follows it).
        budget_minutes: wall-clock budget over all resumed runs; default the recipe's.
        device: torch device name; default ``MLVFX_DEVICE`` / CUDA if available / CPU.
        export_onnx: also write the ONNX export at the end.
        max_steps_this_run: stop ("paused") after this many steps of this call; resume later.
        log: called with each log record (also appended to ``log.jsonl``).

    Returns:
        A :class:`TrainResult`; ``weights`` is written whenever at least one step was done.
    """
    from mlvfx.config import torch_device

    out = Path(out_dir)
    make_folder(out, "run folder")
    t = recipe.train
    total_steps = steps if steps is not None else t.steps
    if total_steps < 1:
        raise InputError(f"steps must be >= 1, got {total_steps}")
    budget_s = 60.0 * (budget_minutes if budget_minutes is not None else t.budget_minutes)
    _deterministic(recipe.seed, t.threads)
    dev = torch_device(device)
    torch.set_num_threads(t.threads)

    data = MaterialDataset(
        data_dir,
        val_fraction=recipe.data.val_fraction,
        skip_metallic=recipe.data.skip_metallic,
        mark_families=recipe.train.teacher_albedo_families if recipe.loss.albedo_teacher else (),
    )
    data.refresh()
    # train.first_steps: the curriculum's first folders, as indices into the dataset's folders.
    first_roots: list[int] | None = None
    if t.first_steps:
        dirs = [data_dir] if isinstance(data_dir, (str, os.PathLike)) else list(data_dir)
        positions = [data_folder_index(recipe, e) for e in t.first_data]
        if max(positions) >= len(dirs):
            raise InputError(
                f"train.first_data names the recipe's data folder {max(positions) + 1}; "
                f"{len(dirs)} were given"
            )
        first_roots = sorted({data.root_index(dirs[k]) for k in positions})
    net = MaterialNet(recipe.model).to(dev)
    # loss.light: a training-only head reads the sun direction off the context vector, so the
    # context branch has to estimate where the light comes from. The exported weights lack it.
    light_head: torch.nn.Linear | None = None
    if recipe.loss.light:
        if not recipe.model.context:
            raise InputError("the recipe's light loss needs a context branch (model.context > 0)")
        light_head = torch.nn.Linear(recipe.model.context, 3).to(dev)
    params = list(net.parameters()) + (list(light_head.parameters()) if light_head is not None else [])
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=1e-4)
    start, prior_seconds = 0, 0.0
    recipe_changes: list[str] = []
    ckpt = out / CHECKPOINT
    init_record: dict[str, Any] | None = None
    if resume and ckpt.is_file():
        state, recipe_changes = load_checkpoint(
            ckpt, recipe.to_dict(), dev, allow_changes=allow_recipe_change
        )
        try:
            net.load_state_dict(state["model"])
            if light_head is not None:
                light_head.load_state_dict(state["light_head"])
            opt.load_state_dict(state["optimizer"])
            start, prior_seconds = int(state["step"]), float(state["seconds"])
        except (RuntimeError, ValueError, KeyError) as exc:
            detail = str(exc).splitlines()[0]
            raise InputError(f"checkpoint does not match the recipe's model ({detail})", path=ckpt) from None
    elif t.init:
        init_record = init_weights(net, t.init)

    teacher: MaterialNet | None = None
    teacher_record: dict[str, Any] | None = None
    if t.teacher:
        teacher, teacher_record = load_teacher(recipe, dev)

    emit = run_logger(out, log)
    if recipe_changes:
        emit({"event": "resume_changes", "step": start, "keys": recipe_changes})
    if init_record is not None:
        emit(init_record)
    if teacher_record is not None:
        emit(teacher_record)
    emit(
        {
            "event": "start",
            "step": start,
            "total_steps": total_steps,
            "train_samples": len(data.train),
            "val_samples": len(data.val),
            "skipped_held_out": len(data.skipped_held_out),
            "skipped_metallic": len(data.skipped_metallic),
            "teacher_albedo_samples": sum(data.train_marked),
            "device": str(dev),
            "params": count_parameters(net),
        }
    )
    t0 = time.monotonic()
    last_ckpt = t0
    step = start
    stopped = "finished"
    last: dict[str, float] = {}
    net.train()
    updating = False
    counted_buffers: dict[str, torch.Tensor] | None = None
    try:
        while step < total_steps:
            if prior_seconds + time.monotonic() - t0 >= budget_s:
                stopped = "budget"
                break
            if max_steps_this_run is not None and step - start >= max_steps_this_run:
                stopped = "paused"
                break
            for g in opt.param_groups:
                g["lr"] = learning_rate(step, recipe, total_steps)
            ctx = bool(recipe.model.context)
            raw = data.batch(
                recipe.seed,
                step,
                t.batch,
                t.crop,
                context=ctx,
                illumination=t.illumination,
                roots=first_roots if step < t.first_steps else None,
            )
            batch = {k: v.to(dev) for k, v in raw.items()}
            # The forward pass updates BatchNorm's running statistics before the step counts: an
            # interrupt from here on saves the statistics the counted steps left.
            counted_buffers = {k: b.clone() for k, b in net.named_buffers()}
            target: torch.Tensor | None = None
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(batch["lit"], batch.get("thumb"))
            if light_head is None:
                terms = compute_losses(net(batch["lit"], batch.get("thumb")), batch, recipe.loss, target)
            else:
                context = net.context_vector(batch["thumb"])
                terms = compute_losses(net(batch["lit"], context=context), batch, recipe.loss, target)
                terms["light"] = light_loss(light_head(context), batch["light"], batch["light_mask"])
                terms["total"] = terms["total"] + recipe.loss.light * terms["light"]
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            updating = True  # the weights are half-updated until step counts it
            opt.step()
            step += 1
            updating = False
            counted_buffers = None
            last = {k: float(v.detach()) for k, v in terms.items()}
            if step % t.log_every == 0 or step == total_steps:
                emit(
                    {
                        "event": "train",
                        "step": step,
                        "lr": opt.param_groups[0]["lr"],
                        "seconds": round(prior_seconds + time.monotonic() - t0, 1),
                        **last,
                    }
                )
            if time.monotonic() - last_ckpt >= 60.0 * t.checkpoint_minutes:
                _save_checkpoint(
                    ckpt, net, opt, step, prior_seconds + time.monotonic() - t0, recipe, light_head
                )
                last_ckpt = time.monotonic()
                emit({"event": "val", "step": step, **validate(net, data, recipe, dev)})
                # Pick up samples a concurrent render finished meanwhile.
                added = data.refresh()
                if added:
                    emit({"event": "data", "step": step, "added": added, "train_samples": len(data.train)})
                net.train()
    except KeyboardInterrupt:
        # Ctrl-C, or SIGTERM from a farm's scheduler (the CLI raises it as an interrupt): keep the
        # steps done since the last periodic checkpoint, unless the weights were mid-update.
        if step > start and not updating:
            if counted_buffers is not None:  # mid-step: a resume reruns this step from the start
                with torch.no_grad():
                    for name, buffer in net.named_buffers():
                        buffer.copy_(counted_buffers[name])
            _save_checkpoint(ckpt, net, opt, step, prior_seconds + time.monotonic() - t0, recipe, light_head)
            emit({"event": "interrupted", "step": step, "checkpoint": True})
        raise
    seconds = prior_seconds + time.monotonic() - t0
    weights = onnx_path = None
    if step > start or resume:
        _save_checkpoint(ckpt, net, opt, step, seconds, recipe, light_head)
    if step > 0:
        emit({"event": "val", "step": step, **validate(net, data, recipe, dev)})
        net = net.cpu().eval()
        weights = save_weights(net, out / f"{recipe.name}.safetensors")
        if export_onnx:
            from mlvfx.train.export import export_onnx as _export

            onnx_path = _export(net, out / f"{recipe.name}.onnx")
    summary = {
        "recipe": recipe.to_dict(),
        "steps_done": step,
        "total_steps": total_steps,
        "stopped": stopped,
        "seconds": round(seconds, 1),
        "params": count_parameters(net),
        "flops_per_pixel": count_flops_per_pixel(MaterialNet(recipe.model)),
        "train_samples": len(data.train),
        "val_samples": len(data.val),
        "skipped_held_out": len(data.skipped_held_out),
        "skipped_metallic": len(data.skipped_metallic),
        "last": last,
        "torch": torch.__version__,
        "threads": t.threads,
        "device": str(dev),
    }
    write_bytes_atomic(out / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode(), overwrite=True)
    emit({"event": "end", "step": step, "stopped": stopped, "seconds": round(seconds, 1)})
    return TrainResult(out, step, total_steps, seconds, stopped, weights, onnx_path, last)


@torch.no_grad()
def validate(
    net: MaterialNet, data: MaterialDataset, recipe: Recipe, device: torch.device
) -> dict[str, float]:
    """Mean loss terms on the training folder's validation split (same families, unseen samples).

    This is for monitoring only; reported metrics come from ``mlvfx eval material`` on the public
    validation set.
    """
    crop = max(net.multiple, (128 // net.multiple) * net.multiple)
    vb = data.val_batch(recipe.train.val_samples, crop)
    if vb is None:
        return {}
    net.eval()
    vb = {k: v.to(device) for k, v in vb.items()}
    terms = compute_losses(net(vb["lit"], vb.get("thumb")), vb, recipe.loss)
    return {f"val_{k}": float(v) for k, v in terms.items()}


def save_weights(net: MaterialNet, path: Path) -> Path:
    """Write the state dict as safetensors, atomically."""
    return save_safetensors(dict(net.state_dict()), path)


def with_overrides(recipe: Recipe, **train: Any) -> Recipe:
    """A copy of ``recipe`` with some ``train`` settings replaced (``None`` values are ignored)."""
    kw = {k: v for k, v in train.items() if v is not None}
    return replace(recipe, train=replace(recipe.train, **kw)) if kw else recipe
