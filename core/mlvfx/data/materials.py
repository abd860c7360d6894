"""The material training-data factory: Blender (Cycles, CPU) renders with exact ground truth.

Each sample is a flat patch with real geometric relief (a grid with one vertex per pixel and true
material displacement), seen straight down by an orthographic camera that the patch fills
exactly. Lighting is a rotated studio HDRI bundled with Blender, a sun with shadows and sometimes
an area light (:data:`LIGHTING_MODES` names the two distributions they are drawn from). Per
sample the factory writes, into ``<out>/s<index:06d>/``:

* ``lit.png``: the input photo, 8-bit sRGB (view transform "Standard": clip + sRGB OETF);
* ``albedo.png``: the base colour, 8-bit sRGB (from a colour AOV; see note below);
* ``normal.png``: tangent-space normal, OpenGL convention (+X right, +Y up, +Z out), stored as
  ``n * 0.5 + 0.5`` in 16-bit PNG;
* ``height.exr``: displacement in patch widths (half float), from a shader AOV of the displaced
  surface's z (so it is exactly the geometry the normals come from), and
  ``height16.png``: the same, min-max normalised (min/max in meta.json);
* ``roughness.png``: 8-bit linear data;
* ``meta.json``: family, parameters, lights, seed, timings.

Why the albedo is a colour AOV and not the "Diffuse Color" pass: in Blender 4+/5 the Principled
BSDF's diffuse-colour pass is the base colour times the energy left after the dielectric specular
layer (a flat 0.8 grey reads 0.58-0.77 depending on the view angle) and times (1 - metallic), so
it is not the albedo a texture artist wants. The AOV carries the exact base colour.

Determinism: everything about a sample derives from ``numpy.random.default_rng([seed, index])``
and the family list; shards and reruns render the same samples. Resumability: a sample is
rendered into a hidden temp folder that is renamed into place only when complete, so a crash
loses at most the sample in flight, and a rerun skips every finished folder.

``bpy`` is imported lazily inside the functions that need it; importing this module is cheap and
works without Blender (spec sampling and the file layout are pure Python).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlvfx.data.families import FAMILIES, FAMILY_NAMES, Graph, Params, mixture_relief
from mlvfx.errors import InputError, MlvfxError
from mlvfx.progress import CancelToken, ProgressFn, check_cancel, report

FloatArray = npt.NDArray[np.float32]

SAMPLE_FILES: tuple[str, ...] = (
    "lit.png",
    "albedo.png",
    "normal.png",
    "height.exr",
    "height16.png",
    "roughness.png",
    "meta.json",
)
DATASET_FILE = "dataset.json"
FORMAT_VERSION = 1
# Bump whenever families, lighting or render settings change what a (seed, index) renders, so a
# dataset records which generator made it and resuming refuses to mix generators.
FACTORY_VERSION = 2
# Families whose patch pattern is axis-aligned by nature (masonry, boards): rotate by multiples
# of 90 degrees plus a small jitter instead of any angle.
_AXIS_ALIGNED = {"bricks", "tiles", "planks"}
HDRI_NAMES: tuple[str, ...] = (
    "city.exr",
    "courtyard.exr",
    "forest.exr",
    "interior.exr",
    "night.exr",
    "studio.exr",
    "sunrise.exr",
    "sunset.exr",
)


class BlenderUnavailable(MlvfxError):
    """The factory needs Blender as a Python module (``pip install mlvfx[blender]``)."""


# --------------------------------------------------------------------------------------------
# Specs (pure, deterministic)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleSpec:
    """Everything needed to render one sample; a pure function of (seed, index, families).

    Attributes:
        seed: dataset seed.
        index: sample index within the dataset.
        family: material family name.
        params: family parameters (JSON-serialisable).
        relief: displacement amplitude in patch widths (height 1.0 maps to this).
        transform: patch coordinate transform: ``rot_z`` (radians), ``scale``.
        lighting: HDRI, sun and optional area light parameters.
        size: output resolution (square), pixels.
        samples: Cycles samples per pixel.
    """

    seed: int
    index: int
    family: str
    params: Params
    relief: float
    transform: dict[str, float]
    lighting: dict[str, Any]
    size: int
    samples: int

    @property
    def name(self) -> str:
        return sample_dir_name(self.index)


def sample_dir_name(index: int) -> str:
    """The folder name of sample ``index`` (``s000042``)."""
    return f"s{index:06d}"


def check_families(families: Sequence[str] | None) -> tuple[str, ...]:
    """Validate family names; ``None`` means all families."""
    if families is None:
        return FAMILY_NAMES
    names = tuple(dict.fromkeys(families))
    unknown = [f for f in names if f not in FAMILIES]
    if unknown or not names:
        raise InputError(
            f"unknown material families {unknown or '(none given)'}; choose from {', '.join(FAMILIES)}"
        )
    return names


def family_for_index(seed: int, index: int, families: Sequence[str]) -> str:
    """Round-robin over a seed-dependent permutation, so small sets stay family-balanced."""
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(families))
    return families[int(order[index % len(families)])]


LIGHTING_MODES: tuple[str, ...] = ("studio", "wide")
"""Lighting distributions of the factory.

