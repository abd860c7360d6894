"""The hou layer of mlvfx_houdini against small test doubles of the hou and pdg objects it touches.

Houdini cannot be installed here, so ``hou`` is a fake module with just the classes and
functions the layer uses (Volume voxel arrays, Geometry, SopNode parms and inputs,
InterruptableOperation, NodeError). The doubles follow the documented behaviour: ``allVoxels``
is x fastest, ``indexToPos`` gives voxel centres, ``updateProgress`` raises
``OperationInterrupted`` when the user presses Esc.
"""

from __future__ import annotations

import itertools
import os
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hda" / "python3.11libs"))

from mlvfx.errors import InputError, MlvfxError

_ids = itertools.count(1000)


# --------------------------------------------------------------------------------------------
# hou doubles


class Error(Exception):
    pass


class NodeError(Error):
    pass


class OperationInterrupted(Error):
    pass


class InterruptableOperation:
    """Counts progress updates; raises OperationInterrupted once ``interrupt_at`` is reached."""

    log: ClassVar[list[tuple[str, float]]] = []
    interrupt_at: ClassVar[int | None] = None

    def __init__(self, operation_name, long_operation_name=None, open_interrupt_dialog=False, timeout_ms=0):
        self.name = operation_name
        self.updates = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def updateProgress(self, percentage=-1.0):
        InterruptableOperation.log.append((self.name, percentage))
        self.updates += 1
        if (
            InterruptableOperation.interrupt_at is not None
            and self.updates >= InterruptableOperation.interrupt_at
        ):
            raise OperationInterrupted("interrupted")


class Matrix3:
    def __init__(self, rows):
        self.rows = rows

    def at(self, r, c):
        return self.rows[r][c]


class BoundingBox:
    def __init__(self, xmin, ymin, zmin, xmax, ymax, zmax):
        self.minvec = (xmin, ymin, zmin)
        self.maxvec = (xmax, ymax, zmax)


class Prim:
    def __init__(self):
        self.attribs = {}

    def attribValue(self, name):
        return self.attribs.get(name, "")

    def setAttribValue(self, name, value):
        self.attribs[name] = value


class Volume(Prim):
    """A native Houdini volume: resolution (nx, ny, nz), box, x-fastest voxel storage."""

    def __init__(self, resolution, lo, hi, values=None, name="", sdf=False, rotated=False):
        super().__init__()
        self.res = tuple(int(n) for n in resolution)
        self.lo, self.hi = np.asarray(lo, float), np.asarray(hi, float)
        n = self.res[0] * self.res[1] * self.res[2]
        self.flat = np.zeros(n, np.float32) if values is None else np.asarray(values, np.float32).copy()
        self.sdf = sdf
        self.rotated = rotated
        if name:
            self.attribs["name"] = name

    @staticmethod
    def from_grid(grid, lo, hi, name, sdf=False):
        g = np.asarray(grid, np.float32)
        nz, ny, nx = g.shape
        flat = [g[z, y, x] for z in range(nz) for y in range(ny) for x in range(nx)]  # documented order
        return Volume((nx, ny, nz), lo, hi, flat, name, sdf)

    def resolution(self):
        return self.res

    def voxel(self, index):
        x, y, z = index
        return float(self.flat[(z * self.res[1] + y) * self.res[0] + x])

    def allVoxels(self):
        return tuple(float(v) for v in self.flat)

    def allVoxelsAsString(self):
        return self.flat.astype(np.float32).tobytes()

    def setAllVoxels(self, values):
        self.setAllVoxelsFromString(np.asarray(values, np.float32).tobytes())

    def setAllVoxelsFromString(self, values):
        a = np.frombuffer(values, np.float32)
        if a.size != self.flat.size:
            raise Error("wrong voxel count")
        self.flat = a.copy()

    def voxelSize(self):
        return tuple((self.hi - self.lo) / np.asarray(self.res))

    def indexToPos(self, index):
        return tuple(self.lo + (np.asarray(index) + 0.5) * (self.hi - self.lo) / np.asarray(self.res))

    def transform(self):
        half = (self.hi - self.lo) / 2
        rows = [[half[0], 0, 0], [0, half[1], 0], [0, 0, half[2]]]
        if self.rotated:
            rows[0][1] = 0.3
        return Matrix3(rows)

    def isSDF(self):
        return self.sdf

    def grid(self):
        return self.flat.reshape(self.res[2], self.res[1], self.res[0])


class VDB(Prim):
    """A VDB primitive: a sibling of hou.Volume, not a subclass."""

    def __init__(self, name=""):
        super().__init__()
        if name:
            self.attribs["name"] = name


class Point:
    def __init__(self, pos, pscale=None):
        self.pos = pos
        self.pscale = pscale


class Geometry:
    def __init__(self, prims=(), points=()):
        self._prims = list(prims)
        self._points = list(points)
        self.prim_attribs = {"name"} if any("name" in p.attribs for p in self._prims) else set()

    def prims(self):
        return tuple(self._prims)

    def points(self):
        return tuple(self._points)

    def findPrimAttrib(self, name):
        return name if name in self.prim_attribs else None

    def findPointAttrib(self, name):
        if name == "pscale" and self._points and all(p.pscale is not None for p in self._points):
            return name
        return None

    def pointFloatAttribValues(self, name):
        if name == "P":
            return tuple(c for p in self._points for c in p.pos)
        return tuple(p.pscale for p in self._points)

    def addAttrib(self, kind, name, default):
        assert kind == "prim"
        self.prim_attribs.add(name)

    def clear(self):
        self._prims, self._points, self.prim_attribs = [], [], set()

    def createVolume(self, xres, yres, zres, bounding_box=None):
        v = Volume((xres, yres, zres), bounding_box.minvec, bounding_box.maxvec)
        self._prims.append(v)
        return v

    def volume(self, name):
        return next(p for p in self._prims if isinstance(p, Volume) and p.attribs.get("name") == name)


class Node:
    pass


class OpNode(Node):
    pass


class SopNode(OpNode):
    """A Python SOP instance: parms, an output geometry, inputs (static or per frame)."""

    def __init__(self, parms, inputs=(), inputs_at=None):
        self.parms = dict(parms)
        self.read = set()
        self.out = Geometry()
        self.in_geos = list(inputs)
        self.inputs_at = inputs_at
        self.sid = next(_ids)
        self.cooked = 0
        self.user_data = {}

    def userData(self, name):
        return self.user_data.get(name)

    def setUserData(self, name, value):
        assert isinstance(value, str)  # Houdini's user data is strings only
        self.user_data[name] = value

    def evalParm(self, name):
        self.read.add(name)
        value = self.parms[name]
        return value

    def evalParmTuple(self, name):
        self.read.add(name)
        return tuple(self.parms[name])

    def geometry(self):
        return self.out

    def inputs(self):
        return tuple(object() if g is not None else None for g in self.in_geos)

    def inputGeometry(self, index):
        return self.in_geos[index]

    def inputGeometryAtFrame(self, frame, index):
        if self.inputs_at is not None:
            return self.inputs_at(frame, index)
        return self.in_geos[index]

    def sessionId(self):
        return self.sid

    def cook(self, force=False):
        self.cooked += 1

    def addWarning(self, message=None):
        self.warnings = [*getattr(self, "warnings", []), message]


class Cop2Node(OpNode):
    def __init__(self, parms):
        self.parms = dict(parms)
        self.written = None

    def evalParm(self, name):
        return self.parms[name]

    def setPixelsOfCookingPlaneFromString(
        self, values, component=None, interleaved=True, depth=None, flip_vertically=False
    ):
        assert depth == "float32", depth  # float32 bytes, whatever the plane's own depth
        self.written = (values, flip_vertically)


