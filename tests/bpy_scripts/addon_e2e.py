"""End-to-end test of the built extension inside the real bpy module.

Run by tests/test_addon.py in a subprocess with HOME pointing at a temporary folder:
    python addon_e2e.py EXTENSION_ZIP WORKDIR
Prints one JSON document with what it observed; every check is also asserted here.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import bpy
import numpy as np
from _extension import MODULE, install, reference_plan

# -- install and enable the extension exactly as a user would -------------------------------------
zip_path, work = install()
observed: dict[str, object] = {}
assert hasattr(bpy.types.Scene, "mlvfx_material")
observed["installed"] = True

# -- a scene: a photo in an Image Texture node, wired to Base Color, and a user link into Roughness --
from mlvfx.classical.filters import gaussian  # noqa: E402  (the wheel the extension installed)
from mlvfx.io import write_image  # noqa: E402

rng = np.random.default_rng(0)
bumps = gaussian(rng.random((96, 128), dtype=np.float32), 3.0, False)
bumps = (bumps - bumps.min()) / (bumps.max() - bumps.min())
photo_path = write_image(
    work / "photo.png", (0.1 + 0.6 * bumps)[..., None] * np.array([0.9, 0.7, 0.5]), kind="color"
)

bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.wm.save_as_mainfile(filepath=str(work / "scene.blend"))
mat = bpy.data.materials.new("Rock")
tree = mat.node_tree
bsdf = tree.nodes["Principled BSDF"]
photo = tree.nodes.new("ShaderNodeTexImage")
photo.name = "Photo"
photo.image = bpy.data.images.load(str(photo_path))
tree.links.new(photo.outputs["Color"], bsdf.inputs["Base Color"])
user_rgb = tree.nodes.new("ShaderNodeRGB")
user_rgb.name = "UserRoughness"
tree.links.new(user_rgb.outputs["Color"], bsdf.inputs["Roughness"])
links_before = len(tree.links)

# -- run the operator as a script or farm job would -------------------------------------------------
bpy.context.scene.mlvfx_material.quality = "high"
result = bpy.ops.mlvfx.generate_material(material="Rock", node="Photo")
assert result == {"FINISHED"}, result


def source_of(socket: bpy.types.NodeSocket) -> bpy.types.Node | None:
    return socket.links[0].from_node if socket.is_linked else None


tagged = {n.get("mlvfx_map"): n for n in tree.nodes if n.get("mlvfx_map")}
observed["new_nodes"] = sorted(tagged)
albedo, normal_img, height_img, rough_img = (tagged[k] for k in ("albedo", "normal", "height", "roughness"))
assert source_of(bsdf.inputs["Base Color"]) == albedo
# The displacement carries the relief, so the normal map made from the same relief is set aside
# (both linked, the relief showed twice), ready in the frame for an artist who prefers it.
assert not bsdf.inputs["Normal"].is_linked and not tagged["normal_map"].outputs["Normal"].is_linked
assert "unlinked" in tagged["normal_map"].label
assert source_of(tagged["normal_map"].inputs["Color"]) == normal_img
output = next(n for n in tree.nodes if n.bl_idname == "ShaderNodeOutputMaterial")
assert source_of(output.inputs["Displacement"]) == tagged["displacement"]
assert source_of(tagged["displacement"].inputs["Height"]) == height_img
# The user's own link is kept; the roughness map is left unconnected.
assert source_of(bsdf.inputs["Roughness"]) == user_rgb
assert not rough_img.outputs["Color"].is_linked
assert all(n.parent == tagged["frame"] for k, n in tagged.items() if k != "frame")
assert tagged["frame"].label.startswith("mlvfx")
observed["links_added"] = len(tree.links) - links_before
observed["colorspaces"] = {
    k: tagged[k].image.colorspace_settings.name for k in ("albedo", "normal", "height", "roughness")
}
assert observed["colorspaces"] == {
    "albedo": "sRGB",
    "normal": "Non-Color",
    "height": "Non-Color",
    "roughness": "Non-Color",
}

# Maps are new files beside the .blend, referenced relatively; the user's photo is untouched.
for key in ("albedo", "normal", "height", "roughness"):
    assert tagged[key].image.filepath.startswith("//textures/mlvfx/"), tagged[key].image.filepath
    assert tagged[key].image != photo.image
observed["files"] = sorted(p.name for p in (work / "textures" / "mlvfx").rglob("*") if p.is_file())
(meta_file,) = (work / "textures" / "mlvfx").rglob("material.json")
meta = json.loads(meta_file.read_text())
observed["quality"] = meta["quality"]
assert observed["quality"] == "high", observed["quality"]
# No object uses the material: one texture repeat is taken as 2 units (Blender's default plane), and
# the displacement is as deep as the relief the normal map was made with.
depth = meta["height_scale_px"] / max(meta["width"], meta["height"]) * 2.0
observed["displacement_scale"] = [tagged["displacement"].inputs["Scale"].default_value, depth]
assert abs(tagged["displacement"].inputs["Scale"].default_value - depth) < 1e-6 * max(depth, 1), observed
assert tagged["displacement"].space == "WORLD"
# The height map is normalised to [0, 1] around mid-grey (a flat photo gives 0.5): the rest level.
observed["displacement_midlevel"] = tagged["displacement"].inputs["Midlevel"].default_value
assert observed["displacement_midlevel"] == 0.5, observed["displacement_midlevel"]


def pixels(image: bpy.types.Image) -> np.ndarray:
    w, h = image.size
    buf = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(buf)
    return buf.reshape(h, w, image.channels)


n = pixels(normal_img.image)[..., :3] * 2 - 1
lengths = np.linalg.norm(n, axis=-1)
observed["normal_length_range"] = [float(lengths.min()), float(lengths.max())]
assert abs(lengths - 1).max() < 2e-3, observed["normal_length_range"]
alb = pixels(albedo.image)
assert np.isfinite(alb).all()
observed["albedo_finite"] = True


# -- texture tools: new images next to the source, the source image untouched -------------------
photo_pixels_before = pixels(photo.image).copy()
tex = bpy.context.scene.mlvfx_texture
tex.width, tex.height, tex.count, tex.seed = 160, 128, 2, 5
images_before = set(bpy.data.images.keys())
assert bpy.ops.mlvfx.make_seamless(material="Rock", node="Photo") == {"FINISHED"}
assert bpy.ops.mlvfx.grow_variations(material="Rock", node="Photo") == {"FINISHED"}
new_images = sorted(set(bpy.data.images.keys()) - images_before)
observed["texture_images"] = new_images
assert len(new_images) == 3, new_images
seamless = bpy.data.images[next(n for n in new_images if n.endswith("_seamless"))]
assert tuple(seamless.size) == tuple(photo.image.size)
assert seamless.colorspace_settings.name == "sRGB"
grown = [bpy.data.images[n] for n in new_images if "_var" in n]
assert all(tuple(g.size) == (160, 128) for g in grown)
assert not np.allclose(pixels(grown[0]), pixels(grown[1])), "two seeds gave the same variation"
np.testing.assert_array_equal(pixels(photo.image), photo_pixels_before)
# A data map (Non-Color: a roughness or normal map) made seamless stays a data map.
colour_image = photo.image
data_image = bpy.data.images.load(str(photo_path), check_existing=False)
data_image.colorspace_settings.name = "Non-Color"
photo.image = data_image
images_before = set(bpy.data.images.keys())
assert bpy.ops.mlvfx.make_seamless(material="Rock", node="Photo") == {"FINISHED"}
(data_seamless,) = [bpy.data.images[n] for n in set(bpy.data.images.keys()) - images_before]
observed["data_seamless_colorspace"] = data_seamless.colorspace_settings.name
assert observed["data_seamless_colorspace"] == "Non-Color", observed["data_seamless_colorspace"]
photo.image = colour_image

# Paint: a label image with two flat colours, each filled from its own exemplar.
labels = np.zeros((64, 64, 3), np.float32)
labels[:, :32] = (1.0, 0.0, 0.0)
labels[:, 32:] = (0.0, 1.0, 0.0)
label_path = write_image(work / "labels.png", labels, kind="data")
tex.label_image = bpy.data.images.load(str(label_path))
dark = write_image(
    work / "dark.png", np.full((32, 32, 3), 0.05, np.float32) + 0.02 * rng.random((32, 32, 3)), kind="color"
)
bright = write_image(
    work / "bright.png", np.full((32, 32, 3), 0.8, np.float32) + 0.02 * rng.random((32, 32, 3)), kind="color"
)
for colour, path in (((1.0, 0.0, 0.0), dark), ((0.0, 1.0, 0.0), bright)):
    bpy.ops.mlvfx.exemplar_add()
    slot = tex.exemplars[tex.active_exemplar]
    slot.color = colour
    slot.image = bpy.data.images.load(str(path))
assert bpy.ops.mlvfx.paint_texture() == {"FINISHED"}
painted = bpy.data.images[next(n for n in bpy.data.images.keys() if n.endswith("_painted"))]
p = pixels(painted)[::-1]  # top row first
observed["painted_left_right"] = [float(p[:, :24, :3].mean()), float(p[:, 40:, :3].mean())]
assert p[:, :24, :3].mean() < 0.3 < 0.6 < p[:, 40:, :3].mean(), observed["painted_left_right"]
# No node uses the painted image yet: a fake user keeps it when the file is saved.
assert painted.use_fake_user
# Texture from an HDR source is not clipped: it comes back as a linear float EXR.
bridge_mod = importlib.import_module(f"{MODULE}.bridge")
hdr = np.full((16, 16, 3), 0.5, np.float32)
hdr[4:8, 4:8] = 3.5
hdr_image = bridge_mod.save_new_images({"hdr_check": hdr}, "hdr_check", "color", hdr=True)["hdr_check"]
assert hdr_image.filepath.endswith(".exr") and hdr_image.colorspace_settings.name == "Linear Rec.709"
observed["hdr_max"] = float(pixels(hdr_image)[..., :3].max())
assert abs(observed["hdr_max"] - 3.5) < 1e-3, observed["hdr_max"]
# From an 8- or 16-bit source, an overshoot is clipped as the source was: a PNG, as before.
ldr_image = bridge_mod.save_new_images({"ldr_check": hdr}, "ldr_check", "color")["ldr_check"]
assert ldr_image.filepath.endswith(".png") and ldr_image.colorspace_settings.name == "sRGB"


# -- smoke: an emitter in a new domain, baked to an OpenVDB sequence, played on a Volume -----------
bpy.ops.mesh.primitive_ico_sphere_add(radius=0.25, location=(0.0, 0.0, 0.3))
emitter = bpy.context.active_object
vertices_before, emitter_name = len(emitter.data.vertices), emitter.name
bpy.ops.object.mode_set(mode="EDIT")  # Add Learned Smoke from edit mode must not touch the emitter's mesh
assert bpy.ops.mlvfx.add_smoke(emitter=emitter.name) == {"FINISHED"}
domain = bpy.context.active_object
settings = domain.mlvfx_smoke
assert settings.is_domain and settings.emitter == emitter and domain != emitter
assert len(emitter.data.vertices) == vertices_before and emitter.name == emitter_name, emitter.name
assert len(domain.data.vertices) == 8 and min(domain.scale) > 0.5
# A bake never deletes what it did not write: the .blend's own folder or a file are refused.
smoke_module = importlib.import_module(f"{MODULE}.smoke")
(work / "keep.txt").write_text("not smoke")
for bad, message in (("//", "did not bake"), ("//keep.txt", "is a file"), ("", "no cache folder")):
    settings.cache = bad
    try:
        bpy.ops.mlvfx.bake_smoke(domain=domain.name)
    except RuntimeError as exc:
        assert message in str(exc), str(exc)
    else:
        raise AssertionError(f"the bake accepted cache {bad!r}")
assert (work / "keep.txt").read_text() == "not smoke" and (work / "scene.blend").is_file()
settings.cache = f"//mlvfx_smoke/{domain.name}"
observed["cache_checks"] = "refused"
# The model menu's numbers are fixed per id (a .blend stores the number).
assert smoke_module.model_number("smoke3d") == 1 and smoke_module.model_number("smoke3d_128") == 2
assert smoke_module.model_number("smoke-e2e") == smoke_module.model_number("smoke-e2e") > 2000
# A new domain bakes learned smoke: "auto" picks the zoo's model by resolution at bake time.
observed["new_domain_model"] = settings.model
assert settings.model == "auto", settings.model
assert smoke_module._resolve_model("auto", 64) == "smoke3d"
assert smoke_module._resolve_model("auto", 128) == "smoke3d_128"
assert smoke_module._resolve_model("reference", 128) == "reference"
settings.model = "reference"  # the bakes below check the reference path; the learned one is further down
settings.resolution, settings.frame_start, settings.frame_end = 16, 1, 4
assert bpy.ops.mlvfx.bake_smoke(domain=domain.name) == {"FINISHED"}
cache = Path(bpy.path.abspath(settings.cache))
frames = sorted(p.name for p in cache.iterdir())
observed["vdb_frames"] = frames
assert frames == [f"density_{f:04d}.vdb" for f in range(1, 5)], frames
volume_obj = bpy.data.objects[f"{domain.name}_volume"]
assert volume_obj.type == "VOLUME" and volume_obj.data.is_sequence
volume_obj.data.grids.load()
observed["volume_grids"] = [g.name for g in volume_obj.data.grids]
assert "density" in observed["volume_grids"]
import openvdb  # noqa: E402  (bundled with Blender; the bake made it importable)

grid = openvdb.read(str(cache / "density_0004.vdb"), "density")
observed["smoke_active_voxels"] = int(grid.activeVoxelCount())
assert grid.activeVoxelCount() > 0
# Velocity for motion blur, stored only where there is smoke, and named on the Volume.
vel = openvdb.read(str(cache / "density_0004.vdb"), "vel")
observed["vel_active_voxels"] = int(vel.activeVoxelCount())
assert 0 < vel.activeVoxelCount() <= grid.activeVoxelCount(), observed
assert "vel" in observed["volume_grids"] and volume_obj.data.velocity_grid == "vel"
assert volume_obj.data.velocity_unit == "SECOND"
# Rebaking replaces the cache safely: same file names, new contents, no leftovers beside it.
first_inode = (cache / "density_0001.vdb").stat().st_ino
settings.frame_end = 3
smoke_material = bpy.data.materials["mlvfx Smoke"]
volume_node = next(n for n in smoke_material.node_tree.nodes if n.bl_idname == "ShaderNodeVolumePrincipled")
volume_node.inputs["Density"].default_value = 42.0  # the user's edit survives the rebake
assert bpy.ops.mlvfx.bake_smoke(domain=domain.name) == {"FINISHED"}
assert volume_node.inputs["Density"].default_value == 42.0
assert sorted(p.name for p in cache.iterdir()) == [f"density_{f:04d}.vdb" for f in range(1, 4)]
assert (cache / "density_0001.vdb").stat().st_ino != first_inode
assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name], list(cache.parent.iterdir())
# A cancelled bake leaves the previous cache untouched.
smoke_mod = sys.modules[MODULE + ".smoke"]
jobs_mod = sys.modules[MODULE + ".jobs"]
op_plan = reference_plan(domain.name, cache, [1, 2, 3])
before_files = {p.name: p.stat().st_ino for p in cache.iterdir()}
bake_job = jobs_mod.Job("bake", lambda p, c: smoke_mod.MLVFX_OT_bake_smoke._compute(op_plan, p, c))
bake_job.cancel_token.cancel()
bake_job.start()
assert bake_job.wait(60) and type(bake_job.error).__name__ == "Cancelled", repr(bake_job.error)
assert {p.name: p.stat().st_ino for p in cache.iterdir()} == before_files
assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name]
observed["cancelled_bake"] = "cache unchanged"

# -- a learned surrogate from the zoo: the model menu lists it, the bake runs it on a 4x grid -------
import hashlib  # noqa: E402
import os  # noqa: E402

from safetensors.torch import save_file  # noqa: E402

from mlvfx.fluids.surrogate import CorrectionNet, surrogate_state  # noqa: E402
from mlvfx.zoo import manifest as zoo_manifest  # noqa: E402

weights = work / "smoke-e2e.safetensors"
save_file(surrogate_state(CorrectionNet(3, width=4, depth=2, conditions=2, symmetric=True), 4), str(weights))
blob = weights.read_bytes()
entry = {
    "id": "smoke-e2e",
    "version": "1.0.0",
    "task": "smoke.surrogate3d",
    "format": ["safetensors"],
    "license": "Apache-2.0",
    "files": [
        {
            "name": "smoke-e2e.safetensors",
            "sha256": hashlib.sha256(blob).hexdigest(),
            "size": len(blob),
            "urls": [weights.as_uri()],
        }
    ],
    "io": {
        "inputs": [{"name": "state", "channels": 4, "color_space": "data"}],
        "outputs": [{"name": "state", "channels": 4, "color_space": "data"}],
        "tile": 0,
        "scale": 4,
    },
    "metrics": {},
    "card": "cards/smoke-e2e.md",
    "recipe": "recipes/smoke-e2e.json",
}
older = {**entry, "version": "0.9.0"}  # two versions of one model: one menu item, the newest
(work / "manifest.json").write_text(json.dumps({"schema_version": 1, "models": [older, entry]}))
os.environ["MLVFX_ZOO_MANIFEST"] = str(work / "manifest.json")
zoo_manifest._memo.clear()
menu = smoke_module._model_items(settings, bpy.context)
number = smoke_module.model_number("smoke-e2e")
want = ("smoke-e2e", "smoke-e2e", "Learned surrogate smoke-e2e 1.0.0 from the zoo", "", number)
assert [i for i in menu if i[0] == "smoke-e2e"] == [want], menu
settings.model = "smoke-e2e"
settings.resolution, settings.frame_end = 18, 2  # not a multiple of 4: the bake rounds the grid
assert bpy.ops.mlvfx.bake_smoke(domain=domain.name) == {"FINISHED"}
assert sorted(p.name for p in cache.iterdir()) == ["density_0001.vdb", "density_0002.vdb"]
learned = openvdb.read(str(cache / "density_0002.vdb"), "density")
observed["surrogate_bake"] = {"active_voxels": int(learned.activeVoxelCount())}
assert learned.activeVoxelCount() > 0
settings.model = "reference"
del os.environ["MLVFX_ZOO_MANIFEST"]  # back to the built-in manifest for the rest
zoo_manifest._memo.clear()


# -- failures leave the file unchanged and report cleanly ---------------------------------------
def snapshot() -> tuple[int, int, int]:
    return len(tree.nodes), len(tree.links), len(bpy.data.images)


missing = tree.nodes.new("ShaderNodeTexImage")
missing.name = "Missing"
missing.image = bpy.data.images.load(str(work / "photo.png"))
missing.image.filepath = str(work / "does_not_exist.png")
missing.image.reload()


def expect_error(node: str) -> str:
    """Blender turns an operator's ERROR report into RuntimeError for script callers."""
    before = snapshot()
    try:
        bpy.ops.mlvfx.generate_material(material="Rock", node=node)
    except RuntimeError as exc:
        message = str(exc).strip()
    else:
        raise AssertionError(f"no error for node {node!r}")
    assert snapshot() == before, "a failed run changed the file"
    assert "\n" not in message and "Traceback" not in message, message
    return message


