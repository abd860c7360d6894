"""The model-zoo manifest: what models exist, where their files live, and how to check them.

The manifest is a JSON file (``model_zoo/manifest.json`` in a source checkout, a copy of it shipped
as package data in the wheel) described by ``manifest.schema.json``. The loader here is a small,
strict, hand-written validator that mirrors that schema, so the core needs no ``jsonschema``:

* unknown fields are rejected at every level, so a typo never silently drops a setting;
* file names are plain names (no path separator, no ``..``, no leading dot), because they become
  file names inside mirror folders;
* URLs must be ``https``, ``file``, or ``http`` to a loopback address (a local mirror);
* ``sha256`` is 64 lowercase hex digits and ``size`` a byte count, both checked after every download.

Every problem raises :class:`~mlvfx.errors.ManifestError` naming the manifest file and the field,
e.g. ``model_zoo/manifest.json: models[0].files[0].name: '../x' contains a path separator or '..'``.

The manifest location is, in order: the ``path`` argument, ``MLVFX_ZOO_MANIFEST``, the
``model_zoo/manifest.json`` of a source checkout next to the package, then the packaged copy.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlvfx.errors import ManifestError, ModelNotFound
from mlvfx.fsutil import read_regular

SCHEMA_VERSION = 1
FORMATS = ("safetensors", "onnx")
COLOR_SPACES = ("srgb", "linear", "data")
MANIFEST_ENV = "MLVFX_ZOO_MANIFEST"

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_VERSION_RE = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$")
_TASK_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REL_PATH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,299}$")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}

# Field sets, kept equal to manifest.schema.json by tests/test_zoo_manifest.py.
TOP_FIELDS = {"$schema": False, "schema_version": True, "models": True}
MODEL_FIELDS = {
    "id": True,
    "version": True,
    "task": True,
    "format": True,
    "license": True,
    "description": False,
    "files": True,
    "io": True,
    "metrics": True,
    "card": True,
    "recipe": True,
}
FILE_FIELDS = {"name": True, "sha256": True, "size": True, "urls": True}
IO_FIELDS = {"inputs": True, "outputs": True, "tile": True, "overlap": False, "scale": True}
TENSOR_FIELDS = {"name": True, "channels": True, "color_space": True}


@dataclass(frozen=True)
class ZooFile:
    """One file of a model: a plain file name, its sha256 and size, and where to download it."""

    name: str
    sha256: str
    size: int
    urls: tuple[str, ...]

    @property
    def format(self) -> str:
        """``"safetensors"`` or ``"onnx"``, from the file name's extension."""
        return self.name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class TensorSpec:
    """An input or output of a model.

    Attributes:
        name: what the tensor holds, e.g. ``"photo"`` or ``"normal"``.
        channels: the C of an ``(H, W, C)`` image at the API edge.
        color_space: ``"srgb"`` (sRGB-encoded colour), ``"linear"`` (linear colour) or ``"data"``
            (never colour-converted: normals, height, roughness...).
    """

    name: str
    channels: int
    color_space: str


@dataclass(frozen=True)
class IOSpec:
    """How to run a model: its inputs and outputs, tile size (0 = whole image), overlap and scale."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tile: int
    overlap: int
    scale: int


@dataclass(frozen=True)
class ModelEntry:
    """One version of one model in the zoo."""

    id: str
    version: str
    task: str
    formats: tuple[str, ...]
    license: str
    description: str
    files: tuple[ZooFile, ...]
    io: IOSpec
    metrics: Mapping[str, float]
    card: str
    recipe: str

    @property
    def size(self) -> int:
        """Total size of the model's files in bytes."""
        return sum(f.size for f in self.files)

    def file(self, name: str | None = None, fmt: str | None = None) -> ZooFile:
        """The file called ``name``, else the first file of format ``fmt``, else the first file.

        Raises:
            ModelNotFound: no such file in this model.
        """
        for f in self.files:
            if (name is None or f.name == name) and (fmt is None or f.format == fmt):
                return f
        wanted = f"file {name!r}" if name is not None else f"{fmt} file"
        have = ", ".join(f.name for f in self.files)
        raise ModelNotFound(f"model {self.id} {self.version} has no {wanted} (files: {have})")


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: the models, and the file it came from (``None`` if built in memory)."""

    path: Path | None
    models: tuple[ModelEntry, ...]

    def ids(self) -> list[str]:
        """Model ids, sorted, each once."""
        return sorted({m.id for m in self.models})

    def versions(self, model_id: str) -> list[str]:
        """Versions of ``model_id``, oldest first."""
        return sorted((m.version for m in self.models if m.id == model_id), key=version_key)

    def get(self, model_id: str, version: str | None = None) -> ModelEntry:
        """The entry for ``model_id`` at ``version`` (default: the newest version).

        Raises:
            ModelNotFound: the manifest has no such model or version; the message lists what it has.
        """
        candidates = [m for m in self.models if m.id == model_id]
        where = f" in {self.path}" if self.path is not None else ""
        if not candidates:
            known = ", ".join(self.ids()) or "none"
            raise ModelNotFound(f"no model {model_id!r}{where} (known models: {known})")
        if version is None:
            return max(candidates, key=lambda m: version_key(m.version))
        for m in candidates:
            if m.version == version:
                return m
        raise ModelNotFound(
            f"model {model_id!r} has no version {version!r}{where} "
            f"(versions: {', '.join(self.versions(model_id))})"
        )

    def hashes(self) -> set[str]:
        """The sha256 of every file the manifest names."""
        return {f.sha256 for m in self.models for f in m.files}


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of a dotted numeric version: ``"1.10"`` sorts after ``"1.9"``."""
    return tuple(int(part) for part in version.split("."))


