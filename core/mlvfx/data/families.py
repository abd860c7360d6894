"""Procedural material families for the training-data factory.

Each family has two halves:

* ``sample(rng) -> params``: pure Python + numpy, draws JSON-serialisable parameters from a
  ``numpy.random.Generator``. Deterministic by construction and testable without Blender.
* ``build(graph, vector, params) -> Channels``: wires Cycles shader nodes into a node tree through
  :class:`Graph` and returns the sockets for height (0..1), base colour (linear RGB), roughness
  and metallic.

This module never imports ``bpy``; the node tree is handed in by :mod:`mlvfx.data.materials`.
Base colour always comes from its own noise, ramps or per-cell random values, never from the
height signal, so a model cannot learn "albedo = f(height)".
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Params = dict[str, Any]
# A bpy NodeSocket; typed as Any because this module must not import bpy.
Socket = Any
Value = float | Socket
RGB = list[float]


# --------------------------------------------------------------------------------------------
# Parameter helpers (pure)
# --------------------------------------------------------------------------------------------


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def color_hsv(
    rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]
) -> RGB:
    """A random colour drawn in sRGB HSV ranges, returned as linear RGB (3 floats in [0, 1])."""
    hue = _u(rng, *h) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, _u(rng, *s), _u(rng, *v))
    return [round(_srgb_to_linear(x), 6) for x in (r, g, b)]


def _jitter(rng: np.random.Generator, base: RGB, amount: float) -> RGB:
    return [float(np.clip(c * (1.0 + rng.uniform(-amount, amount)), 0.0, 1.0)) for c in base]


def _offset(rng: np.random.Generator) -> list[float]:
    return [round(_u(rng, -500.0, 500.0), 4) for _ in range(3)]


# --------------------------------------------------------------------------------------------
# Node graph helper (takes a bpy ShaderNodeTree, never imports bpy)
# --------------------------------------------------------------------------------------------


class Graph:
    """A thin builder over a Cycles shader node tree.

    Every method returns output sockets; arguments may be Python numbers (set as default values)
    or sockets (linked).
    """

    def __init__(self, node_tree: Any) -> None:
        self.nt = node_tree

    def node(self, idname: str, **props: Any) -> Any:
        n = self.nt.nodes.new(idname)
        for key, value in props.items():
            setattr(n, key, value)
        return n

    @staticmethod
    def _input(node: Any, name: str | int) -> Any:
        if isinstance(name, int):
            return node.inputs[name]
        for sock in node.inputs:
            if sock.name == name and sock.enabled:
                return sock
        raise KeyError(f"{node.bl_idname} has no enabled input {name!r}")

    @staticmethod
    def _output(node: Any, name: str) -> Any:
        for sock in node.outputs:
            if sock.name == name and sock.enabled:
                return sock
        raise KeyError(f"{node.bl_idname} has no enabled output {name!r}")

    def set(self, node: Any, name: str | int, value: Any) -> None:
        sock = self._input(node, name)
        if isinstance(value, (int, float)):
            if sock.type in ("RGBA",):
                sock.default_value = (float(value),) * 3 + (1.0,)
            elif sock.type == "VECTOR":
                sock.default_value = (float(value),) * 3
            else:
                sock.default_value = float(value)
        elif isinstance(value, (list, tuple)):
            vals = [float(x) for x in value]
            if sock.type == "RGBA" and len(vals) == 3:
                vals.append(1.0)
            sock.default_value = vals
        else:
            self.nt.links.new(value, sock)

    # ---- maths ------------------------------------------------------------------------------
    def math(self, op: str, a: Value, b: Value = 0.0, c: Value | None = None, clamp: bool = False) -> Socket:
        n = self.node("ShaderNodeMath", operation=op, use_clamp=clamp)
        self.set(n, 0, a)
        self.set(n, 1, b)
        if c is not None:
            self.set(n, 2, c)
        return n.outputs[0]

    def add(self, a: Value, b: Value) -> Socket:
        return self.math("ADD", a, b)

    def sub(self, a: Value, b: Value) -> Socket:
        return self.math("SUBTRACT", a, b)

    def mul(self, a: Value, b: Value) -> Socket:
        return self.math("MULTIPLY", a, b)

    def madd(self, a: Value, b: Value, c: Value) -> Socket:
        """a * b + c."""
        return self.math("MULTIPLY_ADD", a, b, c)

    def decorrelate(self, per_cell: Value, k: float = 53.17) -> Socket:
        """A second per-cell random value from a first one (``fract(x * k + 0.37)``).

        Height and colour draw on different per-cell randoms, so a brick's shade says nothing
        about how far it sticks out.
        """
        return self.math("FRACT", self.madd(per_cell, k, 0.37))

    def clamp01(self, a: Value) -> Socket:
        return self.math("ADD", a, 0.0, clamp=True)

    def remap(
        self, x: Value, lo: float, hi: float, out_lo: float = 0.0, out_hi: float = 1.0, smooth: bool = False
    ) -> Socket:
        """Map [lo, hi] to [out_lo, out_hi], clamped (smoothstep when ``smooth``)."""
        n = self.node(
            "ShaderNodeMapRange",
            data_type="FLOAT",
            interpolation_type="SMOOTHSTEP" if smooth else "LINEAR",
            clamp=True,
        )
        self.set(n, "Value", x)
        self.set(n, "From Min", lo)
        self.set(n, "From Max", hi)
        self.set(n, "To Min", out_lo)
        self.set(n, "To Max", out_hi)
        return self._output(n, "Result")

    def mix(self, fac: Value, a: Value, b: Value) -> Socket:
        n = self.node("ShaderNodeMix", data_type="FLOAT", clamp_factor=True)
        self.set(n, "Factor", fac)
        self.set(n, "A", a)
        self.set(n, "B", b)
        return self._output(n, "Result")

    def mix_rgb(self, fac: Value, a: Value, b: Value, blend: str = "MIX") -> Socket:
        n = self.node(
            "ShaderNodeMix", data_type="RGBA", blend_type=blend, clamp_factor=True, clamp_result=True
        )
        self.set(n, "Factor", fac)
        self.set(n, "A", a)
        self.set(n, "B", b)
        return self._output(n, "Result")

    # ---- vectors ----------------------------------------------------------------------------
    def xform(
        self,
        vec: Socket,
        scale: Sequence[float] = (1.0, 1.0, 1.0),
        rot_z: float = 0.0,
        loc: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> Socket:
        """Scale, then rotate about Z (radians), then translate a point."""
        n = self.node("ShaderNodeMapping", vector_type="POINT")
        self.set(n, "Vector", vec)
        n.inputs["Location"].default_value = [float(x) for x in loc]
        n.inputs["Rotation"].default_value = (0.0, 0.0, float(rot_z))
        n.inputs["Scale"].default_value = [float(x) for x in scale]
        return n.outputs[0]

    def vadd(self, a: Socket, b: Socket | Sequence[float]) -> Socket:
        n = self.node("ShaderNodeVectorMath", operation="ADD")
        self.nt.links.new(a, n.inputs[0])
        if isinstance(b, (list, tuple)):
            n.inputs[1].default_value = [float(x) for x in b]
        else:
            self.nt.links.new(b, n.inputs[1])
        return n.outputs[0]

    def vscale(self, a: Socket, s: Value) -> Socket:
        n = self.node("ShaderNodeVectorMath", operation="SCALE")
        self.nt.links.new(a, n.inputs[0])
        self.set(n, "Scale", s)
        return self._output(n, "Vector")

    def sep(self, vec: Socket) -> tuple[Socket, Socket, Socket]:
        n = self.node("ShaderNodeSeparateXYZ")
        self.nt.links.new(vec, n.inputs[0])
        return n.outputs[0], n.outputs[1], n.outputs[2]

    def comb(self, x: Value, y: Value, z: Value = 0.0) -> Socket:
        n = self.node("ShaderNodeCombineXYZ")
        self.set(n, 0, x)
        self.set(n, 1, y)
        self.set(n, 2, z)
        return n.outputs[0]

    # ---- textures ---------------------------------------------------------------------------
    def noise(
        self,
        vec: Socket,
        scale: float,
        detail: float = 2.0,
        roughness: float = 0.5,
        distortion: float = 0.0,
        kind: str = "FBM",
        lacunarity: float = 2.0,
    ) -> tuple[Socket, Socket]:
        """Perlin noise; returns (factor in ~[0, 1], colour)."""
        n = self.node("ShaderNodeTexNoise", noise_dimensions="3D", noise_type=kind)
        self.set(n, "Vector", vec)
        self.set(n, "Scale", scale)
        self.set(n, "Detail", detail)
        self.set(n, "Roughness", roughness)
        self.set(n, "Lacunarity", lacunarity)
        self.set(n, "Distortion", distortion)
        return self._output(n, "Factor"), self._output(n, "Color")

    def voronoi(
        self,
        vec: Socket,
        scale: float,
        feature: str = "F1",
        randomness: float = 1.0,
        metric: str = "EUCLIDEAN",
    ) -> dict[str, Socket]:
        # 2D cells: a 3D Voronoi sliced at constant z shows ghost edges of cells above and below.
        n = self.node("ShaderNodeTexVoronoi", voronoi_dimensions="2D", feature=feature, distance=metric)
        self.set(n, "Vector", vec)
        self.set(n, "Scale", scale)
        self.set(n, "Randomness", randomness)
        return {s.name: s for s in n.outputs if s.enabled}

    def brick(
        self,
        vec: Socket,
        scale: float,
        mortar: float,
        smooth: float,
        width: float,
        row: float,
        offset: float = 0.5,
        squash: float = 1.0,
    ) -> tuple[Socket, Socket]:
        """Brick texture; returns (mortar mask: 1 in the joints, per-brick random grey in [0, 1])."""
        n = self.node(
            "ShaderNodeTexBrick", offset=offset, offset_frequency=2, squash=squash, squash_frequency=2
        )
        self.set(n, "Vector", vec)
        self.set(n, "Color1", [0.0, 0.0, 0.0])
        self.set(n, "Color2", [1.0, 1.0, 1.0])
        self.set(n, "Mortar", [0.0, 0.0, 0.0])
        self.set(n, "Scale", scale)
        self.set(n, "Mortar Size", mortar)
        self.set(n, "Mortar Smooth", smooth)
        self.set(n, "Bias", 0.0)
        self.set(n, "Brick Width", width)
        self.set(n, "Row Height", row)
        return self._output(n, "Factor"), self.grey(self._output(n, "Color"))

    def wave(
        self,
        vec: Socket,
        scale: float,
        distortion: float,
        detail: float = 2.0,
        direction: str = "X",
        profile: str = "SIN",
        kind: str = "BANDS",
        phase: Value = 0.0,
    ) -> Socket:
        n = self.node(
            "ShaderNodeTexWave",
            wave_type=kind,
            bands_direction=direction,
            rings_direction="Z",
            wave_profile=profile,
        )
        self.set(n, "Vector", vec)
        self.set(n, "Scale", scale)
        self.set(n, "Distortion", distortion)
        self.set(n, "Detail", detail)
        self.set(n, "Phase Offset", phase)
        return self._output(n, "Factor")

    def grey(self, color: Socket) -> Socket:
        """The luminance of a colour socket, e.g. a texture's per-cell random colour as a value."""
        n = self.node("ShaderNodeRGBToBW")
        self.nt.links.new(color, n.inputs[0])
        return n.outputs[0]

    def ramp(self, fac: Value, stops: Sequence[tuple[float, RGB]]) -> Socket:
        """A colour ramp; ``stops`` are (position, linear RGB)."""
        n = self.node("ShaderNodeValToRGB")
        self.set(n, "Factor", fac)
        elements = n.color_ramp.elements
        while len(elements) < len(stops):
            elements.new(0.5)
        for el, (pos, rgb) in zip(elements, sorted(stops, key=lambda s: s[0]), strict=True):
            el.position = float(pos)
            el.color = [float(c) for c in rgb] + [1.0]
        return n.outputs["Color"]