def make_fake_hou(frame=1, fps=24.0):
    hou = types.ModuleType("hou")
    for obj in (
        Error,
        NodeError,
        OperationInterrupted,
        InterruptableOperation,
        Matrix3,
        BoundingBox,
        Prim,
        Volume,
        VDB,
        Geometry,
        Node,
        OpNode,
        SopNode,
        Cop2Node,
    ):
        setattr(hou, obj.__name__, obj)
    hou.attribType = types.SimpleNamespace(Prim="prim", Point="point")
    hou.imageDepth = types.SimpleNamespace(Float32="float32", Int8="int8")
    hou.state = {"frame": frame}
    hou.fps = lambda: fps
    hou.intFrame = lambda: hou.state["frame"]
    hou.frame = lambda: float(hou.state["frame"])
    return hou


@pytest.fixture()
def hou(monkeypatch):
    fake = make_fake_hou()
    monkeypatch.setitem(sys.modules, "hou", fake)
    monkeypatch.delitem(sys.modules, "mlvfx_houdini.host", raising=False)
    InterruptableOperation.log = []
    InterruptableOperation.interrupt_at = None
    return fake


def smoke_parms(**over):
    parms = {
        "mode": 0,
        "model": "reference",
        "substeps": 1,
        "buoyancy": 1.0,
        "density_dissipation": 0.0,
        "velocity_dissipation": 0.0,
        "boundary": 1,  # closed
        "source_rate": 4.0,
        "source_vel": (0.0, 0.0, 0.0),
        "emit_radius": 0.2,
        "divisions": 8,
        "center": (0.5, 0.5, 0.5),
        "size": (1.0, 1.0, 1.0),
        "start_frame": 1,
        "end_frame": 240,
        "cache_dir": "",
    }
    parms.update(over)
    return parms


# --------------------------------------------------------------------------------------------
# smoke SOP


def test_solver_mode_emits_rises_and_writes_named_volumes(hou):
    from mlvfx_houdini import smoke

    emitter = Geometry(points=[Point((0.5, 0.25, 0.5))])
    node = SopNode(smoke_parms(), [None, emitter, None])
    smoke.cook(node)
    out = node.out
    names = [p.attribs["name"] for p in out.prims()]
    assert names == ["density", "vel.x", "vel.y", "vel.z"]
    d1 = out.volume("density")
    assert d1.resolution() == (8, 8, 8)
    assert tuple(d1.lo) == pytest.approx((0, 0, 0)) and tuple(d1.hi) == pytest.approx((1, 1, 1))
    g1 = d1.grid()
    assert g1.sum() > 0
    # Emission sits around the emitter point (x=0.5 -> index 4, y=0.25 -> index 2), in (Z, Y, X).
    assert g1[4, 2, 4] > 0 and g1[4, 7, 4] == 0
    # Feed the result back (what a SOP Solver does): more smoke, and buoyancy lifts it.
    node2 = SopNode(smoke_parms(), [out, emitter, None])
    node2.sid = node.sid
    smoke.cook(node2)
    g2 = node2.out.volume("density").grid()
    assert g2.sum() > g1.sum()
    assert node2.out.volume("vel.y").grid().max() > 0
    assert node.read <= set(smoke.PARM_NAMES)


def test_state_round_trips_through_the_layout(hou):
    """A lone hot voxel at x=1, y=2, z=3 with no motion stays exactly there."""
    from mlvfx_houdini import smoke

    grid = np.zeros((6, 5, 4), np.float32)  # (Z, Y, X) = 6 x 5 x 4 voxels of 0.25
    grid[3, 2, 1] = 1.0
    lo, hi = (0, 0, 0), (1.0, 1.25, 1.5)
    state = Geometry([Volume.from_grid(grid, lo, hi, "density")])
    node = SopNode(smoke_parms(buoyancy=0.0, source_rate=0.0), [state, None, None])
    smoke.cook(node)
    out = node.out.volume("density")
    assert out.resolution() == (4, 5, 6)
    assert tuple(out.lo) == pytest.approx(lo) and tuple(out.hi) == pytest.approx(hi)
    assert out.voxel((1, 2, 3)) == pytest.approx(1.0, abs=1e-5)
    assert out.grid().sum() == pytest.approx(1.0, abs=1e-4)
    for comp in ("vel.x", "vel.y", "vel.z"):
        assert np.abs(node.out.volume(comp).grid()).max() < 1e-6


def test_collision_sdf_keeps_smoke_out(hou):
    from mlvfx_houdini import smoke

    # An SDF that is solid (negative) in the upper half: y > 0.5.
    ys = (np.arange(8) + 0.5) / 8
    sdf = np.broadcast_to((0.5 - ys)[None, :, None], (8, 8, 8)).astype(np.float32)
    collision = Geometry([Volume.from_grid(sdf, (0, 0, 0), (1, 1, 1), "collision", sdf=True)])
    emitter = Geometry(points=[Point((0.5, 0.5, 0.5), pscale=0.45)])  # overlaps the solid
    node = SopNode(smoke_parms(), [None, emitter, collision])
    smoke.cook(node)
    g = node.out.volume("density").grid()
    assert g[:, :4, :].sum() > 0
    assert g[:, 4:, :].max() == 0.0


def test_a_thin_collider_under_a_learned_model_gets_a_warning(hou):
    # The learned models let smoke through walls under 3 coarse cells thick (stop 26's audit).
    from mlvfx_houdini import smoke

    ys = (np.arange(16) + 0.5) / 16
    slab = np.abs(ys - 0.7) - 0.05  # solid within 0.05 of y = 0.7: under 2 voxels of 1/16
    sdf = np.broadcast_to(slab[None, :, None], (16, 16, 16)).astype(np.float32)
    collision = Geometry([Volume.from_grid(sdf, (0, 0, 0), (1, 1, 1), "collision", sdf=True)])
    emitter = Geometry(points=[Point((0.5, 0.2, 0.5), pscale=0.15)])
    node = SopNode(smoke_parms(model="smoke3d", divisions=16, boundary=0), [None, emitter, collision])
    smoke.cook(node)
    assert any("thinner than 12 voxels" in w for w in getattr(node, "warnings", [])), node.__dict__.get(
        "warnings"
    )
    node.warnings = []
    smoke.cook(node)  # the same frame again, from the node's cache: still said
    assert any("thinner than 12 voxels" in w for w in node.warnings)
    node = SopNode(smoke_parms(divisions=16), [None, emitter, collision])  # the reference: no warning
    smoke.cook(node)
    assert not any("thinner" in w for w in getattr(node, "warnings", []))


def test_emitter_volume_named_source_is_used(hou):
    from mlvfx_houdini import smoke

    src = np.zeros((4, 4, 4), np.float32)
    src[0:2, 0:2, 0:2] = 1.0  # a corner block of a 4^3 grid over the same box
    emitter = Geometry([Volume.from_grid(src, (0, 0, 0), (1, 1, 1), "source")])
    node = SopNode(smoke_parms(buoyancy=0.0, source_rate=1.0), [None, emitter, None])
    smoke.cook(node)
    g = node.out.volume("density").grid()  # 8^3: the block covers indices 0..3
    assert g[0:4, 0:4, 0:4].mean() > 10 * max(g[4:, 4:, 4:].mean(), 1e-9)


