"""Reading and writing images with colour management and typed errors.

Arrays at this edge are float32 ``(H, W, C)`` with C in 1..4. Colour images (``kind="color"``) are
sRGB-encoded in 8/16-bit files and linear in memory; float files (EXR, float TIFF) are taken as
already linear. Data maps (``kind="data"``) are never converted. Alpha is carried through unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

# OpenCV reads this when it first decodes an EXR, so it must be set before any decode.
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

import cv2
import numpy as np
import numpy.typing as npt

from mlvfx import config
from mlvfx.color import decode_color, encode_color
from mlvfx.errors import (
    ImageReadError,
    ImageTooLargeError,
    ImageWriteError,
    InvalidImageDataError,
    OutOfMemoryError,
)
from mlvfx.io import icc
from mlvfx.io.atomic import check_writable, write_bytes_atomic
from mlvfx.io.probe import FORMATS, Header, HeaderError, probe

Kind = Literal["color", "data"]
FloatImage = npt.NDArray[np.float32]
MAX_CHANNELS = 4


@dataclass(frozen=True)
class ImageInfo:
    """What an image file was, before conversion to float32.

    Attributes:
        path: the file read.
        format: "png", "jpeg", "tiff" or "exr".
        width, height, channels: the decoded image's size.
        bit_depth: 8, 16 or 32 (16 also for half-float EXR/TIFF).
        sample: "uint8", "uint16", "float16" or "float32".
        color_space: "srgb" (decoded to linear on read), "icc" (decoded to linear sRGB with its
            embedded profile), "linear" (float colour file) or "data".
        has_alpha: True for 2- and 4-channel images.
        orientation: the file's EXIF/TIFF orientation (1: none). It has been applied: ``width``,
            ``height`` and the pixels are as an image viewer shows them, not as stored.
        icc_profile: the name of an embedded ICC profile (None: none). A matrix/TRC RGB profile
            (Display P3, Adobe RGB, ...) is applied when colour is read (``color_space`` "icc");
            otherwise the name says why not.
        sha256: the sha256 of the file's bytes as they were read and decoded.
        colour_note: a colour tag the file carries that was not applied (a PNG gAMA chunk that is
            not sRGB's, a cICP chunk): the pixels were decoded as sRGB, as Blender decodes them.
    """

    path: str
    format: str
    width: int
    height: int
    channels: int
    bit_depth: int
    sample: str
    color_space: str
    has_alpha: bool
    orientation: int = 1
    icc_profile: str | None = None
    sha256: str | None = None
    colour_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_bytes(path: Path) -> bytes:
    from mlvfx.fsutil import read_regular

    try:
        data = read_regular(path)
    except IsADirectoryError:
        raise ImageReadError("is a folder, not an image file", path) from None
    except PermissionError:  # Windows says a folder opened as a file so
        if os.path.isdir(path):  # (never raises; Path.is_dir re-raises EACCES in 3.11)
            raise ImageReadError("is a folder, not an image file", path) from None
        raise ImageReadError("permission denied", path) from None
    except FileNotFoundError:
        raise ImageReadError("no such file", path) from None
    except OSError as exc:
        raise ImageReadError(f"cannot read: {exc.strerror or exc}", path) from None
    if not data:
        raise ImageReadError("empty file (0 bytes)", path)
    return data


def check_image(array: npt.ArrayLike, name: str = "image", *, allow_nonfinite: bool = False) -> FloatImage:
    """Validate an in-memory image and return it as float32 (H, W, C).

    Args:
        array: (H, W) or (H, W, C) with C in 1..4.
        name: how to name the array in error messages (a file path or a parameter name).
        allow_nonfinite: accept NaN and inf.

    Raises:
        InvalidImageDataError: wrong rank, zero size, more than 4 channels, or NaN/inf values.
    """
    if hasattr(array, "detach") and hasattr(array, "cpu"):  # a torch tensor, perhaps needing grad
        array = array.detach().cpu().numpy()
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise InvalidImageDataError(f"expected an (H, W) or (H, W, C) image, got shape {a.shape}", name)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InvalidImageDataError(f"image has zero size {a.shape[1]}x{a.shape[0]}", name)
    if not 1 <= a.shape[2] <= MAX_CHANNELS:
        raise InvalidImageDataError(f"{a.shape[2]} channels; 1 to {MAX_CHANNELS} are supported", name)
    if a.dtype.kind not in "fui" and a.dtype != np.bool_:
        raise InvalidImageDataError(f"unsupported dtype {a.dtype}", name)
    if a.dtype.kind in "ui" and a.size and int(a.max()) > 1:
        # An 8/16-bit array straight from cv2.imread or PIL was taken as linear 0-255: maps of
        # white. Scaling it is not enough either (its values are sRGB-encoded), so say how.
        raise InvalidImageDataError(
            f"{a.dtype} pixels up to {int(a.max())}: mlvfx takes float images in [0, 1], colour "
            "linear; for an 8-bit photo pass mlvfx.color.srgb_to_linear(pixels / 255), or read the "
            "file with mlvfx.io.read_image",
            name,
        )
    out = a.astype(np.float32, copy=False)
    if not allow_nonfinite and not np.isfinite(out).all():
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise InvalidImageDataError(f"contains {bad} NaN or inf values", name)
    return out


_STDERR_LOCK = threading.Lock()


def _decode_quietly(data: bytes) -> tuple[np.ndarray[Any, Any] | None, str]:
    """``cv2.imdecode`` with the C libraries' own messages (libpng errors, libjpeg warnings,
    OpenCV's log) kept off the terminal: errors are reported as one line by the caller instead.

    Returns:
        The decoded array (None if decoding failed) and what the decoders wrote to stderr.
    """
    if data[:4] == EXR_MAGIC:
        return _quietly(lambda: _decode_exr(data))
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # classic TIFF and BigTIFF
        return _quietly(lambda: _decode_tiff_telling(data))
    return _quietly(lambda: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))


def _decode_tiff_telling(data: bytes) -> np.ndarray[Any, Any] | None:
    """A TIFF decoded with OpenCV's log at DEBUG, the level where it passes on libtiff's messages:
    a damaged strip is filled with black and said only there (an audit: a TIFF 59 % black, exit 0)."""
    old = cv2.setLogLevel(5)
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        cv2.setLogLevel(old)


# libtiff's messages from decoding pixel data (not from reading tags, where unknown private tags are
# common and harmless): "OpenCV TIFF: <module>: Warning, <message>" with these modules.
_TIFF_DAMAGE = re.compile(
    r"^OpenCV TIFF: (|\w*Decode|TIFFReadEncoded\w*|TIFFFill\w*|TIFFReadRaw\w*|TIFFRead(Strip|Tile)\w*): "
    r"(?:Warning|Error), (?P<what>.+)$",
    re.MULTILINE,
)


# libtiff's notes on valid files it reads whole (the empty module is the name OpenCV gives an
# in-memory file, which libtiff also uses for tag and colormap notes): not damage (a review found
# palette, odd-tile, old-style LZW and tall-last-strip JPEG TIFFs refused, pixel-exact in OpenCV).
_TIFF_BENIGN = re.compile(
    r"^(Nonstandard tile (width|length)|Assuming 8-bit colormap|Old-style LZW codes|"
    r"JPEG strip size exceeds expected dimensions|incorrect count for field|fractional scanline)"
)


def _tiff_damage(said: str) -> str | None:
    """What libtiff said of damaged pixel data while decoding, or None."""
    for found in _TIFF_DAMAGE.finditer(said):
        what = found.group("what").strip()
        if not _TIFF_BENIGN.match(what):
            return what
    return None


EXR_MAGIC = b"\x76\x2f\x31\x01"


@contextlib.contextmanager
def _exr_temp() -> Iterator[str]:
    """A path for an EXR in a folder of mlvfx's own under the temp folder (``TMPDIR``), removed
    after: OpenCV's in-memory EXR codec writes a hidden copy under a fixed ``/tmp/__opencv_temp.*``
    instead, which ignored TMPDIR, said a full /tmp as an assertion and left the copy behind (an
    audit). OSError when the temp folder cannot take the file (the caller names the image)."""
    folder = tempfile.mkdtemp(prefix="mlvfx-exr-")
    try:
        yield os.path.join(folder, "image.exr")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _decode_exr(data: bytes) -> np.ndarray[Any, Any] | None:
    with _exr_temp() as path:
        with open(path, "wb") as fh:
            fh.write(data)
        return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def _encode_exr(image: np.ndarray[Any, Any], params: list[int]) -> bytes:
    with _exr_temp() as path:
        if not cv2.imwrite(path, image, params):
            raise OSError(errno.ENOSPC, "OpenCV could not write it")
        with open(path, "rb") as fh:
            return fh.read()


def _quietly(run: Any) -> tuple[Any, str]:
    """``run()`` with fd 2 pointed at a sink, so the C libraries' messages stay off the terminal;
    returns its result and what was written there (other threads' lines are passed on)."""
    with _STDERR_LOCK:
        with contextlib.suppress(Exception):
            sys.stderr.flush()  # what Python has buffered (a progress bar) goes out first, not into the sink
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to protect (a GUI host without a console)
            return run(), ""
        try:
            sink = tempfile.TemporaryFile()
        except OSError:  # no writable temp folder for the sink: the messages are not kept off (an audit)
            os.close(saved)
            return run(), ""
        with sink:
            try:
                os.dup2(sink.fileno(), 2)
                result = run()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            sink.seek(0)
            said = sink.read().decode("utf-8", "replace")
    others = _not_decoders(said)
    if others:  # another thread's output (a host's log) in the same moment: passed on, not lost
        with contextlib.suppress(Exception):
            sys.stderr.write("".join(others))
            sys.stderr.flush()
    return result, said


# How the C decoders' and OpenCV's messages begin (libpng, libjpeg, libtiff, OpenCV's log); any
# other line written while fd 2 points at the sink comes from elsewhere in the process.
_DECODER_LINE = re.compile(
    r"^(libpng (warning|error)|\[ ?(WARN|ERROR|INFO|DEBUG):\d|OpenCV\b|"
    r"Corrupt JPEG data|Premature end of JPEG|Warning: unknown JFIF|Unknown Adobe|Inconsistent progression|"
    r"Application transferred|Invalid SOS|Invalid JPEG|Bogus (marker|DQT|DHT|Huffman)|Unsupported marker|"
    r"Quantization table|Huffman table|JPEG datastream|Not a JPEG|Improper call|"
    r"TIFF\w*:|_TIFF\w*:|\w+: (Warning|Error), )"
)
# OpenCV's exception text runs over several lines ("> ...", "where", "    '...' is 3") after its
# [ERROR] line; they belong to the decoder only right after such a line.
_CONTINUATION = re.compile(r"^(>|\s+\S|where$)")


def _not_decoders(said: str) -> list[str]:
    """The lines of ``said`` that no decoder wrote (another thread's output), in order."""
    others: list[str] = []
    inside = False
    for line in said.splitlines(keepends=True):
        text = line.rstrip("\n")
        if _DECODER_LINE.match(text):
            inside = True
        elif inside and _CONTINUATION.match(text):
            pass
        else:
            inside = False
            others.append(line)
    return others


ORIENTATIONS = {
    1: "as stored",
    2: "mirrored left-right",
    3: "turned 180°",
    4: "mirrored top-bottom",
    5: "mirrored and turned 90° anticlockwise",
    6: "turned 90° clockwise",
    7: "mirrored and turned 90° clockwise",
    8: "turned 90° anticlockwise",
}


def apply_orientation(image: np.ndarray[Any, Any], orientation: int) -> np.ndarray[Any, Any]:
    """``image`` (H, W[, C]) as shown for an EXIF/TIFF orientation tag (1-8; others: unchanged).

    The tag says where the stored rows and columns go for display: 6 (a phone held upright) turns
    the stored image 90° clockwise, 8 anticlockwise, 3 by 180°; 2, 4, 5 and 7 also mirror it.
    """
    if orientation == 2:
        return image[:, ::-1]
    if orientation == 3:
        return image[::-1, ::-1]
    if orientation == 4:
        return image[::-1]
    if orientation == 5:
        return image.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(image, -1)
    if orientation == 7:
        return image[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(image, 1)
    return image


def read_image(
    path: str | os.PathLike[str],
    *,
    kind: Kind = "color",
    max_pixels: int | None = None,
) -> tuple[FloatImage, ImageInfo]:
    """Read an image file as float32 (H, W, C).

    An EXIF (JPEG, PNG) or TIFF orientation tag is applied, as image viewers do: a portrait phone
    photo comes back upright (:attr:`ImageInfo.orientation` says which tag it had). An embedded
    matrix/TRC ICC profile decodes colour (:mod:`mlvfx.io.icc`). CMYK TIFFs are converted to RGB
    without an alpha channel, and alpha is always straight (premultiplied TIFFs are divided out, and
    for ``kind="color"`` OpenEXR with alpha, whose colour is premultiplied by convention;
    :func:`encode_image` premultiplies it again; colour under zero alpha is kept both ways).

    Args:
        path: a PNG (8/16-bit), JPEG, TIFF (8/16-bit, 32-bit float) or OpenEXR file.
        kind: "color" decodes sRGB (or the embedded profile) to linear (integer files only);
            "data" returns values as stored, integers scaled to [0, 1].
        max_pixels: refuse images with more pixels (default ``MLVFX_MAX_PIXELS`` or 16384²).

    Returns:
        The image, channel order RGB(A), and an :class:`ImageInfo` describing the file.

    Raises:
        ImageReadError: missing, empty, corrupt, truncated or unsupported file.
        ImageTooLargeError: more pixels than ``max_pixels``.
        InvalidImageDataError: NaN/inf in float data, or more than 4 channels.

    Example:
        >>> img, info = read_image("photo.jpg")  # doctest: +SKIP
        >>> img.shape, info.color_space  # doctest: +SKIP
        ((1024, 1024, 3), 'srgb')
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in FORMATS:
        raise ImageReadError(
            f"unsupported file type '{suffix or '(none)'}' (use PNG, JPEG, TIFF or OpenEXR)", p
        )
    data = _read_bytes(p)
    try:
        header = probe(data)
    except HeaderError as exc:
        raise ImageReadError(str(exc), p) from None
    if header.width <= 0 or header.height <= 0:
        raise ImageReadError(f"zero-sized image ({header.width}x{header.height})", p)
    limit = config.max_pixels() if max_pixels is None else max_pixels
    if header.width * header.height > limit:
        raise ImageTooLargeError(
            f"{header.width}x{header.height} is larger than the limit of {limit} pixels "
            "(raise MLVFX_MAX_PIXELS to allow it)",
            p,
        )
    if header.channels is not None and header.channels > MAX_CHANNELS:
        raise InvalidImageDataError(f"{header.channels} channels; 1 to {MAX_CHANNELS} are supported", p)
    as_stored = False  # decoded by tifffile: alpha as the file stores it, orientation applied here
    raw: np.ndarray[Any, Any] | None
    by_tifffile = None  # samples as stored: what OpenCV reads wrong or not at all
    if header.format == "tiff" and header.channels == 2:
        # Grey + alpha: OpenCV drops the alpha, reads 16 bits as 8 and cannot read float at all.
        by_tifffile = _decode_tiff_grey_alpha(data, p)
        if by_tifffile is None and header.planar == 2:  # OpenCV gets these wrong (a review): said
            raise ImageReadError(
                "a grey + alpha TIFF with separate planes that cannot be decoded here (LZW, JPEG or ZSTD "
                "need the imagecodecs package); save it with interleaved (contiguous) channels",
                p,
            )
    elif (
        header.format == "tiff"
        and header.planar == 2
        and header.photometric == 2  # RGB(A); CMYK and Lab keep their own refusals (a review)
        and (header.channels or 1) > 2
        and header.sample != "uint8"
    ):
        # Channels stored apart at 16 bits or float: OpenCV decodes these to wrong pixels (99.7 %
        # of 16-bit values, uninitialised memory for float; a review), so tifffile reads them.
        by_tifffile = _decode_tiff_planar(data, p, header.channels or 3)
    if by_tifffile is not None:
        raw, decoder_says, as_stored = apply_orientation(by_tifffile, header.orientation), "", True
    else:
        try:
            raw, decoder_says = _decode_quietly(data)
        except cv2.error as exc:
            if exc.code == cv2.Error.StsNoMem:  # a decoder's allocation: memory, not a bad file (an audit)
                raise OutOfMemoryError("out of memory decoding the image (try a smaller image)", p) from None
            raise ImageReadError(f"cannot decode {header.format.upper()} data: {exc.err}", p) from None
        except OSError as exc:  # the EXR's temp copy
            raise ImageReadError(
                f"cannot decode EXR: no room for its temporary copy in {tempfile.gettempdir()} "
                f"({exc.strerror or exc}); set TMPDIR to a folder with space",
                p,
            ) from None
    if raw is None:
        if header.format == "tiff" and header.sample == "float16":  # OpenCV has no decoder for it
            raise ImageReadError(
                "16-bit float TIFF is not supported; save it as 32-bit float TIFF or OpenEXR", p
            )
        if header.format == "tiff" and header.photometric == 5:
            raise ImageReadError(f"{header.sample} CMYK TIFF is not supported; save it as RGB", p)
        raise ImageReadError(f"corrupt or truncated {header.format.upper()} data", p)
    if "premature end of data segment" in decoder_says:  # libjpeg fills the missing rows with grey
        raise ImageReadError("truncated JPEG data (premature end of data segment)", p)
    if header.format == "tiff" and (damage := _tiff_damage(decoder_says)) is not None:
        raise ImageReadError(f"corrupt or truncated TIFF data ({damage.rstrip('.')})", p)
    if raw.ndim == 2:
        raw = raw[:, :, None]
    if header.photometric == 5 and header.channels == 4 and raw.shape[2] == 4:
        raw = raw[..., :3]  # CMYK, which OpenCV turns into BGR plus a constant, meaningless alpha
    if header.format != "tiff":  # OpenCV's TIFF decoder applies the tag itself, even with IMREAD_UNCHANGED
        raw = apply_orientation(raw, header.orientation)
    channels = raw.shape[2]
    if channels > MAX_CHANNELS:
        raise InvalidImageDataError(f"{channels} channels; 1 to {MAX_CHANNELS} are supported", p)
    if channels >= 3:
        raw = raw[..., [2, 1, 0, 3][:channels]]
    profile = icc.parse_profile(header.icc) if header.icc else None
    converts = (
        kind == "color"
        and profile is not None
        and profile.usable
        and not profile.is_srgb
        and raw.dtype in (np.uint8, np.uint16)
        and channels >= 3
    )
    if converts:
        assert profile is not None
        premultiplied = header.format == "tiff" and channels == 4 and _tiff_premultiplied(header, raw)
        img = icc.decode(raw, profile, premultiplied=premultiplied)  # to linear sRGB
        bit_depth, sample = (8, "uint8") if raw.dtype == np.uint8 else (16, "uint16")
    elif raw.dtype == np.uint8:
        img = raw.astype(np.float32) / 255.0
        bit_depth, sample = 8, "uint8"
    elif raw.dtype == np.uint16:
        img = raw.astype(np.float32) / 65535.0
        bit_depth, sample = 16, "uint16"
    elif raw.dtype in (np.float32, np.float16):
        img = raw.astype(np.float32, copy=False)
        sample = header.sample if header.sample in ("float16", "float32") else str(raw.dtype)
        bit_depth = 16 if sample == "float16" else 32
        if not np.isfinite(img).all():
            bad = int(img.size - np.count_nonzero(np.isfinite(img)))
            raise InvalidImageDataError(f"contains {bad} NaN or inf values", p)
    else:
        raise ImageReadError(f"unsupported sample type {raw.dtype}", p)
    is_float = bit_depth == 32 or sample == "float16"
    if as_stored and header.extra_samples == 1 and channels == 2:  # a premultiplied grey + alpha TIFF
        grey = img[..., :1]
        np.divide(grey, img[..., 1:], out=grey, where=img[..., 1:] > 0)
        if not is_float:
            np.minimum(grey, 1.0, out=grey)
    if header.format == "tiff" and channels == 4 and not converts and _tiff_premultiplied(header, raw):
        colour = img[..., :3]
        np.divide(colour, img[..., 3:], out=colour, where=img[..., 3:] > 0)
        if not is_float:  # 8-bit rounding can put a value a hair over 1
            np.minimum(colour, 1.0, out=colour)
    if header.format == "exr" and kind == "color" and channels in (2, 4):
        # OpenEXR stores colour premultiplied by alpha; colour under zero alpha (glow) stays as is.
        colour, alpha = img[..., :-1], img[..., -1:]
        with np.errstate(over="ignore"):
            np.divide(colour, alpha, out=colour, where=alpha > 0)
        if not np.isfinite(colour).all():
            raise InvalidImageDataError("colour too large for its alpha to divide out (float overflow)", p)
    if converts:
        space = "icc"
    elif kind == "color" and not is_float:
        img = decode_color(img)
        space = "srgb"
    elif kind == "color":
        space = "linear"
    else:
        space = "data"
    info = ImageInfo(
        path=str(p),
        format=header.format,
        width=img.shape[1],
        height=img.shape[0],
        channels=channels,
        bit_depth=bit_depth,
        sample=sample,
        color_space=space,
        has_alpha=channels in (2, 4),
        orientation=header.orientation,
        icc_profile=_profile_note(profile, channels, is_float),
        colour_note=_colour_tag_note(header, space),
        sha256=hashlib.sha256(data).hexdigest(),  # the bytes decoded, not the file as it is later
    )
    return np.ascontiguousarray(img, dtype=np.float32), info


def _decode_tiff_grey_alpha(data: bytes, path: Path) -> np.ndarray[Any, Any] | None:
    """A grey + alpha TIFF as (H, W, 2), samples as stored (tifffile, which scikit-image brings),
    or None where tifffile cannot decode it (LZW, JPEG or ZSTD compression need the optional
    imagecodecs package): OpenCV then reads the grey channel, as before.

    Raises:
        ImageReadError: tifffile decoded something that is not grey + alpha.
    """
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            raw = np.asarray(page.asarray())
            axes = str(page.axes)
    except Exception:  # tifffile raises many types; OpenCV gets its turn
        return None
    if "S" in axes and raw.ndim == 3:
        raw = np.moveaxis(raw, axes.index("S"), -1)
    if raw.ndim != 3 or raw.shape[2] != 2:
        raise ImageReadError(f"grey + alpha TIFF decoded as shape {raw.shape}", path)
    if raw.dtype not in (np.uint8, np.uint16, np.float16, np.float32):
        raise ImageReadError(f"unsupported sample type {raw.dtype} in a grey + alpha TIFF", path)
    return raw


def _decode_tiff_planar(data: bytes, path: Path, channels: int) -> np.ndarray[Any, Any]:
    """A TIFF with separate colour planes as (H, W, C), samples as stored, channels in OpenCV's
    order (BGR(A)), as the rest of :func:`read_image` expects.

    Raises:
        ImageReadError: tifffile cannot decode it (LZW, JPEG or ZSTD need the optional imagecodecs
            package): said, rather than OpenCV's wrong pixels.
    """
    try:
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            raw = np.asarray(page.asarray())
            axes = str(page.axes)
    except Exception as exc:  # tifffile raises many types
        raise ImageReadError(
            f"a TIFF with separate colour planes at 16 bits or float that cannot be decoded here "
            f"({type(exc).__name__}); save it with interleaved (contiguous) channels",
            path,
        ) from None
    if "S" in axes and raw.ndim == 3:
        raw = np.moveaxis(raw, axes.index("S"), -1)
    if raw.ndim != 3 or raw.shape[2] != channels or raw.dtype not in (np.uint16, np.float16, np.float32):
        raise ImageReadError(f"TIFF with separate colour planes decoded as {raw.dtype} {raw.shape}", path)
    return np.ascontiguousarray(raw[..., [2, 1, 0, 3][:channels]] if channels >= 3 else raw)


def _tiff_premultiplied(header: Header, raw: np.ndarray[Any, Any]) -> bool:
    """Whether OpenCV hands over this RGBA TIFF's colour premultiplied by alpha (mlvfx's is straight).

    Measured with OpenCV 4.11: an 8-bit TIFF with straight alpha (ExtraSamples 2) comes back
    premultiplied (libtiff's RGBA reader), and a premultiplied file (ExtraSamples 1) as stored at
    any depth; 16-bit straight alpha and unspecified extra samples come back as stored.
    """
    return header.extra_samples == 1 or (header.extra_samples == 2 and raw.dtype == np.uint8)


SRGB_FILE_GAMMA = 1 / 2.2  # a gAMA chunk near this is what an sRGB PNG writer puts in


def _colour_tag_note(header: Header, space: str) -> str | None:
    """Why a PNG's own colour tags were not used, when they say something other than sRGB. An ICC
    profile wins over them (as the PNG spec has it), and an sRGB chunk says sRGB."""
    if header.icc or space not in ("srgb", "data") or "sRGB" in header.colour_tags:
        return None
    if "cICP" in header.colour_tags:
        return "PNG cICP colour tag not applied: decoded as sRGB (as Blender does)"
    gamma = next((float(t.split()[1]) for t in header.colour_tags if t.startswith("gAMA ")), None)
    if gamma is None or gamma <= 0 or abs(gamma - SRGB_FILE_GAMMA) < 0.02:
        return None
    kind = "linear, " if abs(gamma - 1.0) < 0.01 else ""
    return (
        f"PNG gAMA {gamma:.5g} ({kind}display gamma {1 / gamma:.3g}) not applied: decoded as sRGB (as "
        "Blender does); save linear data as EXR"
    )


def _profile_note(profile: icc.Profile | None, channels: int, is_float: bool) -> str | None:
    """The embedded profile's name, and why it is not applied when it is not."""
    if profile is None:
        return None
    why = profile.reason
    if profile.usable and is_float:
        why = "float pixels are taken as linear"
    elif profile.usable and channels < 3:
        why = "a grey image"
    return f"{profile.description} (not applied: {why})" if why else profile.description


def describe(path: str | os.PathLike[str]) -> ImageInfo:
    """Describe an image file (reads and validates it completely)."""
    return read_image(path, kind="data")[1]


def encode_image(
    image: npt.ArrayLike,
    suffix: str,
    *,
    kind: Kind = "color",
    bit_depth: int | None = None,
    name: str = "image",
) -> bytes:
    """Encode a float (H, W, C) image to the bytes of a file with extension ``suffix``.

    Integer formats clip to [0, 1] and round; colour images are sRGB-encoded first.
    Default depths: PNG/JPEG/TIFF 8-bit, EXR 32-bit float. PNG and TIFF accept 16; TIFF and EXR 16
    (half) or 32 (float); JPEG only 8.
    """
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        raise ImageWriteError(f"unsupported file type '{suffix}' (use .png, .jpg, .tif or .exr)", name)
    img = check_image(image, name)
    allowed = {"png": (8, 16), "jpeg": (8,), "tiff": (8, 16, 32), "exr": (16, 32)}[fmt]
    depth = bit_depth if bit_depth is not None else (32 if fmt == "exr" else 8)
    if depth not in allowed:
        raise ImageWriteError(f"{fmt.upper()} cannot store {depth}-bit samples (use {allowed})", name)
    channels = img.shape[2]
    if fmt == "jpeg" and channels in (2, 4):
        raise ImageWriteError("JPEG cannot store alpha; write PNG, TIFF or EXR instead", name)
    if channels == 2:
        raise ImageWriteError("2-channel images can only be written as single-channel + alpha PNG", name)
    params: list[int] = []
    out: npt.NDArray[Any]
    if fmt == "exr" or (fmt == "tiff" and depth == 32):
        out = img.astype(np.float32)
        if fmt == "exr" and kind == "color" and channels == 4:
            # OpenEXR's convention: colour premultiplied by alpha; under zero alpha it is kept (the
            # reader keeps it too), so a round trip loses nothing.
            alpha = out[..., 3:]
            out = np.concatenate([np.where(alpha > 0, out[..., :3] * alpha, out[..., :3]), alpha], axis=2)
        if fmt == "exr":
            params = [
                cv2.IMWRITE_EXR_TYPE,
                cv2.IMWRITE_EXR_TYPE_HALF if depth == 16 else cv2.IMWRITE_EXR_TYPE_FLOAT,
            ]
        else:
            # OpenCV's default for float RGB TIFF is lossy SGILOG; data must survive exactly.
            params = [cv2.IMWRITE_TIFF_COMPRESSION, 8]
    else:
        encoded = encode_color(img) if kind == "color" else img
        scale = 255.0 if depth == 8 else 65535.0
        dtype = np.uint8 if depth == 8 else np.uint16
        out = np.rint(np.clip(encoded, 0.0, 1.0) * scale).astype(dtype)
        if fmt == "jpeg":
            params = [cv2.IMWRITE_JPEG_QUALITY, 95]
        elif fmt == "png":
            params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
        else:
            params = [cv2.IMWRITE_TIFF_COMPRESSION, 8]
    if channels >= 3:
        out = out[..., [2, 1, 0, 3][:channels]]
    out = np.ascontiguousarray(out[..., 0] if channels == 1 else out)
    try:
        if fmt == "exr":  # through a temp file of ours (see _exr_temp); not under the stderr lock,
            # which other threads' reads would wait on for the seconds a 4K EXR takes (a review)
            return _encode_exr(out, params)
        ok, buf = cv2.imencode(suffix.lower(), out, params)
    except cv2.error as exc:
        raise ImageWriteError(f"cannot encode {fmt.upper()}: {exc.err}", name) from None
    except OSError as exc:
        raise ImageWriteError(
            f"cannot encode EXR: no room for its temporary file in {tempfile.gettempdir()} "
            f"({exc.strerror or exc}); set TMPDIR to a folder with space",
            name,
        ) from None
    if not ok:
        raise ImageWriteError(f"cannot encode {fmt.upper()}", name)
    return buf.tobytes()


def write_image(
    path: str | os.PathLike[str],
    image: npt.ArrayLike,
    *,
    kind: Kind = "color",
    bit_depth: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a float (H, W, C) image atomically.

    Args:
        path: output file; the format follows the extension (.png, .jpg, .tif, .exr).
        image: float (H, W) or (H, W, C), linear for ``kind="color"``.
        kind: "color" encodes linear to sRGB in integer formats; "data" stores values as they are.
        bit_depth: see :func:`encode_image`.
        overwrite: replace an existing file; otherwise ``OutputExistsError`` is raised.

    Returns:
        The path written.
    """
    p = Path(path)
    check_writable(p, overwrite)
    data = encode_image(image, p.suffix, kind=kind, bit_depth=bit_depth, name=str(p))
    return write_bytes_atomic(p, data, overwrite=overwrite)


def is_image_file(path: Path) -> bool:
    """True if ``path`` has a supported image extension (content is not checked)."""
    return path.suffix.lower() in FORMATS
