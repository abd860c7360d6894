"""mlvfx.io: round trips per format and depth, colour handling, and every bad-input case."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from mlvfx.color import linear_to_srgb, srgb_to_linear
from mlvfx.errors import (
    ImageReadError,
    ImageTooLargeError,
    ImageWriteError,
    InvalidImageDataError,
    OutputExistsError,
)
from mlvfx.io import check_image, describe, read_image, write_image


@pytest.fixture
def ramp() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((17, 23, 3), dtype=np.float32)


def test_srgb_round_trip_and_known_values() -> None:
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    assert np.abs(linear_to_srgb(srgb_to_linear(x)) - x).max() < 1e-5
    # Reference points of the sRGB curve.
    assert srgb_to_linear(np.float32(0.5)) == pytest.approx(0.21404, abs=1e-4)
    assert linear_to_srgb(np.float32(0.18)) == pytest.approx(0.46135, abs=1e-4)


def test_colour_conversion_in_chunks_gives_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    # Large images convert a band of rows at a time (a 16384² photo needed ~10 GiB of temporaries).
    import mlvfx.color as color

    rng = np.random.default_rng(3)
    img = (rng.random((37, 29, 4), dtype=np.float32) * 1.4 - 0.2).astype(np.float32)
    whole = (color.decode_color(img), color.encode_color(img), srgb_to_linear(img), linear_to_srgb(img))
    monkeypatch.setattr(color, "CHUNK_VALUES", 100)  # several rows per chunk, and a ragged last one
    chunked = (color.decode_color(img), color.encode_color(img), srgb_to_linear(img), linear_to_srgb(img))
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(chunked[0][..., 3], img[..., 3])  # alpha passes through
    monkeypatch.setattr(color, "CHUNK_VALUES", 1)  # smaller than a row: one row at a time
    np.testing.assert_array_equal(color.decode_color(img), whole[0])


@pytest.mark.parametrize(
    ("suffix", "depth", "tol"),
    [
        (".png", 8, 1 / 255),
        (".png", 16, 1 / 65535),
        (".tif", 8, 1 / 255),
        (".tif", 16, 1 / 65535),
        (".tif", 32, 0.0),
        (".exr", 32, 0.0),
        (".exr", 16, 1e-3),
    ],
)
def test_data_round_trip(tmp_path: Path, ramp: np.ndarray, suffix: str, depth: int, tol: float) -> None:
    path = write_image(tmp_path / f"a{suffix}", ramp, kind="data", bit_depth=depth)
    back, info = read_image(path, kind="data")
    assert back.shape == ramp.shape and back.dtype == np.float32
    assert np.abs(back - ramp).max() <= tol * 0.5 + 1e-7 if tol else np.array_equal(back, ramp)
    assert info.bit_depth == depth and info.channels == 3 and info.color_space == "data"


def test_color_png_is_srgb_on_disk_and_linear_in_memory(tmp_path: Path) -> None:
    linear = np.full((4, 4, 3), 0.2158605, dtype=np.float32)  # sRGB 128/255
    path = write_image(tmp_path / "c.png", linear, kind="color")
    as_data, _ = read_image(path, kind="data")
    assert as_data[0, 0, 0] == pytest.approx(128 / 255, abs=1e-6)
    as_color, info = read_image(path, kind="color")
    assert info.color_space == "srgb"
    assert as_color[0, 0, 0] == pytest.approx(0.2158605, abs=1e-5)


def test_exr_colour_is_linear_and_not_converted(tmp_path: Path) -> None:
    hdr = np.array([[[0.5, 2.0, 7.5]]], dtype=np.float32)
    path = write_image(tmp_path / "h.exr", hdr, kind="color")
    back, info = read_image(path, kind="color")
    assert info.color_space == "linear" and info.format == "exr"
    np.testing.assert_array_equal(back, hdr)


def test_half_exr_reports_16_bit(tmp_path: Path, ramp: np.ndarray) -> None:
    path = write_image(tmp_path / "h.exr", ramp, kind="data", bit_depth=16)
    info = describe(path)
    assert info.sample == "float16" and info.bit_depth == 16


def test_alpha_is_carried_and_not_colour_converted(tmp_path: Path) -> None:
    rgba = np.zeros((3, 3, 4), dtype=np.float32)
    rgba[..., :3] = 0.2140411
    rgba[..., 3] = 0.5
    path = write_image(tmp_path / "a.png", rgba, kind="color", bit_depth=16)
    back, info = read_image(path, kind="color")
    assert info.has_alpha and back.shape == (3, 3, 4)
    assert back[0, 0, 3] == pytest.approx(0.5, abs=1e-4)
    assert back[0, 0, 0] == pytest.approx(0.2140411, abs=1e-4)


def test_channel_order_is_rgb(tmp_path: Path) -> None:
    red = np.zeros((2, 2, 3), dtype=np.float32)
    red[..., 0] = 1.0
    for suffix in (".png", ".jpg", ".tif", ".exr"):
        back, _ = read_image(write_image(tmp_path / f"r{suffix}", red, kind="data"), kind="data")
        assert back[0, 0, 0] > 0.9 and back[0, 0, 2] < 0.1, suffix


def test_grayscale_gives_one_channel(tmp_path: Path) -> None:
    gray = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    back, info = read_image(write_image(tmp_path / "g.png", gray, kind="data", bit_depth=16), kind="data")
    assert back.shape == (3, 4, 1) and info.channels == 1
    np.testing.assert_allclose(back[..., 0], gray, atol=1e-5)


def test_no_overwrite_without_asking(tmp_path: Path, ramp: np.ndarray) -> None:
    path = write_image(tmp_path / "x.png", ramp, kind="data")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="already exists"):
        write_image(path, ramp * 0, kind="data")
    assert path.read_bytes() == before
    write_image(path, ramp * 0, kind="data", overwrite=True)
    assert path.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # no temp files left


def test_write_errors(tmp_path: Path, ramp: np.ndarray) -> None:
    with pytest.raises(ImageWriteError, match="unsupported file type"):
        write_image(tmp_path / "x.bmp", ramp)
    with pytest.raises(ImageWriteError, match="16-bit"):
        write_image(tmp_path / "x.jpg", ramp, bit_depth=16)
    nan = ramp.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(InvalidImageDataError, match="NaN"):
        write_image(tmp_path / "n.png", nan)
    assert not (tmp_path / "n.png").exists()


def _png_with_size(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _one_line(exc: pytest.ExceptionInfo[BaseException], path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_missing_empty_folder_and_unsupported(tmp_path: Path) -> None:
    cases = {
        tmp_path / "missing.png": "no such file",
        tmp_path / "empty.png": "empty file",
        tmp_path / "notes.txt": "unsupported file type",
        tmp_path / "dir.png": "folder",
    }
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "dir.png").mkdir()
    for path, needle in cases.items():
        with pytest.raises(ImageReadError) as exc:
            read_image(path)
        assert needle in _one_line(exc, path)


def test_corrupt_and_truncated(tmp_path: Path, ramp: np.ndarray) -> None:
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageReadError, match="unrecognised header"):
        read_image(garbage)
    for suffix in (".png", ".jpg", ".exr", ".tif"):
        good = write_image(tmp_path / f"good{suffix}", ramp, kind="data").read_bytes()
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(good[: len(good) // 2])
        with pytest.raises(ImageReadError) as exc:
            read_image(cut)
        msg = _one_line(exc, cut)
        assert "truncated" in msg or "corrupt" in msg, msg


def test_zero_sized_png(tmp_path: Path) -> None:
    path = tmp_path / "zero.png"
    path.write_bytes(_png_with_size(0, 5))
    with pytest.raises(ImageReadError, match="zero-sized"):
        read_image(path)


def test_too_large_is_refused_before_decoding(tmp_path: Path) -> None:
    # The header claims 100000 x 100000; the pixel data is not there, so only a header check can answer.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_size(100_000, 100_000))
    with pytest.raises(ImageTooLargeError, match="larger than the limit"):
        read_image(path)
    small = write_image(tmp_path / "s.png", np.zeros((10, 10, 3), np.float32), kind="data")
    with pytest.raises(ImageTooLargeError):
        read_image(small, max_pixels=99)
    read_image(small, max_pixels=100)


def test_max_pixels_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = write_image(tmp_path / "s.png", np.zeros((10, 10, 3), np.float32), kind="data")
    monkeypatch.setenv("MLVFX_MAX_PIXELS", "50")
    with pytest.raises(ImageTooLargeError, match="MLVFX_MAX_PIXELS"):
        read_image(small)


def test_nan_and_inf_in_float_files(tmp_path: Path, ramp: np.ndarray) -> None:
    import cv2

    for bad in (np.nan, np.inf):
        a = ramp.copy()
        a[3, 4, 1] = bad
        path = tmp_path / "bad.exr"
        ok, buf = cv2.imencode(".exr", a)
        assert ok
        path.write_bytes(buf.tobytes())
        with pytest.raises(InvalidImageDataError, match="NaN or inf"):
            read_image(path, kind="data")


def test_more_than_four_channels(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "five.tif"
    tifffile.imwrite(path, np.zeros((8, 8, 5), np.uint8), planarconfig="contig")
    with pytest.raises(InvalidImageDataError, match="5 channels"):
        read_image(path)


def test_check_image_validates_arrays() -> None:
    assert check_image(np.zeros((4, 5))).shape == (4, 5, 1)
    with pytest.raises(InvalidImageDataError, match="shape"):
        check_image(np.zeros((2, 3, 4, 5)))
    with pytest.raises(InvalidImageDataError, match="zero size"):
        check_image(np.zeros((0, 3, 3)))
    with pytest.raises(InvalidImageDataError, match="6 channels"):
        check_image(np.zeros((3, 3, 6)))


def test_outputs_get_the_umask_mode_not_the_temp_files_0600(tmp_path: Path, ramp: np.ndarray) -> None:
    """Atomic writes go through a private temp file; the finished output must get the mode a plain
    ``open()`` gives (a shared farm reads what a node wrote), not mkstemp's 0600."""
    import stat

    from mlvfx.io.atomic import write_bytes_atomic

    (tmp_path / "plain").write_bytes(b"x")
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    write_image(tmp_path / "a.png", ramp, kind="data")
    write_bytes_atomic(tmp_path / "b.bin", b"x")
    for name in ("a.png", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected


def test_corrupt_exr_headers_fail_at_once_with_a_named_error(tmp_path: Path, ramp: np.ndarray) -> None:
    """A negative attribute size once made the header parser loop forever; a short dataWindow or
    channel list raised an unnamed struct error. Each is now a one-line error naming the file."""
    data = write_image(tmp_path / "good.exr", ramp, kind="data").read_bytes()
    name_end = data.index(b"\x00", 8)
    type_end = data.index(b"\x00", name_end + 1)
    negative = data[: type_end + 1] + struct.pack("<i", -40) + data[type_end + 5 :]
    at = data.index(b"dataWindow\x00box2i\x00") + len(b"dataWindow\x00box2i\x00")
    short_window = data[:at] + struct.pack("<i", 4) + data[at + 4 : at + 8] + data[at + 20 :]
    cases = {
        "negative.exr": (negative, "negative attribute size"),
        "window.exr": (short_window, "dataWindow"),
    }
    for name, (blob, problem) in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(ImageReadError) as info:
            describe(path)
        assert str(path) in str(info.value) and problem in str(info.value)
        assert "\n" not in str(info.value)


def test_decoder_chatter_stays_off_stderr_and_a_cut_jpeg_is_refused(
    tmp_path: Path, ramp: np.ndarray, capfd: pytest.CaptureFixture[str]
) -> None:
    """libpng and libjpeg print to the process's stderr themselves; the user must see only our one
    line. A JPEG cut in the middle (with an end marker added back) decodes "successfully" with
    grey rows, so libjpeg's warning is taken as the error it is."""
    good_png = write_image(tmp_path / "good.png", ramp, kind="color").read_bytes()
    crc = bytearray(good_png)
    crc[40] ^= 0xFF  # inside IHDR/IDAT: libpng reports a bad CRC or chunk
    (tmp_path / "crc.png").write_bytes(bytes(crc))
    big = np.random.default_rng(1).random((64, 64, 3), dtype=np.float32)
    jpg = write_image(tmp_path / "good.jpg", big, kind="color").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) // 2] + b"\xff\xd9")
    capfd.readouterr()
    for name, problem in (("crc.png", "PNG"), ("cut.jpg", "premature end")):
        with pytest.raises(ImageReadError, match=problem):
            read_image(tmp_path / name)
    read_image(tmp_path / "good.jpg")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_grey_alpha_tiff_keeps_its_alpha_and_depth(tmp_path: Path, dtype: type) -> None:
    # OpenCV dropped the alpha of a grey + alpha TIFF, read 16 bits as 8, and could not read float.
    tifffile = pytest.importorskip("tifffile")
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    grey = np.linspace(0.1, 0.9, 6 * 4).reshape(6, 4)
    alpha = np.ones((6, 4))
    alpha[:, :2] = 0.5
    straight = np.dstack([grey, alpha])
    tifffile.imwrite(tmp_path / "s.tif", (straight * top).astype(dtype), extrasamples=["unassalpha"])
    premultiplied = np.dstack([grey * alpha, alpha])
    tifffile.imwrite(tmp_path / "p.tif", (premultiplied * top).astype(dtype), extrasamples=["assocalpha"])
    # Orientation 6 (a phone held upright): turned 90 degrees clockwise on reading, as viewers show it.
    tifffile.imwrite(
        tmp_path / "o.tif",
        (straight * top).astype(dtype),
        extrasamples=["unassalpha"],
        extratags=[(274, "H", 1, 6, False)],
    )
    tol = 2.0 / top if np.issubdtype(dtype, np.integer) else 1e-6
    for name in ("s.tif", "p.tif"):
        img, info = read_image(tmp_path / name, kind="data")
        assert img.shape == (6, 4, 2) and info.has_alpha and info.channels == 2
        assert info.bit_depth == {np.uint8: 8, np.uint16: 16, np.float32: 32}[dtype]
        assert np.allclose(img, straight, atol=tol), name  # straight alpha, premultiplied divided out
    img, info = read_image(tmp_path / "o.tif", kind="data")
    assert info.orientation == 6 and np.allclose(img, np.rot90(straight, -1), atol=tol)