def test_standalone_mode_caches_frames(hou):
    from mlvfx_houdini import smoke

    emitter = Geometry(points=[Point((0.5, 0.25, 0.5))])
    node = SopNode(smoke_parms(mode=1, start_frame=1), [None, emitter, None])
    hou.state["frame"] = 3
    smoke.cook(node)
    frame3 = node.out.volume("density").grid().copy()
    steps_first = len(InterruptableOperation.log)
    assert steps_first >= 3  # frames 1, 2, 3 simulated (plus the final 1.0 update)

    hou.state["frame"] = 2  # scrubbing back: cached, nothing simulated
    smoke.cook(node)
    assert len(InterruptableOperation.log) == steps_first
    frame2 = node.out.volume("density").grid().copy()
    assert frame2.sum() < frame3.sum()

    hou.state["frame"] = 3
    smoke.cook(node)
    assert np.array_equal(node.out.volume("density").grid(), frame3)

    node.parms["end_frame"] = 3  # after the end frame: the end frame shows, from the cache
    hou.state["frame"] = 9
    before = len(InterruptableOperation.log)
    smoke.cook(node)
    assert np.array_equal(node.out.volume("density").grid(), frame3)
    assert len(InterruptableOperation.log) == before
    node.parms["end_frame"] = 240

    hou.state["frame"] = 0  # before the start: the (empty) input state
    smoke.cook(node)
    assert node.out.volume("density").grid().max() == 0

    # Reset forgets the cache: frame 3 is simulated again, bit-identically (deterministic).
    smoke.reset({"node": node})
    assert node.cooked == 1
    hou.state["frame"] = 3
    before = len(InterruptableOperation.log)
    smoke.cook(node)
    assert len(InterruptableOperation.log) > before
    assert np.array_equal(node.out.volume("density").grid(), frame3)


def test_standalone_disk_cache_survives_a_new_session(hou, tmp_path):
    from mlvfx_houdini import smoke

    emitter = Geometry(points=[Point((0.5, 0.25, 0.5))])
    node = SopNode(smoke_parms(mode=1, cache_dir=str(tmp_path)), [None, emitter, None])
    hou.state["frame"] = 2
    smoke.cook(node)
    first = node.out.volume("density").grid().copy()
    assert len(list(tmp_path.glob("smoke.*.npz"))) == 2
    smoke.forget(str(node.sid))
    before = len(InterruptableOperation.log)
    smoke.cook(node)
    assert np.array_equal(node.out.volume("density").grid(), first)
    # Loaded from disk: the interruptible operation ran but no frame was simulated.
    assert [p for _, p in InterruptableOperation.log[before:]] == []


def test_a_node_keeps_its_last_settings_frames_and_deletes_older_ones(hou, tmp_path):
    # Every tweak wrote a complete new set of frames into Cache Folder and none was ever deleted
    # (an audit: 7.7 GB per tweak at 128³ x 240 frames). A node keeps its current set and the
    # KEEP_EARLIER before it (Undo reloads them), older ones go unless another node plays them,
    # however its Cache Folder is spelled (a review).
    from mlvfx_houdini import smoke

    emitter = Geometry(points=[Point((0.5, 0.25, 0.5))])
    node = SopNode(smoke_parms(mode=1, cache_dir=str(tmp_path)), [None, emitter, None])
    (tmp_path / "sub").mkdir()
    twin = SopNode(smoke_parms(mode=1, cache_dir=str(tmp_path / "sub" / "..")), [None, emitter, None])
    (tmp_path / "keep.txt").write_text("not ours")
    hou.state["frame"] = 2
    sets = []

    def cook_at(target, buoyancy):
        before = set(tmp_path.glob("smoke.*.npz"))
        target.parms["buoyancy"] = buoyancy
        smoke.cook(target)
        new = sorted(set(tmp_path.glob("smoke.*.npz")) - before)
        if new:
            sets.append(new)
        return new

    cook_at(node, 1.0)
    cook_at(twin, 1.0)  # the same settings in the same folder: the same files
    assert len(sets) == 1 and len(sets[0]) == 2
    for buoyancy in (2.0, 3.0):
        cook_at(node, buoyancy)
    assert all(p.exists() for s in sets for p in s)  # current + 2 earlier
    cook_at(node, 4.0)
    assert all(p.exists() for p in sets[0])  # dropped from the node's list, but the twin plays it
    cook_at(twin, 5.0)
    assert all(p.exists() for p in sets[0])  # now among the twin's earlier sets
    cook_at(node, 2.0)  # Undo to an earlier setting: reloaded from disk, nothing simulated
    assert len(sets) == 5 and all(p.exists() for p in sets[1])
    cook_at(node, 6.0)
    assert not any(p.exists() for p in sets[2])  # buoyancy 3: the oldest of the node's three
    assert (tmp_path / "keep.txt").exists()
    smoke.forget(str(node.sid), delete_files=True)  # Reset Cache: all of the node's sets
    assert not any(p.exists() for s in (sets[1], sets[3], sets[5]) for p in s)
    assert all(p.exists() for p in sets[0] + sets[4])  # the twin's
    smoke.forget(str(twin.sid))


def test_a_node_moved_to_another_cache_folder_writes_there_and_keeps_the_old_one(hou, tmp_path):
    # The folder is not in the signature: a new Cache Folder alone kept writing into the old one,
    # and later tweaks deleted the frames an artist had kept by moving to v002 (a review).
    from mlvfx_houdini import smoke

    v1, v2 = tmp_path / "v001", tmp_path / "v002"
    emitter = Geometry(points=[Point((0.5, 0.25, 0.5))])
    node = SopNode(smoke_parms(mode=1, cache_dir=str(v1)), [None, emitter, None])
    hou.state["frame"] = 2
    smoke.cook(node)
    kept = sorted(v1.glob("smoke.*.npz"))
    assert len(kept) == 2
    node.parms["cache_dir"] = str(v2)
    smoke.cook(node)
    assert len(list(v2.glob("smoke.*.npz"))) == 2
    for buoyancy in (2.0, 3.0, 4.0, 5.0):
        node.parms["buoyancy"] = buoyancy
        smoke.cook(node)
    assert all(p.exists() for p in kept)
    assert len(list(v2.glob("smoke.*.npz"))) == 2 * (1 + smoke.KEEP_EARLIER)  # v002's own are pruned
    smoke.forget(str(node.sid))


def test_standalone_memory_budget_is_shared_by_all_nodes(monkeypatch):
    # The budget was per node: N nodes held N x 2 GiB (an audit).
    from mlvfx.fluids.reference import SmokeConfig, Stepper
    from mlvfx_houdini import smoke
    from mlvfx_houdini.smoke import FrameInputs, SmokeSession

    mask = np.zeros((8, 8, 8), np.float32)
    mask[1:3, 3:5, 3:5] = 1.0
    frame_bytes = 8**3 * 4 * 4
    monkeypatch.setattr(smoke, "MEMORY_BUDGET", 4 * frame_bytes)
    monkeypatch.setattr(smoke, "_sessions", {})
    sessions = [SmokeSession(f"s{i}", Stepper(SmokeConfig(shape=(8, 8, 8))), 1, 2.0, ()) for i in range(2)]
    inputs = FrameInputs(mask, None)
    smoke._sessions["a"] = sessions[0]
    sessions[0].state_at(6, 1, None, lambda f: inputs)
    assert len(sessions[0].frames) == 4  # alone, a node has the whole budget
    smoke._sessions["b"] = sessions[1]
    sessions[1].state_at(6, 1, None, lambda f: inputs)  # trims the first node too, not only itself
    assert [len(s.frames) for s in sessions] == [2, 2]


