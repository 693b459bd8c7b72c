"""Colour test support: ICC profiles written from first principles, tagged patch sources, ΔE2000.

Nothing here reads a profile from the machine: the RGB profiles are matrix/TRC profiles written
from each space's published primaries, white point and tone curve; the CMYK one is a LUT profile
of a made-up press (deliberately unlike the worker's default, Coated FOGRA39, so a test can tell
which of the two was used). LittleCMS reads them like any other profile.

A :class:`PatchSource` is an encoded image of flat patches in a source colour space, together
with the reference: the same patches converted to sRGB by LittleCMS (relative colorimetric).
:func:`patch_errors` measures an output against it: ΔE2000 per patch, on the mean colour of each
patch's central quarter.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageCms, ImageStat

from compressor.colour import DEFAULT_CMYK_PROFILE

Vector = tuple[float, float, float]
Matrix = tuple[Vector, Vector, Vector]
Lab = tuple[float, float, float]

D50: Vector = (0.9642, 1.0, 0.8249)
"""The ICC profile connection space's white (ICC.1 7.2.16)."""

_BRADFORD: Matrix = (
    (0.8951, 0.2664, -0.1614),
    (-0.7502, 1.7135, 0.0367),
    (0.0389, -0.0685, 1.0296),
)


# --- Matrix arithmetic and colorimetry ------------------------------------------------------


def _mul(m: Matrix, v: Sequence[float]) -> Vector:
    x, y, z = (sum(m[r][c] * v[c] for c in range(3)) for r in range(3))
    return x, y, z


def _matmul(a: Matrix, b: Matrix) -> Matrix:
    r0, r1, r2 = (
        (
            sum(a[r][k] * b[k][0] for k in range(3)),
            sum(a[r][k] * b[k][1] for k in range(3)),
            sum(a[r][k] * b[k][2] for k in range(3)),
        )
        for r in range(3)
    )
    return r0, r1, r2


def _inverse(m: Matrix) -> Matrix:
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return (
        ((e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det),
        ((f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det),
        ((d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det),
    )


def xy_to_xyz(x: float, y: float) -> Vector:
    """Chromaticity to XYZ with Y = 1."""
    return x / y, 1.0, (1 - x - y) / y


def bradford(source_white: Vector, target_white: Vector) -> Matrix:
    """The Bradford chromatic adaptation from one white to another, as ICC profiles use."""
    s = _mul(_BRADFORD, source_white)
    t = _mul(_BRADFORD, target_white)
    gain: Matrix = ((t[0] / s[0], 0, 0), (0, t[1] / s[1], 0), (0, 0, t[2] / s[2]))
    return _matmul(_inverse(_BRADFORD), _matmul(gain, _BRADFORD))


@dataclass(frozen=True, slots=True)
class RgbSpace:
    name: str
    primaries: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    white: tuple[float, float]
    gamma: float | None
    """A pure power tone curve, or None for the sRGB curve (IEC 61966-2-1)."""

    def to_xyz(self) -> Matrix:
        """Linear RGB to XYZ relative to this space's own white (Y of white = 1)."""
        columns = [xy_to_xyz(*p) for p in self.primaries]
        m: Matrix = (
            (columns[0][0], columns[1][0], columns[2][0]),
            (columns[0][1], columns[1][1], columns[2][1]),
            (columns[0][2], columns[1][2], columns[2][2]),
        )
        s = _mul(_inverse(m), xy_to_xyz(*self.white))
        return (
            (m[0][0] * s[0], m[0][1] * s[1], m[0][2] * s[2]),
            (m[1][0] * s[0], m[1][1] * s[1], m[1][2] * s[2]),
            (m[2][0] * s[0], m[2][1] * s[1], m[2][2] * s[2]),
        )

    def to_pcs(self) -> Matrix:
        """Linear RGB to D50 XYZ, Bradford-adapted: the colorant tags of its ICC profile."""
        return _matmul(bradford(xy_to_xyz(*self.white), D50), self.to_xyz())


_D65 = (0.3127, 0.3290)
SRGB = RgbSpace("sRGB", ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), _D65, None)
DISPLAY_P3 = RgbSpace("Display P3", ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), _D65, None)
ADOBE_RGB = RgbSpace(
    "Adobe RGB (1998)", ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06)), _D65, 563 / 256
)
PROPHOTO_RGB = RgbSpace(
    "ProPhoto RGB", ((0.7347, 0.2653), (0.1596, 0.8404), (0.0366, 0.0001)), (0.3457, 0.3585), 1.8
)


