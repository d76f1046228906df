"""The dashboard's main view over a large store, loaded in headless Chromium, printed (a
benchmark script, not a test).

    python tests/bench/dashboard.py [--records N] [--devices 100] [--days 30] [--runs 5]

A SQLite store is filled as tests/bench/reports.py fills it (N records, default 10,000,000,
with that script's price book and fleet; 1,000,000 takes a minute or two) plus three budgets;
then the real servers serve it and Chromium opens / with a viewer token already in its
sessionStorage. Timed in the page, from navigation start to the main view drawn (the
`charts-drawn` mark: the spend chart, the per-model and top tables, budgets, alerts and the
fleet, from their API calls); the forecasts follow it. Target <= 1 s. Each run is a fresh load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collector import tokens
from collector.store import Store
from tests.bench.reports import DAY_NS, MONTH_START_NS, add_budgets, fill
from tests.collector.chromium import Browser, find_chromium
from tests.collector.helpers import ServersThread

TARGET_MS = 1_000


async def load_times(url: str, token: str, chromium: str, runs: int) -> list[float]:
    async with Browser(chromium) as browser:
        await browser.navigate(f"{url}/")
        await browser.evaluate(f"sessionStorage.setItem('infermeter.token', '{token}'); true")
        times = []
        for _ in range(runs):
            await browser.navigate(f"{url}/")
            await browser.wait_for("document.body.dataset.state === 'ready'", timeout_s=120)
            times.append(await browser.evaluate("performance.getEntriesByName('charts-drawn')[0].startTime"))
            await browser.wait_for("document.body.dataset.forecast === 'ready'", timeout_s=300)
        if browser.console_errors:
            raise SystemExit(f"the page logged errors: {browser.console_errors}")
        shown = await browser.evaluate("document.getElementById('error').textContent")
        if shown:
            raise SystemExit(f"the page showed an error: {shown}")
        return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000_000, help="records in the database")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5_000, help="records per ingest call")
    parser.add_argument("--runs", type=int, default=5, help="page loads timed")
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium found (apt-get install chromium)")
    month_end_ns = MONTH_START_NS + args.days * DAY_NS
    with (
        tempfile.TemporaryDirectory(prefix="infermeter-bench-") as tmp,
        Store.open(f"sqlite:///{Path(tmp) / 'collector.db'}", clock=lambda: month_end_ns) as store,
    ):
        print(f"filling {args.records:,} records ({args.devices} devices x {args.days} days)", flush=True)
        fill(store, records=args.records, devices=args.devices, days=args.days, batch=args.batch,
             progress=lambda line: print(line, flush=True))
        add_budgets(store, 3)
        token = store.add_admin_token(tokens.VIEWER, name="bench").token
        with ServersThread(store) as servers:
            times = asyncio.run(load_times(servers.http_url, token, chromium, args.runs))
    print(f"\n{args.records:,} records, {args.devices} devices over {args.days} days; {args.runs} page loads")
    print(f"main view drawn after navigation start (ms): best {min(times):,.0f}, "
          f"median {statistics.median(times):,.0f}, worst {max(times):,.0f}   target <= {TARGET_MS:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
