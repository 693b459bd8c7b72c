"""Untrusted bytes to a decoded image at a target size, upright, cheapest work first.

1. Magic-byte sniff: non-images are rejected without touching a decoder.
2. Header only (``Image.open``): the pixel count is checked before any pixel is decoded.
3. JPEG: ``draft`` makes libjpeg-turbo decode at 1/2, 1/4 or 1/8 scale in the DCT domain,
   the largest reduction that still leaves at least the target size.
4. LANCZOS resize to the exact target.
5. EXIF orientation applied to the *small* image (a transpose costs per pixel).

Colour (compressor.colour) and the output modes (compressor.modes) come after, on the small
image; compressor.renditions says what is made of it.
"""

from __future__ import annotations

import io
import struct
import warnings
from typing import Final, NamedTuple

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

from compressor.colour import plain_cmyk
from compressor.modes import resizable_mode
from compressor.rejected import ImageRejected
from compressor.sniff import SNIFF_BYTES, sniff_image_type

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
_SWAPS_AXES: Final = frozenset(
    {
        Image.Transpose.TRANSPOSE,
        Image.Transpose.ROTATE_270,
        Image.Transpose.TRANSVERSE,
        Image.Transpose.ROTATE_90,
    }
)

# A downscale by more than this factor first averages whole pixel blocks (Image.reduce), then
# runs LANCZOS on the rest. Pillow's docs call 3.0 indistinguishable from a full LANCZOS pass;
# it only matters past 6x, which JPEG sources rarely reach after draft.
REDUCING_GAP: Final = 3.0

# What Pillow raises for broken or truncated data while decoding: "image file is truncated",
# "broken data stream", bad chunk lengths, impossible header values, premature EOF.
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)


class Decoded(NamedTuple):
    image: Image.Image
    """At the target size and upright, in a mode that compressor.modes finishes."""
    format: str
    """Pillow's name of the decoded format: JPEG, PNG, GIF, WEBP, BMP, TIFF, MPO."""
    width: int
    """Stored width of the source, before EXIF orientation."""
    height: int
    mode: str
    icc_profile: bytes | None
    """The source's embedded ICC profile, if any (compressor.colour decides what it is worth)."""
    upright_size: tuple[int, int]
    """The source's size as shown, after EXIF orientation."""


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


def decode(data: bytes, max_dimension: int, max_pixels: int) -> Decoded:
    """The image scaled so its longest side is at most ``max_dimension``, upright.

    Raises :class:`ImageRejected` for input that can never succeed.
    """
    sniffed = sniff_image_type(data[:SNIFF_BYTES])
    if sniffed is None:
        raise ImageRejected("not_an_image")
    if sniffed not in _DECODABLE:
        raise ImageRejected("unsupported", f"no {sniffed} decoder in this Pillow build")
    with warnings.catch_warnings():
        # Pillow warns about malformed input (bad EXIF, odd MPO) and about pixel counts
        # between MAX_IMAGE_PIXELS and twice that. Input is untrusted, so these are expected;
        # the outcome is either a result or ImageRejected, never a warning (which pytest's
        # filterwarnings=error, or a "-W error" deployment, would turn into a crash).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        return _decode_scaled(data, sniffed, max_dimension, max_pixels)


def _malformed(step: str, exc: Exception) -> ImageRejected:
    """Decoding untrusted bytes, Pillow's plugins raise whatever a malformed file leads them to
    (KeyError for an unknown TIFF compression, ZeroDivisionError, struct.error, ...): the image's
    fault, so the image fails, not the job (an unknown error would be retried, then dead-letter
    the whole product)."""
    return ImageRejected("corrupt", f"{step}: {type(exc).__name__}: {exc}")


def _decode_scaled(data: bytes, sniffed: str, max_dimension: int, max_pixels: int) -> Decoded:
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
        if width * height > max_pixels:
            raise ImageRejected(
                "decompression_bomb", f"{width}x{height} is over the limit of {max_pixels} pixels"
            )
        size = target_size(width, height, max_dimension)
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
        upright = (height, width) if transpose in _SWAPS_AXES else (width, height)
        format_name = source.format or sniffed
        decoded = Decoded(image, format_name, width, height, source.mode, profile, upright)

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
    return image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)


def _orientation(source: Image.Image) -> int:
    try:
        value = source.getexif().get(_EXIF_ORIENTATION, 1)
    except (*_DECODE_ERRORS, TypeError, KeyError):
        # Broken EXIF is common (editors, old cameras) and says nothing about the pixels.
        return 1
    return value if isinstance(value, int) else 1
