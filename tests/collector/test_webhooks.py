"""Webhook delivery against a real local HTTP server that fails the first N times: retries with
backoff, a signature the secret verifies, one delivery, and two senders (replicas) on one
database never sending the same delivery twice at once."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import aiohttp
import pytest
from aiohttp import web

from collector.store import Store
from collector.webhooks import WebhookSender, backoff_s
from tests.collector.databases import DIALECTS, new_database


class Receiver:
    """A loopback HTTP endpoint answering 500 to the first `failures` POSTs, then 204."""

    def __init__(self, failures: int = 0, *, delay_s: float = 0.0) -> None:
        self.failures = failures
        self.delay_s = delay_s
        self.received: list[tuple[dict, bytes]] = []
        self.attempts = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        await asyncio.sleep(self.delay_s)
        if self.attempts <= self.failures:
            return web.Response(status=500)
        self.received.append((dict(request.headers), body))
        return web.Response(status=204)


async def serve(receiver: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


def record_event(store: Store) -> int:
    budget = store.add_budget({"name": "b1", "scope": "global", "period": "month", "amount": "10"})
    status = store.budget("b1")
    assert store.record_budget_event(
        budget.budget_id, period_start_unix_ns=status.period_start_unix_ns, kind="forecast", key="exceeds",
        details={"exceeds_on": "2026-11-27"},
    )
    return store.budget_events()[0].event_id


@pytest.fixture(params=DIALECTS)
def db_store(request, tmp_path):
    with new_database(request.param, tmp_path) as url:
        store = Store.open(url)
        yield store
        store.close()


def test_backoff_doubles_and_is_capped():
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff_s(20) == 3600 and backoff_s(1, base_s=0.5) == 0.5


def test_retries_until_2xx_then_delivers_once_signed(db_store):
    async def scenario():
        receiver = Receiver(failures=2)
        runner, url = await serve(receiver)
        hook = db_store.add_webhook(url)
        event_id = record_event(db_store)
        sender = WebhookSender(db_store, backoff_base_s=0.05)
        delivered = []
        async with aiohttp.ClientSession() as session:
            for _ in range(40):
                delivered.append(await sender.run_once(session))
                await asyncio.sleep(0.02)
        await runner.cleanup()
        return receiver, hook, event_id, delivered

    receiver, hook, event_id, delivered = asyncio.run(scenario())

    assert receiver.attempts == 3 and sum(delivered) == 1
    [(headers, body)] = receiver.received
    expected = "sha256=" + hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Infermeter-Signature"] == expected
    assert headers["X-Infermeter-Event"] == str(event_id) and headers["Content-Type"] == "application/json"
    assert json.loads(body)["kind"] == "forecast" and json.loads(body)["budget"] == "b1"


def test_a_failed_attempt_waits_for_its_backoff(store):
    async def scenario():
        receiver = Receiver(failures=100)
        runner, url = await serve(receiver)
        store.add_webhook(url)
        record_event(store)
        sender = WebhookSender(store, backoff_base_s=60.0)
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                await sender.run_once(session)
        await runner.cleanup()
        return receiver

    assert asyncio.run(scenario()).attempts == 1


def test_a_revoked_webhook_is_not_sent_to(store):
    async def scenario():
        receiver = Receiver()
        runner, url = await serve(receiver)
        hook = store.add_webhook(url)
        record_event(store)
        store.revoke_webhook(hook.webhook_id)
        async with aiohttp.ClientSession() as session:
            sent = await WebhookSender(store).run_once(session)
        await runner.cleanup()
        return receiver, sent

    receiver, sent = asyncio.run(scenario())
    assert (sent, receiver.attempts) == (0, 0)


def test_two_replicas_never_send_one_delivery_twice(db_store, tmp_path):
    url = db_store.engine.url.render_as_string(hide_password=False).replace("+psycopg", "")
    other = Store.open(url) if db_store.engine.dialect.name == "postgresql" else db_store

    async def scenario():
        receiver = Receiver(delay_s=0.2)
        runner, hook_url = await serve(receiver)
        db_store.add_webhook(hook_url)
        record_event(db_store)
        senders = [WebhookSender(db_store), WebhookSender(other)]
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(sender.run_once(session) for sender in senders for _ in range(3)))
        await runner.cleanup()
        return receiver, results

    receiver, results = asyncio.run(scenario())
    if other is not db_store:
        other.close()
    assert receiver.attempts == 1 and sum(results) == 1