def srgb_decode(v: float) -> float:
    """An sRGB code value 0..255 to linear light 0..1."""
    c = v / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def srgb_to_lab(rgb: Sequence[float]) -> Lab:
    """CIELAB (D65 white) of an sRGB colour given as code values 0..255 (floats allowed)."""
    xyz = _mul(SRGB.to_xyz(), [srgb_decode(v) for v in rgb[:3]])
    white = xy_to_xyz(*_D65)
    f = [_lab_f(c / w) for c, w in zip(xyz, white, strict=True)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def _lab_f(t: float) -> float:
    return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29


def _xyz_to_lab(xyz: Vector, white: Vector) -> Lab:
    f = [_lab_f(c / w) for c, w in zip(xyz, white, strict=True)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def delta_e_2000(lab1: Lab, lab2: Lab) -> float:
    """CIEDE2000 colour difference (kL = kC = kH = 1), as in Sharma, Wu and Dalal (2005)."""
    l1, a1, b1 = lab1
    l2, a2, b2 = lab2
    c_mean = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_mean**7 / (c_mean**7 + 25**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360 if c1p else 0.0
    h2p = math.degrees(math.atan2(b2, a2p)) % 360 if c2p else 0.0

    dl = l2 - l1
    dc = c2p - c1p
    if c1p * c2p == 0:
        dh = 0.0
    elif abs(h2p - h1p) <= 180:
        dh = h2p - h1p
    elif h2p - h1p > 180:
        dh = h2p - h1p - 360
    else:
        dh = h2p - h1p + 360
    dh_big = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dh) / 2)

    l_mean = (l1 + l2) / 2
    cp_mean = (c1p + c2p) / 2
    if c1p * c2p == 0:
        h_mean = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        h_mean = (h1p + h2p) / 2
    elif h1p + h2p < 360:
        h_mean = (h1p + h2p + 360) / 2
    else:
        h_mean = (h1p + h2p - 360) / 2

    t = (
        1
        - 0.17 * math.cos(math.radians(h_mean - 30))
        + 0.24 * math.cos(math.radians(2 * h_mean))
        + 0.32 * math.cos(math.radians(3 * h_mean + 6))
        - 0.20 * math.cos(math.radians(4 * h_mean - 63))
    )
    d_theta = 30 * math.exp(-(((h_mean - 275) / 25) ** 2))
    r_c = 2 * math.sqrt(cp_mean**7 / (cp_mean**7 + 25**7))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / math.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * cp_mean
    s_h = 1 + 0.015 * cp_mean * t
    r_t = -math.sin(math.radians(2 * d_theta)) * r_c
    return math.sqrt(
        (dl / s_l) ** 2 + (dc / s_c) ** 2 + (dh_big / s_h) ** 2 + r_t * (dc / s_c) * (dh_big / s_h)
    )


# --- ICC profiles (version 2.4) ---------------------------------------------------------------


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz_tag(xyz: Sequence[float]) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15(c) for c in xyz)


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    # ASCII part, then empty Unicode and ScriptCode parts (ICC.1:2001-04 6.5.17).
    return (
        b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(4 + 4 + 3 + 67)
    )


def _text_tag(text: str) -> bytes:
    return b"text" + bytes(4) + text.encode("ascii") + b"\0"


