"""Behaviours a mutation audit (stop 27) found unprotected by any test: io and atomic writes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mlvfx.errors import OutputExistsError
from mlvfx.io import read_image, write_image


def test_a_file_created_after_the_existence_check_is_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without overwrite, the final move must refuse a target another process created between
    check_writable and the move (two farm nodes writing one output): only the link does that."""
    import mlvfx.io.atomic as atomic

    target = tmp_path / "out.bin"
    real_write_temp = atomic._write_temp

    def racing(t: Path, data: bytes) -> Path:
        tmp = real_write_temp(t, data)
        t.write_bytes(b"theirs")  # the other writer wins the race
        return tmp

    monkeypatch.setattr(atomic, "_write_temp", racing)
    with pytest.raises(OutputExistsError, match="already exists"):
        atomic.write_bytes_atomic(target, b"mine")
    assert target.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temp file left either


@pytest.mark.parametrize("suffix", [".png", ".tif", ".exr"])
def test_rgba_files_are_rgba_on_disk_and_in_memory(tmp_path: Path, suffix: str) -> None:
    """Red with alpha must be red: test_channel_order_is_rgb covers RGB only, and the alpha
    round trip uses grey, so swapping R and B for 4-channel images went unnoticed."""
    rgba = np.zeros((2, 3, 4), np.float32)
    rgba[..., 0] = 1.0
    rgba[..., 3] = 0.5
    path = write_image(tmp_path / f"red{suffix}", rgba, kind="data")
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # OpenCV's order: B, G, R, A
    assert stored.shape == (2, 3, 4)
    assert stored[0, 0, 2] > stored[0, 0, 0], "written as BGRA with R and B swapped"
    back, info = read_image(path, kind="data")
    assert info.channels == 4
    np.testing.assert_allclose(back[0, 0], [1.0, 0.0, 0.0, 0.5], atol=1e-2)


def test_an_rgba_png_from_another_tool_reads_as_rgba(tmp_path: Path) -> None:
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 2] = 255  # red
    bgra[..., 3] = 255
    assert cv2.imwrite(str(tmp_path / "red.png"), bgra)
    back, _ = read_image(tmp_path / "red.png", kind="data")
    np.testing.assert_allclose(back[0, 0], [1.0, 0.0, 0.0, 1.0])


@pytest.mark.skipif(not hasattr(__import__("os"), "fchmod"), reason="POSIX modes")
def test_outputs_follow_the_umask_in_force_when_written(tmp_path: Path) -> None:
    # The mode was read once at import: a tool that set umask 002 for a shared show folder after
    # importing mlvfx still got 0644 files (pipeline audit, stop 27).
    import os

    from mlvfx.io.atomic import write_bytes_atomic

    for name, umask, mode in (("shared.bin", 0o002, 0o664), ("private.bin", 0o077, 0o600)):
        old = os.umask(umask)
        try:
            path = write_bytes_atomic(tmp_path / name, b"x")
        finally:
            os.umask(old)
        assert path.stat().st_mode & 0o777 == mode, name


@pytest.mark.skipif(not hasattr(__import__("os"), "fchmod"), reason="POSIX modes")
def test_a_temp_output_folder_keeps_the_shows_setgid(tmp_path: Path) -> None:
    # A show folder chmod 2775 passes its group down; the temp folder's chmod cleared the setgid
    # bit, so frames renamed into place got the creating user's primary group (review, stop 27).
    import stat

    from mlvfx.io.atomic import make_temp_dir

    show = tmp_path / "show"
    show.mkdir()
    show.chmod(0o2775)
    folder = make_temp_dir(show, ".shot.")
    assert folder.stat().st_mode & stat.S_ISGID


def test_a_decoder_out_of_memory_is_memory_not_a_bad_file(tmp_path, monkeypatch) -> None:
    # OpenCV says a failed allocation as cv2.error (StsNoMem): it read as "cannot decode JPEG data",
    # and a folder batch counted the photo as bad (a resource audit).
    from mlvfx.errors import OutOfMemoryError
    from mlvfx.io import image as image_mod

    path = write_image(tmp_path / "p.png", np.full((8, 8, 3), 0.5, np.float32))

    def no_memory(*args: object, **kwargs: object) -> None:
        exc = cv2.error("Failed to allocate 50331648 bytes")
        exc.code, exc.err = cv2.Error.StsNoMem, "Failed to allocate 50331648 bytes"
        raise exc

    monkeypatch.setattr(image_mod.cv2, "imdecode", no_memory)
    with pytest.raises(OutOfMemoryError, match="out of memory decoding the image") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_a_damaged_tiff_is_an_error_not_a_black_image(tmp_path) -> None:
    # OpenCV fills strips libtiff cannot decode with black and says so only in its debug log: a
    # TIFF 59 % black read with exit 0 (a fuzz audit). Unknown private tags stay harmless.
    from mlvfx.errors import ImageReadError

    rng = np.random.default_rng(1)
    good = bytes(cv2.imencode(".tif", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))[1])
    (tmp_path / "good.tif").write_bytes(good)
    assert read_image(tmp_path / "good.tif")[0].shape == (64, 64, 3)
    damaged = bytearray(good)
    damaged[1000:1004] = b"\xff" * 4  # inside the LZW strip data
    (tmp_path / "lzw.tif").write_bytes(bytes(damaged))
    with pytest.raises(ImageReadError, match=r"lzw\.tif: corrupt or truncated TIFF data \(Using code"):
        read_image(tmp_path / "lzw.tif")


