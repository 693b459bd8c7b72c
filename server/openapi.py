"""The OpenAPI 3 document of the API, served at /openapi.json.

A function of the settings, since the contract is: with AUTH_MODE=off there are no keys (no
security requirement, no key routes, no `api_key` in a new user, `user_id` named in every
create and list), USER_SIGNUP and PRODUCT_READS decide which operations take a key, and
MAX_IMAGES_PER_PRODUCT bounds a product's images. Every input rule the API enforces is stated,
from the very patterns server/validation.py matches (the one rule no schema can state, a
price_range's minimum above its maximum, is in its description). Tests check the document
against the routes and real responses, and schemathesis checks it against the running API
(tests/integration/test_api_schemathesis.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from catalogue.events import EVENT_TYPES
from catalogue.ids import MAX_ID
from catalogue.images import CONTENT_TYPES, KEY_PATTERN
from config import Settings
from server.body import MAX_BODY_BYTES
from server.idempotency import HEADER as IDEMPOTENCY_KEY
from server.idempotency import MAX_KEY_LENGTH
from server.product_stream import KEEPALIVE_S
from server.rendition_choice import FORMATS, MAX_WIDTH, MIN_WIDTH
from server.validation import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    EMAIL_PATTERN,
    EVENT_ID_PATTERN,
    ID_PATTERN,
    MAX_DESCRIPTION_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_ID_LENGTH,
    MAX_LIMIT,
    MAX_NAME_LENGTH,
    MAX_PRICE,
    MAX_URL_LENGTH,
    MIN_LIMIT,
    NO_NUL_PATTERN,
    PRICE_RANGE_PATTERN,
    PRICE_STEP,
    TEXT_PATTERN,
    URL_PATTERN,
    WEBHOOK_URL_PATTERN,
)
from server.webhook_registry import MAX_WEBHOOKS_PER_USER

Schema = dict[str, Any]

# What each X-Cache value means; HIT does not say which cache tier answered.
X_CACHE_VALUES = {
    "HIT": "from a cache: the API process's own memory or Redis",
    "MISS": "in no cache: read from PostgreSQL",
    "BYPASS": "Redis is down: read from PostgreSQL",
}
SECURITY_SCHEME = "ApiKey"
# Printable ASCII (server/idempotency.py), and not starting or ending with a space: HTTP drops
# those, so the API would see another key.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"
KEY_ID_PATTERN = "^[0-9a-f]{16}$"  # server/api_keys.py
API_KEY_PATTERN = "^catk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$"


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema: Schema | None = None, **headers: Schema) -> Schema:
    """A response; `headers` by name (underscores for dashes), each a header object or a ref."""
    response: Schema = {"description": description}
    if headers:
        response["headers"] = {name.replace("_", "-"): h for name, h in headers.items()}
    if schema is not None:
        response["content"] = _json(schema)
    return response


def _error(description: str, **headers: Schema) -> Schema:
    return _answer(description, _ref("schemas", "Error"), **headers)


def _header(description: str, schema: Schema, *, required: bool = False) -> Schema:
    return {"description": description, "required": required, "schema": schema}


_ID: Schema = {
    "type": "string",
    "pattern": ID_PATTERN,
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "description": f"1 to {MAX_ID} in decimal digits",
    "example": "12345",
}
_ID_OUT: Schema = {"type": "string", "pattern": "^[1-9][0-9]*$", "example": "12345"}
_PRICE: Schema = {
    "type": "number",
    "minimum": 0,
    "maximum": int(MAX_PRICE),
    "exclusiveMaximum": True,
    "multipleOf": float(PRICE_STEP),
    "description": f"At least 0, below {MAX_PRICE}, 2 decimals at most",
}
_TIME: Schema = {"type": "string", "format": "date-time"}


def _id_parameter(name: str, where: str, description: str, *, required: bool = True) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": _ref("schemas", "Id"),
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document for an API run with these settings."""
    keys = settings.auth_mode == "api_key"
    open_signup = settings.user_signup == "open"
    public_reads = settings.product_reads == "public"

    def operation(
        operation_id: str,
        summary: str,
        responses: dict[str, Schema],
        *,
        key: str,
        description: str | None = None,
        parameters: list[Schema] | None = None,
        body: Schema | None = None,
        body_types: tuple[str, ...] = ("application/json",),
        others_403: str | None = None,
    ) -> Schema:
        """An operation. `key`: what it needs of its caller, as server/access.py's Access does
        (open, signup, read, key); `others_403`: what answers 403 when another user is named."""
        op: Schema = {"operationId": operation_id, "summary": summary}
        if description:
            op["description"] = description
        if parameters:
            op["parameters"] = parameters
        if body is not None:
            content = {media_type: {"schema": body} for media_type in body_types}
            op["requestBody"] = {"required": True, "content": content}
            responses.setdefault("400", _error("Invalid body, naming the field"))
            responses["413"] = _error(f"Body over {MAX_BODY_BYTES} bytes")
            responses["415"] = _error(f"Not {' or '.join(body_types)}")
        checked = keys and key != "open"
        if key != "open":
            responses.setdefault(
                "503", _error("PostgreSQL unavailable: retry shortly", Retry_After=_RETRY)
            )
        if checked:
            optional = (key == "signup" and open_signup) or (key == "read" and public_reads)
            # An optional key ({} or the scheme): a key sent must still be valid.
            op["security"] = [{}, {SECURITY_SCHEME: []}] if optional else [{SECURITY_SCHEME: []}]
            responses["401"] = _error(
                "The API key is missing, not a bearer credential, or not valid"
                if not optional
                else "The API key sent is not a bearer credential, or not valid",
                WWW_Authenticate=_header(
                    'Bearer, or Bearer error="invalid_token"', {"type": "string"}, required=True
                ),
            )
            if key == "signup" and not open_signup:
                responses["403"] = _error("Not an admin key (USER_SIGNUP=admin)")
            elif others_403 and not (key == "read" and public_reads):
                responses["403"] = _error(others_403)
            responses.setdefault(
                "429",
                _error(
                    "Over the caller's rate limit (per key, or per address without a valid key)",
                    Retry_After=_RETRY_REQUIRED,
                ),
            )
            for response in responses.values():
                headers = response.setdefault("headers", {})
                for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
                    headers.setdefault(name, _ref("headers", name))
        elif keys:
            op["security"] = []
        for response in responses.values():
            response.setdefault("headers", {})["X-Request-ID"] = _ref("headers", "X-Request-ID")
        op["responses"] = dict(sorted(responses.items()))
        return op

    idempotency_key: Schema = {
        "name": IDEMPOTENCY_KEY,
        "in": "header",
        "required": False,
        "description": "Makes a retry safe: the same key with the same body within "
        f"{settings.idempotency_ttl_hours} h answers the first answer again "
        "(Idempotent-Replayed: true) and creates nothing; with another body 422, while the "
        "first is running 409. Keys are the caller's own.",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_KEY_LENGTH,
            "pattern": IDEMPOTENCY_KEY_PATTERN,
        },
    }
    replayed = _header(
        "true when this is the recorded answer to an earlier request with the same "
        f"{IDEMPOTENCY_KEY}",
        {"type": "string", "enum": ["true"]},
    )

    signup_description = (
        "Anyone may sign up (USER_SIGNUP=open); a key sent must be valid."
        if open_signup
        else "Needs an admin key (USER_SIGNUP=admin)."
    )
    user_links: dict[str, Schema] = {
        "DeleteUser": {
            "operationId": "deleteUser",
            "parameters": {"user_id": "$response.body#/user_id"},
        }
    }
    if keys:
        new_user_path = {"user_id": "$response.body#/user_id"}
        user_links |= {
            "CreateApiKey": {"operationId": "createApiKey", "parameters": new_user_path},
            "ListApiKeys": {"operationId": "listApiKeys", "parameters": new_user_path},
        }
    else:
        user_links |= {
            "CreateProduct": {
                "operationId": "createProduct",
                "requestBody": {"user_id": "$response.body#/user_id"},
            },
            "ListProducts": {
                "operationId": "listProducts",
                "parameters": {"user_id": "$response.body#/user_id"},
            },
        }
    users: Schema = {
        "post": operation(
            "createUser",
            "Create a user" + (" and its first API key" if keys else ""),
            {
                "201": {
                    **_answer("Created", _ref("schemas", "User"), Idempotent_Replayed=replayed),
                    "links": user_links,
                },
                "409": _error(
                    f"Email already used, or a request with this {IDEMPOTENCY_KEY} is still running"
                ),
                "422": _error(f"This {IDEMPOTENCY_KEY} was used with another body"),
            },
            key="signup",
            description=signup_description if keys else None,
            parameters=[idempotency_key],
            body=_ref("schemas", "NewUser"),
        )
    }

    user_id_path = _id_parameter("user_id", "path", "The user whose keys these are")
    key_paths: dict[str, Schema] = {}
    if keys:
        mine = "this key may act for its own user only"
        key_paths = {
            "/users/{user_id}/api-keys": {
                "post": operation(
                    "createApiKey",
                    "Issue another API key (shown once)",
                    {
                        "201": {
                            **_answer("The new key", _ref("schemas", "NewApiKey")),
                            "links": {
                                "DeleteApiKey": {
                                    "operationId": "deleteApiKey",
                                    "parameters": {
                                        "user_id": "$request.path.user_id",
                                        "key_id": "$response.body#/key_id",
                                    },
                                },
                                "ListApiKeys": {
                                    "operationId": "listApiKeys",
                                    "parameters": {"user_id": "$request.path.user_id"},
                                },
                            },
                        },
                        "400": _error("Not an id"),
                        "404": _error("No such user"),
                    },
                    key="key",
                    parameters=[user_id_path],
                    others_403=mine,
                ),
                "get": operation(
                    "listApiKeys",
                    "A user's API keys (their ids, never the keys)",
                    {
                        "200": _answer(
                            "The keys, oldest first",
                            {"type": "array", "items": _ref("schemas", "ApiKeyInfo")},
                        ),
                        "400": _error("Not an id"),
                    },
                    key="key",
                    parameters=[user_id_path],
                    others_403=mine,
                ),
            },
            "/users/{user_id}/api-keys/{key_id}": {
                "delete": operation(
                    "deleteApiKey",
                    "Revoke an API key: every API process refuses it within a second",
                    {
                        "204": _answer("Revoked"),
                        "400": _error("Not an id"),
                        "404": _error("No such key of this user (or not a key id)"),
                    },
                    key="key",
                    parameters=[
                        user_id_path,
                        {
                            "name": "key_id",
                            "in": "path",
                            "required": True,
                            "description": "16 hexadecimal digits, as listed",
                            "schema": {"type": "string", "pattern": KEY_ID_PATTERN},
                        },
                    ],
                    others_403=mine,
                ),
            },
        }

    own = " (the caller's own when left out)" if keys else ""
    products: Schema = {
        "post": operation(
            "createProduct",
            "Create a product and queue its image job",
            {
                "201": {
                    **_answer(
                        "Created",
                        _ref("schemas", "Created"),
                        Location=_header(
                            "/products/{product_id}",
                            {"type": "string", "pattern": "^/products/[1-9][0-9]*$"},
                            required=True,
                        ),
                        Idempotent_Replayed=replayed,
                    ),
                    "links": {
                        name: {
                            "operationId": operation_id,
                            "parameters": {"product_id": "$response.body#/product_id"},
                        }
                        for name, operation_id in (
                            ("GetProduct", "getProduct"),
                            ("PatchProduct", "patchProduct"),
                            ("DeleteProduct", "deleteProduct"),
                        )
                    },
                },
                "409": _error(f"A request with this {IDEMPOTENCY_KEY} is still running"),
                "422": _error(
                    f"No such user, or this {IDEMPOTENCY_KEY} was used with another body"
                ),
                **(
                    {
                        "429": _error(
                            f"Over the rate limit, or the images do not fit in the key's "
                            f"hourly quota ({settings.image_quota_per_hour})",
                            Retry_After=_RETRY_REQUIRED,
                        )
                    }
                    if keys
                    else {}
                ),
            },
            key="key",
            parameters=[idempotency_key],
            body=_ref("schemas", "NewProduct"),
            others_403="user_id names another user",
        ),
        "get": operation(
            "listProducts",
            "List a user's products, newest first",
            {
                "200": _answer(
                    "A page of products",
                    {"type": "array", "items": _ref("schemas", "Product")},
                    Link=_header('<url>; rel="next" when more rows exist', {"type": "string"}),
                ),
                "400": _error("Invalid filter, limit or cursor, naming it"),
            },
            key="read",
            parameters=[
                _id_parameter(
                    "user_id",
                    "query",
                    "Whose products"
                    + own
                    + (
                        "; admins, and callers without a key (PRODUCT_READS=public), must name one"
                        if keys
                        else ""
                    ),
                    required=not keys,
                ),
                {
                    "name": "price_range",
                    "in": "query",
                    "description": "MIN-MAX inclusive, either side may be left out (20-, -50); "
                    "MIN above MAX is a 400. Empty: no filter.",
                    "schema": {
                        "type": "string",
                        "pattern": f"^$|{PRICE_RANGE_PATTERN}",
                        "example": "20-50",
                    },
                },
                {
                    "name": "product_name",
                    "in": "query",
                    "description": "Case-insensitive substring; % _ \\ are literal. Empty: no "
                    "filter.",
                    "schema": {
                        "type": "string",
                        "maxLength": MAX_NAME_LENGTH,
                        "pattern": NO_NUL_PATTERN,
                    },
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": MIN_LIMIT,
                        "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT,
                    },
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "description": "From the Link header of the previous page (opaque; the "
                    "pattern admits exactly the cursors the API writes)",
                    "schema": {"type": "string", "pattern": CURSOR_PATTERN},
                },
            ],
            others_403="user_id names another user",
        ),
    }
    product_id_path = _id_parameter("product_id", "path", "The product")
    if_match: Schema = {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": "Only if the product is still this version: the ETag of its JSON (a "
        "PATCH answer's, or computed by server/etags.py), or *",
        "schema": {"type": "string"},
    }
    image_quota = (
        {
            "429": _error(
                "Over the rate limit, or the new images do not fit in the key's hourly quota "
                f"({settings.image_quota_per_hour})",
                Retry_After=_RETRY_REQUIRED,
            )
        }
        if keys
        else {}
    )
    not_yours = ", or another user's" if keys else ""
    x_cache = _header(
        "; ".join(f"{value} ({meaning})" for value, meaning in X_CACHE_VALUES.items()),
        {"type": "string", "enum": list(X_CACHE_VALUES)},
        required=True,
    )
    product: Schema = {
        "get": operation(
            "getProduct",
            "Get one product with its compressed images",
            {
                "200": _answer(
                    "The product",
                    _ref("schemas", "Product"),
                    X_Cache=x_cache,
                    ETag=_header(
                        "Strong entity tag of this JSON (a hash of it)",
                        {"type": "string"},
                        required=True,
                    ),
                ),
                "304": {
                    "description": "If-None-Match names the current ETag: the copy is current",
                    "headers": {
                        "ETag": _header("The current entity tag", {"type": "string"}, required=True)
                    },
                },
                "400": _error("Not an id"),
                "404": _error(
                    "No such product"
                    + (", or another user's (unless PRODUCT_READS=public)" if keys else ""),
                    # Not to a user's key: it would tell another's cached product from none.
                    X_Cache={**x_cache, "required": not keys},
                ),
            },
            key="read",
            parameters=[
                product_id_path,
                {
                    "name": "If-None-Match",
                    "in": "header",
                    "required": False,
                    "description": "ETags of copies the client holds: 304 if one is current",
                    "schema": {"type": "string"},
                },
            ],
        ),
        "patch": operation(
            "patchProduct",
            "Change a product: a JSON merge patch (RFC 7396) of its writable fields",
            {
                "200": _answer(
                    "The changed product",
                    _ref("schemas", "Product"),
                    ETag=_header("The new version's entity tag", {"type": "string"}, required=True),
                ),
                "400": _error("Not an id, or an invalid patch, naming the field"),
                "404": _error("No such product" + not_yours),
                "412": _error("If-Match names another version"),
                **image_quota,
            },
            key="key",
            description="New image sources are queued for processing; the outputs of removed "
            "ones are deleted. Null empties product_description or product_images.",
            parameters=[product_id_path, if_match],
            body=_ref("schemas", "ProductPatch"),
            body_types=("application/json", "application/merge-patch+json"),
        ),
        "delete": operation(
            "deleteProduct",
            "Delete a product and its stored images",
            {
                "204": _answer("Deleted"),
                "400": _error("Not an id"),
                "404": _error("No such product" + not_yours),
                "412": _error("If-Match names another version"),
            },
            key="key",
            parameters=[product_id_path, if_match],
        ),
    }
    reprocess: Schema = {
        "post": operation(
            "reprocessProduct",
            "Process a product's images again with the current image settings",
            {
                "202": _answer(
                    "Queued: the product as it is now (its images pending; the previous "
                    "outputs stay shown until the new ones are ready)",
                    _ref("schemas", "Product"),
                ),
                "400": _error("Not an id"),
                "404": _error("No such product" + not_yours),
            },
            key="key",
            parameters=[product_id_path],
        )
    }
    product_image: Schema = {
        "get": operation(
            "getProductImage",
            "Redirect to the rendition of one product image that fits a width and the "
            "client's formats",
            {
                "302": _answer(
                    "The chosen rendition's URL",
                    Location=_header(
                        "The rendition's URL (content-addressed, immutable)",
                        {"type": "string", "minLength": 1},
                        required=True,
                    ),
                    Vary=_header(
                        "Accept: without format=, the client's Accept chose the format",
                        {"type": "string", "enum": ["Accept"]},
                        required=True,
                    ),
                    Cache_Control=_header(
                        "no-cache: the target changes whenever the product does",
                        {"type": "string", "enum": ["no-cache"]},
                        required=True,
                    ),
                ),
                "400": _error("Not an id, not an image index, or a bad w or format, naming it"),
                "404": _error(
                    "No such product"
                    + (", or another user's (unless PRODUCT_READS=public)" if keys else "")
                    + "; no image n; an image with no renditions yet (pending, or failed "
                    "without an output); or none in the format= asked for"
                ),
            },
            key="read",
            description="Without format=, the format is the best the Accept header allows "
            "(RFC 9110 q-values, the most specific media range deciding; a missing Accept is "
            "*/*): at equal weights a format Accept names beats one only a wildcard admits; "
            "among named formats AVIF, then WebP, then JPEG; among wildcard-admitted ones "
            "JPEG, then WebP, then AVIF (browsers send image/* and */* whether or not they "
            "decode the newer formats). When no produced format is acceptable: JPEG if "
            "produced, else WebP, else AVIF. Then the smallest rendition of that format at "
            "least w wide, the largest when none is or without w.",
            parameters=[
                product_id_path,
                {
                    "name": "n",
                    "in": "path",
                    "required": True,
                    "description": "The image's index in the product's images (0 is the first)",
                    "schema": {"type": "integer", "minimum": 0},
                },
                {
                    "name": "w",
                    "in": "query",
                    "required": False,
                    "description": "The width wanted, in pixels: the smallest rendition at "
                    "least this wide (the largest when none is); without it, the largest",
                    "schema": {"type": "integer", "minimum": MIN_WIDTH, "maximum": MAX_WIDTH},
                },
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "description": "This format and no other (404 when the image has no "
                    "rendition in it), instead of the one Accept makes best",
                    "schema": {"type": "string", "enum": list(FORMATS)},
                },
            ],
        )
    }
    product_events: Schema = {
        "get": operation(
            "getProductEvents",
            "Follow one product: its JSON as Server-Sent Events each time it changes",
            {
                "200": {
                    "description": "An event stream (text/event-stream, UTF-8): `retry:` once; "
                    "`event: product` with `id:` the product's version and `data:` its JSON on "
                    "one line (what getProduct answers), on connect and for each newer version; "
                    '`event: deleted` with `data: {"product_id": "<id>"}` when the product is '
                    "deleted, after which the stream ends; a comment line every "
                    f"{KEEPALIVE_S:g} s while nothing changes.",
                    "headers": {
                        "Cache-Control": _header(
                            "no-cache", {"type": "string", "enum": ["no-cache"]}, required=True
                        ),
                        "X-Accel-Buffering": _header(
                            "no: proxies pass each event on at once",
                            {"type": "string", "enum": ["no"]},
                            required=True,
                        ),
                    },
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "400": _error("Not an id, or a Last-Event-ID that is not a version, naming it"),
                "404": _error(
                    "No such product"
                    + (", or another user's (unless PRODUCT_READS=public)" if keys else "")
                ),
                "503": _error(
                    "PostgreSQL unavailable, SSE_MAX_STREAMS "
                    f"({settings.sse_max_streams}) streams already open in this API process, "
                    "or the process is shutting down: retry shortly",
                    Retry_After=_RETRY,
                ),
            },
            key="read",
            description="Access as for getProduct. Every change reaches every API process's "
            "streams, whichever process or worker made it. The stream also ends when the "
            "API process shuts down: reconnect with Last-Event-ID (EventSource does).",
            parameters=[
                product_id_path,
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "The version the client holds (the last event's id): not "
                    "sent again on connect if it is still current. Empty: none.",
                    "schema": {"type": "string", "pattern": f"^$|{EVENT_ID_PATTERN}"},
                },
            ],
        )
    }
    user: Schema = {
        "delete": operation(
            "deleteUser",
            "Delete a user with its products, stored images and keys",
            {
                "204": _answer("Deleted"),
                "400": _error("Not an id"),
                "404": _error("No such user"),
            },
            key="key",
            parameters=[_id_parameter("user_id", "path", "The user")],
            others_403="this key may delete its own user only",
        )
    }

    webhook_id_path = _id_parameter("webhook_id", "path", "The webhook")
    webhook_paths: dict[str, Schema] = {
        "/webhooks": {
            "post": operation(
                "createWebhook",
                "Register a webhook endpoint (its signing secret shown once)",
                {
                    "201": {
                        **_answer("Registered", _ref("schemas", "NewWebhook")),
                        "links": {
                            "DeleteWebhook": {
                                "operationId": "deleteWebhook",
                                "parameters": {"webhook_id": "$response.body#/webhook_id"},
                            },
                            "ListWebhookDeliveries": {
                                "operationId": "listWebhookDeliveries",
                                "parameters": {"webhook_id": "$response.body#/webhook_id"},
                            },
                        },
                    },
                    "400": _error(
                        "Invalid body, naming the field; or a url whose literal IP address the "
                        "server's address rules refuse (loopback, private, link-local, metadata, "
                        "reserved: WEBHOOK_ALLOW_LOOPBACK_URLS and WEBHOOK_ALLOW_PRIVATE_URLS "
                        "open the first two)"
                    ),
                    "409": _error(f"The user has {MAX_WEBHOOKS_PER_USER} webhooks already"),
                    "422": _error("user_id names no user"),
                    "503": _error(
                        "PostgreSQL unavailable (retry shortly), or webhooks off: the server "
                        "has no WEBHOOK_SIGNING_KEY",
                        Retry_After=_RETRY,
                    ),
                },
                key="key",
                description="Deliveries follow Standard Webhooks: a POST of "
                '{"type", "timestamp", "data"} with webhook-id (the event\'s id, the same on '
                "every retry), webhook-timestamp and webhook-signature (v1, HMAC-SHA256 under "
                "the secret). A 2xx within WEBHOOK_TIMEOUT_SECONDS is a delivery; redirects are "
                "not followed; failures are retried on WEBHOOK_RETRY_SCHEDULE, and an endpoint "
                "failing for a whole schedule is disabled. A host name is judged by the "
                "address rules when connecting, on the address connected.",
                body=_ref("schemas", "WebhookRegistration"),
                others_403="user_id names another user",
            ),
            "get": operation(
                "listWebhooks",
                "A user's webhook endpoints (never their secrets)",
                {
                    "200": _answer(
                        "The endpoints, oldest first",
                        {"type": "array", "items": _ref("schemas", "Webhook")},
                    ),
                    "400": _error("Not an id"),
                },
                key="key",
                parameters=[
                    _id_parameter(
                        "user_id",
                        "query",
                        "Whose endpoints" + own + ("; admins must name one" if keys else ""),
                        required=not keys,
                    )
                ],
                others_403="user_id names another user",
            ),
        },
        "/webhooks/{webhook_id}": {
            "delete": operation(
                "deleteWebhook",
                "Delete a webhook endpoint with its deliveries (pending ones are never sent)",
                {
                    "204": _answer("Deleted"),
                    "400": _error("Not an id"),
                    "404": _error("No such webhook" + (", or another user's" if keys else "")),
                },
                key="key",
                parameters=[webhook_id_path],
            )
        },
        "/webhooks/{webhook_id}/deliveries": {
            "get": operation(
                "listWebhookDeliveries",
                "The endpoint's recent deliveries, newest first, each with its attempts",
                {
                    "200": _answer(
                        "The endpoint and its deliveries", _ref("schemas", "Deliveries")
                    ),
                    "400": _error("Not an id, or a bad limit"),
                    "404": _error("No such webhook" + (", or another user's" if keys else "")),
                },
                key="key",
                parameters=[
                    webhook_id_path,
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": MIN_LIMIT,
                            "maximum": MAX_LIMIT,
                            "default": DEFAULT_LIMIT,
                        },
                    },
                ],
            )
        },
    }

    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "Product catalogue",
            "version": "1.0.0",
            "description": (
                "Every answer carries X-Request-ID (the request's own when it sent one of 1 to "
                "128 printable characters); every error is "
                '{"status": "error", "message", "details"}.'
                + (
                    " Requests need an API key (Authorization: Bearer catk_…) unless stated; "
                    f"reads are limited to {settings.rate_limit_reads} and writes to "
                    f"{settings.rate_limit_writes} per key (per address without one), and "
                    "answers a budget applies to carry RateLimit-Limit, RateLimit-Remaining "
                    "and RateLimit-Reset."
                    if keys
                    else " AUTH_MODE=off: no keys and no limits here; a gateway in front "
                    "authenticates."
                )
            ),
        },
        "paths": {
            "/users": users,
            "/users/{user_id}": user,
            **key_paths,
            "/products": products,
            "/products/{product_id}": product,
            "/products/{product_id}/reprocess": reprocess,
            "/products/{product_id}/images/{n}": product_image,
            "/products/{product_id}/events": product_events,
            **webhook_paths,
            "/images/{key}": {
                "get": operation(
                    "getImage",
                    "A compressed image from local storage",
                    {
                        "200": {
                            "description": "The image (immutable, cache for a year)",
                            "content": {t: {} for t in CONTENT_TYPES.values()},
                        },
                        "404": _error("No such image"),
                    },
                    key="open",
                    parameters=[
                        {
                            "name": "key",
                            "in": "path",
                            "required": True,
                            "description": "The path under /images/ of a compressed image URL",
                            "schema": {"type": "string", "pattern": f"^{KEY_PATTERN.pattern}$"},
                        }
                    ],
                )
            },
            "/healthz": {
                "get": operation(
                    "healthz",
                    "Liveness",
                    {"200": _answer("Up", {"type": "object"})},
                    key="open",
                )
            },
            "/readyz": {
                "get": operation(
                    "readyz",
                    "Readiness: PostgreSQL, Redis and Kafka answer",
                    {
                        "200": _answer("Ready", {"type": "object"}),
                        "503": _error("Names what is down"),
                    },
                    key="open",
                )
            },
            "/metrics": {
                "get": operation(
                    "metrics",
                    "Prometheus metrics (for an internal network: no key needed)",
                    {
                        "200": {
                            "description": "The Prometheus text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                    key="open",
                )
            },
            "/openapi.json": {
                "get": operation(
                    "openapi",
                    "This document",
                    {"200": _answer("OpenAPI 3", {"type": "object"})},
                    key="open",
                )
            },
        },
        "components": {
            "schemas": _schemas(settings, keys),
            "headers": _HEADERS,
        },
    }
    if keys:
        document["components"]["securitySchemes"] = {
            SECURITY_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "catk_<key id>_<secret>",
                "description": "An API key from POST /users or POST /users/{user_id}/api-keys, "
                "or an admin key (ADMIN_API_KEYS)",
            }
        }
        document["security"] = [{SECURITY_SCHEME: []}]
    return document


