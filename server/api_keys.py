"""API keys: their format, how they are made, and what is kept of them.

A key reads `catk_<key id>_<secret>`:
- the fixed prefix lets secret scanners (GitHub's, trufflehog, gitleaks) recognise a leaked one;
- the key id (16 hex digits, public: it names the key in listings and logs) finds its row;
- the secret is 32 random bytes (256 bits), base64url; only its SHA-256 is stored. A fast hash
  is right here: slow password hashes exist to protect low-entropy passwords, and 256 random
  bits cannot be guessed whatever the hash costs.
Verification compares digests with `hmac.compare_digest`, so its time says nothing of how much of
a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "catk_"
_KEY_ID_BYTES = 8
_SECRET_BYTES = 32
_TOKEN = re.compile(r"catk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
KEY_ID_LENGTH = 2 * _KEY_ID_BYTES  # hex
TOKEN_LENGTH = len(PREFIX) + KEY_ID_LENGTH + 1 + 43  # 43: 32 bytes in unpadded base64url


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    token: str  # shown to its owner once, never stored
    secret_hash: bytes


def issue_key() -> IssuedKey:
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return IssuedKey(key_id, f"{PREFIX}{key_id}_{secret}", hash_secret(secret))


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = _TOKEN.fullmatch(token)
    return (match[1], match[2]) if match else None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
