"""Budget state in the device buffer: written by the daemon, read by every Meter.

The daemon keeps each successful Push reply's budgets and price hints (keep_reply) and counts
the records written to the buffer since, per budget (count_new_records: every record as it is
written, shipped or not, so that the lease runs down while the collector is unreachable). A
reply resets the counts: the collector's figures then include what it has acknowledged, and
the records after that are counted again from there.

A Meter's flusher reads `budgets:version` from the meta table each round (one indexed read)
and loads the whole state only when it changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from agent.budgets import BudgetSnapshot, BudgetState, PriceHint, PriceList, add_spend
from agent.buffer import Buffer
from agent.device_tags import load_tags
from agent.record import Kind

logger = logging.getLogger(__name__)

VERSION_KEY = "budgets:version"
RECEIVED_KEY = "budgets:received_unix_ns"
COUNTED_KEY = "budgets:counted_seq"
# Records that stand for inferences (idle records do not).
_COUNTED_KINDS = (int(Kind.INFERENCE), int(Kind.SPAN), int(Kind.ROLLUP), int(Kind.GAP))
_STATE_COLUMNS = (
    "budget_id, name, scope, action, state, currency, unit, lease_remaining, throttle_per_second,"
    " period_end_unix_ns, message"
)
_HINT_COLUMNS = "model, runtime, currency, cost_per_inference_pico, energy_per_inference_uj"


def read_version(buffer: Buffer) -> int:
    value = buffer.meta(VERSION_KEY)
    return int(value) if value else 0


def load_snapshot(buffer: Buffer) -> BudgetSnapshot:
    rows = buffer.query(f"SELECT {_STATE_COLUMNS}, spent FROM budget_state ORDER BY name")
    hints = buffer.query(f"SELECT {_HINT_COLUMNS} FROM price_hints")
    received = buffer.meta(RECEIVED_KEY)
    return BudgetSnapshot(
        received_unix_ns=int(received) if received else 0,
        budgets=tuple(BudgetState(*row[:-1]) for row in rows),
        hints=tuple(PriceHint(*row) for row in hints),
        spent={row[0]: row[-1] for row in rows},
    )


class BudgetStore:
    """The daemon's side. Used from the daemon's main loop only."""

    def __init__(self, buffer: Buffer) -> None:
        self._buffer = buffer
        snapshot = load_snapshot(buffer)
        self._budgets = snapshot.budgets
        self._hints = frozenset(snapshot.hints)
        self._prices = PriceList(snapshot.hints)
        self._spent = dict(snapshot.spent)
        counted = buffer.meta(COUNTED_KEY)
        self._counted_seq = int(counted) if counted else 0

    @property
    def budgets(self) -> tuple[BudgetState, ...]:
        return self._budgets

    def keep_reply(
        self, budgets: Sequence[BudgetState], hints: Sequence[PriceHint], *, received_unix_ns: int,
        acked_through_seq: int,
    ) -> None:
        """Replace the state with a reply's and restart the counts after acked_through_seq.
        Nothing is written while no budget applies and none did before and the hints are the
        same (the common case): the hints are kept for the router (agent.router) too."""
        if not budgets and not self._budgets and frozenset(hints) == self._hints:
            return
        with self._buffer.transaction() as conn:
            conn.execute("DELETE FROM budget_state")
            conn.execute("DELETE FROM price_hints")
            conn.executemany(
                f"INSERT INTO budget_state ({_STATE_COLUMNS}) VALUES ({', '.join('?' * 11)})",
                [_state_row(budget) for budget in budgets],
            )
            conn.executemany(
                f"INSERT OR REPLACE INTO price_hints ({_HINT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                [(h.model, h.runtime, h.currency, h.cost_per_inference_pico, h.energy_per_inference_uj) for h in hints],
            )
            _set_meta(conn, {RECEIVED_KEY: str(received_unix_ns), COUNTED_KEY: str(acked_through_seq)})
        self._budgets = tuple(budgets)
        self._hints = frozenset(hints)
        self._prices = PriceList(hints)
        self._spent = {}
        self._counted_seq = acked_through_seq

    def count_new_records(self) -> int:
        """Add the records written since the last count to each budget's spend; the number of
        records counted. Nothing is read while no budget applies."""
        if not self._budgets:
            return 0
        last_seq = self._buffer.query("SELECT coalesce(max(seq), 0) FROM records")[0][0]
        if last_seq <= self._counted_seq:
            return 0
        marks = ", ".join("?" * len(_COUNTED_KINDS))
        groups = self._buffer.query(
            "SELECT model, runtime, tags, sum(count), count(*) FROM records WHERE seq > ? AND seq <= ?"
            f" AND kind IN ({marks}) GROUP BY model, runtime, tags",
            (self._counted_seq, last_seq, *_COUNTED_KINDS),
        )
        spent = dict(self._spent)
        # The records' tags as the collector will have them: with the device's default tags.
        defaults = load_tags(self._buffer)
        add_spend(
            spent, self._budgets, self._prices, ((m, r, {**defaults, **json.loads(t)}, n) for m, r, t, n, _ in groups)
        )
        with self._buffer.transaction() as conn:
            conn.executemany(
                "UPDATE budget_state SET spent = ? WHERE budget_id = ?",
                [(amount, budget_id) for budget_id, amount in spent.items()],
            )
            _set_meta(conn, {COUNTED_KEY: str(last_seq)})
        self._spent = spent
        self._counted_seq = last_seq
        return sum(group[-1] for group in groups)

    def run_once(self) -> int:
        """A daemon task: count what was written since the last round."""
        return self.count_new_records()


def _state_row(budget: BudgetState) -> tuple:
    return (
        budget.budget_id, budget.name, budget.scope, budget.action, budget.state, budget.currency,
        budget.unit, budget.lease_remaining, budget.throttle_per_second, budget.period_end_unix_ns,
        budget.message,
    )


def _set_meta(conn, values: dict[str, str]) -> None:
    """Set meta keys and move the version on, in the caller's transaction: readers reload."""
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))
    bump_version(conn)


def bump_version(conn) -> None:
    """Move the version on, in the caller's transaction: every Meter reloads the state (the
    device's default tags are part of what it enforces by: agent.device_tags)."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT (key) DO UPDATE"
        " SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
        (VERSION_KEY,),
    )
