"""Header probing: an image's size and sample format, read without decoding the pixels.

Checking the size before decoding means a decompression bomb is refused before it allocates
gigabytes, and walking a PNG's chunks catches truncation before libpng prints to stderr.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

FORMATS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".jfif": "jpeg",  # what browsers on Windows save JPEGs as
    ".tif": "tiff",
    ".tiff": "tiff",
    ".exr": "exr",
}


@dataclass(frozen=True)
class Header:
    """What a file's header says. ``sample`` is "uint8", "uint16", "float16", "float32" or "unknown".

    ``width`` and ``height`` are as stored. ``orientation`` is the EXIF/TIFF orientation (1 = as
    stored, 2-8 = mirrored and/or turned for display; see :func:`mlvfx.io.image.apply_orientation`).
    ``photometric`` is a TIFF's PhotometricInterpretation (5 = CMYK), None for other formats.
    ``icc`` is an embedded ICC colour profile (see :mod:`mlvfx.io.icc`), None when there is none.
    ``extra_samples`` is a TIFF's ExtraSamples (1: premultiplied alpha, 2: straight alpha).
    ``colour_tags``: a PNG's colour chunks other than iCCP (``gAMA <gamma>``, ``sRGB``, ``cICP``).
    """

    format: str
    width: int
    height: int
    channels: int | None
    sample: str
    orientation: int = 1
    photometric: int | None = None
    icc: bytes | None = None
    extra_samples: int | None = None
    colour_tags: tuple[str, ...] = ()  # PNG gAMA / sRGB / cICP chunks: ("gAMA 1", "sRGB", "cICP")
    planar: int | None = None  # a TIFF's PlanarConfiguration (2: each channel stored apart)


class HeaderError(ValueError):
    """The header is missing, truncated or inconsistent (message without the file name)."""


def sniff_format(data: bytes) -> str | None:
    """The format a file's magic bytes say it is, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data.startswith(b"\x76\x2f\x31\x01"):
        return "exr"
    return None


def probe(data: bytes) -> Header:
    fmt = sniff_format(data)
    readers = {"png": _probe_png, "jpeg": _probe_jpeg, "tiff": _probe_tiff, "exr": _probe_exr}
    if fmt not in readers:
        raise HeaderError("not a PNG, JPEG, TIFF or OpenEXR file (unrecognised header)")
    try:
        return readers[fmt](data)
    except (struct.error, IndexError, ValueError) as exc:  # a field cut short or out of range
        if isinstance(exc, HeaderError):
            raise
        names = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "exr": "OpenEXR"}
        raise HeaderError(f"corrupt {names[fmt]} header") from None


def _probe_png(data: bytes) -> Header:
    pos = 8
    width = height = 0
    channels: int | None = None
    sample = "unknown"
    orientation = 1
    icc: bytes | None = None
    tags: list[str] = []
    seen_iend = False
    while pos < len(data):
        if pos + 8 > len(data):
            raise HeaderError("truncated PNG (file ends inside a chunk header)")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            name = ctype.decode("latin-1") if ctype.isalpha() else repr(ctype)  # no raw bytes to a terminal
            raise HeaderError(f"truncated PNG (file ends inside the {name} chunk)")
        if ctype == b"IHDR":
            if length < 13:
                raise HeaderError("corrupt PNG (IHDR chunk too short)")
            width, height, depth, color_type = struct.unpack(">IIBB", data[pos + 8 : pos + 18])
            channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type)
            if channels is None:
                raise HeaderError(f"corrupt PNG (unknown colour type {color_type})")
            sample = "uint16" if depth == 16 else "uint8"
        elif ctype == b"eXIf":
            orientation = _exif_orientation(data[pos + 8 : pos + 8 + length])
        elif ctype == b"iCCP":
            icc = _png_icc(data[pos + 8 : pos + 8 + length])
        elif ctype == b"gAMA" and length == 4:
            (gamma,) = struct.unpack(">I", data[pos + 8 : pos + 12])
            tags.append(f"gAMA {gamma / 100000:.5g}")
        elif ctype in (b"sRGB", b"cICP"):
            tags.append(ctype.decode())
        elif ctype == b"IEND":
            seen_iend = True
            break
        pos = end
    if width == 0 and height == 0 and channels is None:
        raise HeaderError("corrupt PNG (no IHDR chunk)")
    if not seen_iend:
        raise HeaderError("truncated PNG (no IEND chunk)")
    return Header("png", width, height, channels, sample, orientation, icc=icc, colour_tags=tuple(tags))


