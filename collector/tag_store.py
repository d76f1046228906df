"""The tag policy's versions and the devices' default tags in the database, in the caller's
transaction (collector.tag_policy says what they mean)."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from collector.schema import device_default_tags, tag_policies
from collector.tag_policy import TagPolicy, parse_policy


def current_policy(connection: sa.Connection) -> TagPolicy:
    """The newest policy version; an empty policy (version 0) when none was ever set."""
    row = connection.execute(
        sa.select(tag_policies.c.version, tag_policies.c.document, tag_policies.c.created_unix_ns)
        .order_by(tag_policies.c.version.desc()).limit(1)
    ).first()
    if row is None:
        return TagPolicy()
    policy = parse_policy(row.document)
    return TagPolicy(policy.required, row.version, row.created_unix_ns)


# The PostgreSQL advisory lock that serializes new policy versions across replicas.
_POLICY_LOCK_KEY = 0x696D_7467_706F_6C00  # "imtgpol"


def insert_policy(connection: sa.Connection, policy: TagPolicy, *, now_unix_ns: int) -> TagPolicy:
    """Store `policy` as the next version. Replicas adding one at once take turns (SQLite's
    write transactions do already), so each gets its own version."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POLICY_LOCK_KEY})
    latest = connection.execute(sa.select(sa.func.max(tag_policies.c.version))).scalar() or 0
    stored = TagPolicy(policy.required, latest + 1, now_unix_ns)
    connection.execute(sa.insert(tag_policies), {
        "version": stored.version, "document": stored.document(), "created_unix_ns": now_unix_ns,
    })
    return stored


def device_tags(connection: sa.Connection, device_id: str) -> dict[str, str]:
    """The device's default tags ({} when it has none)."""
    found = connection.execute(
        sa.select(device_default_tags.c.tags).where(device_default_tags.c.device_id == device_id)
    ).scalar()
    return dict(found) if found else {}


def replace_device_tags(
    connection: sa.Connection, device_id: str, tags: Mapping[str, str], *, now_unix_ns: int
) -> None:
    """Make `tags` the device's whole set of default tags (none: it has no row)."""
    connection.execute(sa.delete(device_default_tags).where(device_default_tags.c.device_id == device_id))
    if tags:
        connection.execute(sa.insert(device_default_tags), {
            "device_id": device_id, "tags": dict(sorted(tags.items())), "updated_unix_ns": now_unix_ns,
        })
