"""GET /images/{key}: compressed images from local storage (S3 serves its own)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from catalogue.images import CACHE_CONTROL, CONTENT_TYPES, KEY_PATTERN
from server.errors import ApiError
from server.keys import SETTINGS


def resolve_key(root: Path, key: str) -> Path | None:
    """The file for `key` under `root`, or None when the key is malformed or escapes root."""
    if not KEY_PATTERN.fullmatch(key):
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
            "Cache-Control": CACHE_CONTROL,
        },
    )