def _probe_jpeg(data: bytes) -> Header:
    pos = 2
    sof = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
    orientation = 1
    icc_chunks: dict[int, bytes] = {}
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise HeaderError("corrupt JPEG (bad marker)")
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            orientation = _exif_orientation(data[pos + 10 : pos + 2 + length])
        if marker == 0xE2 and data[pos + 4 : pos + 16] == b"ICC_PROFILE\x00" and length > 16:
            icc_chunks[data[pos + 16]] = data[pos + 18 : pos + 2 + length]  # sequence number, then data
        if marker in sof:
            if pos + 10 > len(data):
                break
            precision, height, width, ncomp = struct.unpack(">BHHB", data[pos + 4 : pos + 10])
            # The image must end somewhere after its frame header. Bytes may follow the end marker:
            # phones append a video (motion photos) or their own trailer, and some tools a newline.
            if data.find(b"\xff\xd9", pos) < 0:
                raise HeaderError("truncated JPEG (no end-of-image marker)")
            sample = "uint16" if precision > 8 else "uint8"
            icc = b"".join(icc_chunks[k] for k in sorted(icc_chunks)) or None
            return Header("jpeg", width, height, ncomp, sample, orientation, icc=icc)
        pos += 2 + length
    raise HeaderError("truncated or corrupt JPEG (no frame header)")


def _exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (274) of an EXIF block (a TIFF structure); 1 when absent or unreadable.

    A damaged EXIF block is no reason to refuse a photo whose pixels decode: it is read as
    "no orientation".
    """
    if tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    try:
        value = _tiff_tags(tiff, (274,)).get(274, 1)
    except (struct.error, IndexError, ValueError):
        return 1
    return value if 1 <= value <= 8 else 1


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}
MAX_ICC_BYTES = 4 << 20  # real profiles are a few KB; a bigger one is not read (nor inflated)


def _tiff_entries(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """``(tag, type, count, where the values are)`` of each entry of a TIFF structure's first
    image directory. Values that do not fit the entry's own field (BitsPerSample of an RGB image:
    three numbers; an ICC profile) are where the field points."""
    endian = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    if big:
        (ifd,) = struct.unpack(endian + "Q", data[8:16])
        (count,) = struct.unpack(endian + "Q", data[ifd : ifd + 8])
        entry_size, start, count_fmt = 20, ifd + 8, "Q"
    else:
        (ifd,) = struct.unpack(endian + "I", data[4:8])
        (count,) = struct.unpack(endian + "H", data[ifd : ifd + 2])
        entry_size, start, count_fmt = 12, ifd + 2, "I"
    field = struct.calcsize(count_fmt)
    for i in range(count):
        off = start + i * entry_size
        tag, typ = struct.unpack(endian + "HH", data[off : off + 4])
        (n,) = struct.unpack(endian + count_fmt, data[off + 4 : off + 4 + field])
        value_off = off + 4 + field
        if n * _TIFF_SIZES.get(typ, 1) > field:
            (value_off,) = struct.unpack(endian + count_fmt, data[value_off : value_off + field])
        yield tag, typ, n, value_off


_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 7: 1, 16: 8}  # BYTE, ASCII, SHORT, LONG, UNDEFINED, LONG8


def _tiff_tags(data: bytes, wanted: tuple[int, ...]) -> dict[int, int]:
    """The first value of each ``wanted`` (integer) tag in a TIFF structure's first image directory."""
    endian = "<" if data[:2] == b"II" else ">"
    tags: dict[int, int] = {}
    for tag, typ, _, where in _tiff_entries(data):
        if typ not in _TIFF_TYPES or tag not in wanted:
            continue
        code, size = _TIFF_TYPES[typ]
        raw = data[where : where + size]
        if len(raw) < size:
            raise struct.error("value beyond the end of the file")
        (tags[tag],) = struct.unpack(endian + code, raw)
    return tags


