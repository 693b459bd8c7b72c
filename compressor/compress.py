"""Decode, downscale, orient, strip and re-encode one image.

:func:`compress` is a pure ``bytes -> CompressedImage`` function meant to run inside a
``ProcessPoolExecutor`` whose initializer is :func:`init_worker`. Nothing but bytes and small
dataclasses crosses the process boundary: PIL objects never leave the function.

Order of work, cheapest first:

1. Magic-byte sniff: non-images are rejected without touching a decoder.
2. Header only (``Image.open``): the pixel count is checked before any pixel is decoded.
3. JPEG: ``draft`` makes libjpeg-turbo decode at 1/2, 1/4 or 1/8 scale in the DCT domain,
   the largest reduction that still leaves at least the target size.
4. LANCZOS resize to the exact target.
5. EXIF orientation applied to the *small* image (a transpose costs per pixel).
6. Colour: 16-bit grey scaled to 8 bits, then a source tagged with an ICC profile, and any CMYK
   source, converted to sRGB on the small image (compressor.colour).
7. Mode conversion to the output mode, on the small image where the conversion allows it
   (compressor.modes).
8. Encode with no metadata at all.

The output is untagged sRGB. Browsers, and CSS, take an untagged image to be sRGB, so a tag
would change nothing where the images are shown and cost bytes on every one (LittleCMS's own
sRGB profile is 588 bytes, a fifth of a small thumbnail's worth); and an output with no
metadata at all cannot leak any of the source's.

Alpha: JPEG output flattens alpha onto white. WebP output keeps it (mode RGBA) when the source
has a transparent pixel; a source whose alpha channel is fully opaque is encoded as RGB.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import struct
import warnings
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

# The plugins are imported explicitly so Image.open(formats=...) finds them registered and
# never calls Image.init(), which would import every plugin Pillow has.
from PIL import (
    BmpImagePlugin,  # noqa: F401
    GifImagePlugin,  # noqa: F401
    Image,
    ImageFile,
    JpegImagePlugin,
    MpoImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    WebPImagePlugin,  # noqa: F401
    features,
)

from compressor.colour import plain_cmyk, to_srgb
from compressor.modes import resizable_mode, to_8bit, to_output_mode
from compressor.rejected import ImageRejected
from compressor.sniff import SNIFF_BYTES, sniff_image_type
from config.logging import setup_logging

OutputFormat = Literal["jpeg", "webp"]

_OUTPUT: Final[dict[str, tuple[str, str, str]]] = {
    # output_format: (Pillow format, content type, extension)
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "webp": ("WEBP", "image/webp", "webp"),
}

_DECODABLE: Final = frozenset(
    {"JPEG", "PNG", "GIF", "BMP", "TIFF"}
    | ({"WEBP"} if features.check_module("webp") else set())
    | ({"AVIF"} if features.check_module("avif") else set())
)

# EXIF orientation -> the transpose that displays the stored image upright.
_ORIENTATION_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION: Final = 0x0112

# A downscale by more than this factor first averages whole pixel blocks (Image.reduce), then
# runs LANCZOS on the rest. Pillow's docs call 3.0 indistinguishable from a full LANCZOS pass;
# it only matters past 6x, which JPEG sources rarely reach after draft.
_REDUCING_GAP: Final = 3.0

# What Pillow raises for broken or truncated data while decoding: "image file is truncated",
# "broken data stream", bad chunk lengths, impossible header values, premature EOF.
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)


def output_format(name: str) -> OutputFormat:
    """The output format a setting names (IMAGE_OUTPUT_FORMAT), checked."""
    if name not in _OUTPUT:
        raise ValueError(f"output_format must be one of {sorted(_OUTPUT)}, got {name!r}")
    return "webp" if name == "webp" else "jpeg"


@dataclass(frozen=True, slots=True)
class CompressOptions:
    max_dimension: int = 1600
    """Longest side of the output in pixels; smaller images are never upscaled."""
    quality: int = 80
    output_format: OutputFormat = "jpeg"
    max_pixels: int = 50_000_000
    """Sources with more pixels are rejected as decompression bombs before decoding."""

    def __post_init__(self) -> None:
        if self.max_dimension < 1:
            raise ValueError(f"max_dimension must be >= 1, got {self.max_dimension}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")
        if self.output_format not in _OUTPUT:
            raise ValueError(f"output_format must be one of {sorted(_OUTPUT)}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")


@dataclass(frozen=True, slots=True)
class CompressedImage:
    data: bytes
    width: int
    height: int
    content_type: str
    extension: str
    source_format: str
    """Pillow's name of the decoded format: JPEG, PNG, GIF, WEBP, BMP, TIFF, MPO."""
    source_width: int
    """Stored width of the source, before EXIF orientation."""
    source_height: int