observed["missing_image"] = expect_error("Missing")
assert "does_not_exist.png" in observed["missing_image"] and "no pixels" in observed["missing_image"]
observed["not_an_image_node"] = expect_error("UserRoughness")
assert "not an Image Texture node" in observed["not_an_image_node"]
observed["unknown_node"] = expect_error("Nope")

# A cancelled job: the worker stops with Cancelled and nothing is applied.
from mlvfx.errors import Cancelled  # noqa: E402

jobs = sys.modules[MODULE + ".jobs"]
started = []


def slow_work(progress, cancel):
    started.append(True)
    from mlvfx.ops.material import material

    big = np.random.default_rng(1).random((1024, 1024, 3), dtype=np.float32)
    while True:  # keep checking the token, as the core does between steps
        material(big, "normal", progress=progress, cancel=cancel)


job = jobs.Job("test", slow_work).start()
job.cancel()
assert job.wait(60), "job did not stop after cancel"
assert isinstance(job.error, Cancelled), repr(job.error)
observed["cancelled_job"] = type(job.error).__name__

# -- unregister leaves nothing behind ---------------------------------------------------------------
bpy.ops.preferences.addon_disable(module=MODULE)
assert not hasattr(bpy.types.Object, "mlvfx_smoke")
assert not hasattr(bpy.types.Scene, "mlvfx_texture")
leftovers = [name for name in dir(bpy.types) if name.startswith("MLVFX_")]
assert not leftovers, leftovers
assert not hasattr(bpy.types.Scene, "mlvfx_material")
observed["unregistered_clean"] = True
print("RESULT " + json.dumps(observed))
