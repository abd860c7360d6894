"""``mlvfx smoke bench``: the surrogate against the reference, coarse-only and coarse+bicubic.

All in one run, on held-out shots (seeds from :data:`mlvfx.train.smoke.BENCH_SEED`, never used
by a recipe), at the output resolution:

* density relative L2 against the reference at the evaluation steps (default 50, 100, 200),
  for coarse-only (the coarse solver, nearest upsampling), coarse+bicubic (the same run,
  bicubic/trilinear upsampling) and the surrogate (coarse solver + learned correction, through
  its learned upres when the model has one; then also ``surrogate_smooth``, the same run with
  the bicubic/trilinear upsampling, which separates what the upres adds);
* the divergence residual of each method's final velocity (relative, on its own grid);
* stability over 4x the training horizon: no NaN, and total density within +-5% of the
  reference's at the last step;
* time per step at the output resolution (the coarse runs' times include bringing the density to
  the output grid every step, the surrogate's both its outputs, density and velocity, as a host
  receives them), and the speedup against the reference.

The machine's load average is recorded: on a shared box timings compare only within one run.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from mlvfx.config import torch_device
from mlvfx.errors import InputError
from mlvfx.progress import CancelToken, ProgressFn, check_cancel, report

if TYPE_CHECKING:
    from mlvfx.fluids.reference import ReferenceSolver
    from mlvfx.fluids.surrogate import SurrogateSolver

METHODS = ("reference", "coarse_only", "coarse_bicubic", "surrogate")


@dataclass(frozen=True)
class BenchSpec:
    dims: int = 2
    res: int = 256
    shots: int = 4
    seed: int = 5000
    eval_steps: tuple[int, ...] = (50, 100, 200)
    stability_steps: int = 640
    stability_shots: int = 1
    timing_steps: int = 20
    families: tuple[str, ...] = ("plume", "two_sources", "wind", "obstacle")
    open_inflow: Literal["border", "clean"] = "clean"  # the surrogate's; coarse-only keeps the reference's


def _surrogate_and_coarse(
    sc: Any, net: Any, factor: int, spec: BenchSpec
) -> tuple[SurrogateSolver, ReferenceSolver]:
    """The surrogate for a shot and the plain coarse solver (coarse-only) beside it.

    Coarse-only is the reference solver on the coarse grid, with the reference's own open-wall
    convention; the surrogate's coarse solver takes ``spec.open_inflow``. Both share the
    surrogate's prepared sources (same grid, same obstacles).
    """
    from mlvfx.fluids.reference import ReferenceSolver
    from mlvfx.fluids.surrogate import SurrogateSolver

    sur = SurrogateSolver(sc.config, net, sc.obstacles, factor, dtype="float32", open_inflow=spec.open_inflow)
    if sur.solver.config.open_inflow == sc.config.open_inflow:
        return sur, sur.solver
    plain = replace(sur.solver.config, open_inflow=sc.config.open_inflow)
    return sur, ReferenceSolver(plain, sur.solver.solid.cpu().numpy())


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|a - b| / |b|`` (0 when ``b`` is all zero); ``b`` may live on another device."""
    b = b.to(a.device)
    den = float(torch.linalg.vector_norm(b))
    return float(torch.linalg.vector_norm(a - b)) / den if den > 0 else 0.0