def test_reading_images_does_not_swallow_other_threads_stderr(tmp_path: Path, capfd) -> None:
    # The decoders' own chatter is kept off the terminal by pointing fd 2 at a sink while decoding;
    # a host's log line written by another thread in that moment was lost with it.
    import os
    import threading

    write_image(tmp_path / "a.exr", np.random.default_rng(0).random((256, 256, 3), np.float32))
    stop = threading.Event()
    sent = []

    def host_log() -> None:
        n = 0
        while not stop.is_set():
            line = f"host line {n}\n"
            os.write(2, line.encode())
            sent.append(line)
            n += 1

    thread = threading.Thread(target=host_log)
    thread.start()
    for _ in range(30):
        read_image(tmp_path / "a.exr")
    stop.set()
    thread.join()
    got = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("host line")]
    assert len(sent) > 30 and sorted(got) == sorted(ln.strip() for ln in sent)


def test_only_the_decoders_lines_are_kept_off_the_terminal() -> None:
    from mlvfx.io.image import _not_decoders

    said = (
        "libpng warning: iCCP: known incorrect sRGB profile\n"
        "[INFO] frame 12 written\n"
        "[ WARN:0@0.057] global loadsave.cpp:466 imread_ can't read header: OpenCV(4.11.0) error\n"
        "> :\n>     'sample_format == SAMPLEFORMAT_UINT'\n> where\n>     '(int)sample_format' is 3\n"
        "[ERROR] license server unreachable\n"
        "Loaded /show/tex/brick.jpeg\n"
        "> node /obj/geo1\n"
        "Corrupt JPEG data: 3 extraneous bytes before marker 0xd9\n"
        "Warning: unknown JFIF revision number 2.01\n"
        "TIFFReadDirectory: Warning, Unknown field with tag 42016 (0xa420) encountered.\n"
        "Saved corrupt-check report\n"
    )
    assert _not_decoders(said) == [
        "[INFO] frame 12 written\n",
        "[ERROR] license server unreachable\n",
        "Loaded /show/tex/brick.jpeg\n",
        "> node /obj/geo1\n",
        "Saved corrupt-check report\n",
    ]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_pixels_are_refused_with_how_to_convert(dtype: type) -> None:
    # A uint8 photo from cv2.imread was taken as linear 0-255: white maps, no error.
    from mlvfx.ops.material import material

    pixels = np.full((8, 8, 3), 200, dtype)
    with pytest.raises(InvalidImageDataError, match=r"pixels up to 200: .*srgb_to_linear\(pixels / 255\)"):
        material(pixels, ["normal"], method="classical")
    mask = np.ones((8, 8), dtype)  # a 0/1 integer mask is unambiguous
    assert check_image(mask).max() == 1.0


