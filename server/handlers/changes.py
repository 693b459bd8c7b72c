"""PATCH and DELETE /products/{id}, DELETE /users/{id}: thin over server/product_changes.py."""

from __future__ import annotations

from aiohttp import web

from server.access import spend_image_quota
from server.body import read_json
from server.callers import owner_of, require_self
from server.etags import etag_of
from server.keys import PRODUCT_CHANGES, SETTINGS
from server.patches import parse_product_patch
from server.validation import parse_id

JSON = "application/json"
PATCH_TYPES = ("application/json", "application/merge-patch+json")


async def patch_product(request: web.Request) -> web.Response:
    product_id = parse_id(request.match_info["product_id"], "product_id")
    patch = parse_product_patch(
        await read_json(request, PATCH_TYPES), request.app[SETTINGS].max_images_per_product
    )

    async def charge(images: int) -> None:
        await spend_image_quota(request, images)

    body = await request.app[PRODUCT_CHANGES].change(
        product_id,
        patch,
        owner=owner_of(request),
        if_match=request.headers.get("If-Match"),
        charge_images=charge,
    )
    return web.Response(body=body, headers={"Content-Type": JSON, "ETag": etag_of(body)})


async def delete_product(request: web.Request) -> web.Response:
    product_id = parse_id(request.match_info["product_id"], "product_id")
    await request.app[PRODUCT_CHANGES].delete(
        product_id, owner=owner_of(request), if_match=request.headers.get("If-Match")
    )
    return web.Response(status=204)


async def reprocess_product(request: web.Request) -> web.Response:
    product_id = parse_id(request.match_info["product_id"], "product_id")
    body = await request.app[PRODUCT_CHANGES].reprocess(product_id, owner=owner_of(request))
    return web.Response(status=202, body=body, headers={"Content-Type": JSON})


async def delete_user(request: web.Request) -> web.Response:
    user_id = parse_id(request.match_info["user_id"], "user_id")
    require_self(request, user_id)
    await request.app[PRODUCT_CHANGES].delete_user(user_id)
    return web.Response(status=204)
