"""Blender <-> core conversions: image pixels to numpy, material maps to images and nodes.

Everything here runs on the main thread.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from mlvfx.color import srgb_to_linear
from mlvfx.errors import InputError, InvalidImageDataError

# Map name -> (label, colour space of the image datablock).
MAP_LABELS = {
    "albedo": ("Albedo (delit)", "sRGB"),
    "normal": ("Normal", "Non-Color"),
    "height": ("Height", "Non-Color"),
    "roughness": ("Roughness", "Non-Color"),
    "ao": ("Ambient Occlusion", "Non-Color"),
}
TAG = "mlvfx_map"  # custom property on nodes we create: the map they hold
SOURCE_KEY = "mlvfx_source"  # on a Generate Material frame: the Image Texture node it was made from
SOURCE_ID = "mlvfx_source_id"  # on that node and the frame: survives the node being renamed
DISPLACEMENT_KEY = "mlvfx_displacement_method"  # on a material: its method before mlvfx set "BOTH"


def _raw_pixels(image: bpy.types.Image, keep_alpha: bool = False) -> np.ndarray:
    """Pixels as float32 (H, W, C), top row first, with straight (not premultiplied) alpha.

    Blender keeps the float buffer of a colour image with alpha premultiplied (16-bit PNG, EXR,
    float TIFF; not Non-Color data, nor the alpha modes Channel Packed and None), while mlvfx
    works with straight alpha, as byte images are held: such pixels are unpremultiplied here.
    Reading them as they were darkened a half-transparent texture, and again on every re-run.
    An opaque alpha channel is dropped unless ``keep_alpha``.
    """
    if image.source in ("SEQUENCE", "MOVIE"):
        kind = "an image sequence" if image.source == "SEQUENCE" else "a movie"
        raise InputError(
            f"image {image.name!r} is {kind}; mlvfx works on still images (load one frame's file as an image)"
        )
    width, height = image.size
    if width == 0 or height == 0 or (not image.has_data and not _try_load(image)):
        source = bpy.path.abspath(image.filepath) if image.filepath else image.name
        raise InvalidImageDataError("image has no pixels (missing or unreadable file)", source)
    buffer = np.empty(width * height * image.channels, dtype=np.float32)
    image.pixels.foreach_get(buffer)
    pixels = buffer.reshape(height, width, image.channels)[::-1]
    if image.channels == 4 and _premultiplied(image):  # in place: ``buffer`` is ours
        colour, alpha = pixels[..., :3], pixels[..., 3:]
        np.divide(colour, alpha, out=colour, where=alpha > 0)
    if not keep_alpha and image.channels == 4 and np.all(pixels[..., 3] == 1.0):
        pixels = pixels[..., :3]
    return np.ascontiguousarray(pixels)


def _premultiplied(image: bpy.types.Image) -> bool:
    """Whether Blender holds this image's pixels premultiplied by alpha (measured in Blender 5.0)."""
    return bool(
        image.is_float
        and not image.colorspace_settings.is_data
        and image.alpha_mode in ("STRAIGHT", "PREMUL")
    )


def image_to_array(image: bpy.types.Image) -> np.ndarray:
    """An image datablock's pixels as float32 (H, W, C), top row first, colour linear Rec.709.

    Float images are held in Blender's working space (Linear Rec.709 unless a file sets ACEScg or
    Linear Rec.2020). Byte images hold the values of their colour space (sRGB, Display P3, AgX Base
    sRGB, ...). Both are converted with Blender's own colour management (OpenColorIO), so a
    Display P3 photo is not read as if it were sRGB.
    """
    pixels = _raw_pixels(image)
    name = image.colorspace_settings.name
    if image.colorspace_settings.is_data:
        return pixels
    if image.is_float:  # Blender holds float images in its working space
        working = _working_space()
        if working in LINEAR_SPACES or pixels.shape[2] < 3:
            return pixels
        rgb = np.ascontiguousarray(pixels[..., :3])
        _colour_processor(working).applyRGB(rgb)
        pixels[..., :3] = rgb
        return pixels
    if name in LINEAR_SPACES:
        return pixels
    colour = min(3, pixels.shape[2])
    if name == "sRGB":
        pixels[..., :colour] = srgb_to_linear(pixels[..., :colour])
        return pixels
    if colour < 3:
        raise InputError(f"image {image.name!r}: a grey image in colour space {name!r} cannot be converted")
    rgb = np.ascontiguousarray(pixels[..., :3])
    _colour_processor(name).applyRGB(rgb)
    pixels[..., :3] = rgb
    return pixels