def test_a_file_set_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlvfx.io.atomic as atomic

    folder = tmp_path / "set"
    atomic.write_files_atomic([(folder / "a.bin", b"old a"), (folder / "b.bin", b"old b")])
    new = [(folder / "a.bin", b"new a"), (folder / "b.bin", b"new b"), (folder / "c.bin", b"new c")]

    def contents() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    before = contents()
    with pytest.raises(OutputExistsError, match="already exists"):
        atomic.write_files_atomic(new)
    real_commit = atomic.commit

    def failing_commit(tmp: Path, target: Path, *, overwrite: bool) -> None:
        if target.name == "c.bin":
            raise OSError(28, "No space left on device")
        real_commit(tmp, target, overwrite=overwrite)

    monkeypatch.setattr(atomic, "commit", failing_commit)
    with pytest.raises(ImageWriteError, match=r"c\.bin: cannot write: No space left on device"):
        atomic.write_files_atomic(new, overwrite=True)
    assert contents() == before  # a and b were moved in, then taken back; no temp or backup left
    monkeypatch.setattr(atomic, "commit", real_commit)
    (folder / "c.bin").mkdir()
    with pytest.raises(OutputExistsError, match="is a folder"):
        atomic.write_files_atomic(new, overwrite=True)
    (folder / "c.bin").rmdir()
    assert atomic.write_files_atomic(new, overwrite=True) == [p for p, _ in new]
    assert contents() == {"a.bin": b"new a", "b.bin": b"new b", "c.bin": b"new c"}


