"""Credentials in the database: device token rotations and admin tokens, and a small cache of
token look-ups. Functions here run on a connection inside the caller's transaction
(collector.store opens it); they hold the SQL, the Store holds the policy of when to call them.

A rotation, step by step (one row of device_rotations):
1. start_rotation: a random nonce is recorded beside the SHA-256 of the device's token.
2. deliver_rotation: a push made with that token derives the new token from it and the nonce,
   records the new token's SHA-256 in device_tokens (now both are valid) and hands it over in
   the reply. Every retry and every replica derives the same token, so this is idempotent.
3. finish_rotation: the first push made with the new token deletes the old token and the row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlalchemy as sa

from collector import tokens
from collector.pricebook import NAME_PATTERN
from collector.schema import admin_tokens, device_rotations, device_tokens

T = TypeVar("T")


class RotationRefused(ValueError):
    """The device cannot start a rotation now (revoked, or one is under way)."""


@dataclass(frozen=True, slots=True)
class Rotation:
    nonce: str
    old_token_sha256: str
    new_token_sha256: str | None  # None until the new token is first handed over


@dataclass(frozen=True, slots=True)
class NewAdminToken:
    token_id: str
    name: str
    role: str
    token: str  # shown once: only its SHA-256 is stored


@dataclass(frozen=True, slots=True)
class AdminTokenRow:
    token_id: str
    name: str
    role: str
    created_unix_ns: int
    revoked: bool


@dataclass(frozen=True, slots=True)
class AdminAuth:
    token_id: str
    name: str
    role: str
    revoked: bool


class TtlCache(Generic[T]):
    """Token look-ups for ttl_s, so that a revocation made by another replica takes effect
    within that time. Bounded: a flood of wrong tokens empties it instead of growing it."""

    def __init__(self, ttl_s: float, *, max_entries: int = 10_000, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._monotonic = monotonic
        self._entries: dict[str, tuple[float, T | None]] = {}

    def get(self, key: str) -> tuple[bool, T | None]:
        """(found, value); an expired entry is not found."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: str, value: T | None) -> None:
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[key] = (self._monotonic() + self._ttl_s, value)

    def clear(self) -> None:
        self._entries.clear()


# Device token rotations


def pending_rotation(connection: sa.Connection, device_id: str) -> Rotation | None:
    row = connection.execute(
        sa.select(device_rotations.c.nonce, device_rotations.c.old_token_sha256, device_rotations.c.new_token_sha256)
        .where(device_rotations.c.device_id == device_id)
    ).first()
    return None if row is None else Rotation(row.nonce, row.old_token_sha256, row.new_token_sha256)


def start_rotation(connection: sa.Connection, device_id: str, name: str, *, now_unix_ns: int) -> None:
    """Record a rotation of the device's (only) token. RotationRefused while one is under way."""
    if pending_rotation(connection, device_id) is not None:
        raise RotationRefused(
            f"a token rotation of device {name!r} is under way: it ends when the device pushes with its new token"
        )
    (current,) = connection.execute(
        sa.select(device_tokens.c.token_sha256).where(device_tokens.c.device_id == device_id)
    ).scalars().all()
    connection.execute(sa.insert(device_rotations), {
        "device_id": device_id, "nonce": tokens.new_rotation_nonce(), "old_token_sha256": current,
        "new_token_sha256": None, "started_unix_ns": now_unix_ns,
    })


def deliver_rotation(connection: sa.Connection, device_id: str, rotation: Rotation, new_token: str, *, now_unix_ns: int) -> bool:
    """Make new_token valid beside the old one; False if the rotation ended meanwhile."""
    new_sha256 = tokens.token_sha256(new_token)
    updated = connection.execute(
        sa.update(device_rotations)
        .where(device_rotations.c.device_id == device_id, device_rotations.c.nonce == rotation.nonce)
        .values(new_token_sha256=new_sha256)
    ).rowcount
    if not updated:
        return False
    # The update locked the rotation's row, so concurrent deliveries get here one at a time.
    known = connection.execute(
        sa.select(device_tokens.c.token_sha256).where(device_tokens.c.token_sha256 == new_sha256)
    ).first()
    if known is None:
        connection.execute(sa.insert(device_tokens), {
            "token_sha256": new_sha256, "device_id": device_id, "created_unix_ns": now_unix_ns,
        })
    return True


def finish_rotation(connection: sa.Connection, device_id: str, rotation: Rotation) -> bool:
    """Retire the old token; False if the rotation had ended already."""
    deleted = connection.execute(
        sa.delete(device_rotations)
        .where(device_rotations.c.device_id == device_id, device_rotations.c.nonce == rotation.nonce)
    ).rowcount
    if deleted:
        connection.execute(sa.delete(device_tokens).where(device_tokens.c.token_sha256 == rotation.old_token_sha256))
    return bool(deleted)


def drop_rotation(connection: sa.Connection, device_id: str) -> None:
    connection.execute(sa.delete(device_rotations).where(device_rotations.c.device_id == device_id))


# Admin tokens


def check_admin_token_fields(name: str, role: str) -> None:
    if role not in tokens.ROLES:
        raise ValueError(f"role {role!r} is invalid: use one of {', '.join(tokens.ROLES)}")
    if type(name) is not str or name and not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"token name {name!r} is invalid: use up to 64 characters of A-Z a-z 0-9 . _ -")


def insert_admin_token(connection: sa.Connection, name: str, role: str, *, now_unix_ns: int) -> NewAdminToken:
    new = NewAdminToken(tokens.new_admin_token_id(), name, role, tokens.new_admin_token())
    connection.execute(sa.insert(admin_tokens), {
        "token_id": new.token_id, "token_sha256": tokens.token_sha256(new.token), "name": name, "role": role,
        "created_unix_ns": now_unix_ns, "revoked_unix_ns": None,
    })
    return new


def admin_token_rows(connection: sa.Connection) -> list[AdminTokenRow]:
    rows = connection.execute(
        sa.select(admin_tokens).order_by(admin_tokens.c.created_unix_ns, admin_tokens.c.token_id)
    ).all()
    return [
        AdminTokenRow(row.token_id, row.name, row.role, row.created_unix_ns, row.revoked_unix_ns is not None)
        for row in rows
    ]


def revoke_admin_token_row(connection: sa.Connection, token_id: str, *, now_unix_ns: int) -> None:
    """KeyError if there is no such token; revoking twice keeps the first revocation."""
    updated = connection.execute(
        sa.update(admin_tokens)
        .where(admin_tokens.c.token_id == token_id, admin_tokens.c.revoked_unix_ns.is_(None))
        .values(revoked_unix_ns=now_unix_ns)
    ).rowcount
    if not updated and connection.execute(
        sa.select(admin_tokens.c.token_id).where(admin_tokens.c.token_id == token_id)
    ).first() is None:
        raise KeyError(f"no admin token {token_id!r}")


def find_admin_token(connection: sa.Connection, digest: str) -> AdminAuth | None:
    row = connection.execute(
        sa.select(admin_tokens).where(admin_tokens.c.token_sha256 == digest)
    ).first()
    if row is None or not tokens.digest_matches(row.token_sha256, digest):
        return None
    return AdminAuth(row.token_id, row.name, row.role, row.revoked_unix_ns is not None)