def _probe_tiff(data: bytes) -> Header:
    try:
        tags = _tiff_tags(data, (256, 257, 258, 262, 274, 277, 284, 338, 339))
    except struct.error:
        raise HeaderError("truncated or corrupt TIFF (cannot read the image directory)") from None
    if 256 not in tags or 257 not in tags:
        raise HeaderError("corrupt TIFF (no image width or length)")
    bits = tags.get(258, 8)
    fmt = tags.get(339, 1)
    samples = {(8, 1): "uint8", (16, 1): "uint16", (16, 3): "float16", (32, 3): "float32"}
    sample = samples.get((bits, fmt), "unknown")
    orientation = tags.get(274, 1)
    return Header(
        "tiff",
        tags[256],
        tags[257],
        tags.get(277),
        sample,
        orientation if 1 <= orientation <= 8 else 1,
        tags.get(262),
        _tiff_icc(data),
        tags.get(338),
        planar=tags.get(284),
    )


def _png_icc(chunk: bytes) -> bytes | None:
    """An iCCP chunk's profile: a name, a 0 byte, the method (0) and the zlib-compressed profile."""
    import zlib

    name_end = chunk.find(b"\x00")
    if name_end < 0 or name_end + 2 > len(chunk):
        return None
    inflater = zlib.decompressobj()
    try:
        profile = inflater.decompress(chunk[name_end + 2 :], MAX_ICC_BYTES)
    except zlib.error:
        return None  # a damaged profile is read as "no profile", as a damaged EXIF block is
    return profile or None


def _tiff_icc(data: bytes) -> bytes | None:
    """The InterColorProfile tag (34675) of a TIFF's first image directory."""
    try:
        for tag, _, n, where in _tiff_entries(data):
            if tag == 34675:
                fits = n <= MAX_ICC_BYTES and where + n <= len(data)
                return data[where : where + n] if fits else None
    except struct.error:
        return None
    return None


def _probe_exr(data: bytes) -> Header:
    pos = 8
    width = height = 0
    channels: list[int] = []
    found_window = False
    while True:
        name_end = data.find(b"\x00", pos)
        if name_end < 0:
            raise HeaderError("truncated OpenEXR header")
        if name_end == pos:
            break
        type_end = data.find(b"\x00", name_end + 1)
        if type_end < 0 or type_end + 5 > len(data):
            raise HeaderError("truncated OpenEXR header")
        name = data[pos:name_end]
        (size,) = struct.unpack("<i", data[type_end + 1 : type_end + 5])
        if size < 0:  # a negative size would move the parser backwards, forever
            raise HeaderError("corrupt OpenEXR header (negative attribute size)")
        value = data[type_end + 5 : type_end + 5 + size]
        if len(value) < size:
            raise HeaderError("truncated OpenEXR header")
        if name == b"dataWindow":
            if size < 16:
                raise HeaderError("corrupt OpenEXR header (dataWindow too short)")
            xmin, ymin, xmax, ymax = struct.unpack("<iiii", value[:16])
            width, height = xmax - xmin + 1, ymax - ymin + 1
            found_window = True
        elif name == b"channels":
            cpos = 0
            while cpos < len(value) and value[cpos] != 0:
                cend = value.find(b"\x00", cpos)
                if cend < 0 or cend + 17 > len(value):
                    raise HeaderError("corrupt OpenEXR header (channel list)")
                (ptype,) = struct.unpack("<i", value[cend + 1 : cend + 5])
                channels.append(ptype)
                cpos = cend + 17
        pos = type_end + 5 + size
    if not found_window:
        raise HeaderError("corrupt OpenEXR header (no dataWindow)")
    sample = "unknown"
    if channels:
        kinds = {0: "uint32", 1: "float16", 2: "float32"}
        sample = kinds.get(max(channels), "unknown")
    return Header("exr", width, height, len(channels) or None, sample)