@dataclass
class Channels:
    """Sockets (or constants) a family produces.

    Attributes:
        height: relief in [0, 1] (0 = lowest), scaled later by the family's relief.
        color: base colour, linear RGB.
        roughness: in [0, 1].
        metallic: in [0, 1].
    """

    height: Value
    color: Value
    roughness: Value
    metallic: Value = 0.0


# --------------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------------

SampleFn = Callable[[np.random.Generator], Params]
BuildFn = Callable[[Graph, Socket, Params], Channels]


@dataclass(frozen=True)
class Family:
    """A procedural material family.

    Attributes:
        name: identifier used in meta.json, splits and the CLI.
        sample: draws parameters from a generator (pure).
        build: wires the node graph (needs a bpy node tree through :class:`Graph`).
        relief: range of the displacement amplitude in patch widths.
    """

    name: str
    sample: SampleFn
    build: BuildFn
    relief: tuple[float, float]


def _grime(g: Graph, vec: Socket, color: Socket, p: Params) -> Socket:
    """Darken a colour by a large-scale noise, independent of height."""
    f, _ = g.noise(g.vadd(vec, p["grime_offset"]), p["grime_scale"], 4.0, 0.6)
    m = g.remap(f, 0.35, 0.75)
    return g.mix_rgb(g.mul(m, p["grime"]), color, p["grime_color"], blend="MULTIPLY")


def _grime_params(rng: np.random.Generator) -> Params:
    return {
        "grime": _u(rng, 0.0, 0.7),
        "grime_scale": _u(rng, 0.5, 3.0),
        "grime_offset": _offset(rng),
        "grime_color": color_hsv(rng, (0.05, 0.12), (0.1, 0.5), (0.3, 0.7)),
    }


# ---- bricks ---------------------------------------------------------------------------------
def _bricks_sample(rng: np.random.Generator) -> Params:
    base = color_hsv(rng, (0.0, 0.09), (0.35, 0.8), (0.3, 0.75))
    return {
        "scale": _u(rng, 1.5, 4.0),
        "width": _u(rng, 0.45, 0.7),
        "row": _u(rng, 0.18, 0.3),
        "mortar": _u(rng, 0.008, 0.03),
        "smooth": _u(rng, 0.05, 0.6),
        "offset": float(rng.choice([0.5, 0.5, 0.33, 0.25])),
        "brick_a": base,
        "brick_b": _jitter(rng, base, 0.5),
        "mortar_color": color_hsv(rng, (0.05, 0.15), (0.0, 0.25), (0.45, 0.85)),
        "chip_scale": _u(rng, 6.0, 20.0),
        "chip": _u(rng, 0.1, 0.5),
        "bulge": _u(rng, 0.0, 0.2),
        "rough_lo": _u(rng, 0.55, 0.8),
        "rough_hi": _u(rng, 0.85, 1.0),
        "color_noise": _u(rng, 5.0, 40.0),
        "offset_vec": _offset(rng),
        **_grime_params(rng),
    }