LINEAR_SPACES = ("Linear Rec.709",)


def check_core() -> None:
    """Refuse to run on another mlvfx core than the one this extension was built with.

    Blender keeps an extension's wheels by name and version; when every build was 0.1.0, an
    upgraded extension kept the old core and its operators failed half way (an upgrade audit).
    Builds now carry their commit, so this guards what still could mix them. A source tree (the
    add-on run from ``addon/``, no build stamp) is not checked.
    """
    import importlib

    from mlvfx import __version__

    try:
        stamp = importlib.import_module(f"{__package__}._core_version")
    except ImportError:
        return
    built = getattr(stamp, "CORE_VERSION", None)
    if built is None or built == __version__:
        return
    import mlvfx

    where = Path(mlvfx.__file__).resolve().parent
    try:  # where Blender unpacks extensions' wheels (BLENDER_USER_EXTENSIONS moves it; a review)
        wheels = (Path(bpy.utils.user_resource("EXTENSIONS")) / ".local").resolve()
    except (AttributeError, OSError, ValueError):
        wheels = None
    ours = where.is_relative_to(wheels) if wheels is not None else False
    if ours or ("extensions" in where.parts and ".local" in where.parts):  # the extensions' own wheels
        remedy = (
            "restart Blender (an upgraded extension's core loads at start); if this stays, remove the "
            "mlvfx extension, restart Blender and install it again"
        )
    else:  # a developer's checkout or a studio's site-packages shadows the extension's wheel
        remedy = f"another mlvfx at {where} comes first on Blender's Python path; take it off that path"
    raise InputError(
        f"this mlvfx extension was built with mlvfx core {built}, but Blender loaded core "
        f"{__version__}: {remedy}"
    )


def ignored_profile_note(image: bpy.types.Image) -> str | None:
    """A warning when an image's file embeds a colour profile (Display P3, Adobe RGB) that Blender
    does not read while the image is set to sRGB: Blender, and so the maps, take its pixels for
    sRGB, whereas ``mlvfx material`` on the same file applies the profile (an audit: P3 red read
    as 1.0 here, 1.22 by the CLI). None otherwise, and for anything that cannot be read cheaply.
    """
    from mlvfx.fsutil import read_regular
    from mlvfx.io.icc import parse_profile
    from mlvfx.io.probe import HeaderError, probe

    if image.source != "FILE" or image.colorspace_settings.name != "sRGB":
        return None
    try:
        if image.packed_file is not None:
            data = bytes(image.packed_file.data)
        elif image.filepath:
            data = read_regular(bpy.path.abspath(image.filepath, library=image.library))  # not a pipe's wait
        else:
            return None
        header = probe(data)
    except (OSError, HeaderError, ValueError):
        return None
    icc = header.icc
    # Integer files only (Blender holds 16-bit ones as float, so the datablock cannot tell; a
    # review): float pixels are linear, and the CLI does not apply a profile to them either.
    if not icc or header.sample not in ("uint8", "uint16"):
        return None
    profile = parse_profile(icc)
    if not profile.usable or profile.is_srgb:
        return None
    return (
        f"image {image.name!r}: its file embeds a {profile.description!r} colour profile, which Blender "
        "does not read, so its colours were taken as sRGB; set the image's Color Space to match (e.g. "
        "Display P3) and run again for the colours `mlvfx material` reads from the file"
    )


def _working_space() -> str:
    """The .blend's working colour space (Blender 5.0 lets a file choose it; older: Rec.709)."""
    space = getattr(getattr(bpy.data, "colorspace", None), "working_space", "") or "Linear Rec.709"
    return str(space)


def data_array(image: bpy.types.Image) -> np.ndarray:
    """Pixels of a data (Non-Color) image as float32 (H, W, C), top row first, never colour-converted."""
    return _raw_pixels(image)


@functools.lru_cache(maxsize=4)
def _ocio_config(path: str) -> Any:
    """An OpenColorIO config, parsed once per file (a studio config can be large)."""
    import PyOpenColorIO as OCIO

    return OCIO.Config.CreateFromFile(path)


