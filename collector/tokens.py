"""Device credentials: ids, bearer tokens, and how tokens are kept (only their SHA-256).

A token is 256 random bits; the collector stores its SHA-256, so a leaked database holds no
usable credential. Because the stored value is a hash of a secret, looking it up by equality
leaks nothing an attacker can use; the final comparison is still constant-time, and also
guards against a database collation that compares text loosely.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "imd_"
DEVICE_ID_PREFIX = "dev_"
# "imd_" + 43 url-safe base64 characters; anything much longer is not a token of ours.
MAX_TOKEN_CHARS = 128


def new_device_id() -> str:
    return DEVICE_ID_PREFIX + secrets.token_hex(8)


def new_device_token() -> str:
    # The prefix makes a leaked token recognizable to secret scanners and to people.
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def could_be_token(token: object) -> bool:
    """Cheap shape check before hashing: rejects what no issued token can be."""
    return (
        type(token) is str
        and token.startswith(TOKEN_PREFIX)
        and len(token) <= MAX_TOKEN_CHARS
        and token.isascii()
    )


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def digest_matches(stored_sha256: str, presented_sha256: str) -> bool:
    return hmac.compare_digest(stored_sha256.encode("ascii"), presented_sha256.encode("ascii"))