def check_url(url: str) -> str | None:
    """Why ``url`` is not an allowed zoo URL, or ``None`` when it is.

    Allowed: ``https://host/...``, ``file:///path`` and ``http://`` to a loopback address
    (``127.0.0.0/8``, ``::1``, ``localhost``), which is how a local mirror is served.
    """
    if not isinstance(url, str) or not url:
        return "must be a non-empty string"
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        return f"{url!r} contains whitespace or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        return f"{url!r} is not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme == "https":
        return None if host else f"{url!r} has no host"
    if scheme == "file":
        if not parts.path or host not in (None, "", "localhost"):
            return f"{url!r} is not a local file URL"
        decoded = urllib.parse.unquote(parts.path).replace("\\", "/")
        if decoded.startswith("//"):  # file:////server/share (or %2F%2F): Windows would go to SMB
            return f"{url!r} names a network share; mount it and use its local path"
        return None
    if scheme == "http":
        if host is None:
            return f"{url!r} has no host"
        if host.lower() in _LOOPBACK_NAMES:
            return None
        try:
            if ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            pass
        return f"{url!r} uses plain http to a non-loopback host (use https)"
    return f"{url!r} has scheme {parts.scheme!r} (allowed: https, file, http to a loopback address)"


class _Validator:
    """Walks the parsed JSON, raising ManifestError(path=source) with a JSON-path-like field name."""

    def __init__(self, source: Path | str | None) -> None:
        self.source = source

    def fail(self, field: str, problem: str) -> ManifestError:
        return ManifestError(f"{field}: {problem}", path=self.source)

    def obj(self, value: object, field: str, allowed: Mapping[str, bool]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, f"must be an object, got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.fail(f"{field}.{key}" if field else key, "unknown field")
        for key, required in allowed.items():
            if required and key not in value:
                raise self.fail(f"{field}.{key}" if field else key, "missing required field")
        return value

    def string(self, value: object, field: str, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, "must be a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise self.fail(field, f"{value!r} does not match {pattern.pattern}")
        return value

    def integer(self, value: object, field: str, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, f"must be an integer, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise self.fail(field, f"must be {bound}, got {value}")
        return value

    def array(self, value: object, field: str, min_items: int = 0) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(field, f"must be an array, got {type(value).__name__}")
        if len(value) < min_items:
            raise self.fail(field, f"must have at least {min_items} item(s)")
        return value

    def file_name(self, value: object, field: str) -> str:
        if isinstance(value, str) and ("/" in value or "\\" in value or ".." in value):
            raise self.fail(field, f"{value!r} contains a path separator or '..'")
        name = self.string(value, field, _NAME_RE)
        if name.rsplit(".", 1)[-1] not in FORMATS:
            raise self.fail(field, f"{name!r} must end in .safetensors or .onnx")
        return name

    def rel_path(self, value: object, field: str) -> str:
        if isinstance(value, str) and (
            value.startswith(("/", "\\")) or "\\" in value or ":" in value or ".." in value.split("/")
        ):
            raise self.fail(field, f"{value!r} must be a relative path inside model_zoo/ without '..'")
        path = self.string(value, field, _REL_PATH_RE)
        if "//" in path or path.endswith("/"):
            raise self.fail(field, f"{path!r} is not a clean relative file path")
        return path

    def tensor(self, value: object, field: str) -> TensorSpec:
        d = self.obj(value, field, TENSOR_FIELDS)
        space = self.string(d["color_space"], f"{field}.color_space")
        if space not in COLOR_SPACES:
            raise self.fail(f"{field}.color_space", f"{space!r} is not one of {', '.join(COLOR_SPACES)}")
        return TensorSpec(
            name=self.string(d["name"], f"{field}.name", _ID_RE),
            channels=self.integer(d["channels"], f"{field}.channels", 1, 64),
            color_space=space,
        )

    def io(self, value: object, field: str) -> IOSpec:
        d = self.obj(value, field, IO_FIELDS)
        inputs = self.array(d["inputs"], f"{field}.inputs", 1)
        outputs = self.array(d["outputs"], f"{field}.outputs", 1)
        tile = self.integer(d["tile"], f"{field}.tile", 0, 1 << 16)
        overlap = self.integer(d.get("overlap", 0), f"{field}.overlap", 0, 1 << 15)
        if tile and overlap * 2 >= tile:
            raise self.fail(f"{field}.overlap", f"{overlap} must be less than half the tile size {tile}")
        return IOSpec(
            inputs=tuple(self.tensor(t, f"{field}.inputs[{i}]") for i, t in enumerate(inputs)),
            outputs=tuple(self.tensor(t, f"{field}.outputs[{i}]") for i, t in enumerate(outputs)),
            tile=tile,
            overlap=overlap,
            scale=self.integer(d["scale"], f"{field}.scale", 1, 64),
        )

    def zoo_file(self, value: object, field: str) -> ZooFile:
        d = self.obj(value, field, FILE_FIELDS)
        urls = self.array(d["urls"], f"{field}.urls")
        for i, url in enumerate(urls):
            problem = check_url(url)
            if problem is not None:
                raise self.fail(f"{field}.urls[{i}]", problem)
        if len(set(urls)) != len(urls):
            raise self.fail(f"{field}.urls", "lists a URL twice")
        return ZooFile(
            name=self.file_name(d["name"], f"{field}.name"),
            sha256=self.string(d["sha256"], f"{field}.sha256", _SHA256_RE),
            size=self.integer(d["size"], f"{field}.size", 0),
            urls=tuple(urls),
        )

    def metrics(self, value: object, field: str) -> dict[str, float]:
        if not isinstance(value, dict):
            raise self.fail(field, f"must be an object, got {type(value).__name__}")
        out: dict[str, float] = {}
        for key, number in value.items():
            self.string(key, f"{field}.{key}", _TASK_RE)
            if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
                raise self.fail(f"{field}.{key}", f"must be a finite number, got {number!r}")
            out[key] = float(number)
        return out

    def model(self, value: object, field: str) -> ModelEntry:
        d = self.obj(value, field, MODEL_FIELDS)
        formats = self.array(d["format"], f"{field}.format", 1)
        for i, fmt in enumerate(formats):
            if fmt not in FORMATS:
                raise self.fail(f"{field}.format[{i}]", f"{fmt!r} is not one of {', '.join(FORMATS)}")
        if len(set(formats)) != len(formats):
            raise self.fail(f"{field}.format", "lists a format twice")
        raw_files = self.array(d["files"], f"{field}.files", 1)
        files = tuple(self.zoo_file(f, f"{field}.files[{i}]") for i, f in enumerate(raw_files))
        names = [f.name for f in files]
        if len(set(names)) != len(names):
            raise self.fail(f"{field}.files", "names a file twice")
        if {f.format for f in files} != set(formats):
            raise self.fail(
                f"{field}.format",
                f"{sorted(formats)} does not match the files' formats {sorted({f.format for f in files})}",
            )
        description = d.get("description", "")
        if not isinstance(description, str):
            raise self.fail(f"{field}.description", "must be a string")
        return ModelEntry(
            id=self.string(d["id"], f"{field}.id", _ID_RE),
            version=self.string(d["version"], f"{field}.version", _VERSION_RE),
            task=self.string(d["task"], f"{field}.task", _TASK_RE),
            formats=tuple(formats),
            license=self.string(d["license"], f"{field}.license"),
            description=description,
            files=files,
            io=self.io(d["io"], f"{field}.io"),
            metrics=self.metrics(d["metrics"], f"{field}.metrics"),
            card=self.rel_path(d["card"], f"{field}.card"),
            recipe=self.rel_path(d["recipe"], f"{field}.recipe"),
        )

    def manifest(self, value: object) -> tuple[ModelEntry, ...]:
        d = self.obj(value, "", TOP_FIELDS)
        if "$schema" in d and not isinstance(d["$schema"], str):
            raise self.fail("$schema", "must be a string")
        version = self.integer(d["schema_version"], "schema_version", 1)
        if version != SCHEMA_VERSION:
            raise self.fail(
                "schema_version", f"{version} is not supported (this mlvfx reads {SCHEMA_VERSION})"
            )
        raw = self.array(d["models"], "models")
        models = tuple(self.model(m, f"models[{i}]") for i, m in enumerate(raw))
        seen: set[tuple[str, str]] = set()
        for i, m in enumerate(models):
            if (m.id, m.version) in seen:
                raise self.fail(f"models[{i}]", f"{m.id} {m.version} is listed twice")
            seen.add((m.id, m.version))
        return models


def parse_manifest(data: object, source: Path | str | None = None) -> Manifest:
    """Validate parsed manifest JSON and build a :class:`Manifest`.

    Args:
        data: the JSON document, as ``json.load`` returns it.
        source: the file it came from, named in error messages.

    Raises:
        ManifestError: a field is unknown, missing, of the wrong type, or unsafe.
    """
    models = _Validator(source).manifest(data)
    return Manifest(path=None if source is None else Path(source), models=models)


def package_manifest_path() -> Path:
    """The copy of the manifest shipped inside the package (identical to the checkout's)."""
    return Path(__file__).with_name("manifest.json")


def checkout_zoo_dir() -> Path | None:
    """The ``model_zoo/`` folder of the source checkout this package runs from, if any."""
    candidate = Path(__file__).resolve().parents[3] / "model_zoo"
    return candidate if (candidate / "manifest.json").is_file() else None


def default_manifest_path() -> Path:
    """Where the manifest is read from: ``MLVFX_ZOO_MANIFEST``, the checkout's, or the packaged copy."""
    override = os.environ.get(MANIFEST_ENV)
    if override:
        return Path(override).expanduser()
    checkout = checkout_zoo_dir()
    if checkout is not None:
        return checkout / "manifest.json"
    return package_manifest_path()


_memo_lock = threading.Lock()
_memo: dict[Path, tuple[tuple[int, int], Manifest]] = {}


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and validate a manifest; parsed manifests are memoised until the file changes.

    Args:
        path: the manifest file; default :func:`default_manifest_path`.

    Raises:
        ManifestError: the file is missing, is not JSON, or fails validation.
    """
    file = Path(path) if path is not None else default_manifest_path()
    try:
        st = file.stat()
    except OSError as exc:
        raise ManifestError(f"cannot read the zoo manifest ({exc.strerror or exc})", path=file) from None
    stamp = (st.st_mtime_ns, st.st_size)
    with _memo_lock:
        hit = _memo.get(file)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        text = read_regular(file).decode("utf-8")  # not a named pipe's endless wait (a fuzz audit)
        data = json.loads(text)
    except OSError as exc:
        raise ManifestError(f"cannot read the zoo manifest ({exc.strerror or exc})", path=file) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"not valid JSON ({exc})", path=file) from None
    except RecursionError:
        raise ManifestError("not valid JSON (nested too deeply)", path=file) from None
    except ValueError as exc:  # an integer of thousands of digits
        raise ManifestError(f"not valid JSON ({str(exc).splitlines()[0][:120]})", path=file) from None
    manifest = parse_manifest(data, source=file)
    with _memo_lock:
        _memo[file] = (stamp, manifest)
    return manifest


def resolve_manifest(manifest: Manifest | str | os.PathLike[str] | None) -> Manifest:
    """A :class:`Manifest` from a manifest, a path to one, or ``None`` (the default manifest)."""
    if isinstance(manifest, Manifest):
        return manifest
    return load_manifest(manifest)


def manifest_to_json(manifest: Manifest) -> dict[str, Any]:
    """The JSON form of a manifest (used by ``mlvfx zoo list --json`` and by tests)."""

    def tensor(t: TensorSpec) -> dict[str, Any]:
        return {"name": t.name, "channels": t.channels, "color_space": t.color_space}

    def model(m: ModelEntry) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": m.id,
            "version": m.version,
            "task": m.task,
            "format": list(m.formats),
            "license": m.license,
        }
        if m.description:
            out["description"] = m.description
        out["files"] = [
            {"name": f.name, "sha256": f.sha256, "size": f.size, "urls": list(f.urls)} for f in m.files
        ]
        out["io"] = {
            "inputs": [tensor(t) for t in m.io.inputs],
            "outputs": [tensor(t) for t in m.io.outputs],
            "tile": m.io.tile,
            "overlap": m.io.overlap,
            "scale": m.io.scale,
        }
        out["metrics"] = dict(m.metrics)
        out["card"] = m.card
        out["recipe"] = m.recipe
        return out

    models: Sequence[ModelEntry] = manifest.models
    return {
        "$schema": "./manifest.schema.json",
        "schema_version": SCHEMA_VERSION,
        "models": [model(m) for m in models],
    }