def test_two_writers_replacing_one_set_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two --overwrite runs into one material folder (farm retries): one set at a time, so the folder
    # ends up wholly one run's, never one's albedo beside the other's height.
    import threading

    import filelock

    import mlvfx.io.atomic as atomic

    folder = tmp_path / "rock"
    atomic.write_files_atomic([(folder / "a.bin", b"old a"), (folder / "b.bin", b"old b")])
    moved: list[str] = []
    real_place = atomic._place

    def slow_place(staged: list[tuple[Path, Path]], overwrite: bool) -> None:
        moved.append(staged[0][1].read_bytes().decode())
        real_place(staged, overwrite)

    monkeypatch.setattr(atomic, "_place", slow_place)
    held = filelock.FileLock(str(atomic.set_lock_file(folder)))
    held.acquire()  # another writer is mid-way
    writer = threading.Thread(
        target=atomic.write_files_atomic,
        args=([(folder / "a.bin", b"new a"), (folder / "b.bin", b"new b")],),
        kwargs={"overwrite": True},
    )
    writer.start()
    writer.join(0.5)
    assert writer.is_alive() and moved == []  # waits for the lock before touching the folder
    held.release()
    writer.join(10)
    assert moved == ["old a"] and (folder / "a.bin").read_bytes() == b"new a"
    assert sorted(p.name for p in folder.iterdir()) == ["a.bin", "b.bin"]  # no lock file in the folder
    monkeypatch.setattr(atomic, "LOCK_TIMEOUT", 0.2)
    held.acquire()
    with pytest.raises(ImageWriteError, match="another mlvfx process has been replacing files here"):
        atomic.write_files_atomic([(folder / "a.bin", b"x")], overwrite=True)
    held.release()


