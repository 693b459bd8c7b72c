"""Colour modes: what a decoded image is converted to before resizing, and after it.

Conversions cost per pixel, so as few as possible run on the full-size image: most wait for the
small one (see compressor.compress for the order of work). Colour spaces (ICC profiles, CMYK to
RGB) are compressor.colour's, in between :func:`to_8bit` and :func:`to_output_mode`.
"""

from __future__ import annotations

from typing import Final

from PIL import Image

from compressor.rejected import ImageRejected

_WHITE: Final = (255, 255, 255)


def resizable_mode(image: Image.Image) -> Image.Image:
    """Convert at full size only what resize cannot handle or would get wrong."""
    mode = image.mode
    keyed = "transparency" in image.info  # a tRNS colour key or GIF transparent index
    if mode in ("RGB", "L"):
        return image.convert(mode + "A") if keyed else image
    if mode in ("RGBA", "LA", "CMYK", "YCbCr", "I", "F"):
        # CMYK and YCbCr are resized as four and three 8-bit bands and converted to RGB only
        # afterwards, on far fewer pixels. I and F stay wide so no precision is lost before
        # the scaling in to_output_mode.
        return image
    if mode.startswith("I;16"):
        # Pillow clips (not scales) I;16 to L. Resizing works in 32-bit "I"; the 16 -> 8 bit
        # scaling waits until the image is small.
        return image.convert("I")
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        # Resizing a palette image would fall back to NEAREST.
        return image.convert("RGBA" if mode == "PA" or keyed else "RGB")
    # LAB, HSV, RGBX, La, RGBa...: rare enough that the simple full-size conversion is fine.
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageRejected("unsupported", f"mode {mode}: {exc}") from None


def to_8bit(image: Image.Image, source_mode: str) -> Image.Image:
    """A 16/32-bit integer or float greyscale image (I, F) scaled to L; any other as it is."""
    if image.mode in ("I", "F"):
        return _to_8bit(image, sixteen_bit=source_mode.startswith("I;16"))
    return image


def to_output_mode(image: Image.Image, output_format: str, source_mode: str) -> Image.Image:
    """RGB, or RGBA for WebP and AVIF with real transparency; all metadata dropped."""
    image = to_8bit(image, source_mode)
    if image.mode in ("RGBA", "LA"):
        alpha = image.getchannel("A")
        if alpha.getextrema() == (255, 255):
            image = image.convert("RGB")
        elif output_format in ("webp", "avif"):
            image = image.convert("RGBA")
        else:
            flat = Image.new("RGB", image.size, _WHITE)
            flat.paste(image.convert("RGB"), mask=alpha)
            image = flat
    elif image.mode != "RGB":
        image = image.convert("RGB")
    # Encoders read some metadata from info as well as from save() arguments (the JPEG
    # encoder copies "comment", for one), and resize/transpose/convert carry info along.
    image.info.clear()
    return image


def _to_8bit(image: Image.Image, *, sixteen_bit: bool) -> Image.Image:
    """Scale a 16/32-bit integer or float greyscale image to 0..255 (mode L)."""
    if sixteen_bit:
        scale = 1 / 256
    else:
        low, high = _band_extrema(image)
        if image.mode == "F" and low >= 0 and high <= 1.0:
            scale = 255.0  # normalised float data
        elif high > 255:
            scale = 1 / 256  # 16-bit data in a 32-bit image, as TIFF and PNG decoders give
        else:
            scale = 1.0
    return image.point(lambda v: v * scale).convert("L")


def _band_extrema(image: Image.Image) -> tuple[float, float]:
    """The lowest and highest value of a one-band image (I or F)."""
    low, high = image.getextrema()
    if isinstance(low, tuple) or isinstance(high, tuple):  # one pair per band: not I or F
        raise ValueError(f"mode {image.mode} has more than one band")
    return low, high