def _colour_processor(name: str) -> Any:
    """An OpenColorIO CPU processor from colour space ``name`` to linear Rec.709, with the config
    Blender uses ($OCIO, else the one it ships)."""
    expose = getattr(bpy.utils, "expose_bundled_modules", None)
    if expose is not None:  # Blender as a Python module keeps its bundled modules aside
        expose()
    if importlib.util.find_spec("PyOpenColorIO") is None:
        raise InputError(f"cannot convert colour space {name!r}: OpenColorIO is not available")
    path = (
        os.environ.get("OCIO")
        or bpy.utils.system_resource("DATAFILES", path="colormanagement/config.ocio")
        or os.path.join(bpy.utils.resource_path("LOCAL"), "datafiles", "colormanagement", "config.ocio")
    )  # system_resource finds a distribution's shared data folder; the bpy module needs LOCAL
    try:
        config = _ocio_config(path)
        target = "Linear Rec.709" if config.getColorSpace("Linear Rec.709") is not None else "scene_linear"
        return config.getProcessor(name, target).getDefaultCPUProcessor()
    except Exception as exc:  # OCIO raises its own Exception type for unknown spaces and bad configs
        raise InputError(f"cannot convert colour space {name!r} to linear: {exc}") from None


def _try_load(image: bpy.types.Image) -> bool:
    try:
        image.reload()
        _ = image.pixels[0]
    except (RuntimeError, IndexError):
        return False
    return bool(image.has_data)


def downscale(pixels: np.ndarray, limit: int) -> np.ndarray:
    """Downscale so the longest side is at most ``limit`` (0: no limit), area-averaged."""
    import cv2

    height, width = pixels.shape[:2]
    if limit <= 0 or max(height, width) <= limit:
        return pixels
    scale = limit / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    out = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return np.asarray(out.reshape(size[1], size[0], -1), dtype=np.float32)


_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10)]
)


