"""The product catalogue's REST API (aiohttp on uvloop)."""
