"""In-memory test images for unit tests and benchmarks.

Every generator returns encoded bytes, as the pipeline receives them. Content is built from
Pillow's C primitives (gradients, noise, resizes, drawing) rather than per-pixel Python, so a
12 MP photo takes a fraction of a second to make. The photo itself comes from
`scripts/demo/photos.py`, which the demo's sample photos share; it is deterministic, so one call
gives the same pixels every time.
"""

from __future__ import annotations

import random
import struct
import zlib

from PIL import Image, ImageChops, ImageDraw

from scripts.demo.photos import encode, exif_bytes, photo_image

__all__ = [
    "bomb_png",
    "cmyk_jpeg",
    "palette_gif",
    "photo_image",
    "photo_jpeg",
    "png_16bit",
    "png_with_alpha",
    "random_bytes",
    "tiff_16bit",
    "tiny_png",
    "truncated_jpeg",
    "webp",
]

MARKER_COLOUR = (255, 0, 0)
"""Colour of the square :func:`photo_jpeg` draws in the stored image's top-left corner."""

MARKER_FRACTION = 0.2
"""Side of that square as a fraction of the stored image's shorter side."""

TRANSPARENT_FRACTION = 0.5
"""Left part of :func:`png_with_alpha` that is fully transparent (its colour is pure black)."""


def photo_jpeg(
    width: int,
    height: int,
    *,
    orientation: int | None = None,
    gps: bool = False,
    quality: int = 90,
    marker: bool = True,
    comment: bytes | None = None,
    icc_profile: bytes | None = None,
    xmp: bytes | None = None,
) -> bytes:
    """A photo-like baseline JPEG, optionally with EXIF orientation, GPS tags and metadata.

    ``width``/``height`` are the stored (not displayed) dimensions. With ``marker`` a
    :data:`MARKER_COLOUR` square sits in the stored top-left corner, so tests can tell where
    a rotation put it. ``comment`` (COM), ``icc_profile`` (APP2) and ``xmp`` (APP1) are
    written as given; Pillow does not validate the profile.
    """
    im = photo_image(width, height)
    if marker:
        side = max(1, round(min(width, height) * MARKER_FRACTION))
        ImageDraw.Draw(im).rectangle((0, 0, side - 1, side - 1), fill=MARKER_COLOUR)
    params: dict[str, object] = {"quality": quality}
    extras = {
        "exif": exif_bytes(orientation, gps),
        "comment": comment,
        "icc_profile": icc_profile,
        "xmp": xmp,
    }
    params.update({key: value for key, value in extras.items() if value is not None})
    return encode(im, "JPEG", **params)


def png_with_alpha(width: int, height: int) -> bytes:
    """An RGBA PNG: the left :data:`TRANSPARENT_FRACTION` is transparent black, the rest opaque."""
    rgb = photo_image(width, height)
    alpha = Image.new("L", (width, height), 255)
    ImageDraw.Draw(alpha).rectangle(
        (0, 0, round(width * TRANSPARENT_FRACTION) - 1, height - 1), fill=0
    )
    black = Image.new("RGB", (width, height))
    # Transparent pixels are black so a converter that drops alpha instead of flattening on
    # white is caught.
    rgb.paste(black, mask=ImageChops.invert(alpha))
    rgb.putalpha(alpha)
    return encode(rgb, "PNG", compress_level=1)


def palette_gif(width: int, height: int, *, frames: int = 1, transparent: bool = False) -> bytes:
    """A palette GIF; with ``frames`` > 1 an animation whose first frame is the photo.

    With ``transparent`` the left :data:`TRANSPARENT_FRACTION` uses a transparent palette
    index whose colour is black.
    """
    first = photo_image(width, height).quantize(64)
    params: dict[str, object] = {}
    if transparent:
        index = 255
        palette = (first.getpalette() or [])[: 64 * 3]
        first.putpalette(palette + [0, 0, 0] * (256 - 64))
        first.paste(index, (0, 0, round(width * TRANSPARENT_FRACTION), height))
        params["transparency"] = index
    if frames == 1:
        return encode(first, "GIF", **params)
    rest = [Image.new("P", (width, height), i % 64) for i in range(1, frames)]
    for im in rest:
        im.putpalette(first.getpalette() or [])
    return encode(first, "GIF", save_all=True, append_images=rest, duration=100, loop=0)