def safe_name(name: str, default: str = "material") -> str:
    """``name`` as one file-name component: no separators, no leading dots (``..`` cannot climb),
    and not a name Windows reserves for a device (``con``, ``NUL``, ``com1``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or default
    return f"{safe}_" if safe.split(".")[0].upper() in _RESERVED else safe


def output_folder(base_name: str, pack: bool = False) -> tuple[Path, bool]:
    """Where new maps go: ``//textures/mlvfx/<name>[-N]/`` next to a saved .blend (never an existing
    folder), else (an unsaved file, or ``pack``) a fresh temp folder whose images get packed and
    which :func:`discard_folder` removes once they are. Returns (folder, must_pack)."""
    if bpy.data.is_saved and not pack:
        root = Path(bpy.path.abspath("//textures/mlvfx"))
        folder = root / safe_name(base_name)
        n = 1
        while folder.exists():
            folder = root / f"{safe_name(base_name)}-{n}"
            n += 1
        return folder, False
    return Path(tempfile.mkdtemp(prefix=f"mlvfx-{safe_name(base_name)}-")), True


def discard_folder(folder: Path, must_pack: bool) -> None:
    """Remove a temp folder from :func:`output_folder` once its images are packed into the .blend."""
    if must_pack:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _load_image(path: Path, name: str, colorspace: str, pack: bool) -> bpy.types.Image:
    """Load a file we just wrote as a new image: a relative path beside a saved .blend, else packed."""
    image = bpy.data.images.load(str(path), check_existing=False)
    image.name = name
    image.colorspace_settings.name = colorspace
    if pack or not bpy.data.is_saved:
        image.pack()
        # Its own file name for File > External Data > Unpack: the temp path (folder deleted,
        # generic albedo.png) made two materials' maps unpack into one file (an audit, stop 26).
        own = _unused_packed_path(image, safe_name(image.name, "image"), path.suffix.lower())
        image.filepath_raw = own
        for packed in image.packed_files:  # what Unpack reads (Blender keeps the load path there)
            packed.filepath = own
    else:
        try:
            image.filepath = bpy.path.relpath(str(path))
        except ValueError:  # another drive on Windows: keep the absolute path
            pass
    return image


def _unused_packed_path(image: bpy.types.Image, stem: str, suffix: str) -> str:
    """``//textures/mlvfx/<stem><suffix>``, numbered past the paths other images use (compared
    without case, as Windows and macOS do): "my photo" and "my_photo", or two names in another
    script that both reduce to "albedo", must not unpack into one file (a review)."""
    taken = {
        path.lower()
        for other in bpy.data.images
        if other != image
        for path in (other.filepath_raw, *(f.filepath for f in other.packed_files))
    }
    candidate, number = f"//textures/mlvfx/{stem}{suffix}", 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"//textures/mlvfx/{stem}-{number}{suffix}"
    return candidate


def load_map_images(files: dict[str, Path], base_name: str, pack: bool) -> dict[str, bpy.types.Image]:
    """Load written material map files as new image datablocks with the right colour spaces."""
    return {
        name: _load_image(path, f"{base_name}_{name}", MAP_LABELS[name][1], pack)
        for name, path in files.items()
        if name in MAP_LABELS
    }


def _find_output(tree: bpy.types.NodeTree) -> bpy.types.Node:
    outputs = [n for n in tree.nodes if n.bl_idname == "ShaderNodeOutputMaterial"]
    for node in outputs:
        if node.is_active_output:
            return node
    if outputs:
        return outputs[0]
    node = tree.nodes.new("ShaderNodeOutputMaterial")
    node.location = (400, 0)
    return node


def _find_bsdf(tree: bpy.types.NodeTree, output: bpy.types.Node) -> tuple[bpy.types.Node, str]:
    """The Principled BSDF to wire the maps into, and a note when it does not feed the output.

    The first Principled BSDF upstream of the output's Surface (through Mix Shaders and the like:
    a decal's Principled + Transparent mix), else any in the tree, else a new one.
    """
    surface = output.inputs["Surface"]
    feeding = _upstream_principled(surface)
    if feeding is not None:
        return feeding, ""
    first = surface.links[0].from_node if surface.is_linked else None
    note = (
        f"the material's surface is {first.name!r}, with no Principled BSDF behind it: the maps went "
        "into a Principled BSDF that does not reach the output; connect it to use them"
        if first is not None
        else ""
    )
    for node in tree.nodes:
        if node.bl_idname == "ShaderNodeBsdfPrincipled":
            return node, note
    bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.location = (output.location.x - 300, output.location.y)
    if not surface.is_linked:
        tree.links.new(bsdf.outputs["BSDF"], surface)
    return bsdf, note


def _upstream_principled(socket: bpy.types.NodeSocket) -> bpy.types.Node | None:
    """The nearest Principled BSDF feeding ``socket`` (breadth first through shader inputs)."""
    seen: set[str] = set()
    queue = [link.from_node for link in socket.links if link.is_valid]
    while queue:
        node = queue.pop(0)
        if node.name in seen:
            continue
        seen.add(node.name)
        if node.bl_idname == "ShaderNodeBsdfPrincipled":
            return node
        for inp in node.inputs:
            if inp.type == "SHADER":
                queue.extend(link.from_node for link in inp.links if link.is_valid)
    return None


class Wiring:
    """Links new nodes without destroying the user's links.

    A socket already fed by something else keeps its link, and the new node stays unconnected
    (reported as a warning). Links from the source photo itself, and from nodes mlvfx made before,
    are replaced: the delit albedo supersedes the photo it came from.
    """

    def __init__(self, tree: bpy.types.NodeTree, source: bpy.types.Node | None) -> None:
        self.tree = tree
        self.source = source
        self.kept: list[str] = []

    def link(self, from_socket: bpy.types.NodeSocket, to_socket: bpy.types.NodeSocket) -> bool:
        if to_socket.is_linked:
            existing = to_socket.links[0].from_node
            if existing != self.source and TAG not in existing:
                self.kept.append(f"{to_socket.node.name}.{to_socket.name}")
                return False
        self.tree.links.new(from_socket, to_socket)
        return True


def build_material_nodes(
    material: bpy.types.Material,
    images: dict[str, bpy.types.Image],
    *,
    source: bpy.types.Node | None,
    normal_strength: float,
    height_mode: str,
    relief: Relief,
    label: str,
    albedo_alpha: bool = False,
) -> tuple[dict[str, bpy.types.Node], list[str]]:
    """Add image nodes for the maps and wire them into the Principled BSDF.

    The normal map and the height carry the same relief, so only one of them shades the surface:
    ``height_mode`` "NONE" links the normal map; "DISPLACEMENT" links the height to the Material
    Output's displacement with method "Displacement and Bump", and leaves the normal map in the
    frame unlinked (linked as well, the relief showed twice in EEVEE and on subdivided meshes in
    Cycles); "BUMP" links a Bump node fed by the height instead of the normal map. Where an
    artist's own link keeps our displacement out, the normal map is linked after all.

    ``albedo_alpha``: the albedo carries the photo's alpha (a decal, a cut-out leaf); it drives the
    BSDF's Alpha.

    The frame records ``source`` so that a later run can replace these maps
    (:func:`remove_earlier_maps`). A run without displacement disconnects an earlier mlvfx
    displacement and restores the material's displacement method.

    Returns the new nodes by role and warnings: the sockets whose existing links were kept, and a
    surface that is not a Principled BSDF.
    """
    if material.node_tree is None:
        material.use_nodes = True  # only for old files: new materials always have a node tree
    tree = material.node_tree
    output = _find_output(tree)
    bsdf, note = _find_bsdf(tree, output)
    wiring = Wiring(tree, source)
    frame = tree.nodes.new("NodeFrame")
    frame.label = label
    frame[TAG] = "frame"
    if source is not None:
        frame[SOURCE_KEY] = source.name  # what a later run from the same node replaces
        frame[SOURCE_ID] = source_id(source)
    created: dict[str, bpy.types.Node] = {"frame": frame}
    x0, y0 = bsdf.location.x - 900, bsdf.location.y + 300

    def add(kind: str, role: str, x: float, y: float, node_label: str) -> Any:
        node = tree.nodes.new(kind)
        node.location = (x0 + x, y0 + y)
        node.label = node_label
        node.parent = frame
        node[TAG] = role
        created[role] = node
        return node

    def image_node(name: str, y: float) -> Any:
        node = add("ShaderNodeTexImage", name, 0, y, MAP_LABELS[name][0])
        node.image = images[name]
        return node

    row = 0.0
    if "albedo" in images:
        albedo = image_node("albedo", row)
        colour = albedo.outputs["Color"]
        if "ao" in images:
            ao = image_node("ao", row - 280)
            mix = add("ShaderNodeMix", "ao_mix", 320, row - 120, "Albedo x AO")
            mix.data_type = "RGBA"
            mix.blend_type = "MULTIPLY"
            mix.inputs["Factor"].default_value = 1.0
            tree.links.new(colour, mix.inputs[6])
            tree.links.new(ao.outputs["Color"], mix.inputs[7])
            colour = mix.outputs[2]
            row -= 280
        wiring.link(colour, bsdf.inputs["Base Color"])
        if albedo_alpha and "Alpha" in bsdf.inputs:
            wiring.link(albedo.outputs["Alpha"], bsdf.inputs["Alpha"])
        row -= 280
    if "roughness" in images:
        rough = image_node("roughness", row)
        wiring.link(rough.outputs["Color"], bsdf.inputs["Roughness"])
        row -= 280
    normal_out = None
    if "normal" in images:
        normal = image_node("normal", row)
        normal_map = add("ShaderNodeNormalMap", "normal_map", 320, row, "Normal Map")
        normal_map.space = "TANGENT"
        normal_map.inputs["Strength"].default_value = normal_strength
        tree.links.new(normal.outputs["Color"], normal_map.inputs["Color"])
        normal_out = normal_map.outputs["Normal"]
        row -= 280
    if "height" in images and height_mode != "NONE":
        height = image_node("height", row)
        if height_mode == "BUMP":
            bump = add("ShaderNodeBump", "bump", 560, row + 140, "Bump")
            bump.inputs["Distance"].default_value = relief.depth
            tree.links.new(height.outputs["Color"], bump.inputs["Height"])
            _set_aside(created.get("normal_map"), "the Bump carries this relief")
            normal_out = bump.outputs["Normal"]
        else:
            disp = add("ShaderNodeDisplacement", "displacement", 320, row, "Displacement")
            disp.inputs["Midlevel"].default_value = 0.5
            disp.space = "WORLD"  # as the Bump's Distance: a non-uniform scale does not skew the depth
            disp.inputs["Scale"].default_value = relief.depth
            tree.links.new(height.outputs["Color"], disp.inputs["Height"])
            # The render setting changes only when our displacement is the one connected.
            if wiring.link(disp.outputs["Displacement"], output.inputs["Displacement"]):
                if hasattr(material, "displacement_method"):
                    if DISPLACEMENT_KEY not in material:  # the artist's own setting, given back later
                        material[DISPLACEMENT_KEY] = material.displacement_method
                    material.displacement_method = "BOTH"
                _set_aside(created.get("normal_map"), "the displacement carries this relief")
                normal_out = None
    if normal_out is not None:
        wiring.link(normal_out, bsdf.inputs["Normal"])
    if "displacement" not in created:  # an earlier run's displacement must not keep driving the render
        _unlink_our_displacement(material, output)
    warnings = []
    if wiring.kept:
        warnings.append("kept existing links into " + ", ".join(wiring.kept) + "; new maps left unconnected")
    if note:
        warnings.append(note)
    return created, warnings


def _set_aside(node: bpy.types.Node | None, why: str) -> None:
    """Leave our Normal Map node in the frame, unlinked, saying why (an artist may link it instead)."""
    if node is not None:
        node.label = f"Normal Map (unlinked: {why})"


@dataclass(frozen=True)
class Relief:
    """How deep the height map's [0, 1] range is on the surface, in world units: the Displacement
    node's Scale (set to world space) and the Bump node's Distance."""

    depth: float
    note: str


# Blender's default plane and cube are 2 units across: the size assumed for one texture repeat when
# no selected object uses the material.
DEFAULT_REPEAT = 2.0


def relief_for(depth_fraction: float, obj: bpy.types.Object | None, material: bpy.types.Material) -> Relief:
    """The relief on the surface for a height map whose full range is ``depth_fraction`` of the
    image's larger side (what the normal map was made with). One texture repeat is taken to span
    the largest world-space extent of ``obj``'s mesh (its own vertices, so an Array modifier does not
    count; its scale, parents' included, does) when ``obj`` is a mesh using ``material`` (UVs from 0
    to 1, as a new plane or an unwrapped panel has), else :data:`DEFAULT_REPEAT` units."""
    uses = (
        obj is not None
        and obj.type == "MESH"
        and any(slot.material == material for slot in obj.material_slots)
    )
    size = 0.0
    if uses:
        assert obj is not None
        mesh = obj.data
        if len(mesh.vertices):
            co = np.empty(len(mesh.vertices) * 3, np.float32)
            mesh.vertices.foreach_get("co", co)
            extent = np.ptp(co.reshape(-1, 3), axis=0) * np.abs(np.array(obj.matrix_world.to_scale()))
            size = float(extent.max())
    if size <= 0:
        depth = depth_fraction * DEFAULT_REPEAT
        why = (
            f"{obj.name!r} has no size"
            if uses and obj is not None
            else f"a texture repeat assumed {DEFAULT_REPEAT:g} units"
        )
        return Relief(depth, f"relief {depth:.4g} units ({why})")
    assert obj is not None
    depth = depth_fraction * size
    return Relief(depth, f"relief {depth:.4g} units (one texture repeat over {obj.name!r}, {size:.4g} units)")


def source_id(node: bpy.types.Node) -> str:
    """A stable id of an Image Texture node, kept on the node (a rename keeps it)."""
    if not node.get(SOURCE_ID):
        import uuid

        node[SOURCE_ID] = uuid.uuid4().hex
    return str(node[SOURCE_ID])


def _made_from(frame: bpy.types.Node, source: bpy.types.Node, tree: bpy.types.NodeTree) -> bool:
    """Whether an mlvfx frame holds maps made from ``source``: recorded under its name, or under
    its id with the recorded name gone (the node was renamed). A Shift+D copy carries the id too,
    so a frame whose recorded node still exists under its name belongs to that node."""
    name = frame.get(SOURCE_KEY)
    if name == source.name:
        return True
    if name is None and frame.get(SOURCE_ID) is None:
        return _legacy_frame_of(frame, source, tree)
    recorded = frame.get(SOURCE_ID)
    if not recorded or recorded != source.get(SOURCE_ID):
        return False
    return tree.nodes.get(str(name)) is None


def _legacy_frame_of(frame: bpy.types.Node, source: bpy.types.Node, tree: bpy.types.NodeTree) -> bool:
    """A Generate Material frame an older add-on made, before frames recorded their node: its label
    names the photo (``mlvfx: <photo's file stem>``) and it holds map nodes (a texture tool's
    frame holds ``texture`` nodes). It is ``source``'s when no other photo node of the tree has a
    photo of that name; left alone, a .blend from then got the new maps beside the old, and the
    relief shaded twice (an upgrade audit)."""
    image = getattr(source, "image", None)
    if image is None or frame.label != f"mlvfx: {source_label(image)}":
        return False
    if not any(n.parent == frame and n.get(TAG) in MAP_LABELS for n in tree.nodes):
        return False
    return not any(
        n.bl_idname == "ShaderNodeTexImage"
        and n != source
        and TAG not in n
        and n.image is not None
        and source_label(n.image) == source_label(image)
        for n in tree.nodes
    )


def remove_earlier_maps(material: bpy.types.Material, source: bpy.types.Node) -> int:
    """Remove the frames (and their nodes) that earlier runs made from ``source``; images no
    longer used by anything go too (their files stay on disk, so Undo brings everything back).
    Returns how many nodes were removed, frames not counted."""
    tree = material.node_tree
    frames = [n for n in tree.nodes if n.get(TAG) == "frame" and _made_from(n, source, tree)]
    removed = 0
    images: dict[str, bpy.types.Image] = {}  # by name: one image can sit in two of our nodes
    for frame in frames:
        for node in [n for n in tree.nodes if n.parent == frame and TAG in n]:
            image = getattr(node, "image", None)
            if image is not None:
                images[image.name] = image
            tree.nodes.remove(node)
            removed += 1
        tree.nodes.remove(frame)
    for name in images:
        image = bpy.data.images.get(name)
        if image is not None and image.users == 0:
            bpy.data.images.remove(image)
    return removed


def _unlink_our_displacement(material: bpy.types.Material, output: bpy.types.Node) -> None:
    """Disconnect an mlvfx Displacement node from the output and give the material back the
    displacement method it had before mlvfx set "BOTH" (also after its node was removed)."""
    socket = output.inputs["Displacement"]
    for link in list(socket.links):
        if TAG in link.from_node:
            material.node_tree.links.remove(link)
    if DISPLACEMENT_KEY in material and not socket.is_linked:
        # Only the setting mlvfx made, and only when nothing displaces any more: a method the
        # artist chose since, or their own Displacement node, stays as it is.
        if getattr(material, "displacement_method", None) == "BOTH":
            material.displacement_method = material[DISPLACEMENT_KEY]
        del material[DISPLACEMENT_KEY]


def active_image_node(context: bpy.types.Context) -> bpy.types.Node | None:
    """The Shader Editor's active node if it is an Image Texture node holding an image, else None."""
    nodes = getattr(getattr(getattr(context, "space_data", None), "edit_tree", None), "nodes", None)
    active = nodes.active if nodes is not None else None
    if active is None or active.bl_idname != "ShaderNodeTexImage" or active.image is None:
        return None
    return active