def test_overwrite_locks_are_a_bounded_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One lock file per folder written with overwrite stayed in the temp folder for good.
    import mlvfx.io.atomic as atomic

    monkeypatch.setattr(atomic.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(atomic, "LOCK_BUCKETS", 8)
    for i in range(40):
        atomic.write_files_atomic([(tmp_path / "out" / f"m{i}" / "a.bin", b"x")], overwrite=True)
    locks = list((tmp_path / "tmp").glob("mlvfx-locks-*/*"))
    assert 1 < len(locks) <= 8, locks
    assert atomic.set_lock_file(tmp_path / "out" / "m3") == atomic.set_lock_file(tmp_path / "out" / "m3")


def test_an_interrupted_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import mlvfx.io.atomic as atomic

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_bytes_atomic(tmp_path / "x.png", b"data")
    assert list(tmp_path.iterdir()) == []


def test_threads_setting_applies_and_unsetting_it_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    # MLVFX_THREADS (the Blender/Houdini preference) applies; back at 0 ("automatic"), the count
    # torch had before returns. A count someone else set is left alone.
    import torch

    from mlvfx import config
    from mlvfx.config import torch_device

    monkeypatch.setattr(config, "_thread_counts", {"original": None, "applied": None})  # a fresh process
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # whatever torch had before the preference was set
        monkeypatch.delenv("MLVFX_THREADS", raising=False)
        torch_device("cpu")
        assert torch.get_num_threads() == 3
        monkeypatch.setenv("MLVFX_THREADS", "1")
        torch_device("cpu")
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("MLVFX_THREADS")
        torch_device("cpu")
        assert torch.get_num_threads() == 3
        torch.set_num_threads(2)  # set by a script, not through MLVFX_THREADS
        torch_device("cpu")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_worker_thread_does_not_undo_the_main_threads_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch's count is per thread (OpenMP). The setting applied on the main thread was "restored"
    # by whichever thread made the next call, leaving the main thread at 1 for the session.
    import threading

    import torch

    from mlvfx import config
    from mlvfx.config import torch_device

    monkeypatch.setattr(config, "_thread_counts", {"original": None, "applied": None})  # a fresh process
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setenv("MLVFX_THREADS", "1")
        torch_device("cpu")
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("MLVFX_THREADS")
        worker = threading.Thread(target=torch_device, args=("cpu",))
        worker.start()
        worker.join()
        torch_device("cpu")  # the main thread's next call gives the main thread its count back
        assert torch.get_num_threads() == 2
        # A host's next job in a fresh thread (Blender starts one per job) starts with it too.
        monkeypatch.setenv("MLVFX_THREADS", "1")
        worker = threading.Thread(target=torch_device, args=("cpu",))
        worker.start()
        worker.join()
        monkeypatch.delenv("MLVFX_THREADS")
        seen = []

        def next_job() -> None:
            torch_device("cpu")
            seen.append(torch.get_num_threads())

        worker = threading.Thread(target=next_job)
        worker.start()
        worker.join()
        assert seen == [2]
    finally:
        torch.set_num_threads(before)


# --- real-world photo files (stop 24's photo-input audit) ---------------------------------------


def _exif(orientation: int) -> bytes:
    """A minimal big-endian EXIF block (a TIFF structure) holding only the Orientation tag."""
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + struct.pack(">I", 0)


def _jpeg_with_exif(path: Path, image: np.ndarray, orientation: int) -> None:
    import cv2

    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        100,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), params)
    assert ok
    data = buf.tobytes()
    app1 = b"Exif\x00\x00" + _exif(orientation)
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])