def _tone_curve(gamma: float | None) -> bytes:
    if gamma is not None:
        return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))
    # parametricCurveType function 3: the sRGB curve.
    params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    return b"para" + bytes(4) + struct.pack(">HH", 3, 0) + b"".join(_s15(p) for p in params)


def _profile(
    device_class: bytes, space: bytes, pcs: bytes, tags: list[tuple[bytes, bytes]]
) -> bytes:
    """An ICC v2.4 profile: header, tag table, tags (identical tag data stored once)."""
    table = b""
    data = b""
    offsets: dict[bytes, int] = {}
    start = 128 + 4 + 12 * len(tags)
    for signature, body in tags:
        if body not in offsets:
            offsets[body] = start + len(data)
            data += body + bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offsets[body], len(body))
    size = start + len(data)
    header = (
        struct.pack(">I", size)
        + bytes(4)  # preferred CMM
        + bytes((2, 0x40, 0, 0))  # version 2.4
        + device_class
        + space
        + pcs
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8)  # platform, flags, manufacturer, model, attributes
        + struct.pack(">I", 0)  # perceptual
        + b"".join(_s15(c) for c in D50)
        + bytes(4 + 16 + 28)  # creator, profile ID, reserved
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def rgb_profile(space: RgbSpace) -> bytes:
    """A display (matrix/TRC) profile of ``space``."""
    m = space.to_pcs()
    curve = _tone_curve(space.gamma)
    return _profile(
        b"mntr",
        b"RGB ",
        b"XYZ ",
        [
            (b"desc", _desc_tag(space.name)),
            (b"cprt", _text_tag("No copyright, use freely")),
            (b"wtpt", _xyz_tag(D50)),
            (b"rXYZ", _xyz_tag([m[0][0], m[1][0], m[2][0]])),
            (b"gXYZ", _xyz_tag([m[0][1], m[1][1], m[2][1]])),
            (b"bXYZ", _xyz_tag([m[0][2], m[1][2], m[2][2]])),
            (b"rTRC", curve),
            (b"gTRC", curve),
            (b"bTRC", curve),
        ],
    )


def grey_profile(gamma: float) -> bytes:
    """A grey display profile whose tone curve is a pure power ``gamma``."""
    return _profile(
        b"mntr",
        b"GRAY",
        b"XYZ ",
        [
            (b"desc", _desc_tag(f"Grey, gamma {gamma}")),
            (b"cprt", _text_tag("No copyright, use freely")),
            (b"wtpt", _xyz_tag(D50)),
            (b"kTRC", _tone_curve(gamma)),
        ],
    )


def _made_up_press(c: float, m: float, y: float, k: float) -> Vector:
    """Linear sRGB reflectance of a toy four-ink press: strong dot gain, impure inks."""
    c, m, y, k = (1 - (1 - v) ** 1.7 for v in (c, m, y, k))
    r = (1 - 0.88 * c) * (1 - 0.10 * m) * (1 - 0.02 * y)
    g = (1 - 0.30 * c) * (1 - 0.86 * m) * (1 - 0.10 * y)
    b = (1 - 0.12 * c) * (1 - 0.40 * m) * (1 - 0.90 * y)
    black = 1 - 0.92 * k
    return r * black, g * black, b * black