def _bricks_build(g: Graph, vec: Socket, p: Params) -> Channels:
    mortar, rand = g.brick(vec, p["scale"], p["mortar"], p["smooth"], p["width"], p["row"], p["offset"])
    chip, _ = g.noise(g.vadd(vec, p["offset_vec"]), p["chip_scale"], 6.0, 0.65)
    solid = g.remap(g.add(g.sub(1.0, mortar), g.mul(g.sub(chip, 0.5), p["chip"])), 0.1, 0.6, smooth=True)
    top = g.madd(g.decorrelate(rand), p["bulge"], g.sub(1.0, p["bulge"]))
    grain, _ = g.noise(vec, p["chip_scale"] * 3.0, 3.0, 0.6)
    height = g.madd(g.mul(solid, top), 0.85, g.mul(grain, 0.15))
    cnoise, _ = g.noise(g.vadd(vec, [7.0, 3.0, 1.0]), p["color_noise"], 3.0, 0.6)
    brick_col = g.ramp(g.madd(rand, 0.7, g.mul(cnoise, 0.3)), [(0.0, p["brick_a"]), (1.0, p["brick_b"])])
    col = g.mix_rgb(solid, p["mortar_color"], brick_col)
    col = _grime(g, vec, col, p)
    rough = g.mix(solid, p["rough_hi"], p["rough_lo"])
    return Channels(height, col, rough)


# ---- tiles with grout -----------------------------------------------------------------------
def _tiles_sample(rng: np.random.Generator) -> Params:
    a = color_hsv(rng, (0.0, 1.0), (0.0, 0.6), (0.2, 0.95))
    two = bool(rng.random() < 0.4)
    return {
        "scale": _u(rng, 1.5, 5.0),
        "size": _u(rng, 0.25, 0.5),
        "aspect": float(rng.choice([1.0, 1.0, 2.0, 0.5])),
        "grout": _u(rng, 0.01, 0.04),
        "bevel": _u(rng, 0.1, 0.9),
        "tile_a": a,
        "tile_b": color_hsv(rng, (0.0, 1.0), (0.0, 0.6), (0.2, 0.95)) if two else _jitter(rng, a, 0.15),
        "grout_color": color_hsv(rng, (0.0, 0.15), (0.0, 0.2), (0.25, 0.85)),
        "tile_rough": _u(rng, 0.05, 0.45),
        "grout_rough": _u(rng, 0.75, 1.0),
        "wobble": _u(rng, 0.0, 0.15),
        "offset_vec": _offset(rng),
        **_grime_params(rng),
    }


def _tiles_build(g: Graph, vec: Socket, p: Params) -> Channels:
    grout, rand = g.brick(vec, p["scale"], p["grout"], p["bevel"], p["size"] * p["aspect"], p["size"], 0.0)
    wob, _ = g.noise(g.vadd(vec, p["offset_vec"]), 3.0, 2.0, 0.5)
    tile = g.sub(1.0, grout)
    height = g.madd(tile, g.madd(wob, p["wobble"], 0.9 - p["wobble"] * 0.5), g.mul(g.decorrelate(rand), 0.05))
    spec, _ = g.noise(g.vadd(vec, [11.0, 5.0, 2.0]), 30.0, 2.0, 0.5)
    tile_col = g.ramp(g.madd(rand, 0.85, g.mul(spec, 0.15)), [(0.0, p["tile_a"]), (1.0, p["tile_b"])])
    col = g.mix_rgb(tile, p["grout_color"], tile_col)
    col = _grime(g, vec, col, p)
    rough = g.mix(tile, p["grout_rough"], p["tile_rough"])
    return Channels(height, col, rough)


# ---- cobblestones ---------------------------------------------------------------------------
def _stone_palette(rng: np.random.Generator) -> list[RGB]:
    hue = _u(rng, 0.02, 0.16)
    return [color_hsv(rng, (hue - 0.03, hue + 0.03), (0.0, 0.35), (0.2, 0.8)) for _ in range(3)]


def _cobble_sample(rng: np.random.Generator) -> Params:
    return {
        "scale": _u(rng, 3.0, 9.0),
        "randomness": _u(rng, 0.5, 1.0),
        "gap": _u(rng, 0.02, 0.08),
        "dome": _u(rng, 0.06, 0.2),
        "squash_y": _u(rng, 0.7, 1.3),
        "stones": _stone_palette(rng),
        "gap_color": color_hsv(rng, (0.05, 0.12), (0.2, 0.6), (0.05, 0.3)),
        "rough_lo": _u(rng, 0.4, 0.75),
        "rough_hi": _u(rng, 0.8, 1.0),
        "detail_scale": _u(rng, 10.0, 40.0),
        "detail": _u(rng, 0.05, 0.2),
        "offset_vec": _offset(rng),
        **_grime_params(rng),
    }


def _cobble_build(g: Graph, vec: Socket, p: Params) -> Channels:
    v = g.xform(vec, scale=(1.0, p["squash_y"], 1.0), loc=p["offset_vec"])
    edge = g.voronoi(v, p["scale"], "DISTANCE_TO_EDGE", p["randomness"])["Distance"]
    cell = g.voronoi(v, p["scale"], "F1", p["randomness"])
    stone = g.remap(edge, p["gap"] * 0.5, p["gap"] * 0.5 + p["dome"])
    # Ease-out 1 - (1 - s)^2: rounded shoulders and a flat-ish top, not a pyramid.
    inv = g.sub(1.0, stone)
    dome = g.sub(1.0, g.mul(inv, inv))
    rand = g.grey(cell["Color"])
    det, _ = g.noise(v, p["detail_scale"], 4.0, 0.6)
    height = g.madd(dome, g.madd(g.decorrelate(rand), 0.2, 0.8 - p["detail"]), g.mul(det, p["detail"]))
    cn, _ = g.noise(g.vadd(v, [3.0, 9.0, 4.0]), p["detail_scale"] * 0.5, 3.0, 0.6)
    stone_col = g.ramp(
        g.madd(rand, 0.75, g.mul(cn, 0.25)),
        [(0.0, p["stones"][0]), (0.5, p["stones"][1]), (1.0, p["stones"][2])],
    )
    col = g.mix_rgb(g.remap(edge, p["gap"] * 0.4, p["gap"] * 0.7), p["gap_color"], stone_col)
    col = _grime(g, vec, col, p)
    rough = g.mix(stone, p["rough_hi"], p["rough_lo"])
    return Channels(height, col, rough)


# ---- pebbles --------------------------------------------------------------------------------
def _pebbles_sample(rng: np.random.Generator) -> Params:
    return {
        "scale": _u(rng, 3.0, 8.0),
        "radius": _u(rng, 0.5, 0.75),
        "flatten": _u(rng, 0.4, 0.9),
        "scale2": _u(rng, 8.0, 16.0),
        "stones": [*_stone_palette(rng), color_hsv(rng, (0.0, 1.0), (0.0, 0.3), (0.3, 0.9))],
        "soil": color_hsv(rng, (0.04, 0.12), (0.3, 0.7), (0.1, 0.35)),
        "wet": _u(rng, 0.0, 1.0),
        "offset_vec": _offset(rng),
        "offset_vec2": _offset(rng),
    }


def _pebble_layer(g: Graph, v: Socket, scale: float, radius: float) -> tuple[Socket, Socket]:
    cell = g.voronoi(v, scale, "F1", 1.0)
    r = g.math("DIVIDE", cell["Distance"], radius)
    cap = g.math("SQRT", g.clamp01(g.sub(1.0, g.mul(r, r))))
    return cap, g.grey(cell["Color"])


