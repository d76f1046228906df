"""The collector's side jobs (retention, budget alerts, webhook delivery): a round now, then one
every interval until the server stops. A failed round is logged and the next one tries again:
the collector keeps serving whatever a side job meets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from collector.database import StoreUnavailable

logger = logging.getLogger(__name__)


async def periodically(
    round_: Callable[[], Awaitable[object]], stop: asyncio.Event, *, interval_s: float, what: str
) -> None:
    """Await round_() now and every interval_s until stop is set; `what` names the job in logs."""
    while True:
        try:
            await round_()
        except StoreUnavailable as err:
            logger.warning("%s: the database is unavailable, retrying in %.0f s: %s", what, interval_s, err)
        except Exception:  # a side job: the collector keeps serving
            logger.exception("%s failed; retrying in %.0f s", what, interval_s)
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
            return
        except asyncio.TimeoutError:
            pass