@cache
def cmyk_profile(grid: int = 9) -> bytes:
    """An output-class CMYK -> Lab LUT profile (lut16, ``grid`` points a channel) of a made-up
    press with heavy dot gain: the same CMYK numbers print quite differently in FOGRA39."""
    srgb_to_pcs = _matmul(bradford(xy_to_xyz(*_D65), D50), SRGB.to_xyz())
    steps = [i / (grid - 1) for i in range(grid)]
    clut = []
    for c in steps:
        for m in steps:
            for y in steps:
                for k in steps:
                    lab = _xyz_to_lab(_mul(srgb_to_pcs, _made_up_press(c, m, y, k)), D50)
                    # ICC v2 Lab encoding of lut16: L 0..100 -> 0..0xFF00, a/b + 128 in 1/256.
                    clut.append(min(0xFF00, max(0, round(lab[0] * 0xFF00 / 100))))
                    clut.extend(min(0xFFFF, max(0, round((v + 128) * 256))) for v in lab[1:])
    identity_matrix = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    a2b0 = (
        b"mft2"
        + bytes(4)
        + bytes((4, 3, grid, 0))
        + identity_matrix
        + struct.pack(">HH", 2, 2)
        + struct.pack(">8H", *([0, 0xFFFF] * 4))  # input tables: identity
        + struct.pack(f">{len(clut)}H", *clut)
        + struct.pack(">6H", *([0, 0xFFFF] * 3))  # output tables: identity
    )
    return _profile(
        b"prtr",
        b"CMYK",
        b"Lab ",
        [
            (b"desc", _desc_tag("Made-up press with heavy dot gain (tests only)")),
            (b"cprt", _text_tag("No copyright, use freely")),
            (b"wtpt", _xyz_tag(D50)),
            (b"A2B0", a2b0),
        ],
    )


# --- Patch sources --------------------------------------------------------------------------

RGB_PATCHES: tuple[tuple[int, int, int], ...] = (
    # Saturated primaries and secondaries, full and part strength: where gamuts differ most.
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 0, 255), (255, 255, 0),
    (200, 30, 40), (40, 170, 60), (40, 60, 190), (30, 160, 170), (170, 40, 160), (210, 190, 40),
    (230, 120, 30), (120, 200, 90), (90, 40, 120), (250, 150, 160),
    # sRGB's red and green in Display P3 numbers: the most saturated colours sRGB can show.
    (234, 51, 35), (117, 251, 76),
    # Skin, wood, greys, white and near black.
    (225, 180, 150), (160, 110, 70), (200, 200, 200), (110, 110, 110), (255, 255, 255), (20, 20, 20),
)  # fmt: skip

CMYK_PATCHES: tuple[tuple[int, int, int, int], ...] = (
    (255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255), (255, 255, 0, 0),
    (0, 255, 255, 0), (255, 0, 255, 0), (128, 0, 0, 0), (0, 128, 0, 0), (0, 0, 128, 0),
    (0, 0, 0, 128), (200, 160, 60, 0), (20, 110, 160, 10), (0, 60, 80, 15), (60, 40, 40, 20),
    (180, 20, 200, 40), (100, 100, 100, 100), (200, 180, 180, 230), (0, 0, 0, 0), (40, 0, 100, 0),
    (0, 40, 0, 40), (90, 0, 30, 60), (30, 30, 30, 0), (0, 200, 120, 0),
)  # fmt: skip

GREY_PATCHES: tuple[int, ...] = (*range(0, 256, 11), 255)

COLUMNS = 6
PATCH = 128
"""Side of a patch in the source, in pixels."""


@dataclass(frozen=True, slots=True)
class PatchSource:
    name: str
    data: bytes
    """The encoded source file, as the worker would download it."""
    reference: tuple[tuple[float, float, float], ...]
    """Each patch in sRGB as LittleCMS converts it (relative colorimetric)."""
    mode: str
    """Pillow's mode of the source's patches."""

    @property
    def size(self) -> tuple[int, int]:
        return _grid_size(len(self.reference))


