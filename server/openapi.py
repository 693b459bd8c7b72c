"""The OpenAPI 3 document of the API, served at /openapi.json (tests check it against the routes
and against real responses)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(schema_ref: str, description: str, headers: dict[str, Any] | None = None) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }
    if headers:
        response["headers"] = headers
    return response


# What each X-Cache value means; HIT does not say which cache tier answered.
X_CACHE_VALUES = {
    "HIT": "from a cache: the API process's own memory or Redis",
    "MISS": "in no cache: read from PostgreSQL",
    "BYPASS": "Redis is down: read from PostgreSQL",
}
_X_CACHE = {
    "X-Cache": {
        "description": "; ".join(
            f"{value} ({meaning})" for value, meaning in X_CACHE_VALUES.items()
        ),
        "schema": {"type": "string", "enum": list(X_CACHE_VALUES)},
    }
}
_ID = {"type": "string", "pattern": "^[0-9]+$", "example": "12345"}
_PRICE = {"type": "number", "minimum": 0, "exclusiveMaximum": 1000000000, "multipleOf": 0.01}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Product catalogue", "version": "1.0.0"},
    "paths": {
        "/users": {
            "post": {
                "summary": "Create a user",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/NewUser"}}
                    },
                },
                "responses": {
                    "201": _json("User", "Created"),
                    "400": _error("Invalid body"),
                    "409": _error("Email already used"),
                    "413": _error("Body over 1 MiB"),
                    "415": _error("Not application/json"),
                },
            }
        },
        "/products": {
            "post": {
                "summary": "Create a product and queue its image job",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/NewProduct"}}
                    },
                },
                "responses": {
                    "201": _json(
                        "Created",
                        "Created",
                        {
                            "Location": {
                                "schema": {"type": "string"},
                                "description": "/products/{id}",
                            }
                        },
                    ),
                    "400": _error("Invalid body"),
                    "413": _error("Body over 1 MiB"),
                    "415": _error("Not application/json"),
                    "422": _error("Unknown user_id"),
                    "503": _error("Database unavailable"),
                },
            },
            "get": {
                "summary": "List a user's products, newest first",
                "parameters": [
                    {"name": "user_id", "in": "query", "required": True, "schema": _ID},
                    {
                        "name": "price_range",
                        "in": "query",
                        "description": "MIN-MAX inclusive; either side may be empty (20-, -50)",
                        "schema": {"type": "string", "example": "20-50"},
                    },
                    {
                        "name": "product_name",
                        "in": "query",
                        "description": "Case-insensitive substring; % _ \\ are literal",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "From the Link header of the previous page",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "A page of products",
                        "headers": {
                            "Link": {
                                "description": '<url>; rel="next" when more rows exist',
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Product"},
                                }
                            }
                        },
                    },
                    "400": _error("Invalid filter, limit or cursor"),
                    "503": _error("Database unavailable"),
                },
            },
        },
        "/products/{product_id}": {
            "get": {
                "summary": "Get one product with its compressed images",
                "parameters": [
                    {"name": "product_id", "in": "path", "required": True, "schema": _ID}
                ],
                "responses": {
                    "200": _json("Product", "The product", _X_CACHE),
                    "400": _error("Not a positive integer id"),
                    "404": _error("No such product"),
                    "503": _error("Database unavailable and not cached"),
                },
            }
        },
        "/images/{key}": {
            "get": {
                "summary": "A compressed image from local storage",
                "parameters": [
                    {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "The image (immutable, cache for a year)",
                        "content": {"image/jpeg": {}, "image/webp": {}},
                    },
                    "404": _error("No such image"),
                },
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Up"}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness: PostgreSQL, Redis and Kafka answer",
                "responses": {
                    "200": {"description": "Ready"},
                    "503": _error("Names what is down"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text/plain; version=0.0.4"}},
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}
        },
    },
    "components": {
        "schemas": {
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
                    "username": {"type": "string", "minLength": 1, "maxLength": 255},
                    "email": {"type": "string", "format": "email", "maxLength": 320},
                },
            },
            "User": {
                "type": "object",
                "required": ["user_id", "username", "email"],
                "properties": {
                    "user_id": _ID,
                    "username": {"type": "string"},
                    "email": {"type": "string"},
                },
            },
            "NewProduct": {
                "type": "object",
                "required": ["user_id", "product_name", "product_price"],
                "properties": {
                    "user_id": {"oneOf": [_ID, {"type": "integer", "minimum": 1}]},
                    "product_name": {"type": "string", "minLength": 1, "maxLength": 255},
                    "product_description": {"type": "string", "maxLength": 10000},
                    "product_images": {
                        "type": "array",
                        "maxItems": 20,
                        "items": {"type": "string", "format": "uri", "maxLength": 2048},
                    },
                    "product_price": _PRICE,
                },
            },
            "Created": {
                "type": "object",
                "required": ["status", "message", "product_id"],
                "properties": {
                    "status": {"type": "string", "enum": ["success"]},
                    "message": {"type": "string"},
                    "product_id": _ID,
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
                    "created_at",
                    "updated_at",
                ],
                "properties": {
                    "product_id": _ID,
                    "user_id": _ID,
                    "product_name": {"type": "string"},
                    "product_description": {"type": "string"},
                    "product_images": {"type": "array", "items": {"type": "string"}},
                    "compressed_product_images": {"type": "array", "items": {"type": "string"}},
                    "product_price": _PRICE,
                    "processing_status": {
                        "type": "string",
                        "enum": ["pending", "done", "partial", "failed"],
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
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                },
            },
        }
    },
}

_SPEC_BYTES = orjson.dumps(SPEC)


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_SPEC_BYTES, headers={"Content-Type": "application/json"})
