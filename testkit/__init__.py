"""What the tests and the benchmarks share: image generators (`imagegen`), the real worker and a
loopback image server as processes (`workers`), and the load generator behind the command
bench/load.py (`loadgen`). `tests/` and `bench/` both import it; neither imports the other, and
testkit imports neither (import-linter contracts in pyproject.toml)."""
