"""``mlvfx zoo ...`` handlers, driven through a parser built the way the main CLI builds it."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import requests
import test_zoo_support as support
from test_zoo_support import ZooEnv, ZooServer, blob, file_entry, model_entry, sha, write_manifest

from mlvfx.errors import InputError
from mlvfx.zoo import cli as zoo_cli

zoo_env = support.zoo_env
zoo_server = support.zoo_server
NAME = "w.safetensors"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mlvfx")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("--json", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    zoo_cli.register(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def blobs(cache: Path) -> list[str]:
    folder = cache / "zoo" / "sha256"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def two_models(zoo_env: ZooEnv, zoo_server: ZooServer) -> tuple[bytes, bytes]:
    a, b = blob(20_000), blob(30_000, seed=1)
    write_manifest(
        zoo_env.manifest,
        [
            model_entry("alpha", [file_entry("a.safetensors", a, [zoo_server.add("a.safetensors", a)])]),
            model_entry(
                "beta", [file_entry("b.safetensors", b, [zoo_server.add("b.safetensors", b)])], "2.0"
            ),
        ],
    )
    return a, b


def test_list_shows_cached_state(
    zoo_env: ZooEnv, two_models: tuple[bytes, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--json", "zoo", "list"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(m["id"], m["version"], m["size"], m["cached"]) for m in doc["models"]] == [
        ("alpha", "1.0.0", 20_000, "no"),
        ("beta", "2.0", 30_000, "no"),
    ]
    assert doc["models"][0]["metrics"] == {"angular_error_deg": 7.5}
    assert run(["-q", "zoo", "pull", "alpha"]) == 0
    capsys.readouterr()
    assert run(["zoo", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["ID", "VERSION", "SIZE", "CACHED"]
    assert out[1].split()[:5] == ["alpha", "1.0.0", "20.0", "KB", "yes"]
    assert out[2].split()[:5] == ["beta", "2.0", "30.0", "KB", "no"]


def test_list_of_the_real_manifest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLVFX_ZOO_MANIFEST", raising=False)
    assert run(["--json", "zoo", "list"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["manifest"].endswith(os.path.join("model_zoo", "manifest.json"))


def test_pull_path_and_all(
    zoo_env: ZooEnv, two_models: tuple[bytes, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_models
    with pytest.raises(InputError, match="--all"):
        run(["zoo", "pull"])
    assert run(["--json", "zoo", "pull", "beta@2.0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pulled"] == [
        {"id": "beta", "version": "2.0", "paths": [str(zoo_env.cache / "zoo" / "sha256" / sha(b))]}
    ]
    assert run(["-q", "zoo", "pull", "--all"]) == 0
    assert blobs(zoo_env.cache) == sorted([sha(a), sha(b)])
    capsys.readouterr()
    assert run(["zoo", "path", "alpha"]) == 0
    assert Path(capsys.readouterr().out.strip()).read_bytes() == a


def test_pull_fills_the_studio_cache_with_what_the_user_cache_has(
    zoo_env: ZooEnv, two_models: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Filling a studio cache (MLVFX_CACHE_DIR) on a machine whose own cache had a model: pull said
    # "pulled" and pointed at the user's cache, and the studio cache lacked it.
    a, _ = two_models
    monkeypatch.setenv("MLVFX_CACHE_DIR", str(zoo_env.user_cache))  # the user's own cache first
    assert run(["-q", "zoo", "pull", "alpha"]) == 0
    monkeypatch.setenv("MLVFX_CACHE_DIR", str(zoo_env.cache))  # now the studio cache
    monkeypatch.setenv("MLVFX_OFFLINE", "1")  # no network needed for what the user cache holds
    assert run(["-q", "zoo", "pull", "alpha"]) == 0
    assert blobs(zoo_env.cache) == [sha(a)]
    # A full or locked studio cache: a warning, and the model is still usable from the user's.
    import mlvfx.zoo.download as download

    def full(*args: object, **kwargs: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(download, "copy_verified", full)
    monkeypatch.setenv("MLVFX_CACHE_DIR", str(zoo_env.tmp / "studio2"))
    assert run(["-q", "zoo", "pull", "alpha"]) == 0


def test_verify_rehashes_and_removes_corrupt_blobs(
    zoo_env: ZooEnv, two_models: tuple[bytes, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = two_models
    assert run(["-q", "zoo", "pull", "--all"]) == 0
    assert run(["zoo", "verify"]) == 0
    assert "2 blob(s) ok, 0 corrupt" in capsys.readouterr().out
    victim = zoo_env.cache / "zoo" / "sha256" / sha(a)
    st = victim.stat()
    with open(victim, "r+b") as f:  # silent bit rot: same size, same mtime
        f.write(b"\x00")
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run(["--json", "zoo", "verify"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["corrupt"] == 1 and doc["ok"] == 1
    bad = next(r for r in doc["blobs"] if not r["ok"])
    assert bad["path"] == str(victim) and bad["removed"] is True and bad["in_manifest"] is True
    assert not victim.exists()


def test_prune_removes_what_the_manifest_no_longer_names(
    zoo_env: ZooEnv,
    two_models: tuple[bytes, bytes],
    zoo_server: ZooServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = two_models
    assert run(["-q", "zoo", "pull", "--all"]) == 0
    leftover = zoo_env.cache / "zoo" / "tmp" / f"{sha(a)}.part"
    leftover.write_bytes(b"partial")
    active = zoo_env.cache / "zoo" / "tmp" / f"{sha(a)}.123-abc.part"  # another process's download
    active.write_bytes(b"in progress")
    abandoned = zoo_env.cache / "zoo" / "tmp" / f"{sha(a)}.456-def.part"
    abandoned.write_bytes(b"dead process")
    os.utime(abandoned, (1_000_000_000, 1_000_000_000))
    # A new manifest that drops beta.
    write_manifest(
        zoo_env.manifest,
        [model_entry("alpha", [file_entry("a.safetensors", a, [zoo_server.file_url("a.safetensors")])])],
    )
    assert run(["--json", "zoo", "prune", "--dry-run"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(doc["removed"]) == sorted(
        [str(zoo_env.cache / "zoo" / "sha256" / sha(b)), str(leftover), str(abandoned)]
    )
    assert blobs(zoo_env.cache) == sorted([sha(a), sha(b)])
    assert run(["-q", "zoo", "prune"]) == 0
    assert blobs(zoo_env.cache) == [sha(a)]
    assert not leftover.exists() and not abandoned.exists()
    assert active.exists()
    assert not (zoo_env.cache / "zoo" / "verified" / sha(b)).exists()


def test_hash_prints_manifest_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = blob(1234)
    f = tmp_path / "new-model.safetensors"
    f.write_bytes(data)
    assert run(["zoo", "hash", str(f), "--url-base", "https://example.com/zoo/v1/"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry == {
        "name": "new-model.safetensors",
        "sha256": sha(data),
        "size": 1234,
        "urls": ["https://example.com/zoo/v1/new-model.safetensors"],
    }
    with pytest.raises(InputError, match="--url-base"):
        run(["zoo", "hash", str(f), "--url-base", "http://example.com/"])


def test_check_compares_weights_with_the_manifest(
    zoo_env: ZooEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    data = blob(500)
    (zoo_env.tmp / "weights").mkdir()
    (zoo_env.tmp / "weights" / NAME).write_bytes(data)
    write_manifest(zoo_env.manifest, [model_entry("m", [file_entry(NAME, data, [])])])
    assert run(["zoo", "check"]) == 0
    assert "1 local file(s) checked, 0 problem(s)" in capsys.readouterr().out
    (zoo_env.tmp / "weights" / NAME).write_bytes(blob(500, seed=5))
    assert run(["zoo", "check"]) == 1
    assert "sha256" in capsys.readouterr().out


def test_serve_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = blob(4096)
    (tmp_path / NAME).write_bytes(data)
    seen: dict[str, object] = {}

    def ready(server: object, url: str) -> None:
        try:
            r = requests.get(f"{url}/{NAME}", headers={"Range": "bytes=4000-"}, timeout=5)
            seen["status"], seen["body"] = r.status_code, r.content
        finally:
            server.shutdown()  # type: ignore[attr-defined]

    args = argparse.Namespace(directory=tmp_path, port=0, bind="127.0.0.1", quiet=True, json=True)
    assert zoo_cli.cmd_serve(args, ready=ready) == 0
    assert seen == {"status": 206, "body": data[4000:]}
    assert json.loads(capsys.readouterr().out)["url"].startswith("http://127.0.0.1:")
    with pytest.raises(InputError, match="not a folder"):
        run(["zoo", "serve", str(tmp_path / "nope")])


def test_pull_all_goes_on_past_a_model_that_cannot_be_fetched(
    zoo_env: ZooEnv, zoo_server: ZooServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Warming a farm's cache: a model whose file is gone (404) is reported, the next one is pulled.
    gone, good = blob(10_000), blob(12_000, seed=2)
    write_manifest(
        zoo_env.manifest,
        [
            model_entry("gone", [file_entry("g.safetensors", gone, [zoo_server.file_url("g.safetensors")])]),
            model_entry("good", [file_entry("o.safetensors", good, [zoo_server.add("o.safetensors", good)])]),
        ],
    )
    assert run(["--json", "zoo", "pull", "--all"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert [p["id"] for p in doc["pulled"]] == ["good"]
    assert [f["id"] for f in doc["failed"]] == ["gone"] and "404" in doc["failed"][0]["error"]
    assert "1 of 2 models could not be pulled" in captured.err
    assert blobs(zoo_env.cache) == [sha(good)]
    # One named model that fails is an error of the command itself, as before.
    from mlvfx.errors import ModelError

    with pytest.raises(ModelError):
        run(["zoo", "pull", "gone"])


def test_prune_leaves_the_shared_per_user_cache_alone(
    zoo_env: ZooEnv, two_models: tuple[bytes, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    # With MLVFX_CACHE_DIR set, the per-user cache is shared with other installations (another
    # version, the Blender add-on): a model only their manifests name must survive this prune.
    theirs = zoo_env.user_cache / "zoo" / "sha256" / sha(b"another install's model")
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"another install's model")
    assert run(["-q", "zoo", "pull", "--all"]) == 0
    write_manifest(zoo_env.manifest, [])
    assert run(["--json", "zoo", "prune"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["removed"]) == 2 and all(str(zoo_env.cache) in p for p in doc["removed"])
    assert theirs.exists() and blobs(zoo_env.cache) == []


def test_manifest_option_after_the_subcommand(
    zoo_env: ZooEnv, two_models: tuple[bytes, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.json"
    write_manifest(other, [])
    assert run(["--json", "zoo", "list", "--manifest", str(other)]) == 0
    assert json.loads(capsys.readouterr().out)["models"] == []
    assert run(["--json", "zoo", "--manifest", str(other), "list"]) == 0
    assert json.loads(capsys.readouterr().out)["models"] == []
    assert run(["--json", "zoo", "list"]) == 0  # the environment's manifest when not given
    assert len(json.loads(capsys.readouterr().out)["models"]) == 2