def init_worker(max_pixels: int) -> None:
    """Initializer for the worker processes of the compression pool.

    Children ignore SIGINT: Ctrl-C reaches the whole process group, and the parent decides
    how to drain and shut the pool down. ``max_pixels`` should be the pool's
    ``CompressOptions.max_pixels``: Pillow's own check (which :func:`compress` also reports as
    ``decompression_bomb``) fires at twice this value, so a lower global would reject images
    the options allow.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Image.MAX_IMAGE_PIXELS = max_pixels
    if not logging.getLogger().handlers:
        # A pool process starts with no logging set up, and its warnings (an ICC profile ignored,
        # compressor.colour) would reach stderr as a bare event name, without their fields.
        fmt = os.environ.get("LOG_FORMAT", "json")
        setup_logging("warning", fmt if fmt in ("json", "console") else "json")


def compress(data: bytes, options: CompressOptions) -> CompressedImage:
    """Turn one downloaded image into a stripped, downscaled JPEG or WebP.

    Raises :class:`ImageRejected` for input that can never succeed. Any other exception
    (MemoryError, an encoder missing from the Pillow build) is a fault of this machine.
    """
    source_format = sniff_image_type(data[:SNIFF_BYTES])
    if source_format is None:
        raise ImageRejected("not_an_image")
    if source_format not in _DECODABLE:
        raise ImageRejected("unsupported", f"no {source_format} decoder in this Pillow build")

    with warnings.catch_warnings():
        # Pillow warns about malformed input (bad EXIF, odd MPO) and about pixel counts
        # between MAX_IMAGE_PIXELS and twice that. Input is untrusted, so these are expected;
        # the outcome is either a result or ImageRejected, never a warning (which pytest's
        # filterwarnings=error, or a "-W error" deployment, would turn into a crash).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        decoded = _decode_scaled(data, source_format, options)

    image = to_srgb(to_8bit(decoded.image, decoded.mode), decoded.icc_profile)
    image = to_output_mode(image, options.output_format, decoded.mode)
    pil_format, content_type, extension = _OUTPUT[options.output_format]
    return CompressedImage(
        data=_encode(image, pil_format, options.quality),
        width=image.width,
        height=image.height,
        content_type=content_type,
        extension=extension,
        source_format=decoded.format,
        source_width=decoded.width,
        source_height=decoded.height,
    )


def target_size(width: int, height: int, max_dimension: int) -> tuple[int, int]:
    """Scale (width, height) so the longest side is ``max_dimension``; never enlarge.

    Swapping the input swaps the output, so the size of a rotated result is the rotated size
    of the stored image: EXIF orientation needs no special case here.
    """
    longest = max(width, height)
    if longest <= max_dimension:
        return width, height
    if width >= height:
        return max_dimension, max(1, round(height * max_dimension / width))
    return max(1, round(width * max_dimension / height)), max_dimension


class _Decoded(NamedTuple):
    image: Image.Image
    """At the target size and upright, in a mode that to_output_mode finishes."""
    format: str
    width: int
    height: int
    mode: str
    icc_profile: bytes | None
    """The source's embedded ICC profile, if any (compressor.colour decides what it is worth)."""