def cmyk_jpeg(width: int, height: int) -> bytes:
    """A CMYK JPEG (as print workflows and some stock photo sites produce)."""
    return encode(photo_image(width, height).convert("CMYK"), "JPEG", quality=90)


def _ramp_16bit(width: int, height: int) -> Image.Image:
    ramp = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    # Multiplying 0..255 by 257 maps onto 0..65535, so a converter that clips instead of
    # scaling turns nearly everything white.
    return ramp.convert("I").point(lambda v: v * 257).convert("I;16")


def png_16bit(width: int, height: int) -> bytes:
    """A 16-bit greyscale PNG (Pillow opens it in mode ``I;16``), black at the top to white
    at the bottom over the full 16-bit range."""
    return encode(_ramp_16bit(width, height), "PNG")


def tiff_16bit(width: int, height: int) -> bytes:
    """The same ramp as :func:`png_16bit` as an uncompressed 16-bit greyscale TIFF."""
    return encode(_ramp_16bit(width, height), "TIFF")


def webp(width: int, height: int, *, alpha: bool = False, frames: int = 1) -> bytes:
    """A lossy WebP, optionally with alpha or animated (first frame is the photo)."""
    im = photo_image(width, height)
    if alpha:
        im.putalpha(Image.linear_gradient("L").resize((width, height)))
    if frames == 1:
        return encode(im, "WEBP", quality=85)
    rest = [Image.new(im.mode, (width, height), "green") for _ in range(1, frames)]
    return encode(im, "WEBP", quality=85, save_all=True, append_images=rest, duration=100)


def tiny_png() -> bytes:
    """An 8x6 RGB PNG: far below any target size, so it must never be upscaled."""
    return encode(Image.new("RGB", (8, 6), (10, 200, 30)), "PNG")


def truncated_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A valid JPEG header and the first half of its entropy-coded data."""
    data = photo_jpeg(width, height, marker=False)
    return data[: len(data) // 2]


def random_bytes(size: int = 4096, *, seed: int = 0) -> bytes:
    """Deterministic noise (os.urandom would start with an image signature once in ~10^7 runs)."""
    return random.Random(seed).randbytes(size)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(pixels: int = 400_000_000) -> bytes:
    """A valid, all-black 1-bit PNG of about ``pixels`` pixels in a file of tens of kilobytes.

    Identical zero scanlines deflate about 1000:1, so 400 MP is ~50 kB on disk but 400 MB
    once decoded to mode L. Takes ~0.15 s; zlib sees a block of rows at a time, so memory
    stays small.
    """
    width = max(1, int(pixels**0.5))
    height = max(1, -(-pixels // width))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey, no interlace
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    rows_per_block = 128
    block = row * rows_per_block
    compressor = zlib.compressobj(9)
    full_blocks, rest = divmod(height, rows_per_block)
    parts = [compressor.compress(block) for _ in range(full_blocks)]
    parts += [compressor.compress(row * rest), compressor.flush()]
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def sample_images() -> dict[str, tuple[bytes, str]]:
    """A handful of small, distinct images (name → bytes, content type): the sources the soak
    and the random lifecycle test serve on loopback, one of each shape the pipeline cares about
    (landscape, portrait, square without a marker, EXIF-rotated, PNG with alpha)."""
    jpeg = "image/jpeg"
    return {
        "a.jpg": (photo_jpeg(320, 240), jpeg),
        "b.jpg": (photo_jpeg(240, 320, quality=80), jpeg),
        "c.jpg": (photo_jpeg(300, 300, marker=False), jpeg),
        "d.jpg": (photo_jpeg(400, 260, orientation=6), jpeg),
        "e.png": (png_with_alpha(200, 160), "image/png"),
    }
