"""What a stored compressed image promises: its key's shape and how it may be cached.

The worker writes objects under these keys; the API serves them back from local storage. Keys
are content-addressed (the SHA-256 of the bytes), so an object never changes once written and may
be cached for a year by every client and proxy.
"""

from __future__ import annotations

import hashlib
import re

CACHE_CONTROL = "public, max-age=31536000, immutable"
CONTENT_TYPES = {"jpg": "image/jpeg", "webp": "image/webp", "avif": "image/avif"}
# What a key may look like when it comes back in a URL: safe path segments, a known extension.
KEY_PATTERN = re.compile(r"[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*\.(" + "|".join(CONTENT_TYPES) + ")")


def image_key(product_id: int, data: bytes, extension: str) -> str:
    return f"products/{product_id}/{hashlib.sha256(data).hexdigest()}.{extension}"
