"""Webhooks in the database: the URLs that budget events are POSTed to, each with the secret
that signs them (shown once, when added)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa

from collector.schema import webhooks

MAX_URL_CHARS = 2048
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True, slots=True)
class NewWebhook:
    webhook_id: str
    url: str
    secret: str  # the HMAC-SHA256 key of X-Infermeter-Signature; this is its only showing


@dataclass(frozen=True, slots=True)
class WebhookRow:
    webhook_id: str
    url: str
    created_unix_ns: int
    revoked: bool

    def to_json(self) -> dict:
        return {"webhook_id": self.webhook_id, "url": self.url, "created_unix_ns": self.created_unix_ns,
                "revoked": self.revoked}


def check_url(url: object) -> str:
    """The URL if it is an absolute http or https URL; ValueError saying why not."""
    if type(url) is not str or not url:
        raise ValueError(f"a webhook URL must be a non-empty string, got {url!r}")
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"the webhook URL is {len(url)} characters long; the limit is {MAX_URL_CHARS}")
    if _UNSAFE.search(url):
        raise ValueError("the webhook URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as err:
        raise ValueError(f"the webhook URL {url!r} is invalid: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the webhook URL {url!r} must be an http:// or https:// URL with a host")
    return url


def insert_webhook(connection: sa.Connection, url: str, *, now_unix_ns: int) -> NewWebhook:
    hook = NewWebhook("whk_" + secrets.token_hex(12), check_url(url), secrets.token_hex(32))
    connection.execute(sa.insert(webhooks), {
        "webhook_id": hook.webhook_id, "url": hook.url, "secret": hook.secret, "created_unix_ns": now_unix_ns,
        "revoked_unix_ns": None,
    })
    return hook


def webhook_rows(connection: sa.Connection) -> list[WebhookRow]:
    rows = connection.execute(
        sa.select(webhooks.c.webhook_id, webhooks.c.url, webhooks.c.created_unix_ns, webhooks.c.revoked_unix_ns)
        .order_by(webhooks.c.created_unix_ns, webhooks.c.webhook_id)
    )
    return [WebhookRow(row[0], row[1], row[2], row[3] is not None) for row in rows]


def revoke_webhook_row(connection: sa.Connection, webhook_id: str, *, now_unix_ns: int) -> None:
    """Events stored from now on get no delivery to it. KeyError if unknown."""
    found = connection.execute(sa.select(webhooks.c.revoked_unix_ns).where(webhooks.c.webhook_id == webhook_id)).first()
    if found is None:
        raise KeyError(f"no webhook {webhook_id!r}")
    if found[0] is None:
        connection.execute(
            sa.update(webhooks).where(webhooks.c.webhook_id == webhook_id).values(revoked_unix_ns=now_unix_ns)
        )
