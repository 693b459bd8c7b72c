"""One source image to its whole set of renditions: a ladder of sizes in each output format.

:func:`render` is a pure ``bytes -> RenderedImage`` function meant to run inside the compression
pool (compressor.pool), one task per source, so the CPU-bound work crosses the process boundary
once per source and nothing but bytes and small dataclasses crosses it. The set comes from one
decode:

1. compressor.decode at the largest size of the ladder (for a JPEG, draft decodes in the DCT
   domain at the largest 1/2^n scale that still covers it), upright.
2. Colour to sRGB once, on that image (compressor.colour).
3. Each smaller size resized from the next larger one, never from the full-size image again:
   every LANCZOS pass runs over at most ~2.5x its output's pixels.
4. Each size encoded in each format with no metadata at all (compressor.modes finishes the mode
   per format: JPEG flattens alpha onto white, WebP and AVIF keep real transparency). JPEGs
   from PROGRESSIVE_FROM up are progressive, smaller ones baseline (the figures are below).

The ladder never upscales: a source yields every configured size not larger than its longest
side, and a source smaller than the smallest size yields one rendition at its own size.

The outputs are untagged sRGB. Browsers, and CSS, take an untagged image to be sRGB, so a tag
would change nothing where the images are shown and cost bytes on every one (LittleCMS's own
sRGB profile is 588 bytes, a fifth of a small thumbnail's worth); and an output with no
metadata at all cannot leak any of the source's.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from PIL import Image, features

from catalogue.images import CONTENT_TYPES
from compressor.colour import to_srgb
from compressor.decode import REDUCING_GAP, decode, target_size
from compressor.modes import to_8bit, to_output_mode

with contextlib.suppress(ImportError):
    # pillow-avif-plugin: its wheels bundle libavif and declare no dependency on Pillow, so it
    # cannot replace Pillow-SIMD; importing it registers the AVIF encoder and decoder. The
    # plain-Pillow benchmark virtualenv imports this module without it, and a worker whose
    # IMAGE_OUTPUT_FORMATS asks for AVIF without it stops at start-up (missing_encoders).
    import pillow_avif  # noqa: F401

OutputFormat = Literal["jpeg", "webp", "avif"]

# output format: (Pillow format, content type, extension)
FORMATS: Final[dict[str, tuple[str, str, str]]] = {
    name: (pil_format, CONTENT_TYPES[extension], extension)
    for name, pil_format, extension in (
        ("jpeg", "JPEG", "jpg"),
        ("webp", "WEBP", "webp"),
        ("avif", "AVIF", "avif"),
    )
}
DEFAULT_SIZES: Final = (320, 640, 1024, 1600)
# JPEGs this large (longest side) are progressive; smaller ones baseline, Huffman-optimised
# both. Measured on a 12 MP photo's ladder at q80: progressive saves 5.3 % and 4.6 % of the
# bytes at 1600 and 1024 px, where a first coarse scan also shows sooner, but only 3.8 % and
# 2.3 % at 640 and 320 px, for 2.8x and 2.3x the encoding time.
PROGRESSIVE_FROM: Final = 1024


def available_formats() -> frozenset[str]:
    """The output formats this Pillow build can encode."""
    available = {"jpeg"}
    if features.check_module("webp"):
        available.add("webp")
    if "AVIF" in Image.SAVE:
        available.add("avif")
    return frozenset(available)


def missing_encoders(formats: Sequence[str], available: frozenset[str]) -> str | None:
    """Why the worker cannot make `formats` (IMAGE_OUTPUT_FORMATS) with this build, or None."""
    missing = [name for name in formats if name not in available]
    if not missing:
        return None
    return (
        f"IMAGE_OUTPUT_FORMATS names {', '.join(missing)}, which this Pillow build cannot "
        f"encode (it encodes {', '.join(sorted(available))}); AVIF needs pillow-avif-plugin "
        "(requirements.txt), WebP a Pillow built with libwebp"
    )


def output_format(name: str) -> OutputFormat:
    """An output format's name, checked."""
    if name == "jpeg":
        return "jpeg"
    if name == "webp":
        return "webp"
    if name == "avif":
        return "avif"
    raise ValueError(f"output format must be one of {sorted(FORMATS)}, got {name!r}")