def resolve_image_node(
    context: bpy.types.Context, material_name: str, node_name: str
) -> tuple[bpy.types.Material, bpy.types.Node]:
    """The material and Image Texture node to work on: explicit names, else the editor's active node."""
    if material_name:
        material = bpy.data.materials.get(material_name)
        if material is None:
            raise InputError(f"no material named {material_name!r}")
    else:
        space = getattr(context, "space_data", None)
        tree = getattr(space, "edit_tree", None)
        shown = getattr(space, "id", None)  # what the editor shows, pinned or not: a World too
        if shown is not None and not isinstance(shown, bpy.types.Material):
            raise InputError(
                "open a material in the Shader Editor (not a world or light), or pass material= and node="
            )
        material = shown or getattr(getattr(context, "object", None), "active_material", None)
        if tree is None or material is None or material.node_tree is None:
            raise InputError("open a material in the Shader Editor, or pass material= and node=")
        if tree != getattr(space, "node_tree", material.node_tree) or material.node_tree != tree:
            raise InputError(
                f"the Shader Editor is inside node group {tree.name!r}: exit it (Tab) and select "
                f"the Image Texture node in material {material.name!r}"
            )
    if material.node_tree is None:
        raise InputError(f"material {material.name!r} has no node tree")
    if not material.is_editable:  # linked from another .blend: edits would be lost on reload
        library = material.library.filepath if material.library is not None else "another file"
        raise InputError(
            f"material {material.name!r} is linked from {library}; make it local or add a "
            "library override first"
        )
    tree = material.node_tree
    node = tree.nodes.get(node_name) if node_name else tree.nodes.active
    if node is None:
        raise InputError(
            f"no node {node_name!r} in material {material.name!r}"
            if node_name
            else "select an Image Texture node first"
        )
    if node.bl_idname != "ShaderNodeTexImage":
        raise InputError(f"node {node.name!r} is not an Image Texture node")
    if node.image is None:
        raise InputError(f"Image Texture node {node.name!r} has no image")
    return material, node