_RETRY: Schema = _header("Seconds to wait before retrying", {"type": "integer", "minimum": 1})
_RETRY_REQUIRED: Schema = {**_RETRY, "required": True}
_HEADERS: dict[str, Schema] = {
    "X-Request-ID": _header(
        "The request's id, as in the logs", {"type": "string", "minLength": 1}, required=True
    ),
    "RateLimit-Limit": _header(
        "Requests of the budget's period (see info)", {"type": "integer", "minimum": 1}
    ),
    "RateLimit-Remaining": _header(
        "Requests left in the budget now", {"type": "integer", "minimum": 0}
    ),
    "RateLimit-Reset": _header(
        "Seconds until the budget is whole again", {"type": "integer", "minimum": 0}
    ),
}


def _schemas(settings: Settings, keys: bool) -> dict[str, Schema]:
    text: Schema = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_NAME_LENGTH,
        "pattern": TEXT_PATTERN,
        "description": "Not blank, no NUL; surrounding whitespace is dropped",
    }
    description: Schema = {
        "type": "string",
        "nullable": True,
        "maxLength": MAX_DESCRIPTION_LENGTH,
        "pattern": NO_NUL_PATTERN,
        "description": "No NUL; surrounding whitespace is dropped; null: none",
    }
    images: Schema = {
        "type": "array",
        "nullable": True,
        "maxItems": settings.max_images_per_product,
        "description": "null: none",
        "items": {
            "type": "string",
            "maxLength": MAX_URL_LENGTH,
            "pattern": URL_PATTERN,
            "description": "An http or https URL with a host, without whitespace or control "
            "characters (percent-encode them)",
        },
    }
    user_id: Schema = {
        "oneOf": [_ref("schemas", "Id"), {"type": "integer", "minimum": 1, "maximum": MAX_ID}],
        "description": "An id, as digits or a number"
        + (": the caller's own when left out or null (admins must name one)" if keys else ""),
    }
    if keys:
        user_id["nullable"] = True
    user: Schema = {
        "type": "object",
        "required": ["user_id", "username", "email"],
        "properties": {
            "user_id": _ID_OUT,
            "username": {"type": "string"},
            "email": {"type": "string"},
        },
    }
    if keys:
        user["required"].append("api_key")
        user["properties"]["api_key"] = {
            "type": "string",
            "pattern": API_KEY_PATTERN,
            "description": "The user's first API key: shown once, never stored in clear",
        }
    return {
        "Id": _ID,
        "Error": {
            "type": "object",
            "required": ["status", "message", "details"],
            "properties": {
                "status": {"type": "string", "enum": ["error"]},
                "message": {"type": "string"},
                "details": {"nullable": True},
            },
        },
        "NewUser": {
            "type": "object",
            "required": ["username", "email"],
            "properties": {
                "username": text,
                "email": {
                    "type": "string",
                    "maxLength": MAX_EMAIL_LENGTH,
                    "pattern": EMAIL_PATTERN,
                    "description": "An email address (something@something.something)",
                    "example": "ann@example.com",
                },
            },
        },
        "User": user,
        "NewApiKey": {
            "type": "object",
            "required": ["key_id", "api_key", "created_at"],
            "properties": {
                "key_id": {"type": "string", "pattern": KEY_ID_PATTERN},
                "api_key": {"type": "string", "pattern": API_KEY_PATTERN},
                "created_at": _TIME,
            },
        },
        "ApiKeyInfo": {
            "type": "object",
            "required": ["key_id", "created_at", "last_used_at"],
            "properties": {
                "key_id": {"type": "string", "pattern": KEY_ID_PATTERN},
                "created_at": _TIME,
                "last_used_at": {**_TIME, "nullable": True},
            },
        },
        **_webhook_schemas(user_id, keys),
        "NewProduct": {
            "type": "object",
            "required": ["product_name", "product_price"] + ([] if keys else ["user_id"]),
            "properties": {
                "user_id": user_id,
                "product_name": text,
                "product_description": description,
                "product_images": images,
                "product_price": _PRICE,
            },
        },
        "ProductPatch": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "product_name": text,
                "product_description": description,
                "product_images": images,
                "product_price": _PRICE,
            },
        },
        "Created": {
            "type": "object",
            "required": ["status", "message", "product_id"],
            "properties": {
                "status": {"type": "string", "enum": ["success"]},
                "message": {"type": "string"},
                "product_id": _ID_OUT,
            },
        },
        "Rendition": {
            "type": "object",
            "required": ["url", "width", "height", "format", "bytes"],
            "properties": {
                "url": {"type": "string"},
                "width": {"type": "integer", "minimum": 1},
                "height": {"type": "integer", "minimum": 1},
                "format": {"type": "string", "enum": list(FORMATS)},
                "bytes": {"type": "integer", "minimum": 1},
            },
        },
        "Product": {
            "type": "object",
            "required": [
                "product_id",
                "user_id",
                "product_name",
                "product_description",
                "product_images",
                "compressed_product_images",
                "product_price",
                "processing_status",
                "images",
                "created_at",
                "updated_at",
            ],
            "properties": {
                "product_id": _ID_OUT,
                "user_id": _ID_OUT,
                "product_name": {"type": "string"},
                "product_description": {"type": "string"},
                "product_images": {"type": "array", "items": {"type": "string"}},
                "compressed_product_images": {"type": "array", "items": {"type": "string"}},
                "product_price": {"type": "number", "minimum": 0},
                "processing_status": {
                    "type": "string",
                    "enum": ["pending", "done", "partial", "failed"],
                },
                "images": {
                    "type": "array",
                    "description": "Each source's state, in source order",
                    "items": {
                        "type": "object",
                        "required": ["source", "status", "url", "error", "original", "renditions"],
                        "properties": {
                            "source": {"type": "string"},
                            "status": {"type": "string", "enum": ["pending", "ready", "failed"]},
                            "url": {"type": "string", "nullable": True},
                            "error": {"type": "string", "nullable": True},
                            "original": {
                                "type": "object",
                                "nullable": True,
                                "description": "The source the renditions were made from: its "
                                "size in bytes, its width and height upright (after EXIF "
                                "orientation) and its format; null while it has no output",
                                "required": ["bytes", "width", "height", "format"],
                                "properties": {
                                    "bytes": {"type": "integer", "minimum": 1},
                                    "width": {"type": "integer", "minimum": 1},
                                    "height": {"type": "integer", "minimum": 1},
                                    "format": {"type": "string"},
                                },
                            },
                            "renditions": {
                                "type": "array",
                                "description": "The image's outputs, each size in each format "
                                "(empty while it has none): what "
                                "GET /products/{product_id}/images/{n} chooses from",
                                "items": _ref("schemas", "Rendition"),
                            },
                        },
                    },
                },
                "processing_errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["image", "error"],
                        "properties": {
                            "image": {"type": "string"},
                            "error": {"type": "string"},
                        },
                    },
                },
                "created_at": _TIME,
                "updated_at": _TIME,
            },
        },
    }


