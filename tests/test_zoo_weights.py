"""Weights load from safetensors only; nothing downloaded is unpickled."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import test_zoo_support as support
import torch
from safetensors.torch import save_file
from test_zoo_support import FAST, ZooEnv, ZooServer, file_entry, model_entry, write_manifest

from mlvfx.errors import IntegrityError
from mlvfx.zoo import fetch, load_state_dict, load_weights

zoo_env = support.zoo_env
zoo_server = support.zoo_server


def test_load_weights_end_to_end(zoo_env: ZooEnv, zoo_server: ZooServer, tmp_path: Path) -> None:
    state = {"conv.weight": torch.randn(8, 3, 3, 3), "conv.bias": torch.arange(8, dtype=torch.float32)}
    local = tmp_path / "net.safetensors"
    save_file(state, str(local))
    data = local.read_bytes()
    write_manifest(
        zoo_env.manifest,
        [
            model_entry(
                "net", [file_entry("net.safetensors", data, [zoo_server.add("net.safetensors", data)])]
            )
        ],
    )
    loaded = load_weights("net")
    assert set(loaded) == set(state)
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor)
    assert torch.equal(load_state_dict(fetch("net", options=FAST))["conv.bias"], state["conv.bias"])


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps({"w": _Boom()}),  # a pickle that would run code
        b"PK\x03\x04" + b"\x00" * 100,  # a zip, as torch.save writes
        b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!",
        b"\xff" * 8 + b"{}",  # absurd header length
        b"abc",
    ],
)
def test_non_safetensors_files_are_rejected(
    tmp_path: Path, payload: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.safetensors"
    path.write_bytes(payload)
    with pytest.raises(IntegrityError) as info:
        load_state_dict(path)
    assert str(path) in str(info.value) and "safetensors" in str(info.value)
    assert "unpickled!" not in capsys.readouterr().out


def test_a_cached_blob_damaged_in_place_is_dropped_when_it_fails_to_load(
    zoo_env: ZooEnv, zoo_server: ZooServer, tmp_path: Path
) -> None:
    import os

    state = {"w": torch.randn(4, 4)}
    local = tmp_path / "net.safetensors"
    save_file(state, str(local))
    data = local.read_bytes()
    write_manifest(
        zoo_env.manifest,
        [
            model_entry(
                "net", [file_entry("net.safetensors", data, [zoo_server.add("net.safetensors", data)])]
            )
        ],
    )
    blob = fetch("net", options=FAST)
    # A byte flipped in the header, the mtime put back: the verified stamp still matches, so the
    # cache hands the file out without hashing it again.
    st = blob.stat()
    damaged = bytearray(blob.read_bytes())
    damaged[9] ^= 0xFF
    blob.write_bytes(bytes(damaged))
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fetch("net", options=FAST) == blob
    with pytest.raises(IntegrityError, match=r"damaged .*and is removed: run again") as err:
        load_state_dict(blob)
    assert str(blob) in str(err.value) and not blob.exists()
    assert torch.equal(load_state_dict(fetch("net", options=FAST))["w"], state["w"])  # fetched again
    # Tensor bytes zeroed in place (a valid file, wrong weights: maps with exit 0, a fuzz audit):
    # the blob is hashed before use.
    blob = fetch("net", options=FAST)
    st = blob.stat()
    zeroed = bytearray(blob.read_bytes())
    zeroed[-16:] = bytes(16)
    blob.write_bytes(bytes(zeroed))
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(IntegrityError, match=r"no longer match its sha256\) and is removed"):
        load_state_dict(blob)
    assert not blob.exists()
    # NaN weights outside the cache are named by file and tensor.
    nan = tmp_path / "nan.safetensors"
    save_file({"w": torch.full((2, 2), float("nan"))}, str(nan))
    with pytest.raises(IntegrityError, match=r"nan\.safetensors: tensor 'w' holds NaN or inf values"):
        load_state_dict(nan)

    # A file outside the cache that fails to load is left alone (not ours to delete).
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError) as err:
        load_state_dict(bad)
    assert "removed" not in str(err.value) and bad.exists()