def test_raw_bytes_of_a_damaged_png_or_npz_do_not_reach_the_message(tmp_path) -> None:
    # A chunk type's raw bytes (an ESC, a newline) went into the one-line error; a plain .npy or a
    # damaged zip given as a smoke frame escaped as untyped exceptions (a fuzz audit).
    import struct

    from mlvfx.errors import ImageReadError
    from mlvfx.io.volume import read_volume_npz

    png = bytes(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1])
    (tmp_path / "ctl.png").write_bytes(png[:33] + struct.pack(">I", 100) + b"a\nb\x1b" + b"x" * 10)
    with pytest.raises(ImageReadError) as info:
        read_image(tmp_path / "ctl.png")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    for name in ("plain.npy", "zip.npz"):
        with pytest.raises(ImageReadError, match=r"not a readable \.npz volume"):
            read_volume_npz(tmp_path / name)


def test_libtiffs_notes_on_valid_tiffs_are_not_damage_and_bigtiff_is_checked(tmp_path) -> None:
    # A palette TIFF with an 8-bit colormap ("Assuming 8-bit colormap") was refused as damaged,
    # and a damaged BigTIFF was read partly black (a review).
    import tifffile

    from mlvfx.errors import ImageReadError

    rng = np.random.default_rng(2)
    cmap = rng.integers(0, 256, (3, 256)).astype(np.uint16)  # 8-bit values in the 16-bit table
    tifffile.imwrite(
        tmp_path / "pal.tif",
        rng.integers(0, 256, (40, 48), dtype=np.uint8),
        photometric="palette",
        colormap=cmap,
    )
    assert read_image(tmp_path / "pal.tif")[0].shape == (40, 48, 3)
    ramp = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", ramp, bigtiff=True, compression="zlib")
    damaged = bytearray((tmp_path / "big.tif").read_bytes())
    assert damaged[:4] == b"II+\x00"
    damaged[400:420] = b"\xff" * 20
    (tmp_path / "big_dmg.tif").write_bytes(bytes(damaged))
    with pytest.raises(ImageReadError, match="corrupt or truncated TIFF data"):
        read_image(tmp_path / "big_dmg.tif")


def test_a_16_bit_or_float_tiff_with_separate_colour_planes_reads_right(tmp_path) -> None:
    # OpenCV decodes these to wrong pixels without a word: 99.7 % of 16-bit values, uninitialised
    # memory for float (a review). tifffile reads them, channels as OpenCV orders them.
    import tifffile

    rng = np.random.default_rng(3)
    for dtype, scale in ((np.uint16, 65535.0), (np.float32, 1.0)):
        for channels in (3, 4):
            pixels = (rng.random((32, 40, channels)) * (60000 if dtype == np.uint16 else 1)).astype(dtype)
            path = tmp_path / f"planar_{dtype.__name__}_{channels}.tif"
            extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
            planes = np.ascontiguousarray(pixels.transpose(2, 0, 1))
            tifffile.imwrite(
                path, planes, photometric="rgb", planarconfig="separate", compression="zlib", **extra
            )
            img, info = read_image(path, kind="data")
            assert info.channels == channels
            np.testing.assert_allclose(img * scale, pixels.astype(np.float64), atol=0.51)


def test_a_cmyk_tiff_with_separate_planes_is_still_refused(tmp_path) -> None:
    # Routed to tifffile, its C, M, Y planes came back as R, G, B (a review).
    import tifffile

    from mlvfx.errors import ImageReadError

    cmyk = np.random.default_rng(4).integers(0, 65535, (4, 16, 20), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "cmyk.tif", cmyk, photometric="separated", planarconfig="separate")
    with pytest.raises(ImageReadError, match="CMYK TIFF is not supported"):
        read_image(tmp_path / "cmyk.tif")