def _png_with_exif(path: Path, image: np.ndarray, orientation: int) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    assert ok
    data = buf.tobytes()
    body = _exif(orientation)
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    ihdr_end = 8 + 25  # signature + IHDR chunk
    path.write_bytes(data[:ihdr_end] + chunk + data[ihdr_end:])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_a_viewer_shows_the_photo(tmp_path: Path, orientation: int) -> None:
    # Phones store portrait photos turned and tag them: without the tag applied, the maps came out
    # sideways next to the photo as every viewer shows it.
    from mlvfx.io.image import apply_orientation

    rng = np.random.default_rng(orientation)
    # Flat 8x8 blocks: JPEG keeps them almost exactly, so its pixels can be compared too.
    stored = np.kron(rng.integers(0, 256, (3, 5, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    _png_with_exif(tmp_path / "p.png", stored, orientation)
    img, info = read_image(tmp_path / "p.png", kind="data")
    assert info.orientation == orientation
    np.testing.assert_array_equal(img, apply_orientation(stored, orientation).astype(np.float32) / 255)
    assert (info.width, info.height) == (img.shape[1], img.shape[0])
    _jpeg_with_exif(tmp_path / "p.jpg", stored, orientation)
    jpg, jinfo = read_image(tmp_path / "p.jpg", kind="data")
    assert jinfo.orientation == orientation
    np.testing.assert_allclose(jpg, img, atol=0.06)  # turned once, the same way as the PNG


def test_orientation_turns_the_way_the_tag_says(tmp_path: Path) -> None:
    # A mark in the stored top-left corner: 6 (turn 90° clockwise) shows it top-right, 8
    # bottom-left, 3 bottom-right, 2 (mirror) top-right of an unturned frame.
    stored = np.zeros((4, 6, 3), np.uint8)
    stored[0, 0] = 255
    where = {1: (0, 0), 2: (0, 5), 3: (3, 5), 6: (0, 3), 8: (5, 0)}
    for orientation, (y, x) in where.items():
        _png_with_exif(tmp_path / f"o{orientation}.png", stored, orientation)
        img, _ = read_image(tmp_path / f"o{orientation}.png", kind="data")
        assert tuple(int(v) for v in np.argwhere(img[..., 0] > 0.5)[0]) == (y, x), orientation


def test_tiff_orientation_is_applied_once(tmp_path: Path) -> None:
    # OpenCV's TIFF decoder applies the tag itself (even with IMREAD_UNCHANGED): not a second time.
    tifffile = pytest.importorskip("tifffile")
    from mlvfx.io.image import apply_orientation

    stored = (np.random.default_rng(1).random((6, 10, 3)) * 255).astype(np.uint8)
    for orientation in (2, 6, 7):
        path = tmp_path / f"o{orientation}.tif"
        tifffile.imwrite(path, stored, photometric="rgb", extratags=[(274, 3, 1, orientation, True)])
        img, info = read_image(path, kind="data")
        assert info.orientation == orientation
        np.testing.assert_array_equal(img, apply_orientation(stored, orientation).astype(np.float32) / 255)


def test_jpeg_with_bytes_after_its_end_marker_reads(tmp_path: Path, ramp: np.ndarray) -> None:
    # Motion photos (a video appended), Samsung's trailer, a stray newline: all decode fine and
    # were refused as "truncated JPEG". A file cut short still is.
    write_image(tmp_path / "a.jpg", ramp)
    data = (tmp_path / "a.jpg").read_bytes()
    for name, tail in (
        ("motion", b"\x00\x00\x00\x18ftypmp42" + bytes(64)),
        ("sefh", b"SEFHxxSEFT"),
        ("nl", b"\n"),
    ):
        (tmp_path / f"{name}.jpg").write_bytes(data + tail)
        img, _ = read_image(tmp_path / f"{name}.jpg")
        assert img.shape == ramp.shape
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


def test_jfif_and_jpe_are_jpeg(tmp_path: Path, ramp: np.ndarray) -> None:
    write_image(tmp_path / "a.jpg", ramp)
    for suffix in (".jfif", ".jpe", ".JFIF"):
        (tmp_path / f"b{suffix}").write_bytes((tmp_path / "a.jpg").read_bytes())
        assert describe(tmp_path / f"b{suffix}").format == "jpeg"


def test_cmyk_tiff_has_no_alpha_and_half_float_tiff_is_named(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[..., 0] = 255  # full cyan
    tifffile.imwrite(tmp_path / "c.tif", cmyk, photometric="separated")
    img, info = read_image(tmp_path / "c.tif", kind="data")
    assert img.shape == (8, 8, 3) and not info.has_alpha
    assert img[..., 0].max() < 0.1 and img[..., 1:].min() > 0.9  # cyan
    tifffile.imwrite(tmp_path / "h.tif", np.zeros((8, 8, 3), np.float16), photometric="rgb")
    with pytest.raises(ImageReadError, match="16-bit float TIFF is not supported"):
        read_image(tmp_path / "h.tif")


# Display P3's primaries in the D50 connection space (as its ICC profiles hold them).
P3_D50 = ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841))


def _icc_profile(primaries: tuple[tuple[float, ...], ...], gamma: float | None, name: str) -> bytes:
    """A minimal ICC v2 matrix/TRC RGB profile: gamma ``None`` gives the sRGB tone curve (para type 3)."""

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    if gamma is None:
        trc = b"para\x00\x00\x00\x00" + struct.pack(">HH", 3, 0)
        trc += b"".join(s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
    else:
        trc = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(gamma * 256)) + b"\x00\x00"
    tags = [
        (b"desc", b"desc\x00\x00\x00\x00" + struct.pack(">I", len(name) + 1) + name.encode() + b"\x00" * 80)
    ]
    for sig, xyz in zip((b"rXYZ", b"gXYZ", b"bXYZ"), primaries, strict=True):
        tags.append((sig, b"XYZ \x00\x00\x00\x00" + b"".join(s15(v) for v in xyz)))
    tags += [(b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += b"\x00" * (-len(data) % 4)
        table += struct.pack(">4sII", sig, offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size) + b"none" + b"\x02\x10\x00\x00" + b"mntrRGB XYZ " + b"\x00" * 12 + b"acsp"
    )
    header += b"\x00" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body


def _png_with_icc(path: Path, image: np.ndarray, profile: bytes) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    assert ok
    data = buf.tobytes()
    body = b"P3\x00\x00" + zlib.compress(profile)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    path.write_bytes(data[:33] + chunk + data[33:])


def test_an_embedded_display_p3_profile_is_applied(tmp_path: Path) -> None:
    # A P3 photo read as sRGB loses saturation and has the wrong primaries in linear.
    px = np.zeros((2, 2, 3), np.uint8)
    px[0, 0] = (255, 0, 0)
    px[0, 1] = (128, 128, 128)
    px[1, 0] = (0, 255, 0)
    _png_with_icc(tmp_path / "p3.png", px, _icc_profile(P3_D50, None, "Display P3"))
    img, info = read_image(tmp_path / "p3.png")
    assert info.color_space == "icc" and info.icc_profile == "Display P3"
    # P3 red in linear sRGB is (1.2249, -0.0421, -0.0197): the negative parts are clipped at 0.
    np.testing.assert_allclose(img[0, 0], [1.2249, 0.0, 0.0], atol=2e-3)
    np.testing.assert_allclose(img[0, 1], srgb_to_linear(np.float32(128 / 255)), atol=2e-3)  # grey stays grey
    np.testing.assert_allclose(img[1, 0], [0.0, 1.0421, 0.0], atol=2e-3)
    data, dinfo = read_image(tmp_path / "p3.png", kind="data")  # data maps are never converted
    assert dinfo.color_space == "data" and data[0, 0, 0] == 1.0


def test_srgb_and_unusable_profiles_decode_as_before(tmp_path: Path) -> None:
    px = (np.random.default_rng(2).random((4, 4, 3)) * 255).astype(np.uint8)
    srgb_d50 = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7142))
    _png_with_icc(tmp_path / "s.png", px, _icc_profile(srgb_d50, None, "sRGB IEC61966-2.1"))
    img, info = read_image(tmp_path / "s.png")
    assert info.color_space == "srgb" and info.icc_profile == "sRGB IEC61966-2.1"
    np.testing.assert_array_equal(img, srgb_to_linear(px.astype(np.float32) / 255))
    _png_with_icc(tmp_path / "bad.png", px, b"not a profile" * 20)
    img, info = read_image(tmp_path / "bad.png")
    assert info.color_space == "srgb" and info.icc_profile is not None and "not applied" in info.icc_profile
    # A gamma 2.2 Adobe-RGB-like profile is applied too: mid grey decodes with its own curve.
    adobe_d50 = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))
    grey = np.full((2, 2, 3), 128, np.uint8)
    _png_with_icc(tmp_path / "a.png", grey, _icc_profile(adobe_d50, 2.2, "Adobe RGB (1998)"))
    img, info = read_image(tmp_path / "a.png")
    assert info.color_space == "icc"
    np.testing.assert_allclose(img[0, 0], (128 / 255) ** (563 / 256), atol=3e-3)  # u8Fixed8 gamma 2.199