def _grid_size(count: int) -> tuple[int, int]:
    return COLUMNS * PATCH, -(-count // COLUMNS) * PATCH


def _tiny(mode: str, values: Sequence[tuple[int, ...] | int]) -> Image.Image:
    """One pixel a patch; unused cells of the last row are white (or no ink)."""
    rows = -(-len(values) // COLUMNS)
    blank: int | tuple[int, ...] = (
        255 if mode == "L" else (0, 0, 0, 0) if mode == "CMYK" else (255,) * len(mode)
    )
    tiny = Image.new(mode, (COLUMNS, rows), blank)
    for i, value in enumerate(values):
        tiny.putpixel((i % COLUMNS, i // COLUMNS), value)
    return tiny


def patches(mode: str, values: Sequence[tuple[int, ...] | int]) -> Image.Image:
    """Flat :data:`PATCH`-pixel patches, :data:`COLUMNS` a row, in mode ``mode``."""
    tiny = _tiny(mode, values)
    return tiny.resize((tiny.width * PATCH, tiny.height * PATCH), Image.Resampling.NEAREST)


def reference_srgb(
    mode: str, values: Sequence[tuple[int, ...] | int], profile: bytes
) -> tuple[tuple[float, float, float], ...]:
    """``values`` (device values of ``mode``) converted to sRGB by LittleCMS, relative
    colorimetric, no black point compensation."""
    tiny = _tiny(mode, values)
    converted = ImageCms.profileToProfile(
        tiny,
        ImageCms.ImageCmsProfile(io.BytesIO(profile)),
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        outputMode="RGB",
    )
    assert converted is not None
    out = []
    for i in range(len(values)):
        r, g, b = converted.getpixel((i % COLUMNS, i // COLUMNS))  # type: ignore[misc]
        out.append((float(r), float(g), float(b)))
    return tuple(out)


def patch_means(image: Image.Image, count: int) -> list[tuple[float, float, float]]:
    """Mean sRGB of the central quarter of each patch of an output (any size, any scale)."""
    rgb = image.convert("RGB")
    columns, rows = COLUMNS, -(-count // COLUMNS)
    means = []
    for i in range(count):
        col, row = i % COLUMNS, i // COLUMNS
        box = (
            round((col + 0.25) * rgb.width / columns),
            round((row + 0.25) * rgb.height / rows),
            round((col + 0.75) * rgb.width / columns),
            round((row + 0.75) * rgb.height / rows),
        )
        r, g, b = ImageStat.Stat(rgb.crop(box)).mean
        means.append((r, g, b))
    return means


def patch_errors(output: Image.Image, source: PatchSource) -> list[float]:
    """ΔE2000 of each patch of ``output`` from the source's reference."""
    measured = patch_means(output, len(source.reference))
    return [
        delta_e_2000(srgb_to_lab(got), srgb_to_lab(want))
        for got, want in zip(measured, source.reference, strict=True)
    ]


# --- Encoders -------------------------------------------------------------------------------


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def without_adobe_marker(jpeg: bytes) -> bytes:
    """``jpeg`` with its APP14 "Adobe" segment cut out (the header must contain one)."""
    start = jpeg.index(b"Adobe") - 4
    assert jpeg[start : start + 2] == b"\xff\xee", "no APP14 Adobe segment"
    length = struct.unpack(">H", jpeg[start + 2 : start + 4])[0]
    return jpeg[:start] + jpeg[start + 2 + length :]


def png_rgb16(image: Image.Image, icc_profile: bytes | None) -> bytes:
    """``image`` (RGB) as a 16-bit-per-channel RGB PNG (each value v stored as v * 257), with an
    iCCP chunk. Pillow cannot write these; it reads them as 8-bit RGB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    raw = image.convert("RGB").tobytes()
    row_bytes = image.width * 3
    rows = b"".join(
        b"\x00"
        + b"".join(struct.pack(">H", v * 257) for v in raw[y * row_bytes : (y + 1) * row_bytes])
        for y in range(image.height)
    )
    header = struct.pack(">IIBBBBB", image.width, image.height, 16, 2, 0, 0, 0)
    iccp = [chunk(b"iCCP", b"profile\0\0" + zlib.compress(icc_profile))] if icc_profile else []
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + b"".join(iccp)
        + chunk(b"IDAT", zlib.compress(rows, 1))
        + chunk(b"IEND", b"")
    )


def _rgb_source(
    name: str, space: RgbSpace, encode: Callable[[Image.Image, bytes], bytes]
) -> PatchSource:
    profile = rgb_profile(space)
    data = encode(patches("RGB", RGB_PATCHES), profile)
    return PatchSource(name, data, reference_srgb("RGB", RGB_PATCHES, profile), "RGB")


def _cmyk_source(name: str, *, profile: bytes | None, adobe: bool) -> PatchSource:
    image = patches("CMYK", CMYK_PATCHES)
    params: dict[str, object] = {"quality": 95}
    if profile is not None:
        params["icc_profile"] = profile
    if adobe:
        data = _save(image, "JPEG", **params)  # Pillow writes inverted values and APP14, as Adobe
    else:
        # Pillow inverts on saving: inverting first stores the plain values.
        inverted = Image.eval(image, lambda v: 255 - v)
        data = without_adobe_marker(_save(inverted, "JPEG", **params))
    reference = reference_srgb("CMYK", CMYK_PATCHES, profile or default_cmyk_profile())
    return PatchSource(name, data, reference, "CMYK")


def default_cmyk_profile() -> bytes:
    """The profile the worker assumes for untagged CMYK."""
    return DEFAULT_CMYK_PROFILE.read_bytes()


def _grey_source(name: str, gamma: float, *, sixteen_bit: bool) -> PatchSource:
    profile = grey_profile(gamma)
    image = patches("L", GREY_PATCHES)
    if sixteen_bit:
        wide = image.convert("I").point(lambda v: v * 257).convert("I;16")
        data = _save(wide, "PNG", icc_profile=profile)
    else:
        data = _save(image, "JPEG", quality=95, icc_profile=profile)
    return PatchSource(name, data, reference_srgb("L", GREY_PATCHES, profile), "L")


def _jpeg(image: Image.Image, profile: bytes) -> bytes:
    return _save(image, "JPEG", quality=95, icc_profile=profile)


def _webp(image: Image.Image, profile: bytes) -> bytes:
    return _save(image, "WEBP", lossless=True, icc_profile=profile)


def _png_rgba(image: Image.Image, profile: bytes) -> bytes:
    rgba = image.convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # one transparent pixel keeps alpha in a WebP output
    return _save(rgba, "PNG", icc_profile=profile, compress_level=1)


@cache
def tagged_sources() -> dict[str, PatchSource]:
    """Every kind of source the colour tests measure, by name."""
    sources = [
        _rgb_source("display-p3-jpeg", DISPLAY_P3, _jpeg),
        _rgb_source("adobe-rgb-jpeg", ADOBE_RGB, _jpeg),
        _rgb_source("prophoto-jpeg", PROPHOTO_RGB, _jpeg),
        _rgb_source("prophoto-16bit-png", PROPHOTO_RGB, png_rgb16),
        _rgb_source("display-p3-webp", DISPLAY_P3, _webp),
        _rgb_source("display-p3-png-alpha", DISPLAY_P3, _png_rgba),
        _cmyk_source("cmyk-jpeg-adobe-with-profile", profile=cmyk_profile(), adobe=True),
        _cmyk_source("cmyk-jpeg-plain-with-profile", profile=cmyk_profile(), adobe=False),
        _cmyk_source("cmyk-jpeg-adobe-no-profile", profile=None, adobe=True),
        _cmyk_source("cmyk-jpeg-plain-no-profile", profile=None, adobe=False),
        _grey_source("grey-gamma-1.0-jpeg", 1.0, sixteen_bit=False),
        _grey_source("grey-gamma-1.0-16bit-png", 1.0, sixteen_bit=True),
    ]
    return {source.name: source for source in sources}


def untagged_jpeg(values: Sequence[tuple[int, int, int]] = RGB_PATCHES, **params: object) -> bytes:
    """The RGB patches as a JPEG, with whatever ``params`` (say, an ``icc_profile``) say."""
    return _save(patches("RGB", values), "JPEG", quality=95, **params)
