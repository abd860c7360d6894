"""Embedded ICC colour profiles of RGB photos: matrix/TRC profiles converted to linear sRGB.

Phones and cameras tag photos with Display P3 or Adobe RGB profiles. Read as if they were sRGB,
their colours shift (a P3 red loses saturation) and the "linear" working data has the wrong
primaries. The common profiles are matrix/TRC profiles: a tone curve per channel (``rTRC``,
``gTRC``, ``bTRC``) and the primaries' XYZ in the D50 connection space (``rXYZ``, ``gXYZ``,
``bXYZ``). For those, decoding is exact: tone curve, then the profile's matrix to XYZ (D50), then
the inverse of sRGB's matrix (its D50-adapted primaries, as an sRGB ICC profile has them) to
linear sRGB. Colours outside sRGB are clipped at 0. Profiles built from lookup tables only
(``A2B0``) are rare for photos; they are reported and not applied.

Only the ICC format itself is read here; no colour management library is needed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# sRGB's primaries in the D50 connection space (Bradford-adapted, as in the sRGB ICC profiles).
SRGB_D50 = np.array(
    [
        [0.4360747, 0.3850649, 0.1430804],
        [0.2225045, 0.7168786, 0.0606169],
        [0.0139322, 0.0971045, 0.7141733],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Profile:
    """What an embedded profile says, as far as decoding needs it.

    ``usable`` is False (with ``reason``) for profiles this reader does not apply. ``is_srgb``:
    the profile is sRGB itself (the usual decoding gives the same values).
    """

    description: str
    usable: bool
    reason: str = ""
    is_srgb: bool = False
    matrix: npt.NDArray[np.float64] | None = None  # encoded-linear RGB -> linear sRGB
    curves: tuple[npt.NDArray[np.float64], ...] = ()  # per channel: curve on 4096 samples of [0, 1]


def _s15(data: bytes, pos: int) -> float:
    return float(struct.unpack(">i", data[pos : pos + 4])[0]) / 65536.0


def _description(icc: bytes, tags: dict[bytes, tuple[int, int]]) -> str:
    if b"desc" not in tags:
        return "unnamed profile"
    off = tags[b"desc"][0]
    kind = icc[off : off + 4]
    try:
        if kind == b"desc":  # ICC v2 textDescriptionType: ASCII count, then the text
            (n,) = struct.unpack(">I", icc[off + 8 : off + 12])
            return (
                icc[off + 12 : off + 12 + n].split(b"\x00")[0].decode("latin-1").strip() or "unnamed profile"
            )
        if kind == b"mluc":  # ICC v4 multiLocalizedUnicodeType: the first record's UTF-16 text
            length, start = struct.unpack(">II", icc[off + 20 : off + 28])
            return icc[off + start : off + start + length].decode("utf-16-be", "replace").strip("\x00 ")
    except (struct.error, UnicodeDecodeError):
        pass
    return "unnamed profile"


def _curve(icc: bytes, off: int) -> npt.NDArray[np.float64]:
    """A tone curve (``curv`` or ``para``) sampled at 4096 points of [0, 1]."""
    x = np.linspace(0.0, 1.0, 4096)
    kind = icc[off : off + 4]
    if kind == b"curv":
        (n,) = struct.unpack(">I", icc[off + 8 : off + 12])
        if n == 0:
            return x
        if n == 1:
            (g,) = struct.unpack(">H", icc[off + 12 : off + 14])
            return np.power(x, g / 256.0)
        table = np.frombuffer(icc[off + 12 : off + 12 + 2 * n], dtype=">u2").astype(np.float64) / 65535.0
        if table.size != n:
            raise ValueError("tone curve cut short")
        return np.interp(x, np.linspace(0.0, 1.0, n), table)
    if kind == b"para":
        (ftype,) = struct.unpack(">H", icc[off + 8 : off + 10])
        count = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(ftype)
        if count is None:
            raise ValueError(f"unknown parametric curve type {ftype}")
        g, a, b, c, d, e, f = ([_s15(icc, off + 12 + 4 * i) for i in range(count)] + [0.0] * 7)[:7]
        if ftype == 0:
            return np.power(x, g)
        if ftype in (1, 2):
            cut = -b / a if a else 0.0
            base = np.power(np.clip(a * x + b, 0.0, None), g)
            return np.where(x >= cut, base + (c if ftype == 2 else 0.0), c if ftype == 2 else 0.0)
        base = np.power(np.clip(a * x + b, 0.0, None), g)
        return np.where(x >= d, base + (e if ftype == 4 else 0.0), c * x + (f if ftype == 4 else 0.0))
    raise ValueError(f"unknown tone curve type {kind!r}")


D50_WHITE = np.array([0.9642, 1.0, 0.8249])


def _implausible(to_xyz: npt.NDArray[np.float64], curves: tuple[npt.NDArray[np.float64], ...]) -> str:
    """Why a profile's primaries or curves cannot be a photo's (empty when they can).

    A damaged profile (a gamma of 0, all-zero primaries) would otherwise turn the photo white,
    black or NaN without a word; an old v2 profile with unadapted primaries would tint it.
    """
    white = to_xyz @ np.ones(3)
    if not np.all(np.isfinite(white)) or np.abs(white - D50_WHITE).max() > 0.02:
        return "its primaries do not add up to the D50 white"
    for c in curves:
        if (
            not np.all(np.isfinite(c))
            or np.any(np.diff(c) < -1e-3)  # a measured table may dip by a step
            or not 0.9 < c[-1] < 1.1
            or abs(c[0]) > 0.1
        ):
            return "a tone curve is not an increasing curve from 0 to 1"
    return ""


def parse_profile(icc: bytes) -> Profile:
    """Read an ICC profile's description, primaries and tone curves (never raises)."""
    try:
        if len(icc) < 132 or icc[36:40] != b"acsp":
            return Profile("unreadable profile", False, "not an ICC profile")
        (count,) = struct.unpack(">I", icc[128:132])
        tags: dict[bytes, tuple[int, int]] = {}
        for i in range(min(count, 1000)):
            sig, off, size = struct.unpack(">4sII", icc[132 + 12 * i : 144 + 12 * i])
            if off + size > len(icc):
                return Profile("unreadable profile", False, "tag beyond the end of the profile")
            tags[sig] = (off, size)
        name = _description(icc, tags)
        if icc[16:20] != b"RGB ":
            return Profile(name, False, f"a {icc[16:20].decode('latin-1').strip()} profile, not RGB")
        if icc[20:24] != b"XYZ ":
            return Profile(name, False, "its connection space is not XYZ")
        needed = (b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC")
        if not all(t in tags for t in needed):
            return Profile(name, False, "a lookup-table profile (only matrix/TRC profiles are applied)")
        columns = []
        for t in needed[:3]:
            off = tags[t][0]
            columns.append([_s15(icc, off + 8 + 4 * k) for k in range(3)])
        to_xyz = np.array(columns, dtype=np.float64).T  # columns: the primaries' XYZ
        with np.errstate(all="ignore"):  # a damaged curve is caught by _implausible, not warned about
            curves = tuple(_curve(icc, tags[t][0]) for t in needed[3:])
    except (struct.error, ValueError, IndexError) as exc:
        return Profile("unreadable profile", False, f"damaged ({exc})")
    bad = _implausible(to_xyz, curves)
    if bad:
        return Profile(name, False, bad)
    matrix = np.linalg.solve(SRGB_D50, to_xyz)  # encoded-linear RGB -> linear sRGB
    from mlvfx.color import srgb_to_linear

    srgb_curve = srgb_to_linear(np.linspace(0.0, 1.0, 4096, dtype=np.float32)).astype(np.float64)
    is_srgb = bool(
        np.abs(matrix - np.eye(3)).max() < 2e-3 and all(np.abs(c - srgb_curve).max() < 2e-3 for c in curves)
    )
    return Profile(name, True, is_srgb=is_srgb, matrix=matrix, curves=curves)


def decode(
    raw: npt.NDArray[np.generic], profile: Profile, *, premultiplied: bool = False
) -> npt.NDArray[np.float32]:
    """Integer pixels (H, W, 3 or 4; uint8 or uint16, RGB order) as linear sRGB float32.

    The tone curves are applied through a table over every code value (exact for 8 and 16 bits),
    then the matrix, a band of rows at a time. Alpha passes through, scaled to [0, 1].
    ``premultiplied``: the codes are premultiplied by alpha (an RGBA TIFF as OpenCV hands it over);
    they are divided out first, in the encoded values, and the curves interpolated there.
    """
    assert profile.matrix is not None and len(profile.curves) == 3
    top = 255 if raw.dtype == np.uint8 else 65535
    codes = np.linspace(0.0, 1.0, top + 1)
    grid = np.linspace(0.0, 1.0, 4096)
    luts = [np.interp(codes, grid, c).astype(np.float32) for c in profile.curves]
    height, width = raw.shape[:2]
    out = np.empty((height, width, raw.shape[2]), np.float32)
    m = profile.matrix.astype(np.float32)
    rows = max(1, (1 << 22) // max(1, width * 3))
    for y in range(0, height, rows):
        band = raw[y : y + rows]
        if premultiplied and raw.shape[2] == 4:
            colour = band[..., :3].astype(np.float32)
            alpha = band[..., 3:].astype(np.float32)
            encoded = np.where(alpha > 0, np.clip(colour / np.maximum(alpha, 1.0), 0.0, 1.0), colour / top)
            lin = np.stack([np.interp(encoded[..., c], grid, profile.curves[c]) for c in range(3)], axis=-1)
            lin = lin.astype(np.float32)
        else:
            lin = np.stack([luts[c][band[..., c]] for c in range(3)], axis=-1)
        out[y : y + rows, :, :3] = np.clip(lin @ m.T, 0.0, None)
        if raw.shape[2] == 4:
            out[y : y + rows, :, 3] = band[..., 3].astype(np.float32) / top
    return out
