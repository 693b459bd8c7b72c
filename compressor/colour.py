"""Colour management: whatever the source's colour space, the output's numbers mean sRGB.

Browsers show an untagged image as sRGB, and the output is untagged (compressor.compress says
why), so a source whose embedded ICC profile says Display P3, Adobe RGB, ProPhoto, a grey or a
CMYK space is converted to sRGB here, before the profile is dropped. CMYK is always converted:
without a profile it is taken to be Coated FOGRA39 (compressor/icc/README.md), the usual default.

- Where: on the small image, after the draft/downscale and the orientation, so the cost is per
  output pixel; untagged RGB and grey cost nothing at all.
- Intent: relative colorimetric, without black point compensation: in-gamut colours exactly,
  media white to sRGB white, out-of-gamut colours clipped. The matrix-shaper profiles of RGB
  sources (P3, Adobe RGB, ProPhoto) have no perceptual tables anyway.
- Cache: one LittleCMS transform per (profile, image mode), built on first use in each pool
  process and kept in a small LRU keyed by the SHA-256 of the profile bytes: a phone's or a
  camera's profile recurs across thousands of images. A profile that converts like sRGB (within
  one code value on a probe grid, which is what the many "sRGB IEC61966-2.1" profiles do) is
  remembered as nothing to do.
- Bad input: a profile LittleCMS cannot read, that is not an input profile, or whose colour space
  does not fit the pixels (a CMYK profile on an RGB image) is ignored with a warning
  (``image.icc_profile_ignored``): the image is converted as if untagged, never failed.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import OrderedDict
from collections.abc import Container
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

# Without LittleCMS (a Pillow-SIMD built without liblcms2-dev) this import fails, and with it the
# worker: converting nothing would silently bring the wrong colours back.
from PIL import Image, ImageChops, ImageCms

log = logging.getLogger("compressor")

DEFAULT_CMYK_PROFILE: Final = Path(__file__).with_name("icc") / "CoatedFOGRA39.icc"
"""Assumed for a CMYK source without a usable embedded profile."""

INTENT: Final = ImageCms.Intent.RELATIVE_COLORIMETRIC

# Image mode -> (ICC colour space the profile must be in, transform input mode, output mode).
# LA is converted as L with its alpha put back; YCbCr (rare: some TIFFs) as RGB.
_TRANSFORM_MODES: Final = {
    "RGB": ("RGB", "RGB", "RGB"),
    "RGBA": ("RGB", "RGBA", "RGBA"),
    "L": ("GRAY", "L", "RGB"),
    "CMYK": ("CMYK", "CMYK", "RGB"),
}
# Device link, abstract and named-colour profiles describe no image's pixels.
_INPUT_CLASSES: Final = frozenset({"mntr", "scnr", "prtr", "spac"})
_CACHE_SIZE: Final = 32
_SAME_AS_SRGB: Final = 1
"""Largest difference, in code values, of a transform that is left out as sRGB to sRGB."""


@dataclass(frozen=True, slots=True)
class _Conversion:
    transform: ImageCms.ImageCmsTransform | None
    """None: the profile is sRGB in all but name, nothing to convert."""


@dataclass(frozen=True, slots=True)
class _Unusable:
    reason: str


_cache: OrderedDict[tuple[bytes, str], _Conversion | _Unusable] = OrderedDict()


def to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """``image`` (an 8-bit RGB, RGBA, L, LA, CMYK or YCbCr image) with sRGB's numbers.

    An untagged or sRGB-tagged RGB or grey image is returned as it is; a converted one comes
    back as RGB (RGBA when it had alpha).
    """
    if image.mode == "LA":
        grey, alpha = image.split()
        converted = to_srgb(grey, icc_profile)
        if converted is grey:
            return image
        converted.putalpha(alpha)
        return converted
    if image.mode not in _TRANSFORM_MODES:
        if not icc_profile or image.mode != "YCbCr":
            return image
        image = image.convert("RGB")
    if icc_profile:
        conversion = _conversion(icc_profile, image.mode)
        if isinstance(conversion, _Conversion):
            return image if conversion.transform is None else conversion.transform.apply(image)
        log.warning(
            "image.icc_profile_ignored",
            extra={
                "reason": conversion.reason,
                "mode": image.mode,
                "profile_bytes": len(icc_profile),
                "converted_as": "CMYK without a profile" if image.mode == "CMYK" else "sRGB",
            },
        )
    if image.mode == "CMYK":
        return _default_cmyk_transform().apply(image)
    return image


def plain_cmyk(image: Image.Image, jpeg_info: Container[object]) -> Image.Image:
    """A CMYK JPEG's pixels as ink amounts (0 = no ink), whichever convention the file used.

    Pillow always reads CMYK JPEGs as Adobe software writes them, inverted; a file without
    Adobe's APP14 marker stores plain values, which that reading turns into their negative.
    """
    if image.mode != "CMYK" or "adobe" in jpeg_info:
        return image
    return ImageChops.invert(image)


def _conversion(icc_profile: bytes, mode: str) -> _Conversion | _Unusable:
    key = (hashlib.sha256(icc_profile).digest(), mode)
    found = _cache.get(key)
    if found is not None:
        _cache.move_to_end(key)
        return found
    found = _build(icc_profile, mode)
    _cache[key] = found
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return found


def _build(icc_profile: bytes, mode: str) -> _Conversion | _Unusable:
    space, in_mode, out_mode = _TRANSFORM_MODES[mode]
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        device_class = profile.profile.device_class
        profile_space = profile.profile.xcolor_space.strip()
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError) as exc:
        return _Unusable(f"unreadable: {exc}")
    if device_class not in _INPUT_CLASSES:
        return _Unusable(f"a {device_class!r} profile describes no image")
    if profile_space != space:
        return _Unusable(f"a {profile_space} profile on an image of mode {mode}")
    try:
        transform = ImageCms.buildTransform(profile, _srgb(), in_mode, out_mode, INTENT)
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError) as exc:
        return _Unusable(f"no transform to sRGB: {exc}")
    if mode != "CMYK" and _converts_like_srgb(transform, in_mode):
        return _Conversion(None)
    return _Conversion(transform)


def _converts_like_srgb(transform: ImageCms.ImageCmsTransform, in_mode: str) -> bool:
    probe = _probe(in_mode)
    converted = transform.apply(probe)
    expected = probe.convert(converted.mode)
    extrema = ImageChops.difference(converted, expected).getextrema()
    return all(high <= _SAME_AS_SRGB for _, high in extrema)  # type: ignore[misc]


@cache
def _probe(mode: str) -> Image.Image:
    """Every grey level, and for colour a 17-step grid of the RGB cube."""
    if mode == "L":
        return Image.frombytes("L", (256, 1), bytes(range(256)))
    steps = [min(255, 16 * i) for i in range(17)]
    grid = bytes(v for r in steps for g in steps for b in steps for v in (r, g, b))
    greys = bytes(v for level in range(256) for v in (level, level, level))
    probe = Image.frombytes("RGB", (len(grid + greys) // 3, 1), grid + greys)
    return probe.convert(mode)


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@cache
def _default_cmyk_profile() -> bytes:
    return DEFAULT_CMYK_PROFILE.read_bytes()


def _default_cmyk_transform() -> ImageCms.ImageCmsTransform:
    conversion = _conversion(_default_cmyk_profile(), "CMYK")
    if isinstance(conversion, _Unusable) or conversion.transform is None:
        raise RuntimeError(f"{DEFAULT_CMYK_PROFILE}: not a usable CMYK profile")
    return conversion.transform