def test_reset_keeps_disk_frames_from_coming_back(hou, tmp_path):
    # Upstream edits are not part of the cache's signature, so after Reset Cache the frames on
    # disk must not return: not in this session (deleted) and not in a later one (new signature).
    from mlvfx_houdini import smoke

    where = {"x": 0.5}

    def inputs_at(frame, index):
        return Geometry(points=[Point((where["x"], 0.25, 0.5))]) if index == 1 else None

    node = SopNode(smoke_parms(mode=1, cache_dir=str(tmp_path)), [None, None, None], inputs_at=inputs_at)
    node.in_geos = [None, Geometry(points=[Point((0.5, 0.25, 0.5))]), None]
    hou.state["frame"] = 3
    smoke.cook(node)
    at_a = node.out.volume("density").grid().copy()
    old_files = sorted(tmp_path.glob("smoke.*.npz"))
    assert len(old_files) == 3
    (tmp_path / "keep.txt").write_text("not ours")
    where["x"] = 0.3  # the user moves the emitter upstream, then presses Reset
    smoke.reset({"node": node})
    assert node.userData(smoke.RESET_KEY) == "1"
    assert not any(p.exists() for p in old_files) and (tmp_path / "keep.txt").exists()
    smoke.cook(node)
    at_b = node.out.volume("density").grid()
    assert not np.array_equal(at_a, at_b)
    # A later Houdini session (no session in memory) with the old files put back still ignores them.
    new_files = sorted(tmp_path.glob("smoke.*.npz"))
    assert len(new_files) == 3 and set(new_files).isdisjoint(old_files)
    smoke.forget(str(node.sid))
    for path in new_files:
        path.unlink()
    smoke.cook(node)
    assert np.array_equal(node.out.volume("density").grid(), at_b)


def test_escape_is_noticed_at_every_substep(hou):
    from mlvfx_houdini import smoke

    emitter = Geometry(points=[Point((0.5, 0.25, 0.5))])
    node = SopNode(smoke_parms(mode=1, substeps=4), [None, emitter, None])
    hou.state["frame"] = 2
    before = len(InterruptableOperation.log)
    smoke.cook(node)
    # Two frames of four substeps: the operation hears of every substep, not once per frame.
    assert len(InterruptableOperation.log) - before >= 8


def test_escape_cancels_the_cook_with_a_node_error(hou):
    from mlvfx_houdini import smoke

    InterruptableOperation.interrupt_at = 1
    emitter = Geometry(points=[Point((0.5, 0.25, 0.5))])
    node = SopNode(smoke_parms(mode=1), [None, emitter, None])
    hou.state["frame"] = 20
    with pytest.raises(NodeError, match="cancelled by the user"):
        smoke.cook(node)
    # It stopped at the first check point instead of simulating 20 frames.
    assert len(InterruptableOperation.log) == 1


def test_bad_inputs_become_one_line_node_errors(hou):
    from mlvfx_houdini import smoke

    lopsided = Geometry([Volume((8, 8, 8), (0, 0, 0), (1, 2, 1), name="density")])
    with pytest.raises(NodeError, match="voxels must be cubes") as err:
        smoke.cook(SopNode(smoke_parms(), [lopsided, None, None]))
    assert "\n" not in str(err.value)

    rotated = Geometry([Volume((8, 8, 8), (0, 0, 0), (1, 1, 1), name="density", rotated=True)])
    with pytest.raises(NodeError, match="rotated"):
        smoke.cook(SopNode(smoke_parms(), [rotated, None, None]))

    with pytest.raises(NodeError, match=r"substeps must be in 1\.\.64"):
        smoke.cook(SopNode(smoke_parms(substeps=0), [None, None, None]))

    with pytest.raises(NodeError, match="no model 'nope'"):
        smoke.cook(SopNode(smoke_parms(model="nope"), [None, None, None]))

    with pytest.raises(NodeError, match="must run as a SOP"):
        smoke.cook(Node())

    # A typo in Divisions is refused before any grid is allocated, in both modes.
    emitter = Geometry(points=[Point((0.5, 0.25, 0.5))])
    for mode in (0, 1):
        with pytest.raises(NodeError, match="more than the limit"):
            smoke.cook(SopNode(smoke_parms(mode=mode, divisions=100000), [None, emitter, None]))


def test_two_dimensional_domain(hou):
    from mlvfx_houdini import smoke

    emitter = Geometry(points=[Point((0.5, 0.2, 0.0))])
    node = SopNode(smoke_parms(size=(1.0, 1.0, 0.0), divisions=16), [None, emitter, None])
    smoke.cook(node)
    d = node.out.volume("density")
    assert d.resolution() == (16, 16, 1)
    assert d.grid().sum() > 0
    assert np.abs(node.out.volume("vel.z").grid()).max() == 0


def test_parms_accept_tokens_and_indices_and_validate():
    from mlvfx_houdini.smoke import SmokeParms

    p = smoke_parms(mode="standalone", boundary=2)
    parms = SmokeParms.read(p.__getitem__, p.__getitem__)
    assert parms.mode == "standalone" and parms.boundary == "open"
    bad = smoke_parms(boundary=7)
    with pytest.raises(InputError, match="boundary: menu index 7"):
        SmokeParms.read(bad.__getitem__, bad.__getitem__)
    with pytest.raises(InputError, match="density_dissipation"):
        SmokeParms(density_dissipation=-1.0)


def test_domain_from_parms_makes_cubic_voxels():
    from mlvfx_houdini.smoke import SmokeParms, domain_from_parms, smoke_config

    d = domain_from_parms((0, 1, 0), (2.0, 1.0, 0.5), 20)
    assert d.resolution == (20, 10, 5)
    config = smoke_config(SmokeParms(boundary="open"), d, 24.0)
    assert config.boundary == "open" and config.open_inflow == "clean"  # smoke-free air enters
    assert d.cell_size == pytest.approx(0.1)
    assert d.bounds.centre == pytest.approx((0, 1, 0))
    with pytest.raises(InputError, match="divisions"):
        domain_from_parms((0, 0, 0), (1, 1, 1), 2)


def test_a_learned_model_off_its_training_step_is_warned_about():
    from mlvfx_houdini.smoke import SmokeParms, domain_from_parms, dt_note

    d = domain_from_parms((0, 1, 0), (1.0, 1.0, 1.0), 16)
    assert dt_note(SmokeParms(model="auto"), d, 24.0) is None  # 1/24 s, as trained
    assert dt_note(SmokeParms(model="reference", substeps=4), d, 24.0) is None
    note = dt_note(SmokeParms(model="auto", substeps=2), d, 24.0)
    assert note is not None and "1/48 s" in note
    big = domain_from_parms((0, 1, 0), (1.0, 1.0, 1.0), 128)
    assert dt_note(SmokeParms(model="auto"), big, 24.0) is None  # auto picks the model for the size
    note = dt_note(SmokeParms(model="smoke3d"), big, 24.0)
    assert note is not None and "smoke3d_128 (trained for 128³" in note


def test_model_menu_lists_reference_first():
    from mlvfx_houdini.smoke import model_menu

    menu = model_menu()
    assert menu[0] == "reference" and len(menu) % 2 == 0