def source_label(image: bpy.types.Image) -> str:
    if image.filepath:
        return Path(bpy.path.abspath(image.filepath)).stem or image.name
    return os.path.splitext(image.name)[0]


def image_kind(image: bpy.types.Image) -> str:
    """ "data" for Non-Color (and other raw) images, else "color"."""
    return "data" if image.colorspace_settings.name in ("Non-Color", "Raw", "Generic Data") else "color"


def save_new_images(
    arrays: dict[str, np.ndarray], folder_name: str, kind: str, pack: bool = False, hdr: bool = False
) -> dict[str, bpy.types.Image]:
    """Write arrays as 16-bit PNGs (sRGB-encoded for colour) and load them as new image datablocks.

    With ``hdr`` (the source was a float image), an array with values outside [0, 1] is written
    as a float EXR instead, linear for colour, so nothing is clipped; from 8- or 16-bit sources
    a synthesis overshoot is clipped as the source's range was. The images get a fake user: an
    image no node uses yet (a painted texture) would otherwise be dropped when the file is saved.
    Files go to a fresh folder under //textures/mlvfx/ (or a temp folder, packed, for unsaved files).
    """

    folder, must_pack = output_folder(folder_name, pack)
    images: dict[str, bpy.types.Image] = {}
    try:
        _save_and_load(arrays, folder, kind, hdr, must_pack, images)
    except BaseException:
        for image in images.values():  # loaded but (if packed) about to lose its file: no half result
            bpy.data.images.remove(image)
        raise
    finally:
        discard_folder(folder, must_pack)
    return images