def _webhook_schemas(user_id: Schema, keys: bool) -> dict[str, Schema]:
    webhook: Schema = {
        "type": "object",
        "required": [
            "webhook_id",
            "user_id",
            "url",
            "events",
            "created_at",
            "last_success_at",
            "enabled",
            "disabled_at",
            "disabled_reason",
        ],
        "properties": {
            "webhook_id": _ID_OUT,
            "user_id": _ID_OUT,
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)}},
            "created_at": _TIME,
            "last_success_at": {**_TIME, "nullable": True},
            "enabled": {
                "type": "boolean",
                "description": "false once it failed for a whole retry schedule (register it "
                "again to resume)",
            },
            "disabled_at": {**_TIME, "nullable": True},
            "disabled_reason": {"type": "string", "nullable": True},
        },
    }
    return {
        "WebhookRegistration": {
            "type": "object",
            "required": ["url"] + ([] if keys else ["user_id"]),
            "properties": {
                "user_id": user_id,
                "url": {
                    "type": "string",
                    "maxLength": MAX_URL_LENGTH,
                    "pattern": WEBHOOK_URL_PATTERN,
                    "description": "http or https; a host name (its last label not numeric), "
                    "a dotted IPv4 address or a bracketed IPv6 address; an optional port, "
                    "path and query; no user info, fragment, whitespace or control characters",
                    "example": "https://hooks.example.com/catalogue",
                },
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"type": "string", "enum": list(EVENT_TYPES)},
                    "description": "The event types to deliver; every type when left out or null",
                    "nullable": True,
                },
            },
        },
        "Webhook": webhook,
        "NewWebhook": {
            **webhook,
            "required": [*webhook["required"], "secret"],
            "properties": {
                **webhook["properties"],
                "secret": {
                    "type": "string",
                    "pattern": "^whsec_[A-Za-z0-9+/]{43}=$",
                    "description": "The signing secret (Standard Webhooks format), shown once",
                },
            },
        },
        "Deliveries": {
            "type": "object",
            "required": ["webhook", "deliveries"],
            "properties": {
                "webhook": _ref("schemas", "Webhook"),
                "deliveries": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "event_id",
                            "event_type",
                            "state",
                            "created_at",
                            "finished_at",
                            "next_attempt_at",
                            "attempts",
                        ],
                        "properties": {
                            "event_id": {"type": "string", "pattern": "^evt_[0-9a-f]{32}$"},
                            "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
                            "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                            "created_at": _TIME,
                            "finished_at": {**_TIME, "nullable": True},
                            "next_attempt_at": {
                                **_TIME,
                                "nullable": True,
                                "description": "When it is tried next; null once finished",
                            },
                            "attempts": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": [
                                        "attempt",
                                        "attempted_at",
                                        "status_code",
                                        "error",
                                        "duration_ms",
                                    ],
                                    "properties": {
                                        "attempt": {"type": "integer", "minimum": 1},
                                        "attempted_at": {"type": "string"},
                                        "status_code": {"type": "integer", "nullable": True},
                                        "error": {
                                            "type": "string",
                                            "nullable": True,
                                            "description": "Why it failed (HTTP status, "
                                            "timeout, connect error, or blocked: the address "
                                            "rules' reason); null when delivered",
                                        },
                                        "duration_ms": {"type": "number", "minimum": 0},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    }


def openapi_json(settings: Settings) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /openapi.json for an app with these settings: the document, serialised once."""
    body = orjson.dumps(openapi_document(settings))

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": "application/json"})

    return serve
