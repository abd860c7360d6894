"""Generate Material run again, Paint from Labels slots, and the job machinery (stop 25's audit).

Run by tests/test_addon_rerun.py in a subprocess with HOME pointing at a temporary folder:
    python addon_rerun.py EXTENSION_ZIP WORKDIR
Prints one JSON document with what it observed; every check is also asserted here.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import threading
import time
import types
from pathlib import Path

import bpy
import numpy as np
from _extension import MODULE, error_of, install

zip_path, work = install()
observed: dict[str, object] = {}
bridge = importlib.import_module(MODULE + ".bridge")
operators = importlib.import_module(MODULE + ".operators")
jobs = importlib.import_module(MODULE + ".jobs")
panels = importlib.import_module(MODULE + ".panels")

from mlvfx.io import write_image  # noqa: E402

rng = np.random.default_rng(0)
photo_path = write_image(work / "rock.png", (0.3 + 0.4 * rng.random((40, 40, 3))).astype(np.float32))
other_path = write_image(work / "moss.png", (0.2 + 0.3 * rng.random((40, 40, 3))).astype(np.float32))

bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.wm.save_as_mainfile(filepath=str(work / "shot.blend"))
mat = bpy.data.materials.new("Rock")
photo = mat.node_tree.nodes.new("ShaderNodeTexImage")
photo.name = "Photo"
photo.image = bpy.data.images.load(str(photo_path))
settings = bpy.context.scene.mlvfx_material
settings.method = "classical"
original_method = mat.displacement_method
output = next(n for n in mat.node_tree.nodes if n.bl_idname == "ShaderNodeOutputMaterial")
disp_socket = output.inputs["Displacement"]


def ours() -> list[bpy.types.Node]:
    return [n for n in mat.node_tree.nodes if bridge.TAG in n]


def frames() -> int:
    return sum(1 for n in ours() if n.get(bridge.TAG) == "frame")


# -- a second run replaces the first: no pile of frames, nodes and images ----------------------------
settings.height_mode = "DISPLACEMENT"
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}
one_run = len(ours())
assert disp_socket.is_linked and mat.displacement_method == "BOTH"
images_before = len(bpy.data.images)
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}
observed["nodes_after_two_runs"] = [one_run, len(ours()), frames()]
assert len(ours()) == one_run and frames() == 1, observed["nodes_after_two_runs"]
assert len(bpy.data.images) == images_before, "the replaced run's images stay behind"
names = sorted(i.name for i in bpy.data.images if i.name.startswith("rock_"))
observed["image_names"] = names
assert all("." not in n for n in names), names  # rock_normal, not rock_normal.001

# -- a run without displacement: the earlier run's displacement no longer drives the render ---------
photo.image = bpy.data.images.load(str(other_path))
settings.height_mode = "NONE"
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}
observed["displacement_after_none"] = [disp_socket.is_linked, mat.displacement_method, original_method]
assert not disp_socket.is_linked and mat.displacement_method == original_method
assert bridge.DISPLACEMENT_KEY not in mat

# -- and without replacing (the option off), an earlier displacement is still unlinked for Bump -----
settings.height_mode = "DISPLACEMENT"
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}
settings.replace = False
settings.height_mode = "BUMP"
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}
observed["kept_frames"] = frames()
assert frames() == 2 and not disp_socket.is_linked and mat.displacement_method == original_method
# Bump in place of the normal map (both from one relief: stacked, the relief showed twice).
bsdf_normal = mat.node_tree.nodes["Principled BSDF"].inputs["Normal"]
bump = bsdf_normal.links[0].from_node
assert bump.bl_idname == "ShaderNodeBump" and bump.inputs["Height"].is_linked
assert not bump.inputs["Normal"].is_linked
# The Bump is as deep as the Displacement the same photo got (the kept frame's), not Blender's default.
kept = [n for n in mat.node_tree.nodes if n.bl_idname == "ShaderNodeDisplacement" and n.get(bridge.TAG)]
assert kept, "the kept frame's Displacement node"
observed["bump_distance"] = [bump.inputs["Distance"].default_value, kept[-1].inputs["Scale"].default_value]
assert abs(observed["bump_distance"][0] - observed["bump_distance"][1]) < 1e-9, observed["bump_distance"]
settings.replace = True

# -- the relief follows the object the material is on: one texture repeat over its largest side -----
plane_mesh = bpy.data.meshes.new("Slab")
plane_mesh.from_pydata([(-3, -2, 0), (3, -2, 0), (3, 2, 0), (-3, 2, 0)], [], [(0, 1, 2, 3)])
slab = bpy.data.objects.new("Slab", plane_mesh)
bpy.context.scene.collection.objects.link(slab)
slab.data.materials.append(mat)
slab.scale = (2.0, 2.0, 2.0)
bpy.context.view_layer.update()
relief = bridge.relief_for(0.01, slab, mat)
observed["slab_relief"] = relief.depth
assert abs(relief.depth - 0.12) < 1e-6, relief  # 6 units of mesh at scale 2: one repeat over 12
slab.scale = (1.0, 0.5, 0.01)  # non-uniform: the largest side in the world counts, not max(scale)
bpy.context.view_layer.update()
assert abs(bridge.relief_for(0.01, slab, mat).depth - 0.06) < 1e-6
slab.modifiers.new("more", "ARRAY").count = 5  # the mesh's own size, not the array's
assert abs(bridge.relief_for(0.01, slab, mat).depth - 0.06) < 1e-6
other = bpy.data.materials.new("Other")
assert bridge.relief_for(0.01, slab, other).depth == 0.01 * bridge.DEFAULT_REPEAT
bpy.data.objects.remove(slab)
bpy.data.materials.remove(other)

# -- a displacement method the artist chose after our run is theirs: not "restored" over ------------
settings.replace = True
settings.height_mode = "DISPLACEMENT"
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}
mat.displacement_method = "DISPLACEMENT"  # the artist's choice
settings.height_mode = "NONE"
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}
observed["artist_method_kept"] = mat.displacement_method
assert mat.displacement_method == "DISPLACEMENT" and bridge.DISPLACEMENT_KEY not in mat
mat.displacement_method = original_method

# -- one image in two of our nodes (the artist reused the albedo for roughness): replaced cleanly ----
albedo_node = next(n for n in ours() if n.get(bridge.TAG) == "albedo")
rough_node = next(n for n in ours() if n.get(bridge.TAG) == "roughness")
rough_node.image = albedo_node.image
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}
assert frames() == 1

# -- renaming the photo node keeps the replace; a copy of it (Shift+D copies the id) does not ------
photo.name = "Rock photo"
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Rock photo") == {"FINISHED"}
observed["frames_after_rename"] = frames()
assert frames() == 1, frames()
copy = mat.node_tree.nodes.new("ShaderNodeTexImage")
copy.name, copy.image = "Rock photo copy", photo.image
copy[bridge.SOURCE_ID] = photo[bridge.SOURCE_ID]  # what Shift+D does with custom properties
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Rock photo copy") == {"FINISHED"}
assert frames() == 2  # the original's maps stay
mat.node_tree.nodes.remove(copy)
copied = "Rock photo copy"
for node in [n for n in ours() if n.get(bridge.TAG) == "frame" and n.get(bridge.SOURCE_KEY) == copied]:
    for child in [c for c in mat.node_tree.nodes if c.parent == node]:
        mat.node_tree.nodes.remove(child)
    mat.node_tree.nodes.remove(node)
photo.name = "Photo"
# -- a frame an older add-on made (no record of its node, only its label) is replaced too ----------
old_frame = next(n for n in ours() if n.get(bridge.TAG) == "frame")
del old_frame[bridge.SOURCE_KEY], old_frame[bridge.SOURCE_ID]
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}
observed["frames_after_legacy_frame"] = frames()
new_frames = [n for n in ours() if n.get(bridge.TAG) == "frame"]
assert frames() == 1 and new_frames[0].get(bridge.SOURCE_KEY) == "Photo"
# ... but not a texture tool's frame that happens to carry that label (a review) ...
tool_label = f"mlvfx: {bridge.source_label(photo.image)}"
(tool_node,) = bridge.add_image_nodes(mat.node_tree, [photo.image], None, tool_label)
tool_frame = tool_node.parent
assert bridge.remove_earlier_maps(mat, photo) > 0 and tool_frame.name in mat.node_tree.nodes
for node in (tool_node, tool_frame):
    mat.node_tree.nodes.remove(node)
# ... nor one that another node's photo of the same file name may have made (a review).
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}
legacy = next(n for n in ours() if n.get(bridge.TAG) == "frame")
del legacy[bridge.SOURCE_KEY], legacy[bridge.SOURCE_ID]
twin_dir = work / "twin"
twin_dir.mkdir(exist_ok=True)
shown = Path(bpy.path.abspath(photo.image.filepath))  # the photo the node shows now
twin_path = twin_dir / shown.name
twin_path.write_bytes(shown.read_bytes())
twin = mat.node_tree.nodes.new("ShaderNodeTexImage")
twin.image = bpy.data.images.load(str(twin_path))
assert bridge.remove_earlier_maps(mat, photo) == 0 and frames() == 1
mat.node_tree.nodes.remove(twin)
assert bridge.remove_earlier_maps(mat, photo) > 0 and frames() == 0
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}

# -- the editor's material: pinned, and inside a node group ------------------------------------------
group = bpy.data.node_groups.new("Detail", "ShaderNodeTree")
inside = types.SimpleNamespace(space_data=types.SimpleNamespace(edit_tree=group, id=mat), object=None)
try:
    bridge.resolve_image_node(inside, "", "")
except Exception as exc:
    observed["node_group"] = str(exc)
assert "inside node group 'Detail'" in str(observed.get("node_group")), observed.get("node_group")
mat.node_tree.nodes.active = photo
pinned = types.SimpleNamespace(space_data=types.SimpleNamespace(edit_tree=mat.node_tree, id=mat), object=None)
found_mat, found_node = bridge.resolve_image_node(pinned, "", "")  # no object: the pinned material
assert found_mat == mat and found_node == photo
world = bpy.data.worlds.new("Sky")
world_space = types.SimpleNamespace(edit_tree=world.node_tree, node_tree=world.node_tree, id=world)
world_editor = types.SimpleNamespace(space_data=world_space, object=None)
try:
    bridge.resolve_image_node(world_editor, "", "")
except Exception as exc:
    observed["world_editor"] = str(exc)
assert "not a world or light" in str(observed.get("world_editor")), observed.get("world_editor")

# -- Paint from Labels: bad slots named, RGB beside RGBA accepted ------------------------------------
labels = np.zeros((32, 32, 3), np.float32)
labels[:, :16] = (1.0, 0.0, 0.0)
labels[:, 16:] = (0.0, 0.0, 1.0)
label_path = write_image(work / "labels.png", labels, kind="data", bit_depth=8)
tex = bpy.context.scene.mlvfx_texture
tex.label_image = bpy.data.images.load(str(label_path))
tex.label_image.colorspace_settings.name = "Non-Color"
rgb = bpy.data.images.load(str(photo_path))
rgba_path = write_image(work / "leaf.png", np.dstack([0.5 * rng.random((40, 40, 3)), np.ones((40, 40))]))
rgba = bpy.data.images.load(str(rgba_path))
red = tex.exemplars.add()
red.color = (1.0, 0.0, 0.0)
blue = tex.exemplars.add()  # a new slot is red too, and has no image yet
observed["empty_slot"] = error_of(bpy.ops.mlvfx.paint_texture)
assert "exemplar slot 1 (#ff0000) has no image" in observed["empty_slot"], observed["empty_slot"]
red.image, blue.image = rgb, rgba
observed["same_colour"] = error_of(bpy.ops.mlvfx.paint_texture)
assert "exemplar slots 1 and 2 both use label colour #ff0000" in observed["same_colour"]
tex.exemplars[1].color = (0.0, 0.0, 1.0)
assert bpy.ops.mlvfx.paint_texture() == {"FINISHED"}
painted = bpy.data.images["labels_painted"]
observed["painted_channels"] = painted.channels
assert painted.channels == 4

# -- Make Seamless with Equalize Lighting: a photo lit from one side comes out evenly lit -----------
ramp = np.linspace(0.3, 1.0, 64, dtype=np.float32)[None, :, None]
lit_path = write_image(work / "lit.png", (0.3 + 0.4 * rng.random((64, 64, 3), np.float32)) * ramp)
photo.image = bpy.data.images.load(str(lit_path))
tex.equalize = True
assert bpy.ops.mlvfx.make_seamless(material="Rock", node="Photo") == {"FINISHED"}
seamless = bpy.data.images["lit_seamless"]
px = np.array(seamless.pixels[:], np.float32).reshape(64, 64, 4)[..., :3]
observed["equalized_sides"] = [float(px[:, 16:24].mean()), float(px[:, 40:48].mean())]
left, right = observed["equalized_sides"]
assert 0.8 < left / right < 1.25, observed["equalized_sides"]  # 0.3 to 1.0 lit before
tex.equalize = False

# -- a smoke domain named like a path keeps its default cache inside the project ------------------
smoke_mod = importlib.import_module(MODULE + ".smoke")
sneaky = bpy.data.objects.new("../../../../escaped/x", None)
observed["sneaky_cache"] = smoke_mod._free_cache_path(sneaky)
assert observed["sneaky_cache"].startswith("//mlvfx_smoke/") and ".." not in observed["sneaky_cache"]

# -- a bug in the add-on: one line for the artist, the traceback in the console ----------------------
real = operators.MLVFX_OT_generate_material._compute


def broken(plan: object, progress: object, cancel: object) -> object:
    raise KeyError("albedo")


operators.MLVFX_OT_generate_material._compute = staticmethod(broken)
console = io.StringIO()
with contextlib.redirect_stderr(console):
    observed["internal_error"] = error_of(bpy.ops.mlvfx.generate_material, material="Rock", node="Photo")
operators.MLVFX_OT_generate_material._compute = staticmethod(real)  # type: ignore[method-assign]
assert "internal error: KeyError" in observed["internal_error"]
assert "Traceback" in console.getvalue() and "broken" in console.getvalue()

# -- a job nobody polls (its operator was cancelled by a file load) leaves the running set -----------
release = threading.Event()
job = jobs.Job("test", lambda progress, cancel: release.wait(5) and np.zeros(10**6)).start()
assert job in jobs._running
job.cancel()  # what Blender's cancel() does; then nothing polls it again
release.set()
job._thread.join(5)
observed["job_left_running"] = job in jobs._running
assert job not in jobs._running


# -- offline with the model nowhere: the panel says so before the click -------------------------------
resolve = importlib.import_module("mlvfx.zoo.resolve")
bpy.context.preferences.addons[MODULE].preferences.offline = True
panels._model_note.clear()
real_checkout = resolve.checkout_zoo_dir
resolve.checkout_zoo_dir = lambda: None  # run from a checkout, its model_zoo would be a mirror
startup_env = importlib.import_module(MODULE + ".preferences")._startup_env
studio_mirror = startup_env.pop("MLVFX_ZOO_MIRRORS", None)  # the tests' stand-in for a studio mirror
observed["offline_note"] = panels.learned_model_note(bpy.context)
resolve.checkout_zoo_dir = real_checkout
if studio_mirror is not None:
    startup_env["MLVFX_ZOO_MIRRORS"] = studio_mirror
assert "Offline, and the material" in str(observed["offline_note"]), observed["offline_note"]
panels._model_note.clear()
prefs = bpy.context.preferences.addons[MODULE].preferences
prefs.mirrors = str(Path(__file__).resolve().parents[2] / "model_zoo")  # a mirror that has it
assert panels.learned_model_note(bpy.context) is None
prefs.mirrors = ""
bpy.context.preferences.addons[MODULE].preferences.offline = False

# -- a show pins the learned material model in the preferences: the maps come from that version -----
prefs.material_model = "material@0.7.0"
settings.method = "learned"
before_runs = set((work / "textures" / "mlvfx").rglob("material.json"))
assert bpy.ops.mlvfx.generate_material(material="Rock", node="Photo") == {"FINISHED"}
(pinned_meta,) = set((work / "textures" / "mlvfx").rglob("material.json")) - before_runs
observed["pinned_model"] = json.loads(pinned_meta.read_text())["model"]
assert observed["pinned_model"] == "material@0.7.0", observed["pinned_model"]
# Download Models Now fetches the pinned version (an offline show needs that one, not the newest).
prefs.material_model = "material@0.5.0"
importlib.import_module(MODULE + ".preferences").apply_environment(bpy.context)
operators.MLVFX_OT_download_models._compute({}, None, None)
zoo = importlib.import_module("mlvfx.zoo")
pinned_file = zoo.load_manifest().get("material", "0.5.0").file(None, "safetensors")
observed["pinned_downloaded"] = resolve.cached_path(pinned_file) is not None
assert observed["pinned_downloaded"], "Download Models Now skipped the pinned material model"
# ... and the smoke models a show pinned (MLVFX_SMOKE_MODELS, which the bake reads through the core).
prefs.smoke_models = "smoke3d@0.2.0"
importlib.import_module(MODULE + ".preferences").apply_environment(bpy.context)
assert os.environ["MLVFX_SMOKE_MODELS"] == "smoke3d@0.2.0"
operators.MLVFX_OT_download_models._compute({}, None, None)
pinned_smoke = zoo.load_manifest().get("smoke3d", "0.2.0").file(None, "safetensors")
observed["pinned_smoke_downloaded"] = resolve.cached_path(pinned_smoke) is not None
assert observed["pinned_smoke_downloaded"], "Download Models Now skipped the pinned smoke model"
prefs.smoke_models = ""
importlib.import_module(MODULE + ".preferences").apply_environment(bpy.context)
assert "MLVFX_SMOKE_MODELS" not in os.environ
prefs.material_model = "smoke3d"  # not a material model: a one-line error, no traceback
assert "material@VERSION" in error_of(bpy.ops.mlvfx.generate_material, material="Rock", node="Photo")
prefs.material_model = ""
settings.method = "classical"


# -- unregistering mid-job (disabling the add-on) cancels the job and releases its timer, progress
# cursor and status text: Blender frees the modal operator without calling its cancel() ------------
class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def event_timer_add(self, step: float, window: object = None) -> str:
        return "timer"

    def modal_handler_add(self, op: object) -> None:
        pass

    def progress_begin(self, low: int, high: int) -> None:
        pass

    def event_timer_remove(self, timer: object) -> None:
        self.calls.append(f"remove {timer}")

    def progress_end(self) -> None:
        self.calls.append("progress end")

    def status_text_set(self, text: object) -> None:
        self.calls.append(f"status {text}")


class Endless(operators.BackgroundJobOperator):
    job_name = "endless"

    @staticmethod
    def _compute(plan: object, progress: object, cancel: object) -> object:
        while not cancel.cancelled:  # type: ignore[attr-defined]
            time.sleep(0.01)
        raise RuntimeError("cancelled")


wm = Recorder()
running = Endless()
running._start_modal(types.SimpleNamespace(window_manager=wm, window=None, workspace=wm), {})
assert running._job in jobs._running
# A preference in force when the add-on goes (a disable, or a reinstall to upgrade): the process
# gets the environment Blender started with back, so a reinstall does not take the preference's
# value for the studio's, and clearing the preference afterwards works (an audit, stop 26).
preferences_module = importlib.import_module(MODULE + ".preferences")
started_with = os.environ.get("MLVFX_CACHE_DIR")
prefs.cache_dir = str(work / "preference_cache")
preferences_module.apply_environment(bpy.context)
assert os.environ["MLVFX_CACHE_DIR"] == str(work / "preference_cache")
importlib.import_module(MODULE).unregister()
observed["released"] = wm.calls
assert wm.calls == ["remove timer", "progress end", "status None"], wm.calls
assert running._job not in jobs._running and not operators._ui_state
observed["cache_env_after_unregister"] = os.environ.get("MLVFX_CACHE_DIR")
assert observed["cache_env_after_unregister"] == started_with, observed

print("RESULT " + json.dumps(observed))