def _save_and_load(
    arrays: dict[str, np.ndarray],
    folder: Path,
    kind: str,
    hdr: bool,
    must_pack: bool,
    images: dict[str, bpy.types.Image],
) -> None:
    from mlvfx.io import write_image

    for name, array in arrays.items():
        values = np.asarray(array)
        exr = hdr and bool(np.any(values > 1.0) or np.any(values < 0.0))
        path = write_image(
            folder / f"{safe_name(name)}.{'exr' if exr else 'png'}",
            array,
            kind="color" if kind == "color" else "data",
            bit_depth=32 if exr else 16,
        )
        colorspace = ("Linear Rec.709" if exr else "sRGB") if kind == "color" else "Non-Color"
        image = _load_image(path, name, colorspace, must_pack)  # an RGBA EXR: premultiplied, as
        # OpenEXR's convention, mlvfx's writer and Blender's default for EXR all have it
        image.use_fake_user = True
        images[name] = image


def add_image_nodes(
    tree: bpy.types.NodeTree, images: list[bpy.types.Image], near: bpy.types.Node | None, label: str
) -> list[bpy.types.Node]:
    """Unconnected Image Texture nodes for new images, in a labelled frame beside ``near``."""
    frame = tree.nodes.new("NodeFrame")
    frame.label = label
    frame[TAG] = "frame"
    x = (near.location.x + 320) if near is not None else 0.0
    y = near.location.y if near is not None else 0.0
    nodes = []
    for index, image in enumerate(images):
        node = tree.nodes.new("ShaderNodeTexImage")
        node.image = image
        node.label = image.name
        node.location = (x, y - 280 * index)
        node.parent = frame
        node[TAG] = "texture"
        nodes.append(node)
    return nodes


def label_array(image: bpy.types.Image) -> np.ndarray:
    """A label image's pixels as uint8 RGB (H, W, 3), top row first, exactly as stored."""
    if image.is_float:
        raise InputError(f"label image {image.name!r} must be an 8-bit image with flat colours")
    pixels = _raw_pixels(image)
    if pixels.shape[2] < 3:
        pixels = np.repeat(pixels[..., :1], 3, axis=2)
    return np.asarray(np.rint(pixels[..., :3] * 255.0), dtype=np.uint8)
