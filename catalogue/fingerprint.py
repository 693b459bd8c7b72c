"""The fingerprint of the image settings that shape a compressed output.

The worker records it with every output it produces (catalogue/image_state.py, an entry's
`fingerprint`); an output whose fingerprint differs from the current settings' was produced
under other settings, and `python -m compressor.reprocess --outdated` processes it again: that is
how a deployment rolls out a new size, format or quality. The API may show or compare it too, so
it lives here, next to the entries.

Only settings that change the bytes of an output count (the longest side, the format, the
quality); limits that only refuse sources (IMAGE_MAX_PIXELS, sizes, timeouts) do not.
`OUTPUT_REVISION` stands for the compression code itself: raise it when a change to
compressor/compress.py (or its colour handling) changes the outputs, and `--outdated` selects
every output made before.
"""

from __future__ import annotations

import hashlib

import orjson

from config import Settings

OUTPUT_REVISION = 1


def fingerprint(*, max_dimension: int, output_format: str, quality: int) -> str:
    """A short, stable name of these output settings: 16 hex digits of a SHA-256."""
    canonical = orjson.dumps(
        {
            "revision": OUTPUT_REVISION,
            "max_dimension": max_dimension,
            "format": output_format,
            "quality": quality,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()[:16]


def settings_fingerprint(settings: Settings) -> str:
    """The fingerprint of the outputs these settings produce."""
    return fingerprint(
        max_dimension=settings.image_max_dimension,
        output_format=settings.image_output_format,
        quality=settings.image_quality,
    )
