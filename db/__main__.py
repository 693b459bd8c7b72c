"""`python -m db migrate`: applies pending migrations to POSTGRES_URL."""

from __future__ import annotations

import argparse
import asyncio
import sys

from config import load_settings_or_exit
from config.logging import setup_logging
from db.migrate import migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m db", description=__doc__)
    parser.add_argument("command", choices=["migrate"])
    parser.parse_args(argv)
    settings = load_settings_or_exit()
    setup_logging(settings.log_level, settings.log_format)
    applied = asyncio.run(migrate(settings.postgres_url))
    print(f"migrations applied: {applied or 'none (up to date)'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