def _malformed(step: str, exc: Exception) -> ImageRejected:
    """Decoding untrusted bytes, Pillow's plugins raise whatever a malformed file leads them to
    (KeyError for an unknown TIFF compression, ZeroDivisionError, struct.error, ...): the image's
    fault, so the image fails, not the job (an unknown error would be retried, then dead-letter
    the whole product)."""
    return ImageRejected("corrupt", f"{step}: {type(exc).__name__}: {exc}")


def _decode_scaled(data: bytes, sniffed: str, options: CompressOptions) -> _Decoded:
    """Decode at the target size, upright; with the source's format, size and mode."""
    try:
        # formats= keeps Pillow from trying every other decoder on a file that only looks
        # like the sniffed format; "MPO" comes back from the JPEG opener for camera files.
        source = Image.open(io.BytesIO(data), formats=[sniffed])
    except Image.DecompressionBombError as exc:
        raise ImageRejected("decompression_bomb", str(exc)) from None
    except MemoryError:
        raise
    except Exception as exc:  # UnidentifiedImageError, and see _malformed above
        raise _malformed(f"{sniffed} header", exc) from None

    with source:
        width, height = source.size
        if width * height > options.max_pixels:
            raise ImageRejected(
                "decompression_bomb",
                f"{width}x{height} is over the limit of {options.max_pixels} pixels",
            )
        size = target_size(width, height, options.max_dimension)
        try:
            image = _load_resized(source, size)
        except Image.DecompressionBombError as exc:
            raise ImageRejected("decompression_bomb", str(exc)) from None
        except OSError as exc:
            if "not available" in str(exc):  # e.g. "decoder group4 not available"
                raise ImageRejected("unsupported", str(exc)) from None
            raise ImageRejected("corrupt", str(exc)) from None
        except MemoryError:
            raise
        except Exception as exc:
            raise _malformed("decoding", exc) from None
        if isinstance(source, JpegImagePlugin.JpegImageFile):
            image = plain_cmyk(image, source.info)
        transpose = _ORIENTATION_TRANSPOSE.get(_orientation(source))
        profile = source.info.get("icc_profile")
        profile = profile if isinstance(profile, bytes) and profile else None
        decoded = _Decoded(image, source.format or sniffed, width, height, source.mode, profile)

    if transpose is not None:
        decoded = decoded._replace(image=image.transpose(transpose))
    return decoded


def _load_resized(source: ImageFile.ImageFile, size: tuple[int, int]) -> Image.Image:
    box = None
    if isinstance(source, JpegImagePlugin.JpegImageFile) and size != source.size:
        # Only the size matters: draft's mode argument could turn RGB into YCbCr/L, which
        # would have to be converted back afterwards.
        drafted = source.draft(source.mode, size)
        if drafted is not None:
            # The drafted image is rounded up to whole pixels; box is the exact source area
            # in its coordinates, so the resize below does not shift or stretch by a pixel.
            box = drafted[1]
    source.load()
    image = resizable_mode(source)
    if image.size == size and box in (None, (0, 0, *size)):
        return image
    return image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=_REDUCING_GAP)


def _orientation(source: Image.Image) -> int:
    try:
        value = source.getexif().get(_EXIF_ORIENTATION, 1)
    except (*_DECODE_ERRORS, TypeError, KeyError):
        # Broken EXIF is common (editors, old cameras) and says nothing about the pixels.
        return 1
    return value if isinstance(value, int) else 1


def _encode(image: Image.Image, pil_format: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if pil_format == "JPEG":
        image.save(buffer, "JPEG", quality=quality, optimize=True, progressive=True)
    else:
        # method 4 of 0-6: libwebp's default speed/size trade-off; 6 is ~2x slower for ~2%.
        image.save(buffer, "WEBP", quality=quality, method=4)
    return buffer.getvalue()
