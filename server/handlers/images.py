"""GET /images/{key}: compressed images from local storage (S3 serves its own)."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from server.errors import ApiError
from server.keys import SETTINGS

_KEY = re.compile(r"[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*\.(jpg|webp)")
CONTENT_TYPES = {"jpg": "image/jpeg", "webp": "image/webp"}
IMMUTABLE = "public, max-age=31536000, immutable"


def resolve_key(root: Path, key: str) -> Path | None:
    """The file for `key` under `root`, or None when the key is malformed or escapes root."""
    if not _KEY.fullmatch(key):
        return None
    path = (root / key).resolve()
    return path if path.is_relative_to(root) else None


async def get_image(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    key = request.match_info["key"]
    path = resolve_key(settings.local_storage_path, key) if settings.storage_is_local else None
    if path is None or not path.is_file():
        raise ApiError(404, f"image {key} not found")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": CONTENT_TYPES[path.suffix.lstrip(".")],
            "Cache-Control": IMMUTABLE,
        },
    )