* ``studio`` (the default, and what every dataset before the ``lighting`` setting used): a sun
  18-75 degrees up, near white (each channel at least 0.8), always on.
* ``wide``: the sun anywhere from 5 to 89 degrees up; half the time tinted, anywhere between a warm
  (1.0, 0.5, 0.2) and a cool (0.7, 0.82, 1.0) colour; one sample in eight with no sun at all
  (overcast: the HDRI alone, brighter); a wider HDRI strength, sun size and exposure range.
"""


def check_lighting(mode: str) -> str:
    """Validate a lighting mode name."""
    if mode not in LIGHTING_MODES:
        raise InputError(f"unknown lighting {mode!r}; choose from {', '.join(LIGHTING_MODES)}")
    return mode


def _tint(rng: np.random.Generator) -> list[float]:
    """A sun colour between warm and cool, through white (``wide`` lighting)."""
    t = float(rng.uniform(-1.0, 1.0))
    end = (1.0, 0.5, 0.2) if t < 0 else (0.7, 0.82, 1.0)
    a = abs(t)
    return [float((1.0 - a) + a * c) for c in end]


def _area_light(rng: np.random.Generator, low_deg: float, high_deg: float) -> dict[str, float]:
    """A random area light 2.5-5 units away, ``low_deg``-``high_deg`` above the horizon."""
    return {
        "azimuth": float(rng.uniform(0.0, 2.0 * math.pi)),
        "elevation": float(np.radians(rng.uniform(low_deg, high_deg))),
        "distance": float(rng.uniform(2.5, 5.0)),
        "size": float(rng.uniform(0.3, 2.5)),
        "power": float(rng.uniform(100.0, 1200.0)),
    }


def _wide_lighting(rng: np.random.Generator) -> dict[str, Any]:
    overcast = rng.random() < 0.125
    tinted = rng.random() < 0.5
    light: dict[str, Any] = {
        "hdri": str(rng.choice(HDRI_NAMES)),
        "hdri_rotation": float(rng.uniform(0.0, 2.0 * math.pi)),
        "hdri_strength": float(rng.uniform(0.6, 1.5) if overcast else rng.uniform(0.1, 1.2)),
        "sun": {
            "azimuth": float(rng.uniform(0.0, 2.0 * math.pi)),
            "elevation": float(np.radians(rng.uniform(5.0, 89.0))),
            "strength": 0.0 if overcast else float(rng.uniform(1.0, 6.0)),
            "angle": float(np.radians(rng.uniform(0.3, 8.0))),
            "color": _tint(rng) if tinted else [float(rng.uniform(lo, 1.0)) for lo in (0.9, 0.88, 0.8)],
        },
        "exposure_ev": float(rng.uniform(-0.8, 0.6)),
    }
    light["area"] = _area_light(rng, 15.0, 85.0) if not overcast and rng.random() < 0.3 else None
    return light


def sample_lighting(rng: np.random.Generator, mode: str = "studio") -> dict[str, Any]:
    """Random lighting: rotated studio HDRI, a sun with shadows, sometimes an area light.

    ``mode`` picks the distribution (:data:`LIGHTING_MODES`). ``studio`` draws exactly what the
    factory drew before modes existed, so old datasets re-render bit for bit.
    """
    if check_lighting(mode) == "wide":
        return _wide_lighting(rng)
    light: dict[str, Any] = {
        "hdri": str(rng.choice(HDRI_NAMES)),
        "hdri_rotation": float(rng.uniform(0.0, 2.0 * math.pi)),
        "hdri_strength": float(rng.uniform(0.15, 1.0)),
        "sun": {
            "azimuth": float(rng.uniform(0.0, 2.0 * math.pi)),
            "elevation": float(np.radians(rng.uniform(18.0, 75.0))),
            "strength": float(rng.uniform(1.0, 6.0)),
            "angle": float(np.radians(rng.uniform(0.3, 6.0))),
            "color": [float(rng.uniform(lo, 1.0)) for lo in (0.9, 0.88, 0.8)],
        },
        "exposure_ev": float(rng.uniform(-0.6, 0.4)),
    }
    light["area"] = _area_light(rng, 25.0, 70.0) if rng.random() < 0.3 else None
    return light


def make_spec(
    seed: int,
    index: int,
    *,
    size: int = 256,
    samples: int = 16,
    families: Sequence[str] | None = None,
    lighting: str = "studio",
) -> SampleSpec:
    """Draw the spec of sample ``index`` of dataset ``seed`` (pure; no Blender needed).

    Args:
        seed: dataset seed (any non-negative int).
        index: sample index (non-negative).
        size: square output resolution in pixels.
        samples: Cycles samples per pixel.
        families: allowed family names; ``None`` means all.
        lighting: the lighting distribution (:data:`LIGHTING_MODES`). The material, relief and
            transform of a (seed, index) do not depend on it.

    Returns:
        The spec; equal inputs always give equal specs.
    """
    if seed < 0 or index < 0:
        raise InputError(f"seed and index must be non-negative, got seed={seed} index={index}")
    fams = check_families(families)
    family = family_for_index(seed, index, fams)
    rng = np.random.default_rng([seed, index])
    fam = FAMILIES[family]
    params = fam.sample(rng)
    relief = mixture_relief(params) if family == "mixture" else float(rng.uniform(*fam.relief))
    if family in _AXIS_ALIGNED:
        rot = float(rng.integers(4)) * math.pi / 2 + float(np.radians(rng.uniform(-4.0, 4.0)))
    else:
        rot = float(rng.uniform(0.0, 2.0 * math.pi))
    transform = {"rot_z": rot, "scale": float(rng.uniform(0.8, 1.3))}
    light = sample_lighting(rng, lighting)
    return SampleSpec(seed, index, family, params, relief, transform, light, size, samples)


# --------------------------------------------------------------------------------------------
# Blender scene
# --------------------------------------------------------------------------------------------


def _import_bpy() -> Any:
    try:
        import bpy
    except ImportError as exc:
        raise BlenderUnavailable(
            "the material factory needs Blender as a Python module: pip install 'mlvfx[blender]'"
        ) from exc
    return bpy


def _oiio() -> Any:
    """OpenImageIO as bundled inside the bpy wheel (used to read Cycles' multilayer EXR)."""
    bpy = _import_bpy()
    try:
        return importlib.import_module("OpenImageIO")
    except ImportError:
        local = Path(bpy.utils.resource_path("LOCAL"))
        candidates = list((local / "python" / "lib").glob("python3*/site-packages"))
        for cand in candidates:
            if (cand / "OpenImageIO").is_dir() and str(cand) not in sys.path:
                sys.path.append(str(cand))
        try:
            return importlib.import_module("OpenImageIO")
        except ImportError as exc:
            raise BlenderUnavailable("OpenImageIO (bundled with bpy) could not be imported") from exc


def hdri_dir() -> Path:
    """Blender's bundled studio-light HDRIs."""
    bpy = _import_bpy()
    path = bpy.utils.system_resource("DATAFILES", path="studiolights/world")
    if not path or not Path(path).is_dir():
        raise BlenderUnavailable("Blender's bundled studio-light HDRIs were not found")
    return Path(path)


def _build_patch(bpy: Any, resolution: int) -> Any:
    bmesh = importlib.import_module("bmesh")

    mesh = bpy.data.meshes.new("patch")
    bm = bmesh.new()
    bm.loops.layers.uv.new("UVMap")
    # create_grid's size is the half-extent: the patch spans [-1, 1]^2, two world units wide.
    bmesh.ops.create_grid(bm, x_segments=resolution, y_segments=resolution, size=1.0, calc_uvs=True)
    bm.to_mesh(mesh)
    bm.free()
    mesh.shade_smooth()
    obj = bpy.data.objects.new("patch", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _build_material(bpy: Any, spec: SampleSpec) -> Any:
    mat = bpy.data.materials.new("mlvfx_material")
    mat.displacement_method = "DISPLACEMENT"
    nt = mat.node_tree
    nt.nodes.clear()
    g = Graph(nt)
    uv = g.node("ShaderNodeTexCoord").outputs["UV"]
    centred = g.vadd(uv, [-0.5, -0.5, 0.0])
    s = spec.transform["scale"]
    vec = g.vadd(g.xform(centred, scale=(s, s, 1.0), rot_z=spec.transform["rot_z"]), [0.5, 0.5, 0.0])
    ch = FAMILIES[spec.family].build(g, vec, spec.params)

    bsdf = g.node("ShaderNodeBsdfPrincipled")
    g.set(bsdf, "Base Color", ch.color)
    g.set(bsdf, "Roughness", ch.roughness)
    g.set(bsdf, "Metallic", ch.metallic)
    out = g.node("ShaderNodeOutputMaterial", target="CYCLES")
    nt.links.new(bsdf.outputs[0], out.inputs["Surface"])

    height_pw = g.mul(ch.height, spec.relief)  # patch widths
    disp = g.node("ShaderNodeDisplacement", space="OBJECT")
    g.set(disp, "Height", g.mul(height_pw, 2.0))  # the patch is two world units wide
    g.set(disp, "Midlevel", 0.0)
    g.set(disp, "Scale", 1.0)
    nt.links.new(disp.outputs[0], out.inputs["Displacement"])

    # The height AOV is the z of the shaded point on the displaced mesh, not the procedural
    # height: detail finer than the mesh would be in one map and not the other, and the
    # geometric height is exactly what the normal pass differentiates.
    _, _, z = g.sep(g.node("ShaderNodeNewGeometry").outputs["Position"])
    for name, sock, is_color in (
        ("height", g.mul(z, 0.5), False),
        ("albedo", ch.color, True),
        ("roughness", ch.roughness, False),
    ):
        aov = g.node("ShaderNodeOutputAOV", aov_name=name)
        g.set(aov, "Color" if is_color else "Value", sock)
    return mat


def _build_lights(bpy: Any, spec: SampleSpec) -> None:
    scene = bpy.context.scene
    light = spec.lighting
    world = bpy.data.worlds.new("mlvfx_world")
    scene.world = world
    world.cycles.sampling_method = "MANUAL"
    world.cycles.sample_map_resolution = 256
    nt = world.node_tree
    nt.nodes.clear()
    g = Graph(nt)
    env = g.node("ShaderNodeTexEnvironment")
    env.image = bpy.data.images.load(str(hdri_dir() / light["hdri"]), check_existing=True)
    coord = g.node("ShaderNodeTexCoord").outputs["Generated"]
    mapping = g.xform(coord, rot_z=light["hdri_rotation"])
    nt.links.new(mapping, env.inputs["Vector"])
    bg = g.node("ShaderNodeBackground")
    nt.links.new(env.outputs["Color"], bg.inputs["Color"])
    g.set(bg, "Strength", light["hdri_strength"])
    wout = g.node("ShaderNodeOutputWorld")
    nt.links.new(bg.outputs[0], wout.inputs["Surface"])

    sun = light["sun"]
    sdata = bpy.data.lights.new("sun", "SUN")
    sdata.energy = sun["strength"]
    sdata.angle = sun["angle"]
    sdata.color = sun["color"]
    sobj = bpy.data.objects.new("sun", sdata)
    # A sun shines along its local -Z: tilt by (90 deg - elevation), then turn to the azimuth.
    sobj.rotation_euler = (math.pi / 2 - sun["elevation"], 0.0, sun["azimuth"])
    scene.collection.objects.link(sobj)

    area = light.get("area")
    if area:
        adata = bpy.data.lights.new("area", "AREA")
        adata.energy = area["power"]
        adata.size = area["size"]
        aobj = bpy.data.objects.new("area", adata)
        el, az, d = area["elevation"], area["azimuth"], area["distance"]
        # Place on a sphere; local -Z of (tilt, 0, az) points back through the origin.
        aobj.location = (d * math.cos(el) * math.sin(az), -d * math.cos(el) * math.cos(az), d * math.sin(el))
        aobj.rotation_euler = (math.pi / 2 - el, 0.0, az)
        scene.collection.objects.link(aobj)


def _setup_scene(bpy: Any, spec: SampleSpec, mesh_resolution: int) -> None:
    if not bpy.app.background:
        # read_factory_settings would throw away the user's open file.
        raise MlvfxError(
            "the material factory resets Blender's scene; run it from the command line "
            "(mlvfx data materials), not inside an interactive Blender session"
        )
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    patch = _build_patch(bpy, mesh_resolution)
    patch.data.materials.append(_build_material(bpy, spec))

    cam = bpy.data.cameras.new("camera")
    cam.type = "ORTHO"
    cam.ortho_scale = 2.0
    cam.clip_start = 0.1
    cam.clip_end = 10.0
    cobj = bpy.data.objects.new("camera", cam)
    cobj.location = (0.0, 0.0, 3.0)  # default rotation looks down -Z with +Y up in the image
    scene.collection.objects.link(cobj)
    scene.camera = cobj
    _build_lights(bpy, spec)

    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x = r.resolution_y = spec.size
    r.resolution_percentage = 100
    r.film_transparent = False
    threads = os.environ.get("MLVFX_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        r.threads_mode = "FIXED"
        r.threads = int(threads)
    c = scene.cycles
    c.device = "CPU"
    c.samples = spec.samples
    c.use_adaptive_sampling = False
    c.use_denoising = False
    c.seed = (spec.seed * 1_000_003 + spec.index) % (2**31 - 1)
    c.filter_width = 1.0
    c.max_bounces = 4
    c.diffuse_bounces = 2
    c.glossy_bounces = 2
    c.transmission_bounces = 0
    c.volume_bounces = 0
    c.transparent_max_bounces = 0
    c.sample_clamp_indirect = 10.0  # fireflies at low sample counts
    c.caustics_reflective = False
    c.caustics_refractive = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"

    vl = scene.view_layers[0]
    vl.use_pass_normal = True
    for name, kind in (("height", "VALUE"), ("albedo", "COLOR"), ("roughness", "VALUE")):
        aov = vl.aovs.add()
        aov.name = name
        aov.type = kind

    settings = r.image_settings
    settings.media_type = "MULTI_LAYER_IMAGE"
    settings.color_depth = "32"
    settings.exr_codec = "ZIP"


def _read_multilayer(path: Path) -> dict[str, FloatArray]:
    """Read every channel of a multilayer EXR as (H, W) float32, keyed 'Pass.Channel'."""
    oiio = _oiio()
    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        raise MlvfxError("cannot open the render result", path)
    channels: dict[str, FloatArray] = {}
    try:
        sub = 0
        while inp.seek_subimage(sub, 0):
            spec = inp.spec()
            pixels = np.asarray(inp.read_image(sub, 0, 0, spec.nchannels, oiio.FLOAT), dtype=np.float32)
            pixels = pixels.reshape(spec.height, spec.width, spec.nchannels)
            for i, cname in enumerate(spec.channelnames):
                # "ViewLayer.Diffuse Color.R" -> "Diffuse Color.R"
                key = cname.split(".", 1)[1] if cname.count(".") >= 2 else cname
                channels[key] = pixels[..., i]
            sub += 1
    finally:
        inp.close()
    return channels


def _stack(ch: dict[str, FloatArray], name: str, comps: str) -> FloatArray:
    try:
        return np.stack([ch[f"{name}.{c}"] for c in comps], axis=-1).astype(np.float32)
    except KeyError as exc:
        raise MlvfxError(f"the render has no channel {exc.args[0]!r}; found {sorted(ch)}") from None


@dataclass
class RenderedMaps:
    """The maps of one sample, in memory.

    Attributes:
        lit: (H, W, 3) linear RGB photo, exposure applied, unclipped.
        albedo: (H, W, 3) linear RGB base colour.
        normal: (H, W, 3) unit tangent-space normals, OpenGL convention.
        height: (H, W) displacement in patch widths.
        roughness: (H, W) in [0, 1].
        stats: numbers for meta.json.
    """

    lit: FloatArray
    albedo: FloatArray
    normal: FloatArray
    height: FloatArray
    roughness: FloatArray
    stats: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def _blender_render_guard() -> Iterator[None]:
    """Around a Cycles render: Blender's log to stderr, and Ctrl-C / SIGTERM held until it returns.

    Blender prints its render log (``Saved: '...'``) on stdout from C, which broke ``--json`` and
    ``--quiet``; here file descriptor 1 points at stderr while it renders. And an interrupt raised
    inside the render is caught by Blender's own callbacks (it printed a traceback and went on to
    render every sample), so the signal is only noted here and raised once the render returns:
    the command stops after the sample under way, with the usual exit code.
    """
    import signal
    import threading

    noted: list[int] = []
    previous: dict[int, Any] = {}
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[int(sig)] = signal.getsignal(sig)
                signal.signal(sig, lambda num, frame: noted.append(num))
        os.dup2(2, 1)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                import ctypes

                ctypes.CDLL(None).fflush(None)  # Blender's buffered C stdout, before fd 1 goes back
            os.dup2(saved, 1)
    finally:
        os.close(saved)
        for number, handler in previous.items():
            signal.signal(number, handler)
        if noted:  # delivered now, also when the render itself failed
            _deliver(noted[0], previous.get(noted[0]))


def _deliver(signum: int, handler: Any) -> None:
    """Act on a signal held back during a render as its handler would have."""
    import signal

    if handler == signal.SIG_IGN:
        return
    if callable(handler):
        handler(signum, None)  # the command's own handling (Ctrl-C, or the CLI's SIGTERM)
    if handler == signal.SIG_DFL and signum == signal.SIGTERM:
        os.kill(os.getpid(), signum)  # what SIGTERM would have done: end the process
    raise KeyboardInterrupt


def render_maps(
    spec: SampleSpec, *, mesh_resolution: int | None = None, work_dir: str | os.PathLike[str] | None = None
) -> RenderedMaps:
    """Render one sample with Cycles and return its maps (needs bpy).

    Args:
        spec: the sample to render.
        mesh_resolution: grid segments per side; default one vertex per pixel.
        work_dir: where the temporary EXR goes; default a fresh temp folder.

    Returns:
        The maps; see :class:`RenderedMaps` for layouts and colour spaces.
    """
    bpy = _import_bpy()
    res = mesh_resolution or spec.size
    _setup_scene(bpy, spec, res)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="mlvfx-render-") as tmp:
        exr = Path(tmp) / "render.exr"
        bpy.context.scene.render.filepath = str(exr)
        t0 = time.perf_counter()
        with _blender_render_guard():
            bpy.ops.render.render(write_still=True)
        render_s = time.perf_counter() - t0
        if not exr.is_file():
            raise MlvfxError("Cycles did not write the render result", exr)
        ch = _read_multilayer(exr)
    combined = _stack(ch, "Combined", "RGB")
    normal = _stack(ch, "Normal", "XYZ")
    albedo = np.clip(_stack(ch, "albedo", "RGB"), 0.0, 1.0)
    height = ch.get("height.X", ch.get("height.V"))
    rough = ch.get("roughness.X", ch.get("roughness.V"))
    if height is None or rough is None:
        raise MlvfxError(f"the render lacks the height/roughness AOVs; found {sorted(ch)}")
    length = np.linalg.norm(normal, axis=-1, keepdims=True)
    normal = normal / np.maximum(length, 1e-8)
    # Auto-exposure like a camera: the 97th percentile of the brightest channel lands at 0.85,
    # then a random EV shift (positive shifts clip a little, as real photos do).
    p97 = float(np.percentile(combined.max(axis=-1), 97.0))
    gain = 0.85 / max(p97, 1e-6) * 2.0 ** spec.lighting["exposure_ev"]
    lit = (combined * gain).astype(np.float32)
    stats = {
        "render_seconds": round(render_s, 3),
        "exposure_gain": round(gain, 6),
        "clipped_fraction": round(float(np.mean(np.max(lit, axis=-1) > 1.0)), 6),
        "height_min": float(height.min()),
        "height_max": float(height.max()),
        "normal_z_min": float(normal[..., 2].min()),
        "mesh_resolution": float(res),
    }
    return RenderedMaps(
        lit,
        albedo.astype(np.float32),
        normal.astype(np.float32),
        height.astype(np.float32),
        np.clip(rough, 0.0, 1.0).astype(np.float32),
        stats,
    )


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_sample(folder: Path, spec: SampleSpec, maps: RenderedMaps) -> None:
    """Write all files of one sample into ``folder`` (which must exist); meta.json last."""
    from mlvfx.io import write_image

    write_image(folder / "lit.png", np.clip(maps.lit, 0.0, 1.0), kind="color", bit_depth=8)
    write_image(folder / "albedo.png", maps.albedo, kind="color", bit_depth=8)
    write_image(folder / "normal.png", maps.normal * 0.5 + 0.5, kind="data", bit_depth=16)
    write_image(folder / "height.exr", maps.height, kind="data", bit_depth=16)
    lo, hi = float(maps.height.min()), float(maps.height.max())
    h16 = (maps.height - lo) / (hi - lo) if hi > lo else np.zeros_like(maps.height)
    write_image(folder / "height16.png", h16, kind="data", bit_depth=16)
    write_image(folder / "roughness.png", maps.roughness, kind="data", bit_depth=8)
    meta = {
        "format_version": FORMAT_VERSION,
        "factory_version": FACTORY_VERSION,
        "name": spec.name,
        **asdict(spec),
        "stats": maps.stats,
        "height_range": [lo, hi],
        "conventions": {
            "normal": "tangent space, OpenGL (+X right, +Y up, +Z out), n*0.5+0.5, 16-bit",
            "height": "height.exr: displacement in patch widths; height16.png: (h-lo)/(hi-lo), "
            "[lo, hi] = height_range",
            "lit": "8-bit sRGB, Standard view transform",
            "albedo": "base colour, 8-bit sRGB",
            "roughness": "8-bit linear",
        },
        "blender": _blender_version(),
    }
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp, folder / "meta.json")


def _blender_version() -> str:
    # Only report; never import bpy just for this (it is slow and touches $HOME).
    bpy = sys.modules.get("bpy")
    return str(bpy.app.version_string) if bpy is not None else "unknown"


def is_complete(folder: Path) -> bool:
    """True if ``folder`` holds every file of a finished sample."""
    return folder.is_dir() and all((folder / f).is_file() for f in SAMPLE_FILES)


def render_sample(
    spec: SampleSpec, out: str | os.PathLike[str], *, mesh_resolution: int | None = None
) -> Path:
    """Render one sample into ``out/<name>`` atomically; return its folder.

    The sample is written into a hidden temp folder beside the target and renamed into place
    when complete, so readers never see a half-written sample.
    """
    root = Path(out)
    final = root / spec.name
    from mlvfx.io.atomic import make_temp_dir

    tmp = make_temp_dir(root, f".tmp-{spec.name}-")
    try:
        maps = render_maps(spec, mesh_resolution=mesh_resolution, work_dir=tmp)
        write_sample(tmp, spec, maps)
        if final.exists():  # an incomplete leftover (complete ones are skipped by the caller)
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@dataclass
class GenerateReport:
    """What a :func:`generate` run did."""

    out: str
    rendered: list[int]
    skipped: list[int]
    seconds: float

    @property
    def renders_per_minute(self) -> float:
        return 60.0 * len(self.rendered) / self.seconds if self.seconds > 0 else 0.0


def dataset_settings(
    *, seed: int, size: int, samples: int, families: Sequence[str], lighting: str
) -> dict[str, Any]:
    """What ``dataset.json`` records about a dataset (and what a folder must match to be reused)."""
    return {
        "format_version": FORMAT_VERSION,
        "factory_version": FACTORY_VERSION,
        "seed": seed,
        "size": size,
        "samples": samples,
        "families": list(families),
        "lighting": lighting,
    }


def _check_dataset(root: Path, settings: dict[str, Any], *, write: bool = True) -> None:
    """Raise ``InputError`` if ``root`` holds a dataset made with other settings; record the
    settings in a folder that has none yet (unless ``write`` is false: only check)."""
    path = root / DATASET_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"unreadable dataset description: {exc}", path) from None
        # Datasets made before the lighting setting existed are "studio" ones.
        old.setdefault("lighting", "studio")
        for key in ("seed", "size", "samples", "families", "format_version", "factory_version", "lighting"):
            if old.get(key) != settings[key]:
                raise InputError(
                    f"this folder holds a dataset with {key}={old.get(key)!r}, not {settings[key]!r}; "
                    "use another folder",
                    root,
                )
        return
    if not write:
        return
    from mlvfx.errors import OutputExistsError
    from mlvfx.io.atomic import write_bytes_atomic

    try:  # shards started together: the first one's description wins, the others check against it
        write_bytes_atomic(path, json.dumps(settings, indent=1).encode(), overwrite=False)
    except OutputExistsError:
        _check_dataset(root, settings, write=False)