def test_zoo_smoke_model_runs_through_make_stepper(monkeypatch, tmp_path):
    import hashlib
    import json

    from safetensors.torch import save_file

    from mlvfx.errors import InputError, ModelNotFound
    from mlvfx.fluids.reference import SmokeConfig, Source, mask_from_sdf, sphere_sdf
    from mlvfx.fluids.surrogate import CorrectionNet, SurrogateStepper, surrogate_state
    from mlvfx.zoo import manifest as zoo_manifest
    from mlvfx_houdini.smoke import domain_from_parms, make_stepper, model_menu

    weights = tmp_path / "smoke-tiny.safetensors"
    save_file(surrogate_state(CorrectionNet(2, width=4, depth=2, conditions=2), 4), str(weights))
    data = weights.read_bytes()
    manifest = {
        "schema_version": 1,
        "models": [
            {
                "id": "smoke-tiny",
                "version": "1.0",
                "task": "smoke.surrogate2d",
                "format": ["safetensors"],
                "license": "Apache-2.0",
                "files": [
                    {
                        "name": "smoke-tiny.safetensors",
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "size": len(data),
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
                "card": "cards/smoke-tiny.md",
                "recipe": "recipes/smoke-tiny.json",
            }
        ],
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    monkeypatch.setenv("MLVFX_ZOO_MANIFEST", str(path))
    monkeypatch.setenv("MLVFX_CACHE_DIR", str(tmp_path / "cache"))
    zoo_manifest._memo.clear()
    menu = model_menu()
    assert menu[2] == "auto" and menu[3].startswith("Learned, by grid size")
    assert menu[4:6] == ["smoke-tiny", "smoke-tiny 1.0 (zoo)"]
    stepper = make_stepper("smoke-tiny", SmokeConfig(shape=(16, 16)))
    assert isinstance(stepper, SurrogateStepper)
    src = Source(mask_from_sdf(sphere_sdf((16, 16), (0.5, 0.2), 0.15), 1 / 16), rate=2.0)
    density, velocity = stepper.step(None, None, [src])
    assert density.shape == (16, 16) and velocity.shape == (16, 16, 2) and float(density.sum()) > 0
    # A grid the surrogate cannot coarsen is refused in one line; the SOP's own domains are rounded.
    with pytest.raises(InputError, match="divisible"):
        make_stepper("smoke-tiny", SmokeConfig(shape=(18, 16)))
    domain = domain_from_parms((0, 0, 0), (1.0, 1.3, 0.7), 30, multiple=4)
    assert all(n % 4 == 0 and n >= 16 for n in domain.resolution)
    assert domain_from_parms((0, 0, 0), (1.0, 1.3, 0.7), 30).resolution == (30, 39, 21)
    with pytest.raises(ModelNotFound, match="nope"):
        make_stepper("nope", SmokeConfig(shape=(16, 16)))
    # "auto" picks the zoo's model for the grid (mlvfx.fluids.surrogate.default_model): smoke2d in
    # 2D, which this zoo lacks, so the error names it; a zoo with a smoke3d serves 3D grids.
    with pytest.raises(ModelNotFound, match="smoke2d"):
        make_stepper("auto", SmokeConfig(shape=(16, 16)))
    weights3 = tmp_path / "smoke3d-t.safetensors"
    save_file(surrogate_state(CorrectionNet(3, width=4, depth=2, conditions=2), 4), str(weights3))
    blob = weights3.read_bytes()
    entry3 = json.loads(json.dumps(manifest["models"][0])) | {"id": "smoke3d", "task": "smoke.surrogate3d"}
    entry3["files"] = [
        {
            "name": weights3.name,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "size": len(blob),
            "urls": [weights3.as_uri()],
        }
    ]
    manifest["models"].append(entry3)
    path.write_text(json.dumps(manifest))
    zoo_manifest._memo.clear()
    stepper3 = make_stepper("auto", SmokeConfig(shape=(16, 16, 16)))
    assert isinstance(stepper3, SurrogateStepper) and stepper3.net.dims == 3
    # A session's signature names the model that actually runs, with its version.
    from mlvfx_houdini.smoke import model_identity

    assert model_identity("auto", SmokeConfig(shape=(16, 16, 16))) == "smoke3d 1.0"
    assert model_identity("reference", SmokeConfig(shape=(16, 16, 16))) == "reference"
    assert model_identity("nope", SmokeConfig(shape=(16, 16))) == "nope"  # make_stepper reports it
    # A newer smoke3d in the zoo: a show's pin (MLVFX_SMOKE_MODELS) keeps the version it baked
    # with, in the signature and the menu; without a pin the newest runs.
    manifest["models"].append(entry3 | {"version": "2.0"})
    path.write_text(json.dumps(manifest))
    zoo_manifest._memo.clear()
    assert model_identity("auto", SmokeConfig(shape=(16, 16, 16))) == "smoke3d 2.0"
    monkeypatch.setenv("MLVFX_SMOKE_MODELS", "smoke3d@1.0")
    assert model_identity("auto", SmokeConfig(shape=(16, 16, 16))) == "smoke3d 1.0"
    assert "smoke3d 1.0 (zoo)" in model_menu()


# --------------------------------------------------------------------------------------------
# host glue


def test_node_errors_translate_only_mlvfx_errors(hou):
    from mlvfx_houdini.host import node_errors

    with pytest.raises(NodeError, match=r"x\.png: broken"):
        with node_errors():
            raise MlvfxError("broken", path="x.png")
    with pytest.raises(ZeroDivisionError):
        with node_errors():
            raise ZeroDivisionError()


def test_interruptible_maps_escape_to_the_cancel_token(hou):
    from mlvfx_houdini.host import interruptible

    InterruptableOperation.interrupt_at = 2
    with interruptible("job") as (progress, cancel):
        progress(0.25, "a")
        assert not cancel.cancelled
        progress(0.5, "b")  # Esc pressed here
        assert cancel.cancelled
        progress(0.75, "c")  # no more calls into Houdini once cancelled
    assert [p for _, p in InterruptableOperation.log] == [0.25, 0.5]


# --------------------------------------------------------------------------------------------
# TOPs (pdg doubles)


class Port:
    def __init__(self, value):
        self.value = value

    def evaluateString(self, *args):
        return str(self.value)


class PdgNode:
    """The inner Python Processor: every spare parm is a string (a backtick expression)."""

    def __init__(self, parms):
        self.parms = parms
        self.read = set()

    def __getitem__(self, name):
        self.read.add(name)
        return Port(self.parms[name])


class File:
    def __init__(self, path, tag):
        self.path, self.tag = path, tag


class WorkItem:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.attribs = {}
        self.command = None
        self.expected = []
        self.outputs = []
        self.outputFiles = []

    def setStringAttrib(self, name, value):
        self.attribs[name] = value

    def stringAttribValue(self, name):
        return self.attribs.get(name)

    def setCommand(self, command):
        self.command = command

    def addExpectedOutputFile(self, path, tag):
        self.expected.append((path, tag))

    def addOutputFile(self, path, tag):
        self.outputs.append((path, tag))


class Holder:
    def __init__(self):
        self.items = []

    def addWorkItem(self, **kwargs):
        item = WorkItem(**kwargs)
        self.items.append(item)
        return item


@pytest.fixture()
def pdg(monkeypatch):
    fake = types.ModuleType("pdg")
    fake.workItemCookType = types.SimpleNamespace(
        InProcess="inprocess", Generate="generate", OutOfProcess="outofprocess"
    )
    monkeypatch.setitem(sys.modules, "pdg", fake)
    return fake


def material_parms(**over):
    parms = {
        "source": "1",
        "files": "",
        "tag": "file/image",
        "outdir": "",
        "overwrite": "0",
        "inprocess": "0",
        "maps": "normal,height",
        "method": "classical",
        "quality": "standard",
        "tileable": "0",
        "normal_convention": "opengl",
        "relief": "0.01",
    }
    parms.update(over)
    return parms


def write_photo(path, size=24, seed=0):
    from mlvfx.io import write_image

    rng = np.random.default_rng(seed)
    write_image(path, rng.random((size, size, 3)).astype(np.float32), kind="color", bit_depth=8)


def test_material_generate_makes_farm_commands(pdg, tmp_path):
    from mlvfx_houdini import tops

    photos = tmp_path / "my photos"
    photos.mkdir()
    for name in ("b.png", "a.png", "notes.txt"):
        (photos / name).write_bytes(b"x")
    node = PdgNode(material_parms(files=str(photos), outdir=str(tmp_path / "out dir")))
    holder = Holder()
    tops.generate(node, holder, [], "material")
    assert len(holder.items) == 2
    first = holder.items[0]
    assert first.attribs["mlvfx_input"].endswith("a.png")
    assert first.attribs["mlvfx_output"] == str(tmp_path / "out dir" / "a")
    # Out of process: a scheduler runs the command (a "Generate" item would be marked cooked unrun).
    assert first.kwargs == {"cookType": "outofprocess"}
    cmd = first.command
    assert cmd.startswith("__PDG_PYTHON__ -m mlvfx.entry material --quiet ")
    assert f'"{photos / "a.png"}"' in cmd  # a path with a space is quoted
    assert "--maps normal,height --method classical" in cmd
    assert first.expected == [(str(tmp_path / "out dir" / "a"), "file/directory")]
    assert node.read <= set(tops.MATERIAL_PARMS)


def test_material_generate_from_upstream_files_filters_by_tag(pdg, tmp_path):
    from mlvfx_houdini import tops

    up = WorkItem()
    up.outputFiles = [
        File("/x/rock.png", "file/image"),
        File("/x/rock.json", "file/json"),
        File("/x/rock.exr", "file/image/exr"),
        File("/y/Rock.jpg", "file/image"),
    ]
    node = PdgNode(material_parms(source="0", outdir=str(tmp_path)))
    holder = Holder()
    tops.generate(node, holder, [up], "material")
    assert [i.attribs["mlvfx_input"] for i in holder.items] == ["/x/rock.png", "/x/rock.exr", "/y/Rock.jpg"]
    # Same stem twice, or differing only in case (one folder on Windows and macOS): distinct folders.
    assert [Path(i.attribs["mlvfx_output"]).name for i in holder.items] == ["rock", "rock_2", "Rock_3"]
    assert all(i.kwargs["parent"] is up for i in holder.items)
    with pytest.raises(InputError, match="connect a node"):
        tops.generate(node, Holder(), [], "material")


def test_material_in_process_cook_writes_maps_and_reports_outputs(pdg, tmp_path):
    from mlvfx_houdini import tops

    photo = tmp_path / "stone.png"
    write_photo(photo)
    node = PdgNode(material_parms(files=str(photo), outdir=str(tmp_path / "out"), inprocess="1"))
    holder = Holder()
    tops.generate(node, holder, [], "material")
    (item,) = holder.items
    assert item.command is None and item.kwargs == {"cookType": "inprocess"}
    tops.cook_task(node, item)
    names = sorted(Path(p).name for p, _ in item.outputs)
    assert names == ["height.exr", "height16.png", "material.json", "normal.png"]
    assert dict((Path(p).name, t) for p, t in item.outputs)["normal.png"] == "file/image"
    # A second cook without overwrite refuses to replace the files: a typed error, not a crash.
    with pytest.raises(MlvfxError, match="exists"):
        tops.cook_task(node, item)


def test_pdg_shows_mlvfx_errors_as_cook_errors(pdg, tmp_path):
    # Inside PDG an mlvfx error leaves as pdg.CookError: one line on the node, not a traceback.
    from mlvfx_houdini import tops

    class CookError(Exception):
        pass

    pdg.CookError = CookError
    node = PdgNode(material_parms(source="0"))
    with pytest.raises(CookError, match=r"^connect a node that outputs images") as info:
        tops.generate(node, Holder(), [], "material")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    photo = tmp_path / "stone.png"
    write_photo(photo)
    node = PdgNode(material_parms(files=str(photo), outdir=str(tmp_path / "out"), inprocess="1"))
    holder = Holder()
    tops.generate(node, holder, [], "material")
    tops.cook_task(node, holder.items[0])
    with pytest.raises(CookError, match="exists"):
        tops.cook_task(node, holder.items[0])


def test_generate_uses_expected_outputs_of_uncooked_upstream_items(pdg, tmp_path):
    # A ROP or an mlvfx TOP upstream has only expected outputs when this node generates statically.
    from mlvfx_houdini import tops

    rendered = WorkItem()
    rendered.outputFiles = []
    rendered.expectedOutputFiles = [File("/renders/plate.0001.exr", "file/image/exr")]
    node = PdgNode(material_parms(source="0", outdir=str(tmp_path)))
    holder = Holder()
    tops.generate(node, holder, [rendered], "material")
    assert [i.attribs["mlvfx_input"] for i in holder.items] == ["/renders/plate.0001.exr"]
    assert holder.items[0].kwargs["parent"] is rendered  # so PDG cooks it after the render
    # Upstream items without any image output: said on the node, not zero work items in silence.
    text_only = WorkItem()
    text_only.outputFiles = [File("/x/notes.json", "file/json")]
    with pytest.raises(
        InputError, match=r"1 upstream work item\(s\) have no image output files tagged 'file/image'"
    ):
        tops.generate(node, Holder(), [text_only], "material")
    custom_empty = PdgNode(material_parms(source="1", files=""))
    with pytest.raises(InputError, match="Files is empty"):
        tops.generate(custom_empty, Holder(), [], "material")


def test_a_missing_core_is_one_line_on_the_node(monkeypatch):
    # The usual install mistake: the package file's venv has no mlvfx (or no torch).
    from mlvfx_houdini import _core

    monkeypatch.setenv("MLVFX_VENV", "/opt/mlvfx/venv")
    monkeypatch.setitem(sys.modules, "mlvfx", None)  # import mlvfx -> ImportError
    fake_hou = types.ModuleType("hou")
    fake_hou.NodeError = NodeError
    monkeypatch.setitem(sys.modules, "hou", fake_hou)
    with pytest.raises(NodeError, match=r"^mlvfx is not importable .*MLVFX_VENV is /opt/mlvfx/venv") as info:
        _core.require_core("hou")
    assert info.value.__suppress_context__
    fake_pdg = types.ModuleType("pdg")

    class CookError(Exception):
        pass

    fake_pdg.CookError = CookError
    monkeypatch.setitem(sys.modules, "pdg", fake_pdg)
    with pytest.raises(CookError, match="mlvfx is not importable"):
        _core.require_core("pdg")
    monkeypatch.setitem(sys.modules, "pdg", None)  # outside Houdini: a plain ImportError, same words
    with pytest.raises(ImportError, match="mlvfx is not importable"):
        _core.require_core("pdg")
    monkeypatch.delitem(sys.modules, "mlvfx")
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real_find_spec(n, *a)
    )
    with pytest.raises(NodeError, match="No module named 'torch'"):
        _core.require_core("hou")


def test_a_vdb_input_is_named_not_ignored(hou):
    from mlvfx_houdini import smoke

    emitter = Geometry([VDB("source")])
    node = SopNode(smoke_parms(), [None, emitter, None])
    with pytest.raises(NodeError, match=r"^'source' is a VDB; convert it to a Houdini volume first"):
        smoke.cook(node)


def test_deleting_the_node_frees_its_frames(hou):
    from mlvfx_houdini import smoke

    emitter = Geometry(points=[Point((0.5, 0.25, 0.5))])
    node = SopNode(smoke_parms(mode=1), [None, emitter, None])
    hou.state["frame"] = 3
    smoke.cook(node)
    assert str(node.sid) in smoke._sessions
    from mlvfx_houdini import events

    events.smoke_deleted({"node": node})  # what the asset's OnDeleted section calls
    assert str(node.sid) not in smoke._sessions
    smoke.on_deleted({"node": node})  # twice (undo, redo) is harmless


def test_deleting_a_node_needs_no_core(monkeypatch):
    # A Houdini without the mlvfx venv: deleting the SOP (or File > New) must not raise.
    from mlvfx_houdini import events

    monkeypatch.delitem(sys.modules, "mlvfx_houdini.smoke", raising=False)
    monkeypatch.setitem(sys.modules, "mlvfx", None)
    events.smoke_deleted({"node": object()})
    assert "mlvfx_houdini.smoke" not in sys.modules


def test_material_jobs_validate_parameters(tmp_path):
    from mlvfx_houdini.tops import material_jobs

    with pytest.raises(InputError, match="unknown map"):
        material_jobs(["a.png"], str(tmp_path), maps="normal,shiny")
    with pytest.raises(InputError, match="output folder"):
        material_jobs(["a.png"], "")
    with pytest.raises(InputError, match="quality"):
        material_jobs(["a.png"], "/o", quality="best")
    (high,) = material_jobs(["a.png"], "/o", quality="high")
    assert high.args[high.args.index("--quality") + 1] == "high"
    (job,) = material_jobs(["a.png"], "/o", maps="height,normal", tileable=True, overwrite=True)
    assert job.args == (
        "material",
        "a.png",
        "-o",
        "/o/a",
        "--maps",
        "normal,height",
        "--method",
        "learned",
        "--quality",
        "standard",
        "--normal-convention",
        "opengl",
        "--relief",
        "0.01",
        "--tileable",
        "--overwrite",
    )


def test_texture_jobs_for_each_operation():
    from mlvfx_houdini.tops import command_line, texture_jobs

    grow = texture_jobs(["/e/moss.png"], "/o", operation="grow", size=(512, 256), seed=7, count=3)
    assert [j.output for j in grow] == ["/o/moss_grow_7", "/o/moss_grow_8", "/o/moss_grow_9"]
    assert grow[1].args == (
        "texture",
        "grow",
        "/e/moss.png",
        "--size",
        "512x256",
        "--seed",
        "8",
        "-o",
        "/o/moss_grow_8",
    )
    assert command_line(grow[0]).startswith("__PDG_PYTHON__ -m mlvfx.entry texture grow --quiet /e/moss.png")
    (tile,) = texture_jobs(["/e/moss.png"], "/o", operation="tile")
    assert tile.output == "/o/moss_tile.png" and not tile.output_is_dir
    (paint,) = texture_jobs(
        ["/l/labels.png"], "/o", operation="paint", exemplars="#ff0000=rock.png\n #00ff00 = grass.png ;"
    )
    assert paint.args[3:7] == ("--exemplar", "#ff0000=rock.png", "--exemplar", "#00ff00=grass.png")
    assert paint.output == "/o/labels_paint.png" and not paint.output_is_dir
    # Material folders paint every map into a folder (an image name was refused by the CLI).
    (folders,) = texture_jobs(
        ["/l/labels.png"], "/o", operation="paint", exemplars="#ff0000=rock/;#00ff00=grass/"
    )
    assert folders.output == "/o/labels_paint" and folders.output_is_dir
    import json

    from mlvfx_houdini.tops import job_from_attribs

    rebuilt = job_from_attribs({"mlvfx_args": json.dumps(folders.args), "mlvfx_output": folders.output})
    assert rebuilt.output_is_dir  # an in-process cook reports the folder's files
    image_job = job_from_attribs({"mlvfx_args": json.dumps(paint.args), "mlvfx_output": paint.output})
    assert not image_job.output_is_dir
    with pytest.raises(InputError, match="all images or all material folders"):
        texture_jobs(["/l/labels.png"], "/o", operation="paint", exemplars="#ff0000=rock/;#00ff00=g.png")
    with pytest.raises(InputError, match="LABEL=PATH"):
        texture_jobs(["/l/x.png"], "/o", operation="paint", exemplars="rock.png")
    with pytest.raises(InputError, match="at least one exemplar"):
        texture_jobs(["/l/x.png"], "/o", operation="paint")
    with pytest.raises(InputError, match="operation"):
        texture_jobs(["/l/x.png"], "/o", operation="blur")


def test_texture_generate_reads_only_declared_parms(pdg, tmp_path):
    from mlvfx_houdini import tops

    ex = tmp_path / "ex.png"
    ex.write_bytes(b"x")
    parms = {
        "source": "1",
        "files": str(ex),
        "tag": "",
        "outdir": str(tmp_path),
        "overwrite": "0",
        "inprocess": "0",
        "operation": "grow",
        "width": "64",
        "height": "32",
        "seed": "2",
        "count": "2",
        "exemplars": "",
        "equalize": "1",
    }
    node = PdgNode(parms)
    holder = Holder()
    tops.generate(node, holder, [], "texture")
    assert len(holder.items) == 2
    assert "--size 64x32 --seed 3" in holder.items[1].command
    assert "--equalize" not in holder.items[1].command  # Make Seamless only
    assert node.read <= set(tops.TEXTURE_PARMS)
    node = PdgNode({**parms, "operation": "tile"})
    holder = Holder()
    tops.generate(node, holder, [], "texture")
    assert "texture tile --quiet " in holder.items[0].command and " --equalize -o " in holder.items[0].command


def test_command_line_quoting_is_safe():
    from mlvfx_houdini.tops import Job, command_line

    job = Job(("material", "C:\\My Photos\\", "-o", "/o"), "", "", True)
    assert command_line(job, "py") == 'py -m mlvfx.entry material --quiet "C:\\My Photos\\\\" -o /o'
    for bad in ('a"b', "a$HOME", "a`x`", "a\nb"):
        with pytest.raises(InputError, match="farm command"):
            command_line(Job(("material", bad), "", "", True))


def test_texture_job_failure_is_an_mlvfx_error(tmp_path):
    from mlvfx_houdini.tops import run_job

    with pytest.raises(MlvfxError, match="exit code"):
        run_job(("texture", "tile", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png")))


def test_job_from_attribs_requires_a_job():
    import json

    from mlvfx_houdini.tops import job_from_attribs

    with pytest.raises(InputError, match="no mlvfx job"):
        job_from_attribs({})
    job = job_from_attribs({"mlvfx_args": json.dumps(["texture", "grow", "a b.png"]), "mlvfx_output": "/o"})
    assert job.args == ("texture", "grow", "a b.png") and job.output_is_dir
    with pytest.raises(InputError, match="made by an earlier mlvfx: regenerate"):  # the old format
        job_from_attribs({"mlvfx_args": "texture\x1fgrow", "mlvfx_output": "/o"})
    with pytest.raises(InputError, match="damaged"):
        job_from_attribs({"mlvfx_args": '{"not": "a list"}', "mlvfx_output": "/o"})


def test_a_file_name_cannot_add_flags_to_an_in_process_job(pdg, tmp_path):
    # Arguments were joined with the unit separator, which a POSIX file name may hold: a plate named
    # "p.png<US>--overwrite<US>-ovictim.png" cooked in process with --overwrite and another output.
    from mlvfx_houdini import tops

    name = "p.png\x1f--overwrite\x1f-ovictim.png"
    node = PdgNode(material_parms(files=str(tmp_path / name), outdir=str(tmp_path / "out"), inprocess="1"))
    (tmp_path / name).write_bytes(b"x")
    holder = Holder()
    tops.generate(node, holder, [], "material")
    job = tops.job_from_attribs(holder.items[0].attribs)
    assert str(tmp_path / name) in job.args and "--overwrite" not in job.args
    (tile,) = tops.texture_jobs(["-o.png"], "/o", operation="tile")
    assert tile.args[2] == os.path.join(".", "-o.png")  # an input, not the -o option


# --------------------------------------------------------------------------------------------
# COP2


def test_map_to_rgb_encodings():
    from mlvfx_houdini.cop import map_to_rgb

    maps = {
        "normal": np.array([[[0.0, 0.0, 1.0]]], np.float32),
        "height": np.array([[0.25]], np.float32),
        "albedo": np.array([[[0.1, 0.2, 0.3, 1.0]]], np.float32),
    }
    assert map_to_rgb(maps, "normal")[0, 0].tolist() == [0.5, 0.5, 1.0]
    assert map_to_rgb(maps, "height")[0, 0].tolist() == [0.25, 0.25, 0.25]
    assert map_to_rgb(maps, "albedo").shape == (1, 1, 3)
    with pytest.raises(InputError, match="not computed"):
        map_to_rgb(maps, "ao")


def test_cop_cook_writes_the_chosen_map_flipped_for_cop2(hou, tmp_path):
    from mlvfx_houdini import cop

    photo = tmp_path / "p.png"
    write_photo(photo, size=16)
    node = Cop2Node({"image": str(photo), "map": 1, "tileable": 0, "normal_convention": 0, "relief": 0.01})
    assert cop.resolution(node) == (16, 16)
    assert cop.output_planes_to_cook(node) == ("C",)
    cop.cook(node, "C", (16, 16))
    data, flip = node.written
    assert flip is True
    pixels = np.frombuffer(data, np.float32).reshape(16, 16, 3)
    request, _ = cop._request(node)
    assert cop.compute(request).method == "classical"  # as its help says: live, no model needed
    height = cop.compute(request).maps["height"]
    assert np.allclose(pixels[..., 0], height)  # rows in core order; Houdini flips on write
    # A proxy resolution (the viewer at half size) gets the map resampled, not an error.
    cop.cook(node, "C", (8, 4))
    proxy = np.frombuffer(node.written[0], np.float32).reshape(4, 8, 3)
    assert np.allclose(proxy[..., 0].mean(), height.mean(), atol=1e-5)
    node.parms["image"] = str(tmp_path / "missing.png")
    with pytest.raises(NodeError, match="cannot read"):
        cop.cook(node, "C", (16, 16))


def test_cop_memo_is_capped_in_bytes(hou, tmp_path, monkeypatch):
    # Capped at four photos whatever their size: four Relief settings of an 8K photo held about
    # 9 GB for the rest of the session (an audit). The newest always stays.
    from mlvfx_houdini import cop

    photo = tmp_path / "p.png"
    write_photo(photo, size=16)
    monkeypatch.setattr(cop, "_cache", type(cop._cache)())
    node = Cop2Node({"image": str(photo), "map": 1, "tileable": 0, "normal_convention": 0, "relief": 0.01})
    requests = []
    for relief in (0.01, 0.02, 0.03):
        node.parms["relief"] = relief
        requests.append(cop._request(node)[0])
        cop.compute(requests[-1])
    one = cop._result_bytes(cop._cache[requests[-1]])
    assert list(cop._cache) == requests  # small maps: all three fit
    monkeypatch.setattr(cop, "CACHE_BYTES", 2 * one)
    node.parms["relief"] = 0.04
    requests.append(cop._request(node)[0])
    cop.compute(requests[-1])
    assert list(cop._cache) == requests[-2:]
    monkeypatch.setattr(cop, "CACHE_BYTES", one // 2)  # one photo over the cap still stays
    node.parms["relief"] = 0.05
    requests.append(cop._request(node)[0])
    cop.compute(requests[-1])
    assert list(cop._cache) == requests[-1:]


def test_cop_shows_progress_and_escape_stops_it(hou, tmp_path):
    # A large photo must not freeze Houdini: the maps run under an interruptible operation.
    from mlvfx_houdini import cop

    photo = tmp_path / "big.png"
    write_photo(photo, size=40, seed=3)
    node = Cop2Node({"image": str(photo), "map": 0, "tileable": 0, "normal_convention": 0, "relief": 0.01})
    InterruptableOperation.interrupt_at = 1
    with pytest.raises(NodeError, match="cancelled by the user"):
        cop.resolution(node)
    names = {name for name, _ in InterruptableOperation.log}
    assert names == {"mlvfx material maps"}
    InterruptableOperation.interrupt_at = None
    assert cop.resolution(node) == (40, 40)  # nothing half-done was memoised


def test_escape_in_solver_mode_stops_before_the_next_substep(hou):
    from mlvfx_houdini import smoke

    InterruptableOperation.interrupt_at = 2
    node = SopNode(smoke_parms(substeps=8), [None, Geometry(points=[Point((0.5, 0.25, 0.5))]), None])
    with pytest.raises(NodeError, match="cancelled by the user"):
        smoke.cook(node)
    assert [p for _, p in InterruptableOperation.log] == [0.0, 0.125]


def test_standalone_reads_the_initial_state_at_the_start_frame(hou):
    from mlvfx_houdini import smoke

    calls = []
    grid = np.zeros((8, 8, 8), np.float32)
    grid[2, 2, 2] = 1.0
    state = Geometry([Volume.from_grid(grid, (0, 0, 0), (1, 1, 1), "density")])

    def at_frame(frame, index):
        calls.append((frame, index))
        return state if index == 0 else Geometry()

    node = SopNode(
        smoke_parms(mode=1, start_frame=5, buoyancy=0.0), [state, Geometry(), Geometry()], inputs_at=at_frame
    )
    hou.state["frame"] = 6
    smoke.cook(node)
    assert (5, 0) in calls and (6, 0) not in calls  # state at the start frame only
    assert {(5, 1), (6, 1), (5, 2), (6, 2)} <= set(calls)  # emitter and collision per frame
    assert node.out.volume("density").grid().sum() == pytest.approx(1.0, abs=1e-3)


def test_farm_command_runs_the_real_cli(tmp_path):
    """What a scheduler runs: the generated command, with __PDG_PYTHON__ replaced, writes the maps."""
    import shlex
    import subprocess

    from mlvfx_houdini.tops import command_line, material_jobs

    photo = tmp_path / "a photo.png"
    write_photo(photo, size=16)
    (job,) = material_jobs([str(photo)], str(tmp_path / "out"), maps="normal,roughness")
    argv = shlex.split(command_line(job, "PYTHON"))
    argv[0] = sys.executable
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "out" / "a photo").iterdir())
    assert written == ["material.json", "normal.png", "roughness.png"]


def test_standalone_memory_budget_keeps_the_newest_frame():
    from mlvfx.fluids.reference import SmokeConfig, Stepper
    from mlvfx_houdini.smoke import FrameInputs, SmokeSession

    mask = np.zeros((8, 8, 8), np.float32)
    mask[1:3, 3:5, 3:5] = 1.0
    frame_bytes = 8**3 * 4 * 4  # density + 3 velocity components, float32
    session = SmokeSession("sig", Stepper(SmokeConfig(shape=(8, 8, 8))), 1, 2.0, (), budget=2 * frame_bytes)
    inputs = FrameInputs(mask, None)
    last = session.state_at(6, 1, None, lambda f: inputs)
    assert sorted(session.frames) == [5, 6]  # only two frames fit; the newest is among them
    # Scrubbing back to a dropped frame simulates again from the start, deterministically.
    fresh = SmokeSession("sig", Stepper(SmokeConfig(shape=(8, 8, 8))), 1, 2.0, ())
    want = fresh.state_at(3, 1, None, lambda f: inputs)
    again = session.state_at(3, 1, None, lambda f: inputs)
    assert np.array_equal(again[0], want[0]) and np.array_equal(again[1], want[1])
    assert last is not None and last[0].sum() > want[0].sum()
    assert 3 in session.frames and 6 in session.frames  # just simulated, and the newest
    session.state_at(4, 1, None, lambda f: pytest.fail("frame 4 must come from frame 3") if f < 4 else inputs)
