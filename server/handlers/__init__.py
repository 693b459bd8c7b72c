"""Request handlers: thin, they parse input, call db/ and the cache, and render."""