def _upsample(coarse: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    from mlvfx.fluids.surrogate import prolong_density

    if mode == "nearest":
        return F.interpolate(coarse[None, None], scale_factor=factor, mode="nearest")[0, 0]
    return prolong_density(coarse, factor)


def run_bench(
    net: Any,
    factor: int,
    spec: BenchSpec,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns per-method errors, residuals, stability and timing."""
    from mlvfx.fluids.reference import ReferenceSolver, relative_divergence
    from mlvfx.fluids.scenarios import make_scenario

    if net.dims != spec.dims:
        raise InputError(f"the model is {net.dims}D, the benchmark is {spec.dims}D")
    if spec.res % factor:
        raise InputError(f"--res {spec.res} is not a multiple of the model's factor {factor}")
    net.eval()
    last = max(spec.eval_steps)
    methods = METHODS + (("surrogate_smooth",) if net.upres is not None else ())
    errors: dict[str, dict[int, list[float]]] = {m: {} for m in methods if m != "reference"}
    curves: dict[str, list[list[float]]] = {m: [] for m in errors}
    divergence: dict[str, list[float]] = {m: [] for m in methods}
    shots_meta = []
    total_work = spec.shots + spec.stability_shots + 1
    done = 0
    for n in range(spec.shots):
        seed = spec.seed + n
        sc = make_scenario(spec.families[seed % len(spec.families)], spec.dims, spec.res, seed=seed)
        shots_meta.append({"seed": seed, "scenario": sc.name, "params": sc.params})
        ref = ReferenceSolver(sc.config, sc.obstacles)
        ref_src = ref.prepare_sources(sc.sources)
        sur, coarse = _surrogate_and_coarse(sc, net, factor, spec)
        sur_src = sur.prepare_sources(sc.sources)
        states = {"reference": ref.zeros(), "coarse": coarse.zeros(), "surrogate": sur.solver.zeros()}
        per_curve: dict[str, list[float]] = {m: [] for m in errors}
        with torch.no_grad():
            for i in range(1, last + 1):
                check_cancel(cancel)
                states["reference"] = ref.advance(*states["reference"], ref_src)
                states["coarse"] = coarse.advance(*states["coarse"], sur_src)
                states["surrogate"] = sur.advance(*states["surrogate"], sur_src)
                if i % 10 == 0 or i in spec.eval_steps:
                    truth = states["reference"][0]
                    vals = {
                        "coarse_only": rel_l2(
                            _upsample(states["coarse"][0].double(), factor, "nearest"), truth
                        ),
                        "coarse_bicubic": rel_l2(
                            _upsample(states["coarse"][0].double(), factor, "smooth"), truth
                        ),
                        "surrogate": rel_l2(
                            sur.output_density(*states["surrogate"], sur_src).double(), truth
                        ),
                    }
                    if "surrogate_smooth" in errors:
                        smooth = _upsample(states["surrogate"][0].double(), factor, "smooth")
                        vals["surrogate_smooth"] = rel_l2(smooth, truth)
                    if i % 10 == 0:
                        for m, v in vals.items():
                            per_curve[m].append(v)
                    if i in spec.eval_steps:
                        for m, v in vals.items():
                            errors[m].setdefault(i, []).append(v)
                report(progress, (done + i / last) / total_work, f"shot {seed} ({sc.name}) step {i}/{last}")
        solid_c = sur.solver.solid
        divergence["reference"].append(relative_divergence(states["reference"][1], ref.solid))
        divergence["coarse_only"].append(relative_divergence(states["coarse"][1], solid_c))
        divergence["coarse_bicubic"].append(divergence["coarse_only"][-1])
        divergence["surrogate"].append(relative_divergence(states["surrogate"][1], solid_c))
        if "surrogate_smooth" in divergence:
            divergence["surrogate_smooth"].append(divergence["surrogate"][-1])
        for m in curves:
            curves[m].append(per_curve[m])
        done += 1
    stability = []
    for n in range(spec.stability_shots):
        seed = spec.seed + n
        sc = make_scenario(spec.families[seed % len(spec.families)], spec.dims, spec.res, seed=seed)
        ref = ReferenceSolver(sc.config, sc.obstacles)
        ref_src = ref.prepare_sources(sc.sources)
        sur, coarse = _surrogate_and_coarse(sc, net, factor, spec)
        sur_src = sur.prepare_sources(sc.sources)
        r_state, s_state, c_state = ref.zeros(), sur.solver.zeros(), coarse.zeros()
        finite = True
        cell = factor**spec.dims
        # Totals over the last quarter too: in an open box the instantaneous total swings as
        # puffs leave, so the average separates drift (gain or drain) from puff timing.
        tail_from = spec.stability_steps - spec.stability_steps // 4
        tails: dict[str, list[float]] = {"reference": [], "surrogate": [], "coarse": []}
        with torch.no_grad():
            for i in range(1, spec.stability_steps + 1):
                check_cancel(cancel)
                r_state = ref.advance(*r_state, ref_src)
                s_state = sur.advance(*s_state, sur_src)
                c_state = coarse.advance(*c_state, sur_src)
                finite = finite and bool(torch.isfinite(s_state[0]).all())
                if i > tail_from:
                    tails["reference"].append(float(r_state[0].sum()))
                    tails["surrogate"].append(float(s_state[0].sum()) * cell)
                    tails["coarse"].append(float(c_state[0].sum()) * cell)
                report(progress, (done + i / spec.stability_steps) / total_work, f"stability step {i}")
        ref_mass = float(r_state[0].sum())
        sur_mass = float(s_state[0].sum()) * cell
        ref_tail = float(np.mean(tails["reference"])) if tails["reference"] else math.nan

        def ratio(a: float, b: float) -> float:
            return a / b if b > 0 else math.nan

        stability.append(
            {
                "seed": seed,
                "scenario": sc.name,
                "steps": spec.stability_steps,
                "finite": finite,
                "total_density_ratio": ratio(sur_mass, ref_mass),
                "ok": finite and abs(sur_mass / max(ref_mass, 1e-12) - 1) <= 0.05,
                "coarse_total_density_ratio": ratio(float(c_state[0].sum()) * cell, ref_mass),
                "last_quarter_ratio": ratio(float(np.mean(tails["surrogate"] or [math.nan])), ref_tail),
                "coarse_last_quarter_ratio": ratio(float(np.mean(tails["coarse"] or [math.nan])), ref_tail),
            }
        )
        done += 1
    timing = time_methods(net, factor, spec)
    report(progress, 1.0, "done")
    table: dict[str, Any] = {}
    for m in methods:
        div = float(np.max(divergence[m])) if divergence[m] else math.nan
        row: dict[str, Any] = {"divergence": div, "ms_per_step": timing[m]}
        row["speedup"] = timing["reference"] / timing[m]
        if m in errors and spec.shots > 0:
            for i in spec.eval_steps:
                row[f"rel_l2_t{i}"] = float(np.mean(errors[m][i]))
        table[m] = row
    if spec.shots > 0:
        sur = table["surrogate"]
        for i in spec.eval_steps:
            sur[f"ratio_t{i}"] = sur[f"rel_l2_t{i}"] / table["coarse_only"][f"rel_l2_t{i}"]
            sur[f"ratio_bicubic_t{i}"] = sur[f"rel_l2_t{i}"] / table["coarse_bicubic"][f"rel_l2_t{i}"]
    return {
        "spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.__dict__.items()},
        "factor": factor,
        "table": table,
        "curves": {m: np.mean(np.array(c), axis=0).tolist() for m, c in curves.items() if c},
        "curve_steps": list(range(10, last + 1, 10)),
        "stability": stability,
        "shots": shots_meta,
        "timing": timing,
        "reference_float32_ms": timing.get("reference_float32"),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "threads": torch.get_num_threads(),
        "device": str(torch_device(None)),
    }


def _sync() -> None:
    """Wait for queued CUDA work, so a step's time is the step's and not its launch's."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        torch.cuda.synchronize()


def time_methods(net: Any, factor: int, spec: BenchSpec) -> dict[str, float]:
    """Milliseconds per step at the output resolution (canonical plume), median over the rounds.

    The methods are timed interleaved: each of ``spec.timing_steps`` rounds advances every
    method by one step, in an order that rotates from round to round. A slow spell of the machine
    then hits all methods alike instead of whichever happened to be timed during it (timed one
    after the other, the same model's speedup swung between 3.5x and 5.8x on a shared box).
    """
    from mlvfx.fluids.reference import ReferenceSolver
    from mlvfx.fluids.scenarios import make_scenario

    sc = make_scenario("plume", spec.dims, spec.res)
    methods: dict[str, tuple[Any, Any]] = {}  # name -> (one timed step: state -> state, state)

    def method(step: Any, state: Any, output: str | Any | None) -> tuple[Any, Any]:
        def run(current: Any) -> Any:
            current = step(*current)
            if callable(output):
                output(*current)
            elif output is not None:
                _upsample(current[0], factor, output)
            return current

        return run, run(state)  # the first call is the warm-up (builds caches)

    with torch.inference_mode():  # as the hosts' steppers run (reference.HostStepper.step)
        for dtype in ("float64", "float32"):
            cfg = replace(sc.config, dtype=dtype)
            ref = ReferenceSolver(cfg, sc.obstacles)
            src = ref.prepare_sources(sc.sources)
            key = "reference" if dtype == "float64" else "reference_float32"
            methods[key] = method(lambda d, v, r=ref, s=src: r.advance(d, v, s), ref.zeros(), None)
        sur, coarse = _surrogate_and_coarse(sc, net, factor, spec)
        src = sur.prepare_sources(sc.sources)
        methods["coarse_only"] = method(lambda d, v: coarse.advance(d, v, src), coarse.zeros(), "nearest")
        methods["coarse_bicubic"] = method(lambda d, v: coarse.advance(d, v, src), coarse.zeros(), "smooth")
        methods["surrogate"] = method(
            lambda d, v: sur.advance(d, v, src),
            coarse.zeros(),
            lambda d, v: sur.outputs(d, v, src),
        )
        if net.upres is not None:
            methods["surrogate_smooth"] = method(
                lambda d, v: sur.advance(d, v, src), coarse.zeros(), "smooth"
            )
        names = list(methods)
        states = {name: methods[name][1] for name in names}
        times: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(spec.timing_steps):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                _sync()
                t = time.perf_counter()
                states[name] = methods[name][0](states[name])
                _sync()
                times[name].append(time.perf_counter() - t)
    return {name: 1e3 * float(np.median(times[name])) for name in names}


def plot_curves(result: dict[str, Any], path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Error-over-time curves as a PNG (drawn with OpenCV; no plotting library needed)."""
    import cv2

    from mlvfx.io.atomic import write_bytes_atomic

    w, h, left, bottom, top, right = 800, 480, 70, 50, 40, 200
    img = np.full((h, w, 3), 255, np.uint8)
    steps = result["curve_steps"]
    curves = result["curves"]
    ymax = max(1e-6, max(max(c) for c in curves.values())) * 1.1
    xmax = max(steps)

    def pt(x: float, y: float) -> tuple[int, int]:
        return (int(left + (w - left - right) * x / xmax), int(h - bottom - (h - top - bottom) * y / ymax))

    cv2.rectangle(img, pt(0, 0), pt(xmax, ymax), (0, 0, 0), 1)
    for k in range(6):
        y = ymax * k / 5
        cv2.putText(img, f"{y:.2f}", (8, pt(0, y)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.line(img, pt(0, y), pt(xmax, y), (225, 225, 225), 1)
    for x in range(0, xmax + 1, 50):
        cv2.putText(
            img, str(x), (pt(x, 0)[0] - 10, h - bottom + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1
        )
    colours = {
        "coarse_only": (40, 40, 220),
        "coarse_bicubic": (40, 160, 240),
        "surrogate": (200, 90, 20),
        "surrogate_smooth": (160, 160, 60),
    }
    for n, (name, c) in enumerate(curves.items()):
        pts = np.array([pt(x, y) for x, y in zip(steps, c, strict=True)], np.int32)
        cv2.polylines(img, [pts], False, colours.get(name, (0, 0, 0)), 2, cv2.LINE_AA)
        cv2.putText(
            img,
            method_label(name, result["spec"].get("dims")),
            (w - right + 15, top + 20 + 22 * n),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colours.get(name, (0, 0, 0)),
            1,
            cv2.LINE_AA,
        )
    spec = result["spec"]
    title = f"density rel. L2 vs reference, {spec['dims']}D {spec['res']}, {spec['shots']} held-out shots"
    cv2.putText(img, title, (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "step", (w // 2 - 40, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise InputError("could not encode the plot")
    write_bytes_atomic(path, buf.tobytes(), overwrite=overwrite)


def method_label(name: str, dims: int | None) -> str:
    """How a method is shown: ``coarse_bicubic`` is trilinear upsampling in 3D."""
    if name == "coarse_bicubic":
        return {3: "coarse + trilinear", 2: "coarse + bicubic"}.get(dims or 0, "coarse + smooth")
    return name.replace("_", " ")


def format_table(result: dict[str, Any]) -> str:
    """The benchmark table as Markdown."""
    steps = result["spec"]["eval_steps"]
    head = "| method | " + " | ".join(f"rel. L2 t={s}" for s in steps) + " | divergence | ms/step | speedup |"
    lines = [head, "|---" * (len(steps) + 4) + "|---|"]
    lines[1] = "|" + "---|" * (len(steps) + 4)
    for m, row in result["table"].items():
        errs = []
        for s in steps:
            v = row.get(f"rel_l2_t{s}")
            if v is None:
                errs.append("0 (truth)" if m == "reference" else "-")
            elif m == "surrogate":
                errs.append(f"{v:.3f} ({row[f'ratio_t{s}']:.2f}x; {row[f'ratio_bicubic_t{s}']:.2f}x)")
            else:
                errs.append(f"{v:.3f}")
        lines.append(
            f"| {method_label(m, result['spec'].get('dims'))} | "
            + " | ".join(errs)
            + f" | {row['divergence']:.1e} | {row['ms_per_step']:.1f} | {row['speedup']:.1f}x |"
        )
    return "\n".join(lines)
