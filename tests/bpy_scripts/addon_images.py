"""The add-on's image and material handling on awkward inputs (stop 24's Blender audit).

Run by tests/test_addon_images.py in a subprocess with HOME pointing at a temporary folder:
    python addon_images.py EXTENSION_ZIP WORKDIR
Prints one JSON document with what it observed; every check is also asserted here.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import tempfile
from pathlib import Path

import bpy
import numpy as np
from _extension import MODULE, error_of, install

zip_path, work = install()
observed: dict[str, object] = {}
bridge = importlib.import_module(MODULE + ".bridge")

from mlvfx.io import read_image, write_image  # noqa: E402  (the wheel the extension installed)


def temp_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("mlvfx-*")}


def material_with_image(name: str, image: bpy.types.Image) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.name = "Photo"
    node.image = image
    return mat


rng = np.random.default_rng(0)
photo = (0.3 + 0.4 * rng.random((48, 64, 3))).astype(np.float32)
photo_path = write_image(work / "photo.png", photo, kind="color")

# -- a material linked from another .blend is refused: the edits would vanish on reload ------------
bpy.ops.wm.read_homefile(use_empty=True)
material_with_image("Shared", bpy.data.images.load(str(photo_path))).use_fake_user = True  # saved unused
bpy.ops.wm.save_as_mainfile(filepath=str(work / "library.blend"))
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.wm.save_as_mainfile(filepath=str(work / "shot.blend"))
with bpy.data.libraries.load(str(work / "library.blend"), link=True) as (src, dst):
    dst.materials = ["Shared"]
linked = bpy.data.materials["Shared"]
assert linked.library is not None
observed["linked"] = error_of(bpy.ops.mlvfx.generate_material, material="Shared", node="Photo")
assert "is linked from" in observed["linked"], observed["linked"]
assert error_of(bpy.ops.mlvfx.make_seamless, material="Shared", node="Photo") == observed["linked"]

# -- half-transparent 16-bit decal: not darkened (Blender premultiplies float buffers) -------------
rgba = np.concatenate([np.full((64, 64, 3), 0.5, np.float32), np.full((64, 64, 1), 0.5, np.float32)], axis=2)
decal = bpy.data.images.load(str(write_image(work / "decal16.png", rgba, kind="color", bit_depth=16)))
mat = material_with_image("Decal", decal)
assert bpy.ops.mlvfx.make_seamless(material="Decal", node="Photo") == {"FINISHED"}
first = bpy.data.images["decal16_seamless"]
values, _ = read_image(bpy.path.abspath(first.filepath))
mat.node_tree.nodes["Photo"].image = first
assert bpy.ops.mlvfx.make_seamless(material="Decal", node="Photo") == {"FINISHED"}
again, _ = read_image(bpy.path.abspath(bpy.data.images["decal16_seamless_seamless"].filepath))
observed["decal_rgb"] = [round(float(values[..., :3].mean()), 4), round(float(again[..., :3].mean()), 4)]
assert all(abs(v - 0.5) < 2e-3 for v in observed["decal_rgb"]), observed["decal_rgb"]  # was 0.25, 0.125
assert abs(float(values[..., 3].mean()) - 0.5) < 2e-3
# Its material: the albedo keeps the alpha and drives the BSDF's Alpha (the decal stays a decal).
mat.node_tree.nodes["Photo"].image = decal
bpy.context.scene.mlvfx_material.method = "classical"
assert bpy.ops.mlvfx.generate_material(material="Decal", node="Photo") == {"FINISHED"}
alpha_in = mat.node_tree.nodes["Principled BSDF"].inputs["Alpha"]
observed["decal_alpha_from"] = alpha_in.links[0].from_node.get(bridge.TAG) if alpha_in.is_linked else None
assert observed["decal_alpha_from"] == "albedo", observed["decal_alpha_from"]

# -- a float image with alpha written as EXR comes back with the same straight colour --------------
hdr = rgba.copy()
hdr[..., :3] = 2.0  # over 1: written as linear EXR
src_hdr = bpy.data.images.load(str(write_image(work / "hdr.exr", hdr, kind="color")))
assert src_hdr.alpha_mode == "PREMUL"  # Blender's default for EXR, which mlvfx now writes premultiplied
arrays = {"hdr_copy": bridge.image_to_array(src_hdr)}
made = bridge.save_new_images(arrays, "hdr_copy", "color", hdr=True)["hdr_copy"]
observed["hdr_round_trip"] = round(float(bridge.image_to_array(made)[..., :3].mean()), 4)
assert abs(observed["hdr_round_trip"] - 2.0) < 1e-3, observed["hdr_round_trip"]
assert made.alpha_mode == "PREMUL"
# A Non-Color RGBA float map (channel-packed data) keeps its values as stored (it was premultiplied
# on write, and Blender does not divide data back: a review).
packed = np.zeros((8, 8, 4), np.float32)
packed[..., :3], packed[..., 3] = 2.0, 0.5
packed[0, 0, 3] = 0.0
made_data = bridge.save_new_images({"packed": packed}, "packed", "data", hdr=True)["packed"]
np.testing.assert_allclose(bridge.data_array(made_data), packed)
assert (
    abs(float(read_image(bpy.path.abspath(made.filepath_raw))[0][..., :3].mean()) - 2.0) < 1e-3
)  # the core reads it alike

# -- Pack Images with a saved .blend: nothing written beside it, no temp folder left ---------------
bpy.context.scene.mlvfx_material.pack = True
bpy.context.scene.mlvfx_material.method = "classical"
material_with_image("Packed", bpy.data.images.load(str(photo_path)))
before = temp_folders()
assert bpy.ops.mlvfx.generate_material(material="Packed", node="Photo") == {"FINISHED"}
beside = work / "textures" / "mlvfx"
observed["pack_wrote_beside_blend"] = sorted(p.name for p in beside.iterdir()) if beside.exists() else []
assert not any(name.startswith("Packed") for name in observed["pack_wrote_beside_blend"])
assert temp_folders() == before, temp_folders() - before
packed = [img for img in bpy.data.images if img.name.startswith("photo_") and img.packed_file is not None]
observed["packed_maps"] = len(packed)
assert observed["packed_maps"] >= 4
assert all(float(bridge.data_array(img).std()) > 0 for img in packed)  # the packed data is there
# A second packed material, then File > External Data > Unpack: each map gets its own file (every
# packed albedo unpacked into one textures/albedo.png before, one material showing another's maps).
brighter = write_image(work / "bright.png", np.clip(photo * 1.6, 0, 1), kind="color")
material_with_image("Packed2", bpy.data.images.load(str(brighter)))
assert bpy.ops.mlvfx.generate_material(material="Packed2", node="Photo") == {"FINISHED"}
albedos = [bpy.data.materials[m].node_tree for m in ("Packed", "Packed2")]
albedos = [next(n.image for n in t.nodes if n.get(bridge.TAG) == "albedo") for t in albedos]
before_unpack = [float(bridge.data_array(img).mean()) for img in albedos]
assert bpy.ops.file.unpack_all(method="USE_LOCAL") == {"FINISHED"}
observed["unpacked_paths"] = [img.filepath for img in albedos]
assert len(set(observed["unpacked_paths"])) == 2, observed["unpacked_paths"]
for img, mean in zip(albedos, before_unpack, strict=True):
    img.reload()
    assert abs(float(bridge.data_array(img).mean()) - mean) < 1e-3, (img.filepath, mean)
# Device names Windows reserves never become file names.
observed["reserved_names"] = [bridge.safe_name(n) for n in ("CON", "nul", "com1", "console")]
assert observed["reserved_names"] == ["CON_", "nul_", "com1_", "console"], observed["reserved_names"]
# Names that reduce to one file name (another script, "my photo" / "My_photo") are numbered apart.
first = bpy.data.images.new("кирпич_albedo", 4, 4)
first.filepath_raw = bridge._unused_packed_path(first, bridge.safe_name(first.name, "image"), ".png")
second = bpy.data.images.new("камень_albedo", 4, 4)
observed["packed_names"] = [first.filepath_raw, bridge._unused_packed_path(second, "ALBEDO", ".png")]
assert observed["packed_names"] == ["//textures/mlvfx/albedo.png", "//textures/mlvfx/ALBEDO-2.png"], observed
bpy.data.images.remove(first)
bpy.data.images.remove(second)

# -- an unsaved .blend: the maps are packed and the temp folder is removed --------------------------
bpy.ops.wm.read_homefile(use_empty=True)
bpy.context.scene.mlvfx_material.method = "classical"
material_with_image("Unsaved", bpy.data.images.load(str(photo_path)))
before = temp_folders()
assert bpy.ops.mlvfx.generate_material(material="Unsaved", node="Photo") == {"FINISHED"}
assert temp_folders() == before, temp_folders() - before
assert bpy.ops.mlvfx.make_seamless(material="Unsaved", node="Photo") == {"FINISHED"}
assert temp_folders() == before, temp_folders() - before
observed["unsaved_temp_folders_left"] = 0

# -- a surface that is not a Principled BSDF is reported -----------------------------------------
glow = material_with_image("Glow", bpy.data.images.load(str(photo_path)))
tree = glow.node_tree
tree.nodes.remove(tree.nodes["Principled BSDF"])
emission = tree.nodes.new("ShaderNodeEmission")
tree.links.new(emission.outputs["Emission"], tree.nodes["Material Output"].inputs["Surface"])
_, warnings = bridge.build_material_nodes(
    glow,
    {},
    source=None,
    normal_strength=1.0,
    height_mode="NONE",
    relief=bridge.Relief(0.02, ""),
    label="t",
)
observed["non_principled_warning"] = warnings
assert any("no Principled BSDF behind it" in w for w in warnings), warnings
# A decal's usual surface: Principled and Transparent mixed. Its Principled is used, no warning.
decal_mat = material_with_image("DecalMix", bpy.data.images.load(str(photo_path)))
tree = decal_mat.node_tree
principled = tree.nodes["Principled BSDF"]
mix = tree.nodes.new("ShaderNodeMixShader")
clear = tree.nodes.new("ShaderNodeBsdfTransparent")
tree.links.new(clear.outputs[0], mix.inputs[1])
tree.links.new(principled.outputs[0], mix.inputs[2])
tree.links.new(mix.outputs[0], tree.nodes["Material Output"].inputs["Surface"])
albedo_img = bpy.data.images.load(str(photo_path))
_, warnings = bridge.build_material_nodes(
    decal_mat,
    {"albedo": albedo_img},
    source=None,
    normal_strength=1.0,
    height_mode="NONE",
    relief=bridge.Relief(0.02, ""),
    label="t",
)
assert warnings == [] and principled.inputs["Base Color"].is_linked, warnings
observed["mix_shader_principled_used"] = True

# -- byte images in other colour spaces are converted with Blender's colour management ------------
red = np.zeros((8, 8, 3), np.float32)
red[..., 0] = 1.0
p3 = bpy.data.images.load(str(write_image(work / "red.png", red, kind="data")))
p3.colorspace_settings.name = "Display P3"
converted = bridge.image_to_array(p3)[0, 0]
observed["display_p3_red"] = [round(float(v), 3) for v in converted]
assert converted[0] > 1.15 and converted[1] < -0.02, observed["display_p3_red"]  # P3 red is outside sRGB
srgb = bpy.data.images.load(
    str(write_image(work / "grey.png", np.full((8, 8, 3), 0.5, np.float32), kind="data"))
)
assert abs(float(bridge.image_to_array(srgb)[0, 0, 0]) - 0.214) < 2e-3  # sRGB as before

# -- a photo whose file embeds a profile Blender does not read is warned about --------------------
spec = importlib.util.spec_from_file_location("test_io", Path(__file__).resolve().parents[1] / "test_io.py")
assert spec is not None and spec.loader is not None
test_io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(test_io)
tagged = work / "p3_photo.png"
p3_profile = test_io._icc_profile(test_io.P3_D50, None, "Display P3")
test_io._png_with_icc(tagged, np.full((4, 4, 3), 200, np.uint8), p3_profile)
p3_image = bpy.data.images.load(str(tagged))
note = bridge.ignored_profile_note(p3_image)
observed["profile_note"] = note
assert note is not None and "'Display P3' colour profile" in note and "Color Space" in note, note
p3_image.pack()  # the packed bytes are read when the file is gone
tagged.unlink()
assert bridge.ignored_profile_note(p3_image) == note
p3_image.colorspace_settings.name = "Display P3"  # the artist followed the advice
assert bridge.ignored_profile_note(p3_image) is None
assert bridge.ignored_profile_note(srgb) is None  # no profile, no note
tagged16 = work / "p3_photo16.png"  # Blender holds a 16-bit PNG as float: the file decides (a review)
test_io._png_with_icc(tagged16, np.full((4, 4, 3), 50000, np.uint16), p3_profile)
p3_16 = bpy.data.images.load(str(tagged16))
assert p3_16.is_float and "'Display P3' colour profile" in str(bridge.ignored_profile_note(p3_16))

# -- float pixels are converted from the file's working space (Blender 5.0: ACEScg, Rec.2020) -------
red_exr = write_image(work / "red.exr", red, kind="color")  # linear Rec.709 red
try:
    bpy.ops.wm.set_working_color_space(working_space="ACEScg")
except (AttributeError, RuntimeError, TypeError):
    pass  # a Blender without per-file working spaces: nothing to convert
observed["working_space"] = bridge._working_space()
got = bridge.image_to_array(bpy.data.images.load(str(red_exr)))[0, 0]
observed["working_space_red"] = [round(float(v), 3) for v in got]
assert np.abs(got - (1.0, 0.0, 0.0)).max() < 5e-3, (observed["working_space"], observed["working_space_red"])
if observed["working_space"] != "Linear Rec.709":
    bpy.ops.wm.set_working_color_space(working_space="Linear Rec.709")

# -- an image sequence is named as such, not as a missing file ------------------------------------
for i in (1, 2):
    write_image(work / f"seq_{i:04d}.png", photo, kind="color")
seq = bpy.data.images.load(str(work / "seq_0001.png"))
seq.source = "SEQUENCE"
material_with_image("Seq", seq)
observed["sequence"] = error_of(bpy.ops.mlvfx.generate_material, material="Seq", node="Photo")
assert "image sequence" in observed["sequence"], observed["sequence"]

# -- a texture too small for the texture tools: the error names the image -------------------------
tiny = bpy.data.images.load(str(write_image(work / "tiny.png", photo[:4, :4], kind="color")))
material_with_image("Tiny", tiny)
observed["tiny"] = error_of(bpy.ops.mlvfx.make_seamless, material="Tiny", node="Photo")
assert "tiny.png" in observed["tiny"] and "at least" in observed["tiny"], observed["tiny"]

# -- Remove Exemplar with a stale active index fails instead of reporting success ----------------
settings = bpy.context.scene.mlvfx_texture
settings.exemplars.add()
settings.active_exemplar = 5
observed["exemplar_remove"] = error_of(bpy.ops.mlvfx.exemplar_remove)
assert "no exemplar slot" in observed["exemplar_remove"] and len(settings.exemplars) == 1

# -- an offline error says what made Blender offline, not which variable the add-on set -----------
from mlvfx.errors import OfflineError  # noqa: E402

operators = importlib.import_module(MODULE + ".operators")
bpy.context.preferences.addons[MODULE].preferences.offline = True
message = operators._in_blender_terms(
    OfflineError("m 1.0: m.safetensors is not cached and MLVFX_OFFLINE=1 forbids downloading it")
)
observed["offline_message"] = message
assert "MLVFX_OFFLINE" not in message and "the mlvfx Offline preference is on" in message, message

print("RESULT " + json.dumps(observed))