def _pebbles_build(g: Graph, vec: Socket, p: Params) -> Channels:
    v1 = g.vadd(vec, p["offset_vec"])
    v2 = g.vadd(vec, p["offset_vec2"])
    cap1, r1 = _pebble_layer(g, v1, p["scale"], p["radius"])
    cap2, r2 = _pebble_layer(g, v2, p["scale2"], p["radius"])
    h1 = g.mul(cap1, g.madd(g.decorrelate(r1), 0.3 * p["flatten"], 0.7 * p["flatten"]))
    h2 = g.mul(cap2, 0.45 * p["flatten"])
    height = g.math("MAXIMUM", h1, h2)
    top = g.math("GREATER_THAN", h1, h2)
    rand = g.mix(top, r2, r1)
    pal = p["stones"]
    stone_col = g.ramp(rand, [(0.0, pal[0]), (0.35, pal[1]), (0.7, pal[2]), (1.0, pal[3])])
    on_stone = g.remap(g.math("MAXIMUM", cap1, cap2), 0.0, 0.15)
    col = g.mix_rgb(on_stone, p["soil"], stone_col)
    rough = g.mix(on_stone, 0.95, 0.75 - 0.5 * p["wet"])
    return Channels(height, col, rough)


# ---- rocky noise ----------------------------------------------------------------------------
def _rocky_sample(rng: np.random.Generator) -> Params:
    return {
        "scale": _u(rng, 3.0, 10.0),
        "detail": _u(rng, 6.0, 12.0),
        "roughness": _u(rng, 0.55, 0.75),
        "kind": str(rng.choice(["FBM", "RIDGED_MULTIFRACTAL", "HETERO_TERRAIN"])),
        "distortion": _u(rng, 0.0, 0.6),
        "rock": _stone_palette(rng),
        "lichen": color_hsv(rng, (0.12, 0.3), (0.3, 0.8), (0.3, 0.7)),
        "lichen_amount": _u(rng, 0.0, 0.3) if rng.random() < 0.5 else 0.0,
        "color_scale": _u(rng, 2.0, 10.0),
        "rough_lo": _u(rng, 0.5, 0.8),
        "offset_vec": _offset(rng),
        "offset_col": _offset(rng),
    }


def _rocky_build(g: Graph, vec: Socket, p: Params) -> Channels:
    v = g.vadd(vec, p["offset_vec"])
    f, _ = g.noise(v, p["scale"], p["detail"], p["roughness"], p["distortion"], p["kind"])
    if p["kind"] == "FBM":
        height = g.remap(f, 0.3, 0.7)
    else:
        # Multifractal outputs are unnormalised and can dip below zero (hetero terrain);
        # clamp, then squash into [0, 1) with f / (f + 1).
        fpos = g.math("MAXIMUM", f, 0.0)
        height = g.math("DIVIDE", fpos, g.add(fpos, 1.0))
    vc = g.vadd(vec, p["offset_col"])
    cf, _ = g.noise(vc, p["color_scale"], 5.0, 0.6)
    col = g.ramp(cf, [(0.3, p["rock"][0]), (0.5, p["rock"][1]), (0.7, p["rock"][2])])
    lf, _ = g.noise(g.vadd(vc, [5.0, 1.0, 0.0]), p["color_scale"] * 1.7, 3.0, 0.7)
    la = p["lichen_amount"]
    lichen = g.mul(g.remap(lf, 0.62 - la * 0.2, 0.66 - la * 0.2), la * 2)
    col = g.mix_rgb(g.clamp01(lichen), col, p["lichen"])
    rn, _ = g.noise(vc, p["color_scale"] * 2.0, 2.0, 0.5)
    rough = g.remap(rn, 0.3, 0.7, p["rough_lo"], 1.0)
    return Channels(height, col, rough)


# ---- cracked mud ----------------------------------------------------------------------------
def _mud_sample(rng: np.random.Generator) -> Params:
    mud = color_hsv(rng, (0.04, 0.12), (0.25, 0.6), (0.25, 0.7))
    return {
        "scale": _u(rng, 3.0, 9.0),
        "crack": _u(rng, 0.02, 0.07),
        "warp": _u(rng, 0.05, 0.25),
        "curl": _u(rng, 0.0, 0.35),
        "mud_a": mud,
        "mud_b": _jitter(rng, mud, 0.35),
        "crack_color": _jitter(rng, mud, 0.6),
        "color_scale": _u(rng, 2.0, 12.0),
        "rough_lo": _u(rng, 0.6, 0.9),
        "offset_vec": _offset(rng),
        "offset_col": _offset(rng),
    }


def _mud_build(g: Graph, vec: Socket, p: Params) -> Channels:
    v = g.vadd(vec, p["offset_vec"])
    _, warp = g.noise(v, p["scale"] * 0.7, 3.0, 0.5)
    vw = g.vadd(v, g.vscale(g.vadd(warp, [-0.5, -0.5, -0.5]), p["warp"] / p["scale"] * 3.0))
    edge = g.voronoi(vw, p["scale"], "DISTANCE_TO_EDGE", 1.0)["Distance"]
    plate = g.remap(edge, p["crack"] * 0.3, p["crack"], smooth=True)
    curl = g.remap(edge, p["crack"], p["crack"] + 0.25)
    fine, _ = g.noise(v, p["scale"] * 6, 4.0, 0.6)
    height = g.mul(plate, g.madd(fine, 0.12, g.madd(g.sub(1.0, curl), p["curl"], 0.88 - p["curl"])))
    cf, _ = g.noise(g.vadd(vec, p["offset_col"]), p["color_scale"], 4.0, 0.55)
    col = g.ramp(cf, [(0.3, p["mud_a"]), (0.7, p["mud_b"])])
    col = g.mix_rgb(plate, p["crack_color"], col)
    rough = g.remap(cf, 0.3, 0.7, p["rough_lo"], 1.0)
    return Channels(height, col, rough)


# ---- planks and wood grain ------------------------------------------------------------------
def _wood_palette(rng: np.random.Generator) -> tuple[RGB, RGB]:
    hue = _u(rng, 0.04, 0.11)
    light = color_hsv(rng, (hue, hue + 0.02), (0.3, 0.7), (0.45, 0.9))
    dark = color_hsv(rng, (hue - 0.02, hue), (0.5, 0.85), (0.15, 0.45))
    return light, dark


def _planks_sample(rng: np.random.Generator) -> Params:
    light, dark = _wood_palette(rng)
    return {
        "scale": _u(rng, 1.0, 2.5),
        "width": _u(rng, 1.5, 4.0),
        "row": _u(rng, 0.15, 0.35),
        "gap": _u(rng, 0.004, 0.02),
        "grain_scale": _u(rng, 2.0, 8.0),
        "grain_distortion": _u(rng, 2.0, 12.0),
        "grain_relief": _u(rng, 0.0, 0.15),
        "light": light,
        "dark": dark,
        "tint": _u(rng, 0.0, 0.4),
        "rough_lo": _u(rng, 0.2, 0.6),
        "rough_hi": _u(rng, 0.65, 0.95),
        "offset_vec": _offset(rng),
        **_grime_params(rng),
    }


