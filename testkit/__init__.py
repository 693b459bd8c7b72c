"""What the tests and the benchmarks share: image generators, and the real worker and a
loopback image server as processes. `tests/` and `bench/` both import it; neither imports the
other (an import-linter contract in pyproject.toml)."""
