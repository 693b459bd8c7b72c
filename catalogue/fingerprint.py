"""The fingerprint of the image settings that shape a compressed output.

The worker records it with every output it produces (catalogue/image_state.py, an entry's
`fingerprint`); an output whose fingerprint differs from the current settings' was produced
under other settings, and `python -m compressor.reprocess --outdated` processes it again: that is
how a deployment rolls out a new size, format or quality. The API may show or compare it too, so
it lives here, next to the entries.

Only settings that change the bytes of an output count (the sizes, the formats, their
qualities); limits that only refuse sources (IMAGE_MAX_PIXELS, sizes, timeouts) do not.
`OUTPUT_REVISION` stands for the compression code itself: raise it when a change to
compressor/compress.py (or its colour handling) changes the outputs, and `--outdated` selects
every output made before.
"""

from __future__ import annotations

import hashlib

import orjson

from config import Settings

# 2: a ladder of renditions per source (IMAGE_RENDITION_SIZES x IMAGE_OUTPUT_FORMATS), baseline
# JPEGs below 1024 px, where revision 1 made one progressive output per source.
OUTPUT_REVISION = 2


def fingerprint(
    *,
    sizes: tuple[int, ...],
    formats: tuple[str, ...],
    qualities: dict[str, int],
    avif_speed: int,
) -> str:
    """A short, stable name of these output settings: 16 hex digits of a SHA-256. Only what
    shapes the outputs counts: the qualities of the formats made, the AVIF speed if AVIF is."""
    canonical = orjson.dumps(
        {
            "revision": OUTPUT_REVISION,
            "sizes": list(sizes),
            "formats": list(formats),
            "qualities": {name: qualities[name] for name in formats},
            "avif_speed": avif_speed if "avif" in formats else None,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()[:16]


def settings_fingerprint(settings: Settings) -> str:
    """The fingerprint of the outputs these settings produce."""
    return fingerprint(
        sizes=settings.image_rendition_sizes,
        formats=settings.image_output_formats,
        qualities={
            "jpeg": settings.image_quality_jpeg,
            "webp": settings.image_quality_webp,
            "avif": settings.image_quality_avif,
        },
        avif_speed=settings.image_avif_speed,
    )
