"""Row ids: BIGINT identities, written as ASCII decimal digits wherever they travel as text."""

from __future__ import annotations

import re

MAX_ID = 2**63 - 1
# ASCII only: str.isdigit() also takes "²" and "٣", which int() refuses or reads as another id.
ID_DIGITS = re.compile(r"[0-9]{1,19}")


def id_from_text(text: str) -> int | None:
    """The id a string of digits names, or None when it names none."""
    if not ID_DIGITS.fullmatch(text):
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None