def _planks_build(g: Graph, vec: Socket, p: Params) -> Channels:
    gap, rand = g.brick(vec, p["scale"], p["gap"], 0.3, p["width"], p["row"], 0.5)
    v = g.vadd(g.xform(vec, scale=(0.15, 1.0, 1.0)), p["offset_vec"])
    v = g.vadd(v, g.comb(0.0, 0.0, g.mul(rand, 37.0)))
    grain = g.wave(v, p["grain_scale"], p["grain_distortion"], 3.0, "Y", "SIN", phase=g.mul(rand, 20.0))
    board = g.sub(1.0, gap)
    height = g.mul(board, g.madd(grain, p["grain_relief"], 0.92 - p["grain_relief"]))
    height = g.madd(g.mul(g.decorrelate(rand), board), 0.08, height)
    wood = g.ramp(grain, [(0.0, p["dark"]), (1.0, p["light"])])
    tinted = g.mix_rgb(g.mul(rand, p["tint"]), wood, p["dark"])
    col = g.mix_rgb(board, [0.02, 0.015, 0.01], tinted)
    col = _grime(g, vec, col, p)
    rough = g.mix(grain, p["rough_hi"], p["rough_lo"])
    return Channels(height, col, rough)


# ---- fabric weave ---------------------------------------------------------------------------
def _fabric_sample(rng: np.random.Generator) -> Params:
    warp = color_hsv(rng, (0.0, 1.0), (0.0, 0.8), (0.1, 0.9))
    return {
        "threads": float(rng.integers(12, 36)),
        "thread_width": _u(rng, 0.7, 0.95),
        "warp": warp,
        "weft": (
            _jitter(rng, warp, 0.4)
            if rng.random() < 0.5
            else color_hsv(rng, (0.0, 1.0), (0.0, 0.8), (0.1, 0.9))
        ),
        "fibre": _u(rng, 0.05, 0.25),
        "rough_lo": _u(rng, 0.6, 0.9),
        "offset_vec": _offset(rng),
        "twill": bool(rng.random() < 0.3),
    }


def _fabric_build(g: Graph, vec: Socket, p: Params) -> Channels:
    x, y, _ = g.sep(vec)
    f = p["threads"]
    xf, yf = g.mul(x, f), g.mul(y, f)
    fx, fy = g.math("FRACT", xf), g.math("FRACT", yf)
    ix, iy = g.math("FLOOR", xf), g.math("FLOOR", yf)
    if p["twill"]:
        parity = g.math("LESS_THAN", g.math("FLOORED_MODULO", g.add(ix, iy), 3.0), 1.5)
    else:
        parity = g.math("FLOORED_MODULO", g.add(ix, iy), 2.0)
    w = p["thread_width"]

    def profile(frac: Socket) -> Socket:
        # Round thread cross-section: sqrt(1 - t^2) with t in [-1, 1] across the thread width.
        t = g.math("DIVIDE", g.sub(g.mul(frac, 2.0), 1.0), w)
        return g.math("SQRT", g.clamp01(g.sub(1.0, g.mul(t, t))))

    def along(frac: Socket) -> Socket:
        # Threads dip where they pass under the crossing thread.
        return g.madd(g.math("SINE", g.mul(frac, np.pi)), 0.35, 0.65)

    warp_h = g.mul(profile(fx), along(fy))  # threads running along Y
    weft_h = g.mul(profile(fy), along(fx))  # threads running along X
    warp_top = g.mix(parity, g.mul(warp_h, 0.6), warp_h)
    weft_top = g.mix(parity, weft_h, g.mul(weft_h, 0.6))
    height0 = g.math("MAXIMUM", warp_top, weft_top)
    fib, _ = g.noise(g.vadd(g.xform(vec, scale=(f * 0.5, f * 0.05, 1.0)), p["offset_vec"]), 4.0, 3.0, 0.6)
    height = g.madd(fib, p["fibre"], g.mul(height0, 1.0 - p["fibre"]))
    is_warp = g.math("GREATER_THAN", warp_top, weft_top)
    cn, _ = g.noise(g.vadd(vec, p["offset_vec"]), f * 2, 2.0, 0.5)
    col = g.mix_rgb(is_warp, p["weft"], p["warp"])
    col = g.mix_rgb(g.mul(cn, 0.3), col, [0.0, 0.0, 0.0], blend="MULTIPLY")
    rough = g.remap(cn, 0.3, 0.7, p["rough_lo"], 1.0)
    return Channels(height, col, rough)


# ---- scratched metal ------------------------------------------------------------------------
def _metal_sample(rng: np.random.Generator) -> Params:
    metals = [
        [0.56, 0.57, 0.58],  # iron/steel
        [0.91, 0.92, 0.92],  # aluminium
        [0.95, 0.64, 0.54],  # copper
        [0.91, 0.78, 0.42],  # brass-ish
        [0.66, 0.66, 0.66],  # zinc/titanium-ish
    ]
    base = metals[int(rng.integers(len(metals)))]
    return {
        "metal": _jitter(rng, base, 0.08),
        "painted": bool(rng.random() < 0.25),
        "paint": color_hsv(rng, (0.0, 1.0), (0.3, 0.9), (0.2, 0.8)),
        "scratch_scale": _u(rng, 3.0, 8.0),
        "scratch_width": _u(rng, 0.015, 0.04),
        "scratch_angle": _u(rng, 0.0, np.pi),
        "scratch_angle2": _u(rng, 0.0, np.pi),
        "dent_scale": _u(rng, 2.0, 6.0),
        "dents": _u(rng, 0.0, 0.5),
        "rough_lo": _u(rng, 0.08, 0.3),
        "rough_hi": _u(rng, 0.35, 0.7),
        "offset_vec": _offset(rng),
        "offset_vec2": _offset(rng),
    }


def _metal_build(g: Graph, vec: Socket, p: Params) -> Channels:
    def scratches(angle: float, off: list[float]) -> Socket:
        v = g.vadd(g.xform(vec, scale=(1.0, 1.0, 1.0), rot_z=angle), off)
        v = g.xform(v, scale=(0.08, 4.0, 1.0))
        n, _ = g.noise(v, p["scratch_scale"], 2.0, 0.5, 0.0)
        ridge = g.math("ABSOLUTE", g.sub(n, 0.5))
        line = g.remap(ridge, p["scratch_width"], 0.0)
        mask, _ = g.noise(g.vadd(vec, off), 3.0, 2.0, 0.5)
        return g.mul(line, g.remap(mask, 0.45, 0.6))

    s = g.math(
        "MAXIMUM",
        scratches(p["scratch_angle"], p["offset_vec"]),
        scratches(p["scratch_angle2"], p["offset_vec2"]),
    )
    dent, _ = g.noise(g.vadd(vec, p["offset_vec2"]), p["dent_scale"], 2.0, 0.5)
    height = g.sub(g.madd(dent, p["dents"], 1.0 - p["dents"] * 0.5), g.mul(s, 0.6))
    height = g.clamp01(height)
    if p["painted"]:
        chip, _ = g.noise(g.vadd(vec, p["offset_vec"]), 4.0, 6.0, 0.65)
        paint = g.remap(chip, 0.52, 0.55)
        bare = g.math("MAXIMUM", s, g.sub(1.0, paint))
        col = g.mix_rgb(bare, p["paint"], p["metal"])
        metallic: Value = bare
        rough = g.mix(bare, 0.55, g.mix(s, p["rough_lo"], p["rough_hi"]))
    else:
        cn, _ = g.noise(g.vadd(vec, p["offset_vec"]), 8.0, 3.0, 0.5)
        col = g.mix_rgb(g.mul(cn, 0.15), p["metal"], [0.3, 0.3, 0.3], blend="MULTIPLY")
        metallic = 1.0
        rough = g.mix(s, g.remap(cn, 0.3, 0.7, p["rough_lo"], p["rough_lo"] + 0.1), p["rough_hi"])
    return Channels(height, col, rough, metallic)


