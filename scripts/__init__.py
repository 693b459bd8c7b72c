"""Developer scripts. A package so that `python -m scripts.demo` and `testkit` can import the demo
(`scripts/demo/`); the other scripts here are run as files."""
