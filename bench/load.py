"""Load-test a product-catalogue API deployment (the command; the code is testkit/loadgen.py).

    python bench/load.py --url http://host:8080 --scenario get-hit --concurrency 64 --duration 30s
    python -m bench.load --url http://127.0.0.1:8080 --scenario mixed --requests 10000 --json out.json

`--help` lists the options. The scenarios, the pacing, what the latency covers and the exit
statuses are described in testkit/loadgen.py, which holds the implementation so that the unit
tests can import it (tests and benchmarks share only testkit/: an import-linter contract in
pyproject.toml).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a file (python bench/load.py): Python put bench/ on sys.path, not the repository
    # root that holds testkit/.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.loadgen import main

if __name__ == "__main__":
    sys.exit(main())
