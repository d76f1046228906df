"""Progress of long commands: a bar on a terminal, plain lines elsewhere, and the re-pricing
command's progress from the store's pages."""

from __future__ import annotations

import io

from collector import repricing
from collector.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_away_from_a_terminal_a_line_every_so_many_units_and_one_at_the_end():
    stream = io.StringIO()
    with Progress("re-pricing", total=250, line_every=100, stream=stream) as progress:
        for _ in range(5):
            progress.update(50)
    assert stream.getvalue().splitlines() == [
        "infermeter: re-pricing: 100 of 250 records (40%)",
        "infermeter: re-pricing: 200 of 250 records (80%)",
        "infermeter: re-pricing: 250 of 250 records (100%)",
    ]


def test_a_jump_past_several_marks_prints_one_line_and_none_twice():
    stream = io.StringIO()
    with Progress("export focus", unit="rows", line_every=10, stream=stream) as progress:
        progress.update(35)
        progress.update(5)
    assert stream.getvalue().splitlines() == ["infermeter: export focus: 35 rows", "infermeter: export focus: 40 rows"]


def test_no_lines_when_asked_for_none():
    stream = io.StringIO()
    with Progress("export focus", line_every=0, stream=stream) as progress:
        progress.update(1_000_000)
    assert stream.getvalue() == ""


def test_on_a_terminal_a_bar_with_the_total_learnt_on_the_way():
    stream = Terminal()
    with Progress("re-pricing", stream=stream) as progress:
        progress.update(30, total=120)
        progress.update(90)
    drawn = stream.getvalue()
    assert "re-pricing" in drawn and "\r" in drawn
    assert "100%" in drawn and "120/120" in drawn
    assert "infermeter:" not in drawn  # no plain lines beside the bar


def test_reprice_reports_each_page_and_the_range_total(tmp_path):
    from collector.store import Store
    from tests.collector.test_repricing import (
        CORRECTED,
        CORRECTED_FROM,
        fleet_records,
        ingest,
    )

    with Store.open(f"sqlite:///{tmp_path / 'collector.db'}") as store:
        edge = store.add_device("edge-1")
        ingest(store, edge.device_id, fleet_records())
        store.add_price_book(CORRECTED, effective_from_unix_ns=CORRECTED_FROM)
        total = repricing.count(store.engine, since_unix_ns=None, until_unix_ns=None, device_id=None)
        seen: list[tuple[int, int]] = []
        result = store.reprice(progress=lambda records, whole: seen.append((records, whole)))

    assert total == result.records > 0
    assert sum(records for records, _ in seen) == total
    assert {whole for _, whole in seen} == {total}
