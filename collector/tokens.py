"""Credentials: device and admin ids, bearer tokens, and how tokens are kept (only their SHA-256).

A token is 256 random bits; the collector stores its SHA-256, so a leaked database holds no
usable credential. Because the stored value is a hash of a secret, looking it up by equality
leaks nothing an attacker can use; the final comparison is still constant-time, and also
guards against a database collation that compares text loosely.

The prefix tells the kinds apart ("imd_" a device, "ima_" an operator), so a token of the wrong
kind is refused before any lookup, and a leaked one is recognizable to secret scanners.

A rotated device token is derived, not stored: HMAC-SHA256 keyed with the device's current
token over a random nonce. The collector keeps only the nonce, and computes the new token when
the device presents the current one, so even during a rotation the database holds nothing a
thief could push with, and every replica (and every retry) derives the same new token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

TOKEN_PREFIX = "imd_"
ADMIN_TOKEN_PREFIX = "ima_"
DEVICE_ID_PREFIX = "dev_"
ADMIN_TOKEN_ID_PREFIX = "adm_"
# A prefix + 43 url-safe base64 characters; anything much longer is not a token of ours.
MAX_TOKEN_CHARS = 128

# Roles of admin tokens: a viewer reads; an admin reads and changes.
ADMIN, VIEWER = "admin", "viewer"
ROLES = (ADMIN, VIEWER)


def new_device_id() -> str:
    return DEVICE_ID_PREFIX + secrets.token_hex(8)


def new_device_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_admin_token_id() -> str:
    return ADMIN_TOKEN_ID_PREFIX + secrets.token_hex(8)


def new_admin_token() -> str:
    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_rotation_nonce() -> str:
    return secrets.token_hex(32)


def rotated_token(current_token: str, nonce: str) -> str:
    """The device token that replaces current_token in the rotation with this nonce."""
    digest = hmac.new(current_token.encode("ascii"), nonce.encode("ascii"), hashlib.sha256).digest()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def could_be_token(token: object, prefix: str = TOKEN_PREFIX) -> bool:
    """Cheap shape check before hashing: rejects what no issued token of this kind can be."""
    return (
        type(token) is str
        and token.startswith(prefix)
        and len(token) <= MAX_TOKEN_CHARS
        and token.isascii()
    )


def role_grants(role: str, needed: str) -> bool:
    """Whether a token with `role` may do what needs `needed`: an admin may do anything."""
    return role == ADMIN or role == needed


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def digest_matches(stored_sha256: str, presented_sha256: str) -> bool:
    return hmac.compare_digest(stored_sha256.encode("ascii"), presented_sha256.encode("ascii"))
