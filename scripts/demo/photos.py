"""Photo-like images made from Pillow's C primitives: gradients, blotches, grain, hard edges.

Deterministic: the noise comes from a seeded ``random.Random`` (Pillow's own ``effect_noise``
draws from the C library's ``rand()``, whose state every earlier call moves), so one seed gives
the same pixels, and the same encoded bytes with one Pillow build, every time. Shared by the
demo's sample photos (`scripts/demo/samples.py`) and the test images (`testkit/imagegen.py`).
"""

from __future__ import annotations

import io
import random

from PIL import ExifTags, Image, ImageChops, ImageDraw

_GRAIN_TILE = 256
# Standard deviation of bytes drawn uniformly from 0..255.
_UNIFORM_SIGMA = 255 / 12**0.5


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    """``im`` saved as ``fmt`` with Pillow's ``params``: the bytes a file of it would hold."""
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def noise(size: tuple[int, int], sigma: float, rng: random.Random) -> Image.Image:
    """Mode L noise around mid-grey with standard deviation ``sigma``, drawn from ``rng``."""
    im = Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))
    scale = sigma / _UNIFORM_SIGMA
    return im.point([max(0, min(255, round(128 + (v - 127.5) * scale))) for v in range(256)])


def _grain(size: tuple[int, int], sigma: float, rng: random.Random) -> Image.Image:
    # Noise for every pixel of a 12 MP image costs ~0.35 s; a tiled block looks the same to an
    # encoder (high-frequency energy everywhere) at a fraction of the cost.
    tile = noise((_GRAIN_TILE, _GRAIN_TILE), sigma, rng)
    out = Image.new("L", size)
    for y in range(0, size[1], _GRAIN_TILE):
        for x in range(0, size[0], _GRAIN_TILE):
            out.paste(tile, (x, y))
    return out


def photo_image(width: int, height: int, *, seed: int = 0) -> Image.Image:
    """An RGB image that compresses like a photo: smooth gradients, shapes, texture and grain."""
    rng = random.Random(seed)
    size = (width, height)
    ramp = Image.linear_gradient("L")
    bands = [
        ramp.resize(size, Image.Resampling.BILINEAR),
        Image.radial_gradient("L").resize(size, Image.Resampling.BILINEAR),
        ramp.rotate(90).resize(size, Image.Resampling.BILINEAR),
    ]
    # Low-resolution noise blown up gives blotches at mid frequencies, like foliage or fabric.
    blotches = noise((max(1, width // 16), max(1, height // 16)), 60, rng).resize(
        size, Image.Resampling.BICUBIC
    )
    grain = _grain(size, 6, rng)
    bands = [
        ImageChops.add(Image.blend(band, blotches, 0.35), grain, scale=1.0, offset=-128)
        for band in bands
    ]
    im = Image.merge("RGB", bands)
    draw = ImageDraw.Draw(im)
    w, h = width, height
    # Hard edges: photos have objects, not only texture.
    draw.ellipse((w * 0.55, h * 0.5, w * 0.9, h * 0.95), fill=(40, 90, 160))
    draw.rectangle((w * 0.3, h * 0.1, w * 0.5, h * 0.4), fill=(200, 180, 60))
    draw.line((0, h - 1, w - 1, 0), fill=(20, 20, 20), width=max(1, w // 200))
    return im


def exif_bytes(orientation: int | None, gps: bool = False) -> bytes | None:
    """An EXIF block with a camera make and model, the orientation and a GPS position, or None
    when neither is asked for."""
    if orientation is None and not gps:
        return None
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "imagegen"
    exif[ExifTags.Base.Model] = "test camera"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps:
        exif[ExifTags.IFD.GPSInfo] = {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.5),
            ExifTags.GPS.GPSLongitudeRef: "E",
            ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
        }
    return exif.tobytes()