def test_a_damaged_profile_is_named_and_not_applied(tmp_path: Path) -> None:
    # A gamma of 0 turned the photo white and all-zero primaries black, silently; a negative
    # parametric gamma gave inf and a NaN error that did not name the file.
    px = (np.random.default_rng(5).random((4, 4, 3)) * 255).astype(np.uint8)
    for name, profile in (
        ("gamma0", _icc_profile(P3_D50, 0.0, "Broken gamma")),
        ("black", _icc_profile(((0.0, 0.0, 0.0),) * 3, None, "Zero primaries")),
    ):
        _png_with_icc(tmp_path / f"{name}.png", px, profile)
        img, info = read_image(tmp_path / f"{name}.png")
        assert info.color_space == "srgb" and "not applied" in (info.icc_profile or ""), name
        np.testing.assert_array_equal(img, srgb_to_linear(px.astype(np.float32) / 255))


def test_rgba_tiff_alpha_comes_back_straight(tmp_path: Path) -> None:
    # OpenCV premultiplies 8-bit straight-alpha TIFFs (172 at alpha 191 read 129), and returns
    # premultiplied files as stored: colour is divided out again, whatever the file said.
    tifffile = pytest.importorskip("tifffile")
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        straight = np.zeros((4, 4, 4), dtype)
        straight[..., :3] = round(top * 0.675)
        straight[..., 3] = round(top * 0.75)
        premul = straight.copy()
        premul[..., :3] = np.rint(straight[..., :3].astype(np.float64) * 0.75).astype(dtype)
        for name, data, extra in (("u", straight, "unassalpha"), ("a", premul, "assocalpha")):
            tifffile.imwrite(tmp_path / f"{name}.tif", data, photometric="rgb", extrasamples=[extra])
            img, _ = read_image(tmp_path / f"{name}.tif", kind="data")
            np.testing.assert_allclose(
                img[0, 0], [0.675, 0.675, 0.675, 0.75], atol=3 / 255, err_msg=f"{dtype} {extra}"
            )


def test_a_premultiplied_rgba_tiff_with_a_profile_comes_back_straight(tmp_path: Path) -> None:
    # With an ICC profile applied, the TIFF's premultiplied colour was decoded as it came
    # (172 at alpha 191 read as 129, then through the profile): the alpha is divided out first.
    tifffile = pytest.importorskip("tifffile")
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 172
    rgba[..., 3] = 191
    profile = _icc_profile(P3_D50, 2.2, "P3 gamma 2.2")
    tifffile.imwrite(
        tmp_path / "p.tif", rgba, photometric="rgb", extrasamples=["unassalpha"], iccprofile=profile
    )
    img, info = read_image(tmp_path / "p.tif")
    assert info.color_space == "icc"
    # A grey stays grey through the profile: (172/255)^2.2 with the u8Fixed8 gamma.
    np.testing.assert_allclose(img[0, 0, :3], (172 / 255) ** (563 / 256), atol=0.01)
    assert img[0, 0, 3] == pytest.approx(191 / 255)


def test_compressed_grey_alpha_tiff_still_reads_its_grey(tmp_path: Path) -> None:
    # LZW needs the optional imagecodecs package in tifffile: OpenCV reads the grey, as before.
    pil = pytest.importorskip("PIL.Image")
    a = np.zeros((8, 8, 2), np.uint8)
    a[..., 0], a[..., 1] = 100, 255
    pil.fromarray(a, "LA").save(tmp_path / "lzw.tif", compression="tiff_lzw")
    img, _ = read_image(tmp_path / "lzw.tif", kind="data")
    assert np.allclose(img[..., 0], 100 / 255)


