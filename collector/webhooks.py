"""Webhook delivery: every budget event is POSTed to each webhook that was live when it was
stored, signed, retried with exponential backoff until a 2xx, and sent by one replica at a time.

A delivery is a `webhook_deliveries` row, inserted with its event (Store.record_budget_event).
A sender first claims the rows that are due with a conditional UPDATE (claimed_until = now +
CLAIM_S where claimed_until < now): the database lets one UPDATE win per row, so replicas on
one PostgreSQL never send a delivery twice at once, and a replica that dies mid-send leaves a
claim that expires. Then it POSTs the event's JSON (BudgetEvent.to_json) with

    Content-Type: application/json
    X-Infermeter-Event: <event_id>
    X-Infermeter-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the webhook's secret>

and records the outcome: delivered on a 2xx; otherwise the next attempt after backoff_base_s
* 2^(attempts - 1), capped at MAX_BACKOFF_S, and no more after MAX_ATTEMPTS. Redirects are not
followed (a 3xx is a failure): the collector POSTs to the URL it was given and nowhere else.
A revoked webhook's pending deliveries are not sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import sqlalchemy as sa

from collector.budgets import BudgetEvent
from collector.database import transaction
from collector.periodic import periodically
from collector.schema import budget_events, budgets, webhook_deliveries, webhooks
from collector.store import Store

logger = logging.getLogger(__name__)

CLAIM_S = 30.0
MAX_ATTEMPTS = 20
MAX_BACKOFF_S = 3_600.0
TIMEOUT_S = 10.0
BATCH = 50
POLL_INTERVAL_S = 1.0
MAX_ERROR_CHARS = 500
SIGNATURE_HEADER = "X-Infermeter-Signature"
EVENT_HEADER = "X-Infermeter-Event"
_NS = 10**9


def signature(secret: str, body: bytes) -> str:
    """The X-Infermeter-Signature value of `body`: what a receiver recomputes to verify it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_s(attempts: int, *, base_s: float = 1.0) -> float:
    """The wait after the `attempts`-th failed attempt: base, 2 base, 4 base ..., capped."""
    return min(MAX_BACKOFF_S, base_s * 2 ** min(attempts - 1, 40))


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed delivery: where to send which event, and how often it was tried before."""

    event_id: int
    webhook_id: str
    url: str
    secret: str
    attempts: int
    body: bytes


class WebhookSender:
    """Sends the due deliveries of `store`. run_once sends one batch; run loops until stopped."""

    def __init__(
        self, store: Store, *, clock: Callable[[], int] = time.time_ns, backoff_base_s: float = 1.0,
        timeout_s: float = TIMEOUT_S, batch: int = BATCH, claim_s: float = CLAIM_S,
    ) -> None:
        self._store = store
        self._clock = clock
        self._backoff_base_s = backoff_base_s
        self._timeout_s = timeout_s
        self._batch = batch
        self._claim_ns = int(claim_s * _NS)

    async def run(self, stop: asyncio.Event, *, interval_s: float = POLL_INTERVAL_S) -> None:
        """Send what is due, then again every interval_s, until stop is set. A failed round
        (the database down) is logged and the next one tries again."""
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await periodically(lambda: self.run_once(session), stop, interval_s=interval_s, what="webhook delivery")

    async def run_once(self, session: aiohttp.ClientSession) -> int:
        """Claim the due deliveries (up to a batch), send them at once; how many were delivered."""
        claimed = await asyncio.to_thread(self.claim)
        results = await asyncio.gather(*(self._send(session, delivery) for delivery in claimed))
        return sum(results)

    def claim(self) -> list[Delivery]:
        """The due deliveries this sender now holds (others skip them until the claim expires)."""
        now = self._clock()
        due = (
            sa.select(
                webhook_deliveries.c.event_id, webhook_deliveries.c.webhook_id, webhook_deliveries.c.attempts,
                webhooks.c.url, webhooks.c.secret,
            )
            .join(webhooks, webhooks.c.webhook_id == webhook_deliveries.c.webhook_id)
            .where(
                webhook_deliveries.c.delivered_unix_ns.is_(None),
                webhook_deliveries.c.attempts < MAX_ATTEMPTS,
                webhook_deliveries.c.next_attempt_unix_ns <= now,
                webhook_deliveries.c.claimed_until_unix_ns < now,
                webhooks.c.revoked_unix_ns.is_(None),
            )
            .order_by(webhook_deliveries.c.next_attempt_unix_ns, webhook_deliveries.c.event_id)
            .limit(self._batch)
        )
        claimed = []
        with transaction(self._store.engine) as connection:
            candidates = connection.execute(due).all()
        for row in candidates:
            with transaction(self._store.engine, write=True) as connection:
                won = connection.execute(
                    sa.update(webhook_deliveries)
                    .where(
                        webhook_deliveries.c.event_id == row.event_id,
                        webhook_deliveries.c.webhook_id == row.webhook_id,
                        webhook_deliveries.c.delivered_unix_ns.is_(None),
                        webhook_deliveries.c.claimed_until_unix_ns < now,
                    )
                    .values(claimed_until_unix_ns=now + self._claim_ns)
                ).rowcount
                if won:
                    body = _event_body(connection, row.event_id)
                    claimed.append(Delivery(row.event_id, row.webhook_id, row.url, row.secret, row.attempts, body))
        return claimed

    async def _send(self, session: aiohttp.ClientSession, delivery: Delivery) -> bool:
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: str(delivery.event_id),
            SIGNATURE_HEADER: signature(delivery.secret, delivery.body),
        }
        error = ""
        try:
            async with session.post(delivery.url, data=delivery.body, headers=headers, allow_redirects=False) as reply:
                if not 200 <= reply.status < 300:
                    error = f"HTTP {reply.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
            error = f"{type(err).__name__}: {err}"[:MAX_ERROR_CHARS]
        await asyncio.to_thread(self._settle, delivery, error)
        if error:
            logger.warning(
                "webhook %s: event %d not delivered (attempt %d): %s",
                delivery.webhook_id, delivery.event_id, delivery.attempts + 1, error,
            )
        return not error

    def _settle(self, delivery: Delivery, error: str) -> None:
        """Record an attempt's outcome and release the claim."""
        now = self._clock()
        attempts = delivery.attempts + 1
        values = {"attempts": attempts, "claimed_until_unix_ns": 0, "last_error": error}
        if error:
            values["next_attempt_unix_ns"] = now + int(backoff_s(attempts, base_s=self._backoff_base_s) * _NS)
        else:
            values["delivered_unix_ns"] = now
        with transaction(self._store.engine, write=True) as connection:
            connection.execute(
                sa.update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.event_id == delivery.event_id,
                    webhook_deliveries.c.webhook_id == delivery.webhook_id,
                )
                .values(**values)
            )


def _event_body(connection: sa.Connection, event_id: int) -> bytes:
    row = connection.execute(
        sa.select(budget_events, budgets.c.name)
        .join(budgets, budgets.c.budget_id == budget_events.c.budget_id)
        .where(budget_events.c.event_id == event_id)
    ).one()
    event = BudgetEvent(
        row.event_id, row.budget_id, row.name, row.period_start_unix_ns, row.kind, row.key, row.created_unix_ns,
        row.details,
    )
    return json.dumps(event.to_json(), separators=(",", ":")).encode()
