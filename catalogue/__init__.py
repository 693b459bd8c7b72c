"""What the API (`server/`) and the worker (`compressor/`) agree on, in one neutral place.

Each module is one contract: the product's public JSON (`product_json`), the product cache
protocol (`cache`: keys, invalidation channel, Lua scripts, client), the image job message
(`jobs`), the Kafka topics they travel on (`topics`), row ids as text (`ids`), and the one retry
policy every loop uses (`retry`). This package imports neither `server` nor `compressor`; an
import-linter contract in pyproject.toml keeps it so.
"""
