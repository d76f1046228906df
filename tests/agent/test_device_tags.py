"""The device's default tags (agent.device_tags): kept from the collector's replies in the
buffer, added by the daemon to the records it ships that lack them; end to end with the real
collector and the daemon that run() builds."""

from __future__ import annotations

import pytest

from agent import BudgetExceeded
from agent.budget_store import BudgetStore, load_snapshot
from agent.buffer import Buffer
from agent.device_tags import DeviceTags, TaggingExporter, with_defaults
from agent.exporter import InMemoryExporter
from agent.record import MAX_TAGS
from agent.shipper import Shipper
from tests.agent.budget_helpers import PICOS, budget, hint
from tests.agent.buffer_helpers import append
from tests.agent.buffer_helpers import make_record as make_helper_record
from tests.agent.test_daemon import agent_config, real_collector, wired  # noqa: F401
from tests.agent.test_device_buffer import make_record

DEFAULTS = {"department": "ml", "project": "default-project"}


def test_defaults_fill_only_the_tags_a_record_lacks_and_leave_the_originals_alone():
    own = make_record(tags={"project": "search", "user": "alice"})
    bare = make_record(tags={})

    tagged = with_defaults([own, bare], DEFAULTS)

    assert [record.tags for record in tagged] == [
        {"project": "search", "user": "alice", "department": "ml"}, DEFAULTS,
    ]
    assert (own.tags, bare.tags) == ({"project": "search", "user": "alice"}, {})


def test_defaults_never_take_a_record_past_the_tag_limit():
    full = make_record(tags={f"t{i}": "v" for i in range(MAX_TAGS - 1)})

    (tagged,) = with_defaults([full], DEFAULTS)

    assert len(tagged.tags) == MAX_TAGS and tagged.tags["department"] == "ml" and "project" not in tagged.tags


def test_the_defaults_are_kept_in_the_buffer_for_the_next_daemon(tmp_path):
    buffer = Buffer.open(tmp_path / "buffer.db")
    kept = DeviceTags(buffer)
    assert kept.tags == {}

    kept.keep(DEFAULTS)
    kept.keep(None)  # an outcome that is no reply of the collector's says nothing of them

    assert kept.tags == DeviceTags(buffer).tags == DEFAULTS
    kept.keep({})
    assert DeviceTags(buffer).tags == {}
    buffer.close()


def test_the_shipper_sends_the_defaults_and_keeps_the_buffer_as_recorded(tmp_path):
    buffer = Buffer.open(tmp_path / "buffer.db")
    kept = DeviceTags(buffer)
    kept.keep(DEFAULTS)
    append(buffer, [make_helper_record(0), make_helper_record(1, tags={})])
    collector = InMemoryExporter()

    Shipper(buffer, TaggingExporter(collector, kept)).run_once()

    assert [record.tags for record in collector.received] == [
        {"project": "search", "department": "ml"}, DEFAULTS,
    ]
    buffer.close()


def test_default_tags_set_on_the_collector_reach_the_records_the_daemon_ships(tmp_path, real_collector):  # noqa: F811
    from collector import tag_ops

    store, address = real_collector
    device = store.add_device("edge-1")
    config = agent_config(tmp_path, address)
    config.token_file.write_text(device.token + "\n")
    with wired(config) as (daemon, buffer):
        append(buffer, [make_helper_record(0)])
        daemon.run_once()  # shipped before the device heard of any default
        tag_ops.set_device_tags(store, "edge-1", DEFAULTS)
        append(buffer, [make_helper_record(1)])
        daemon.run_once()  # shipped with what it knew; the reply brings the defaults
        append(buffer, [make_helper_record(2)])
        daemon.run_once()
    with wired(config) as (daemon, buffer):  # a restarted daemon applies them before any reply
        append(buffer, [make_helper_record(3, tags={})])
        daemon.run_once()
        assert buffer.stats().records == 0

    report = store.costs(group_by=("tag:department", "tag:project"), period_costs=False)
    assert {group.key: group.records for group in report.groups} == {
        ("", "search"): 2, ("ml", "search"): 1, ("ml", "default-project"): 1,
    }


def test_the_device_budgets_judge_records_by_their_tags_over_the_defaults(meter, buffer_path, tiny_session, feed):
    pytest.importorskip("onnxruntime")
    from collector.demo.model import OUTPUT_NAME

    buffer = Buffer.open(buffer_path)
    budgets = BudgetStore(buffer)
    budgets.keep_reply([budget("ml", "tag:department=ml", state="exceeded", lease_pico=0),
                        budget("ml-lease", "tag:department=ml", action="alert")],
                       [hint("tiny", PICOS)], received_unix_ns=1, acked_through_seq=0)
    DeviceTags(buffer).keep(DEFAULTS)

    with pytest.raises(BudgetExceeded, match="budget ml"):
        meter.wrap_onnx(tiny_session, model="tiny").run([OUTPUT_NAME], feed)
    meter.wrap_onnx(tiny_session, model="tiny", tags={"department": "ads"}).run([OUTPUT_NAME], feed)
    meter.flush()
    append(buffer, [make_helper_record(0, model="tiny", tags={}), make_helper_record(1, model="tiny")])

    assert budgets.count_new_records() == 3
    assert load_snapshot(buffer).spent["bgt_ml-lease"] == 2 * PICOS  # not the ads call
    buffer.close()