# ---- bark -----------------------------------------------------------------------------------
def _bark_sample(rng: np.random.Generator) -> Params:
    hue = _u(rng, 0.03, 0.12)
    return {
        "scale": _u(rng, 1.5, 4.0),
        "stretch": _u(rng, 0.12, 0.3),
        "distortion": _u(rng, 3.0, 10.0),
        "furrow": _u(rng, 0.3, 0.6),
        "plates": _u(rng, 0.0, 1.0),
        "fine": _u(rng, 0.05, 0.2),
        "dark": color_hsv(rng, (hue, hue + 0.02), (0.2, 0.6), (0.05, 0.2)),
        "light": color_hsv(rng, (hue, hue + 0.03), (0.05, 0.45), (0.3, 0.7)),
        "moss": color_hsv(rng, (0.15, 0.3), (0.4, 0.8), (0.2, 0.6)),
        "moss_amount": _u(rng, 0.0, 0.6) if rng.random() < 0.5 else 0.0,
        "rough_lo": _u(rng, 0.6, 0.85),
        "offset_vec": _offset(rng),
        "offset_col": _offset(rng),
    }


def _bark_build(g: Graph, vec: Socket, p: Params) -> Channels:
    # Long vertical ridges separated by furrows, broken into plates; stretched along Y.
    v = g.vadd(g.xform(vec, scale=(1.0, p["stretch"], 1.0)), p["offset_vec"])
    bands = g.wave(v, p["scale"], p["distortion"], 4.0, "X", "SIN")
    ridge = g.remap(bands, p["furrow"] * 0.5, p["furrow"] + 0.2, smooth=True)
    cells = g.voronoi(g.xform(v, scale=(1.0, 0.6, 1.0)), p["scale"] * 2.5, "DISTANCE_TO_EDGE", 1.0)
    plate = cells["Distance"]
    plate_h = g.remap(plate, 0.0, 0.08, smooth=True)
    fine, _ = g.noise(v, p["scale"] * 15.0, 2.0, 0.5)
    body = g.mix(p["plates"], ridge, g.mul(ridge, plate_h))
    height = g.madd(fine, p["fine"], g.mul(body, 1.0 - p["fine"]))
    cf, _ = g.noise(g.vadd(vec, p["offset_col"]), p["scale"] * 3, 5.0, 0.6)
    col = g.ramp(cf, [(0.3, p["dark"]), (0.7, p["light"])])
    col = g.mix_rgb(g.mul(g.sub(1.0, ridge), 0.6), col, p["dark"])  # furrow floors are dirtier
    mf, _ = g.noise(g.vadd(vec, p["offset_col"]), 2.0, 4.0, 0.6)
    ma = p["moss_amount"]
    moss = g.mul(g.remap(mf, 0.6 - ma * 0.2, 0.65 - ma * 0.2), ma * 1.5)
    col = g.mix_rgb(g.clamp01(moss), col, p["moss"])
    rough = g.remap(cf, 0.3, 0.7, p["rough_lo"], 1.0)
    return Channels(height, col, rough)


# ---- relief families (stop 8): broad smooth relief, plateaus and steps -------------------------
# Not in FAMILY_NAMES: the default set ("all", "train") stays what every earlier dataset and the
# public validation set drew. Recipes name these explicitly.
_SOIL_PALETTES = (
    ((0.07, 0.12), (0.2, 0.55), (0.45, 0.85)),  # sand
    ((0.04, 0.1), (0.3, 0.65), (0.15, 0.45)),  # soil
    ((0.5, 0.65), (0.0, 0.08), (0.7, 0.95)),  # snow
    ((0.0, 1.0), (0.0, 0.25), (0.2, 0.6)),  # ash, slag
)


def _dunes_sample(rng: np.random.Generator) -> Params:
    h, s, v = _SOIL_PALETTES[int(rng.integers(len(_SOIL_PALETTES)))]
    base = color_hsv(rng, h, s, v)
    return {
        "dune_scale": _u(rng, 0.6, 2.5),
        "dune": _u(rng, 0.3, 1.0),
        "ripple_scale": _u(rng, 4.0, 14.0),
        "ripple_distortion": _u(rng, 0.5, 6.0),
        "ripple_angle": _u(rng, 0.0, float(np.pi)),
        "ripple_profile": str(rng.choice(["SIN", "SAW"])),
        "ripple": _u(rng, 0.0, 0.6),
        "grain_scale": _u(rng, 40.0, 120.0),
        "grain": _u(rng, 0.0, 0.08),
        "color_a": base,
        "color_b": _jitter(rng, base, 0.4),
        "color_scale": _u(rng, 1.0, 8.0),
        "rough_lo": _u(rng, 0.55, 0.9),
        "offset_vec": _offset(rng),
        "offset_col": _offset(rng),
    }


def _dunes_build(g: Graph, vec: Socket, p: Params) -> Channels:
    # Broad dunes (one or two per patch) under wind ripples at any angle, plus a little grain.
    v = g.vadd(vec, p["offset_vec"])
    dune, _ = g.noise(v, p["dune_scale"], 2.0, 0.45)
    dune = g.remap(dune, 0.25, 0.75)
    ripple = g.wave(
        g.xform(v, rot_z=p["ripple_angle"]),
        p["ripple_scale"],
        p["ripple_distortion"],
        2.0,
        "X",
        p["ripple_profile"],
    )
    grain, _ = g.noise(v, p["grain_scale"], 2.0, 0.5)
    total = p["dune"] + p["ripple"] + p["grain"]
    height = g.madd(
        dune, p["dune"] / total, g.madd(ripple, p["ripple"] / total, g.mul(grain, p["grain"] / total))
    )
    cf, _ = g.noise(g.vadd(vec, p["offset_col"]), p["color_scale"], 4.0, 0.55)
    col = g.ramp(cf, [(0.3, p["color_a"]), (0.7, p["color_b"])])
    rn, _ = g.noise(g.vadd(vec, p["offset_col"]), p["color_scale"] * 1.7, 2.0, 0.5)
    rough = g.remap(rn, 0.3, 0.7, p["rough_lo"], 1.0)
    return Channels(height, col, rough)


def _plaster_sample(rng: np.random.Generator) -> Params:
    base = color_hsv(rng, (0.0, 1.0), (0.0, 0.35), (0.45, 0.95))
    return {
        "scale": _u(rng, 1.5, 6.0),
        "detail": _u(rng, 1.0, 5.0),
        "distortion": _u(rng, 0.0, 1.5),
        "flatten": _u(rng, 0.0, 0.7),
        "stipple_scale": _u(rng, 15.0, 60.0),
        "stipple": _u(rng, 0.0, 0.25),
        "paint_a": base,
        "paint_b": _jitter(rng, base, 0.2),
        "color_scale": _u(rng, 1.0, 6.0),
        "rough_lo": _u(rng, 0.25, 0.7),
        "rough_hi": _u(rng, 0.75, 1.0),
        "offset_vec": _offset(rng),
        "offset_col": _offset(rng),
        **_grime_params(rng),
    }