@dataclass(frozen=True, slots=True)
class RenditionOptions:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    """Longest sides of the ladder, ascending."""
    formats: tuple[OutputFormat, ...] = ("jpeg", "webp")
    quality_jpeg: int = 80
    quality_webp: int = 79
    quality_avif: int = 63
    avif_speed: int = 8
    """libavif's encoder speed, 0 (slowest, smallest) to 10."""
    max_pixels: int = 50_000_000
    """Sources with more pixels are rejected as decompression bombs before decoding."""

    def __post_init__(self) -> None:
        if not self.sizes or any(s < 1 for s in self.sizes):
            raise ValueError(f"sizes must be positive, got {self.sizes}")
        if list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(f"sizes must be ascending, without repeats, got {self.sizes}")
        if not self.formats or len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats must be distinct, at least one, got {self.formats}")
        for named in self.formats:
            output_format(named)
        for known in FORMATS:
            if not 1 <= self.quality(known) <= 100:
                raise ValueError(f"quality of {known} must be in 1..100, got {self.quality(known)}")
        if not 0 <= self.avif_speed <= 10:
            raise ValueError(f"avif_speed must be in 0..10, got {self.avif_speed}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")

    def quality(self, output: str) -> int:
        if output == "webp":
            return self.quality_webp
        return self.quality_avif if output == "avif" else self.quality_jpeg


@dataclass(frozen=True, slots=True)
class Rendition:
    data: bytes
    width: int
    height: int
    format: OutputFormat
    content_type: str
    extension: str


@dataclass(frozen=True, slots=True)
class RenderedImage:
    renditions: tuple[Rendition, ...]
    """By format (in the options' order), then by ascending width."""
    source_format: str
    """Pillow's name of the decoded format: JPEG, PNG, GIF, WEBP, BMP, TIFF, MPO."""
    source_width: int
    """Stored width of the source, before EXIF orientation."""
    source_height: int
    source_upright: tuple[int, int]
    """The source's size as shown, after EXIF orientation (what the renditions are scaled from)."""


def ladder(width: int, height: int, sizes: Sequence[int]) -> list[tuple[int, int]]:
    """The rendition sizes of an upright ``width`` x ``height`` source, ascending: each of
    ``sizes`` (ascending longest sides) not larger than the source, or the source's own size when
    it is smaller than all of them."""
    longest = max(width, height)
    fitting = [size for size in sizes if size <= longest]
    if not fitting:
        return [(width, height)]
    return [target_size(width, height, size) for size in fitting]


def render(data: bytes, options: RenditionOptions) -> RenderedImage:
    """Every rendition of one downloaded image.

    Raises :class:`compressor.rejected.ImageRejected` for input that can never succeed. Any
    other exception (MemoryError, an encoder missing from the Pillow build) is a fault of this
    machine.
    """
    decoded = decode(data, options.sizes[-1], options.max_pixels)
    image = to_srgb(to_8bit(decoded.image, decoded.mode), decoded.icc_profile)
    sizes = ladder(*decoded.upright_size, options.sizes)
    scaled: list[Image.Image] = []
    for size in reversed(sizes):
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        scaled.append(image)
    scaled.reverse()
    return RenderedImage(
        renditions=tuple(
            _rendition(image, output, options, decoded.mode)
            for output in options.formats
            for image in scaled
        ),
        source_format=decoded.format,
        source_width=decoded.width,
        source_height=decoded.height,
        source_upright=decoded.upright_size,
    )


def _rendition(
    image: Image.Image, output: OutputFormat, options: RenditionOptions, source_mode: str
) -> Rendition:
    image = to_output_mode(image, output, source_mode)
    pil_format, content_type, extension = FORMATS[output]
    return Rendition(
        data=_encode(image, pil_format, options.quality(output), options.avif_speed),
        width=image.width,
        height=image.height,
        format=output,
        content_type=content_type,
        extension=extension,
    )


def _encode(image: Image.Image, pil_format: str, quality: int, avif_speed: int) -> bytes:
    buffer = io.BytesIO()
    if pil_format == "JPEG":
        progressive = max(image.size) >= PROGRESSIVE_FROM
        image.save(buffer, "JPEG", quality=quality, optimize=True, progressive=progressive)
    elif pil_format == "WEBP":
        # method 4 of 0-6: libwebp's default speed/size trade-off; 6 is ~2x slower for ~2%.
        image.save(buffer, "WEBP", quality=quality, method=4)
    else:
        image.save(buffer, "AVIF", quality=quality, speed=avif_speed)
    return buffer.getvalue()
