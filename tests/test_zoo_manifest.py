"""The zoo manifest: the shipped files, the schema, and the strict loader."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from test_zoo_support import blob, file_entry, model_entry

from mlvfx.errors import ManifestError, ModelNotFound
from mlvfx.zoo import load_manifest, parse_manifest
from mlvfx.zoo import manifest as zm

REPO = Path(__file__).resolve().parents[1]
NAME = "w.safetensors"


def good_doc() -> dict[str, Any]:
    data = blob(100)
    return {
        "$schema": "./manifest.schema.json",
        "schema_version": 1,
        "models": [model_entry("m", [file_entry(NAME, data, ["https://example.com/zoo/" + NAME])])],
    }


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    zm._memo.clear()
    return path


def rejects(tmp_path: Path, doc: object, field: str) -> str:
    path = write(tmp_path, doc)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")  # names the manifest file...
    assert field in message  # ...and the field
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ the shipped files


def test_repo_manifest_is_valid_and_lists_no_invented_models() -> None:
    manifest = load_manifest(REPO / "model_zoo" / "manifest.json")
    for entry in manifest.models:  # every listed model must have its weights in the repo
        for f in entry.files:
            assert (REPO / "model_zoo" / "weights" / f.name).is_file(), f.name


def test_every_shipped_file_matches_its_manifest_hash_and_stays_under_20_mb() -> None:
    """Size and sha256 of every published file (safetensors and ONNX alike) are what the manifest
    says, so the offline mirror in this checkout serves exactly the published bytes."""
    from mlvfx.zoo.cache import sha256_file

    manifest = load_manifest(REPO / "model_zoo" / "manifest.json")
    files = [f for entry in manifest.models for f in entry.files]
    assert any(f.name.endswith(".onnx") for f in files)
    for f in files:
        path = REPO / "model_zoo" / "weights" / f.name
        assert path.stat().st_size == f.size, f.name
        assert f.size <= 20_000_000, f.name
        assert sha256_file(path) == f.sha256, f.name


def test_packaged_copies_match_the_checkout() -> None:
    for name in ("manifest.json", "manifest.schema.json"):
        shipped = (REPO / "core" / "mlvfx" / "zoo" / name).read_bytes()
        assert shipped == (REPO / "model_zoo" / name).read_bytes(), f"core/mlvfx/zoo/{name} is stale"


def test_default_manifest_is_the_checkout_one_unless_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLVFX_ZOO_MANIFEST", raising=False)
    assert zm.default_manifest_path() == REPO / "model_zoo" / "manifest.json"
    path = write(tmp_path, good_doc())
    monkeypatch.setenv("MLVFX_ZOO_MANIFEST", str(path))
    assert load_manifest().ids() == ["m"]


def test_schema_and_loader_agree_on_fields() -> None:
    schema = json.loads((REPO / "model_zoo" / "manifest.schema.json").read_text(encoding="utf-8"))
    defs = schema["$defs"]
    pairs = [
        (schema, zm.TOP_FIELDS),
        (defs["model"], zm.MODEL_FIELDS),
        (defs["file"], zm.FILE_FIELDS),
        (defs["io"], zm.IO_FIELDS),
        (defs["tensor"], zm.TENSOR_FIELDS),
    ]
    for node, fields in pairs:
        assert node["additionalProperties"] is False
        assert set(node["properties"]) == set(fields)
        assert set(node["required"]) == {k for k, required in fields.items() if required}
    assert defs["model"]["properties"]["format"]["items"]["enum"] == list(zm.FORMATS)
    assert defs["tensor"]["properties"]["color_space"]["enum"] == list(zm.COLOR_SPACES)


def test_round_trip(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, good_doc()))
    entry = manifest.get("m")
    assert entry.files[0].format == "safetensors"
    assert entry.io.inputs[0].color_space == "srgb" and entry.io.tile == 256 and entry.io.overlap == 16
    assert entry.metrics == {"angular_error_deg": 7.5}
    again = parse_manifest(json.loads(json.dumps(zm.manifest_to_json(manifest))))
    assert again.models == manifest.models


# ------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("top", "extra"),
        ("model", "models[0].extra"),
        ("file", "models[0].files[0].extra"),
        ("io", "models[0].io.extra"),
        ("tensor", "models[0].io.inputs[0].extra"),
    ],
)
def test_unknown_fields_are_rejected(tmp_path: Path, where: str, field: str) -> None:
    doc = good_doc()
    model = doc["models"][0]
    target = {
        "top": doc,
        "model": model,
        "file": model["files"][0],
        "io": model["io"],
        "tensor": model["io"]["inputs"][0],
    }[where]
    target["extra"] = 1
    assert "unknown field" in rejects(tmp_path, doc, field)


@pytest.mark.parametrize(
    "name",
    [
        "../w.safetensors",
        "a/w.safetensors",
        "a\\w.safetensors",
        "w..safetensors",
        "/etc/w.safetensors",
        ".w.safetensors",
        "w.pt",
        "w.pkl",
        "",
    ],
)
def test_unsafe_file_names_are_rejected(tmp_path: Path, name: str) -> None:
    doc = good_doc()
    doc["models"][0]["files"][0]["name"] = name
    rejects(tmp_path, doc, "models[0].files[0].name")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/w.safetensors",
        "http://example.com/w.safetensors",
        "http://10.0.0.1/w.safetensors",
        "http://127.0.0.1.example.com/w.safetensors",
        "javascript:alert(1)",
        "data:application/octet-stream;base64,AAAA",
        "https:///w.safetensors",
        "file://fileserver/share/w.safetensors",
        "https://example.com/w safetensors",
        "w.safetensors",
    ],
)
def test_bad_url_schemes_are_rejected(tmp_path: Path, url: str) -> None:
    doc = good_doc()
    doc["models"][0]["files"][0]["urls"] = ["https://example.com/ok.safetensors", url]
    rejects(tmp_path, doc, "models[0].files[0].urls[1]")


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/zoo/w.safetensors",
        "http://127.0.0.1:8765/w.safetensors",
        "http://127.8.9.10/w.safetensors",
        "http://[::1]:8765/w.safetensors",
        "http://localhost/w.safetensors",
        "file:///srv/zoo/w.safetensors",
    ],
)
def test_allowed_urls(url: str) -> None:
    assert zm.check_url(url) is None


@pytest.mark.parametrize("field", ["card", "recipe"])
@pytest.mark.parametrize("value", ["../secrets.md", "/etc/passwd", "cards/../../x.md", "C:/x.md", "a\\b.md"])
def test_card_and_recipe_paths_stay_inside(tmp_path: Path, field: str, value: str) -> None:
    doc = good_doc()
    doc["models"][0][field] = value
    rejects(tmp_path, doc, f"models[0].{field}")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["models"][0]["files"][0].update(sha256="AB" * 32), "files[0].sha256"),
        (lambda d: d["models"][0]["files"][0].update(sha256="ab" * 31), "files[0].sha256"),
        (lambda d: d["models"][0]["files"][0].update(size=-1), "files[0].size"),
        (lambda d: d["models"][0]["files"][0].update(size=True), "files[0].size"),
        (lambda d: d["models"][0]["files"][0].update(size="100"), "files[0].size"),
        (lambda d: d["models"][0].update(format=["onnx"]), "models[0].format"),
        (lambda d: d["models"][0].update(format=["pickle"]), "models[0].format[0]"),
        (lambda d: d["models"][0].update(version="v1"), "models[0].version"),
        (lambda d: d["models"][0].update(id="Bad/Id"), "models[0].id"),
        (lambda d: d["models"][0].pop("license"), "models[0].license"),
        (lambda d: d["models"][0].update(metrics={"psnr": "high"}), "models[0].metrics.psnr"),
        (lambda d: d["models"][0]["io"]["inputs"][0].update(color_space="aces"), "color_space"),
        (lambda d: d["models"][0]["io"].update(overlap=200), "models[0].io.overlap"),
        (lambda d: d["models"][0]["files"][0].update(urls=["https://a/x", "https://a/x"]), "files[0].urls"),
        (lambda d: d["models"].append(copy.deepcopy(d["models"][0])), "models[1]"),
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.pop("models"), "models"),
    ],
)
def test_invalid_values_are_rejected(tmp_path: Path, mutate: Any, field: str) -> None:
    doc = good_doc()
    mutate(doc)
    rejects(tmp_path, doc, field)


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(ManifestError, match="not valid JSON") as info:
        load_manifest(path)
    assert str(path) in str(info.value)
    with pytest.raises(ManifestError, match="cannot read") as info:
        load_manifest(tmp_path / "absent.json")
    assert str(tmp_path / "absent.json") in str(info.value)


def test_versions_sort_numerically_and_lookup_errors_list_choices(tmp_path: Path) -> None:
    doc = good_doc()
    base = doc["models"][0]
    doc["models"] = []
    for version in ("1.9", "1.10", "1.2"):
        entry = copy.deepcopy(base)
        entry["version"] = version
        doc["models"].append(entry)
    manifest = load_manifest(write(tmp_path, doc))
    assert manifest.get("m").version == "1.10"
    assert manifest.versions("m") == ["1.2", "1.9", "1.10"]
    assert manifest.get("m", "1.2").version == "1.2"
    with pytest.raises(ModelNotFound, match=r"versions: 1\.2, 1\.9, 1\.10"):
        manifest.get("m", "3.0")
    with pytest.raises(ModelNotFound, match="known models: m"):
        manifest.get("other")
    with pytest.raises(ModelNotFound, match="has no onnx file"):
        manifest.get("m").file(fmt="onnx")


def test_memo_sees_edits(tmp_path: Path) -> None:
    path = write(tmp_path, good_doc())
    assert load_manifest(path) is load_manifest(path)
    doc = good_doc()
    doc["models"][0]["id"] = "renamed-model"
    path.write_text(json.dumps(doc), encoding="utf-8")
    import os

    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_manifest(path).ids() == ["renamed-model"]


def test_installed_wheel_reads_the_packaged_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a checkout next to the package, the copy shipped as package data is used."""
    from mlvfx.zoo import resolve

    monkeypatch.delenv("MLVFX_ZOO_MANIFEST", raising=False)
    monkeypatch.delenv("MLVFX_ZOO_MIRRORS", raising=False)
    monkeypatch.setattr(zm, "checkout_zoo_dir", lambda: None)
    monkeypatch.setattr(resolve, "checkout_zoo_dir", lambda: None)
    assert zm.default_manifest_path() == REPO / "core" / "mlvfx" / "zoo" / "manifest.json"
    assert load_manifest().path == zm.package_manifest_path()
    assert resolve.mirror_dirs() == []


def test_json_too_deep_or_too_long_for_python_is_one_line(tmp_path: Path) -> None:
    # RecursionError and the 4300-digit integer limit came out as internal errors (a fuzz audit).
    from mlvfx.errors import InputError, ManifestError
    from mlvfx.train.smoke import load_smoke_recipe
    from mlvfx.zoo.manifest import load_manifest

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    big = tmp_path / "big.json"
    big.write_text('{"schema_version": ' + "9" * 5000 + "}")
    with pytest.raises(ManifestError, match=r"deep\.json: not valid JSON \(nested too deeply\)"):
        load_manifest(deep)
    with pytest.raises(ManifestError, match=r"big\.json: not valid JSON \(Exceeds the limit"):
        load_manifest(big)
    with pytest.raises(InputError, match=r"deep\.json: unreadable recipe: JSON nested too deeply"):
        load_smoke_recipe(deep)