def _plaster_build(g: Graph, vec: Socket, p: Params) -> Channels:
    # Trowelled plaster: smooth swells whose tops are scraped flat (plateaus), and a fine stipple.
    v = g.vadd(vec, p["offset_vec"])
    n, _ = g.noise(v, p["scale"], p["detail"], 0.5, p["distortion"])
    body = g.remap(n, 0.3, 0.72 - 0.25 * p["flatten"], smooth=True)
    st, _ = g.noise(g.vadd(v, [3.0, 9.0, 1.0]), p["stipple_scale"], 2.0, 0.5)
    height = g.madd(st, p["stipple"], g.mul(body, 1.0 - p["stipple"]))
    cf, _ = g.noise(g.vadd(vec, p["offset_col"]), p["color_scale"], 4.0, 0.55)
    col = g.ramp(cf, [(0.35, p["paint_a"]), (0.65, p["paint_b"])])
    col = _grime(g, vec, col, p)
    rn, _ = g.noise(g.vadd(vec, p["offset_col"]), p["color_scale"] * 2.3, 3.0, 0.5)
    rough = g.remap(rn, 0.3, 0.7, p["rough_lo"], p["rough_hi"])
    return Channels(height, col, rough)


def _terraces_sample(rng: np.random.Generator) -> Params:
    return {
        "scale": _u(rng, 0.8, 4.0),
        "detail": _u(rng, 2.0, 8.0),
        "roughness": _u(rng, 0.45, 0.65),
        "steps": int(rng.integers(3, 9)),
        "riser": _u(rng, 0.08, 0.5),
        "tilt": _u(rng, 0.0, 0.6),
        "rock": _stone_palette(rng),
        "color_scale": _u(rng, 2.0, 10.0),
        "rough_lo": _u(rng, 0.5, 0.85),
        "offset_vec": _offset(rng),
        "offset_col": _offset(rng),
    }


def _terraces_build(g: Graph, vec: Socket, p: Params) -> Channels:
    # Stepped strata: a broad noise (plus a tilt) cut into flat treads and smooth risers.
    v = g.vadd(vec, p["offset_vec"])
    n, _ = g.noise(v, p["scale"], p["detail"], p["roughness"])
    x, _, _ = g.sep(vec)
    base = g.madd(x, p["tilt"], g.remap(n, 0.3, 0.7))
    t = g.mul(base, float(p["steps"]))
    riser = g.remap(g.math("FRACT", t), 1.0 - p["riser"], 1.0, smooth=True)
    height = g.clamp01(g.mul(g.add(g.math("FLOOR", t), riser), 1.0 / (p["steps"] * (1.0 + p["tilt"]))))
    cf, _ = g.noise(g.vadd(vec, p["offset_col"]), p["color_scale"], 5.0, 0.6)
    col = g.ramp(cf, [(0.3, p["rock"][0]), (0.5, p["rock"][1]), (0.7, p["rock"][2])])
    rn, _ = g.noise(g.vadd(vec, p["offset_col"]), p["color_scale"] * 2.0, 2.0, 0.5)
    rough = g.remap(rn, 0.3, 0.7, p["rough_lo"], 1.0)
    return Channels(height, col, rough)


# ---- mixtures -------------------------------------------------------------------------------
_MIXABLE = ("bricks", "tiles", "cobblestones", "pebbles", "rocky", "cracked_mud", "planks")


def _mixture_sample(rng: np.random.Generator) -> Params:
    a, b = rng.choice(len(_MIXABLE), size=2, replace=False)
    fa, fb = FAMILIES[_MIXABLE[int(a)]], FAMILIES[_MIXABLE[int(b)]]
    return {
        "a": {"family": fa.name, "params": fa.sample(rng), "relief": _u(rng, *fa.relief)},
        "b": {"family": fb.name, "params": fb.sample(rng), "relief": _u(rng, *fb.relief)},
        "mask_scale": _u(rng, 0.8, 3.0),
        "mask_sharp": _u(rng, 0.02, 0.2),
        "mask_offset": _offset(rng),
    }


def _mixture_build(g: Graph, vec: Socket, p: Params) -> Channels:
    ca = FAMILIES[p["a"]["family"]].build(g, vec, p["a"]["params"])
    cb = FAMILIES[p["b"]["family"]].build(g, vec, p["b"]["params"])
    m, _ = g.noise(g.vadd(vec, p["mask_offset"]), p["mask_scale"], 3.0, 0.55)
    mask = g.remap(m, 0.5 - p["mask_sharp"], 0.5 + p["mask_sharp"], smooth=True)
    ra, rb = p["a"]["relief"], p["b"]["relief"]
    r = max(ra, rb)
    height = g.mix(mask, g.mul(ca.height, ra / r), g.mul(cb.height, rb / r))
    col = g.mix_rgb(mask, ca.color, cb.color)
    rough = g.mix(mask, ca.roughness, cb.roughness)
    metallic = g.mix(mask, ca.metallic, cb.metallic)
    return Channels(height, col, rough, metallic)


def mixture_relief(params: Params) -> float:
    """The relief of a mixture: the larger of its two parts'."""
    return float(max(params["a"]["relief"], params["b"]["relief"]))


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("bricks", _bricks_sample, _bricks_build, (0.015, 0.04)),
        Family("tiles", _tiles_sample, _tiles_build, (0.005, 0.015)),
        Family("cobblestones", _cobble_sample, _cobble_build, (0.025, 0.06)),
        Family("pebbles", _pebbles_sample, _pebbles_build, (0.02, 0.05)),
        Family("rocky", _rocky_sample, _rocky_build, (0.03, 0.08)),
        Family("cracked_mud", _mud_sample, _mud_build, (0.01, 0.03)),
        Family("planks", _planks_sample, _planks_build, (0.004, 0.015)),
        Family("fabric", _fabric_sample, _fabric_build, (0.004, 0.012)),
        Family("scratched_metal", _metal_sample, _metal_build, (0.0015, 0.005)),
        Family("bark", _bark_sample, _bark_build, (0.03, 0.07)),
        Family("mixture", _mixture_sample, _mixture_build, (0.0, 0.0)),
    )
}

FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)
"""The factory's default set ("all"); every dataset before stop 8, the public validation set among
them, drew from exactly these, in this order."""

RELIEF_FAMILIES: tuple[str, ...] = ("dunes", "plaster", "terraces")
"""Families added in stop 8 for broad relief. Outside :data:`FAMILY_NAMES`, so that "all" and
"train" still draw what they always drew; a recipe names them."""

FAMILIES.update(
    {
        f.name: f
        for f in (
            Family("dunes", _dunes_sample, _dunes_build, (0.02, 0.08)),
            Family("plaster", _plaster_sample, _plaster_build, (0.008, 0.03)),
            Family("terraces", _terraces_sample, _terraces_build, (0.02, 0.06)),
        )
    }
)


# ---- composite (stop 16): random stacks of generic relief primitives --------------------------
# Not in FAMILY_NAMES either. Each sample stacks one to three layers drawn from generic primitives
# (noise blobs, ridged noise, Voronoi cells with grooves, cones, waves, a brick grid), each turned,
# stretched and shaped at random, and combined by a weighted sum, a maximum or a product. The
# colour, the roughness and the metallic come from their own randoms, as in every family.
# Deliberately absent: the held-out families' signature constructions, i.e. pebbles' spherical
# caps on Voronoi F1 distance and bark's stretched furrows broken into plates, so bark and pebbles
# stay unseen structures; likewise terraces' quantised steps. What the family adds is variety:
# relief shapes, scales, palettes and roughness levels that no single family spans.
COMPOSITE_LAYERS: tuple[str, ...] = ("blobs", "ridges", "cells", "cones", "waves", "grid")
COMPOSITE_OPS: tuple[str, ...] = ("add", "max", "multiply")