def test_temp_folders_on_windows_are_made_with_mkdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mkdtemp's folders on Windows carry an owner-only access list that a cache renamed into place
    # keeps (CPython's CVE-2024-4030 fix): there, the folder is made with os.mkdir (an audit).
    import tempfile

    from mlvfx.io import atomic

    def refuse(**_: object) -> str:
        raise AssertionError("mkdtemp used on Windows")

    monkeypatch.setattr(atomic.os, "name", "nt")
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    made = {atomic.make_temp_dir(tmp_path, ".cache.baking-") for _ in range(3)}
    assert len(made) == 3 and all(p.is_dir() and p.name.startswith(".cache.baking-") for p in made)


def test_rgba_openexr_is_premultiplied_in_the_file_and_straight_in_memory(tmp_path: Path) -> None:
    # OpenEXR stores colour premultiplied by alpha; it was read as straight, so an RGBA EXR photo
    # came out darker where it was transparent than Blender reads it (an audit: 0.25 against 0.5).
    import cv2  # after mlvfx.io, which enables OpenCV's EXR codec

    rng = np.random.default_rng(3)
    straight = rng.uniform(0.3, 0.7, (8, 8, 3)).astype(np.float32)
    alpha = np.full((8, 8, 1), 0.5, np.float32)
    alpha[0, 0] = 0.0
    stored = np.concatenate([straight * alpha, alpha], axis=2)
    path = tmp_path / "rgba.exr"
    cv2.imwrite(str(path), np.ascontiguousarray(stored[..., [2, 1, 0, 3]]))
    img, info = read_image(path)
    assert info.has_alpha and img.shape == (8, 8, 4)
    np.testing.assert_allclose(img[1:, :, :3], straight[1:], rtol=1e-6)
    np.testing.assert_array_equal(img[..., 3:], alpha)
    assert np.all(img[0, 0, :3] == 0)  # nothing to divide under zero alpha
    # ... and written back premultiplied, so the round trip keeps the straight colour.
    out = write_image(tmp_path / "back.exr", img)
    raw = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., [2, 1, 0, 3]]
    np.testing.assert_allclose(raw, stored, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(read_image(out)[0], img, rtol=1e-6, atol=1e-7)
    # Colour under zero alpha (a glow) is kept both ways; data EXRs are values as stored.
    glow = stored.copy()
    glow[0, 0] = (0.5, 0.5, 0.5, 0.0)
    cv2.imwrite(str(path), np.ascontiguousarray(glow[..., [2, 1, 0, 3]]))
    img, _ = read_image(path)
    assert img[0, 0].tolist() == [0.5, 0.5, 0.5, 0.0]
    back = cv2.imread(str(write_image(tmp_path / "glow.exr", img)), cv2.IMREAD_UNCHANGED)[..., [2, 1, 0, 3]]
    np.testing.assert_allclose(back, glow, rtol=1e-6, atol=1e-7)
    data, _ = read_image(path, kind="data")
    np.testing.assert_array_equal(data, glow)
    raw = write_image(tmp_path / "data.exr", data, kind="data")
    np.testing.assert_array_equal(cv2.imread(str(raw), cv2.IMREAD_UNCHANGED)[..., [2, 1, 0, 3]], glow)
    # A colour that overflows float32 once its tiny alpha is divided out is named, not inf.
    huge = stored.copy()
    huge[1, 1] = (1e10, 1e10, 1e10, 1e-30)
    cv2.imwrite(str(path), np.ascontiguousarray(huge[..., [2, 1, 0, 3]]))
    with pytest.raises(InvalidImageDataError, match="too large for its alpha"):
        read_image(path)


def _png_with_chunk(path: Path, image: np.ndarray, ctype: bytes, body: bytes) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    assert ok
    data = buf.tobytes()
    chunk = struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))
    path.write_bytes(data[:33] + chunk + data[33:])


def test_png_colour_tags_that_are_not_applied_are_said(tmp_path: Path) -> None:
    # A linear PNG (gAMA 1.0) was decoded as sRGB without a word (as Blender does): now info and
    # material.json say the tag was not applied. sRGB's own gAMA, or an sRGB chunk, say nothing.
    px = np.full((4, 4, 3), 128, np.uint8)
    cases = {
        "linear": (b"gAMA", struct.pack(">I", 100000)),
        "srgb_gamma": (b"gAMA", struct.pack(">I", 45455)),
        "srgb_chunk": (b"sRGB", b"\x00"),
        "cicp": (b"cICP", bytes([9, 16, 0, 1])),
    }
    notes = {}
    for name, (ctype, body) in cases.items():
        _png_with_chunk(tmp_path / f"{name}.png", px, ctype, body)
        img, info = read_image(tmp_path / f"{name}.png")
        assert abs(float(img[0, 0, 0]) - 0.2158605) < 1e-4  # decoded as sRGB whatever the tag
        notes[name] = info.colour_note
    assert "PNG gAMA 1 (linear, display gamma 1) not applied: decoded as sRGB" in str(notes["linear"])
    assert notes["srgb_gamma"] is None and notes["srgb_chunk"] is None
    assert "cICP" in str(notes["cicp"])
    assert describe(tmp_path / "linear.png").colour_note == notes["linear"]