def check_dataset(
    root: str | os.PathLike[str],
    *,
    seed: int,
    size: int,
    samples: int,
    families: Sequence[str] | None,
    lighting: str = "studio",
) -> None:
    """Raise ``InputError`` if ``root`` holds a dataset made with other settings (reads only).

    For training on renders already there (``--skip-render``): the renders must be the ones the
    recipe describes, as :func:`generate` checks before it adds any.
    """
    settings = dataset_settings(
        seed=seed, size=size, samples=samples, families=check_families(families), lighting=lighting
    )
    _check_dataset(Path(root), settings, write=False)


def generate(
    out: str | os.PathLike[str],
    count: int,
    *,
    size: int = 256,
    seed: int = 0,
    families: Sequence[str] | None = None,
    samples: int = 16,
    start: int = 0,
    shard: int = 0,
    num_shards: int = 1,
    mesh_resolution: int | None = None,
    lighting: str = "studio",
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> GenerateReport:
    """Render samples ``start .. start+count-1`` (those of this shard) into ``out``.

    Finished samples are skipped, leftover temp folders of this shard are removed and redone.

    Args:
        out: dataset folder (created if needed).
        count: number of sample indices to cover.
        size: square resolution in pixels (16..4096).
        seed: dataset seed.
        families: family names; ``None`` means all.
        samples: Cycles samples per pixel.
        start: first sample index.
        shard: this worker's shard (0-based); it renders indices with ``index % num_shards == shard``.
        num_shards: number of workers splitting the set.
        mesh_resolution: grid segments per side; default = size.
        lighting: the lighting distribution (:data:`LIGHTING_MODES`), recorded in ``dataset.json``.
        progress: ``progress(fraction, message)``; the message includes renders per minute.
        cancel: checked between samples.

    Returns:
        A report of rendered and skipped indices.
    """
    if count < 0 or start < 0:
        raise InputError(f"count and start must be non-negative, got count={count} start={start}")
    if not 16 <= size <= 4096:
        raise InputError(f"size must be in 16..4096, got {size}")
    if samples < 1:
        raise InputError(f"samples must be at least 1, got {samples}")
    if num_shards < 1:
        raise InputError(f"the number of shards must be at least 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise InputError(f"shard must be in 0..{num_shards - 1}, got {shard}")
    if not 0 <= seed < 2**32:  # checked before dataset.json records it
        raise InputError(f"seed must be from 0 to {2**32 - 1}, got {seed}")
    fams = check_families(families)
    check_lighting(lighting)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InputError("output exists and is not a folder", root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder ({exc.strerror or exc})", root) from None
    _check_dataset(
        root, dataset_settings(seed=seed, size=size, samples=samples, families=fams, lighting=lighting)
    )

    mine = [i for i in range(start, start + count) if i % num_shards == shard]
    for leftover in root.glob(".tmp-s*"):
        name = leftover.name.split("-")[1]
        if name[1:].isdigit() and int(name[1:]) in mine:
            shutil.rmtree(leftover, ignore_errors=True)

    rendered: list[int] = []
    t0 = time.perf_counter()
    todo = [i for i in mine if not is_complete(root / sample_dir_name(i))]
    todo_set = set(todo)
    skipped = [i for i in mine if i not in todo_set]
    report(progress, 0.0 if mine else 1.0, f"{len(skipped)} finished, {len(todo)} to render")
    for k, index in enumerate(todo):
        check_cancel(cancel)
        spec = make_spec(seed, index, size=size, samples=samples, families=fams, lighting=lighting)
        render_sample(spec, root, mesh_resolution=mesh_resolution)
        rendered.append(index)
        elapsed = time.perf_counter() - t0
        rpm = 60.0 * len(rendered) / elapsed if elapsed > 0 else 0.0
        report(
            progress, (len(skipped) + k + 1) / len(mine), f"{spec.name} {spec.family} ({rpm:.1f} renders/min)"
        )
    return GenerateReport(str(root), rendered, skipped, time.perf_counter() - t0)