def _composite_layer(rng: np.random.Generator) -> Params:
    kind = str(rng.choice(COMPOSITE_LAYERS))
    layer: Params = {
        "kind": kind,
        "scale": float(np.exp(rng.uniform(np.log(0.8), np.log(14.0)))),
        "rot": _u(rng, 0.0, float(np.pi)),
        "stretch": float(rng.choice([1.0, 1.0, _u(rng, 0.2, 0.9)])),
        "gamma": float(np.exp(rng.uniform(np.log(0.5), np.log(2.2)))),
        "invert": bool(rng.random() < 0.3),
        "offset": _offset(rng),
    }
    if kind in ("blobs", "ridges"):
        layer["detail"] = _u(rng, 0.0, 7.0)
        layer["roughness"] = _u(rng, 0.35, 0.7)
        layer["distortion"] = _u(rng, 0.0, 1.5) if rng.random() < 0.4 else 0.0
    elif kind == "cells":
        layer["groove"] = _u(rng, 0.02, 0.2)
        layer["randomness"] = _u(rng, 0.5, 1.0)
    elif kind == "cones":
        layer["metric"] = str(rng.choice(["MANHATTAN", "CHEBYCHEV"]))
        layer["randomness"] = _u(rng, 0.3, 1.0)
    elif kind == "waves":
        layer["wave"] = str(rng.choice(["BANDS", "RINGS"]))
        layer["profile"] = str(rng.choice(["SIN", "SAW", "TRI"]))
        layer["distortion"] = _u(rng, 0.0, 8.0)
    else:  # grid
        layer["mortar"] = _u(rng, 0.01, 0.06)
        layer["smooth"] = _u(rng, 0.0, 0.8)
        layer["width"] = _u(rng, 0.3, 1.0)
        layer["row"] = _u(rng, 0.15, 0.6)
    return layer


def _composite_sample(rng: np.random.Generator) -> Params:
    n = int(rng.choice([1, 2, 2, 3]))
    layers = [_composite_layer(rng) for _ in range(n)]
    for layer in layers[1:]:
        layer["op"] = str(rng.choice(COMPOSITE_OPS))
        layer["weight"] = _u(rng, 0.15, 1.0)
    hue = _u(rng, 0.0, 1.0)
    spread = float(rng.choice([_u(rng, 0.0, 0.08), _u(rng, 0.3, 0.5)]))
    sat = (0.0, 0.25) if rng.random() < 0.3 else (0.15, 0.8)
    palette = [
        color_hsv(rng, (hue + k * spread, hue + k * spread + 0.03), sat, (0.04, 0.85))
        for k in range(int(rng.integers(2, 5)))
    ]
    metallic = bool(rng.random() < 0.1)
    rough_mid = _u(rng, 0.1, 0.6) if metallic else _u(rng, 0.08, 0.95)
    span = _u(rng, 0.0, 0.4)
    return {
        "layers": layers,
        "fine": _u(rng, 0.0, 0.12) if rng.random() < 0.5 else 0.0,
        "fine_scale": _u(rng, 25.0, 90.0),
        "palette": palette,
        "color_source": str(rng.choice(["noise", "cells", "bands"])),
        "color_scale": float(np.exp(rng.uniform(np.log(1.0), np.log(25.0)))),
        "color_detail": _u(rng, 1.0, 8.0),
        "rough_lo": max(0.02, rough_mid - span / 2),
        "rough_hi": min(1.0, rough_mid + span / 2),
        "rough_follows_color": bool(rng.random() < 0.4),
        "metallic": metallic,
        "offset_col": _offset(rng),
        **_grime_params(rng),
    }


def _composite_layer_build(g: Graph, vec: Socket, layer: Params) -> Socket:
    v = g.vadd(g.xform(vec, scale=(1.0, layer["stretch"], 1.0), rot_z=layer["rot"]), layer["offset"])
    kind, s = layer["kind"], layer["scale"]
    if kind == "blobs":
        f, _ = g.noise(v, s, layer["detail"], layer["roughness"], layer["distortion"])
        h = g.remap(f, 0.3, 0.7)
    elif kind == "ridges":
        f, _ = g.noise(v, s, layer["detail"], layer["roughness"], layer["distortion"])
        h = g.sub(1.0, g.math("ABSOLUTE", g.madd(f, 2.0, -1.0)))
        h = g.remap(h, 0.4, 1.0)
    elif kind == "cells":
        edge = g.voronoi(v, s, "DISTANCE_TO_EDGE", layer["randomness"])["Distance"]
        h = g.remap(edge, 0.0, layer["groove"], smooth=True)
    elif kind == "cones":
        d = g.voronoi(v, s, "F1", layer["randomness"], layer["metric"])["Distance"]
        h = g.remap(d, 0.0, 0.8, 1.0, 0.0)
    elif kind == "waves":
        h = g.wave(v, s, layer["distortion"], 2.0, "X", layer["profile"], layer["wave"])
    else:  # grid
        mortar, _ = g.brick(v, s, layer["mortar"], layer["smooth"], layer["width"], layer["row"])
        h = g.sub(1.0, mortar)
    h = g.math("POWER", g.clamp01(h), layer["gamma"])
    return g.sub(1.0, h) if layer["invert"] else h


def _composite_build(g: Graph, vec: Socket, p: Params) -> Channels:
    layers = p["layers"]
    height = _composite_layer_build(g, vec, layers[0])
    for layer in layers[1:]:
        h = _composite_layer_build(g, vec, layer)
        w = layer["weight"]
        if layer["op"] == "add":
            height = g.math("MULTIPLY", g.madd(h, w, height), 1.0 / (1.0 + w))
        elif layer["op"] == "max":
            height = g.math("MAXIMUM", height, g.mul(h, w))
        else:  # multiply: the layer modulates the stack by up to its weight
            height = g.mul(height, g.madd(h, w, 1.0 - w))
    if p["fine"] > 0.0:
        fine, _ = g.noise(vec, p["fine_scale"], 2.0, 0.5)
        height = g.madd(fine, p["fine"], g.mul(height, 1.0 - p["fine"]))
    vc = g.vadd(vec, p["offset_col"])
    if p["color_source"] == "cells":
        cf = g.grey(g.voronoi(vc, p["color_scale"], "F1", 1.0)["Color"])
    elif p["color_source"] == "bands":
        cf = g.wave(vc, p["color_scale"], 4.0, p["color_detail"], "X", "SIN")
    else:
        cf, _ = g.noise(vc, p["color_scale"], p["color_detail"], 0.55)
    pal = p["palette"]
    stops = [(0.3 + 0.4 * k / (len(pal) - 1), c) for k, c in enumerate(pal)]
    col = _grime(g, vec, g.ramp(cf, stops), p)
    if p["rough_follows_color"]:
        rf: Socket = cf
    else:
        rf, _ = g.noise(g.vadd(vc, [7.0, 3.0, 1.0]), p["color_scale"] * 1.9, 3.0, 0.5)
    rough = g.remap(rf, 0.3, 0.7, p["rough_lo"], p["rough_hi"])
    return Channels(height, col, rough, 1.0 if p["metallic"] else 0.0)


GENERIC_FAMILIES: tuple[str, ...] = ("composite",)
"""Families of generic, randomly composed relief (stop 16). Outside :data:`FAMILY_NAMES`, like
:data:`RELIEF_FAMILIES`; a recipe names them."""

FAMILIES["composite"] = Family("composite", _composite_sample, _composite_build, (0.004, 0.07))
