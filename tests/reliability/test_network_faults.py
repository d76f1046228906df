"""A loopback proxy between the agent and the collector (tests.reliability.proxy) breaks the
network while a producer meters a stream: it loses the collector's replies, blackholes the
link (a partition), and resets connections. Whatever it does, every record committed to the
buffer is counted once; the backlog a partition leaves drains once it heals; the buffer file
and the agent's memory stay flat."""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.reliability.stream import check_exactly_once, wait_until_delivered
from tests.reliability.watch import AgentWatch

pytestmark = pytest.mark.timeout(240)

MB = 1024 * 1024


@pytest.fixture
def linked(deployments, proxies):
    """A deployment whose agent ships through a proxy, both processes started."""

    def make(**config):
        proxy = proxies(seed=7)
        deployment = deployments(collector_address=proxy.address, **config)
        proxy.upstream = deployment.grpc_address
        deployment.start_collector()
        deployment.start_agent()
        return deployment, proxy

    return make


def wait_until(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.02)


def test_lost_replies_are_sent_again_and_not_counted_twice(linked, produce):
    deployment, proxy = linked(batch_size=100)
    producer = produce(deployment, rate_per_s=1000)
    proxy.drop_reply_ratio = 0.10
    # At least eight replies lost, each after the collector committed its batch.
    wait_until(lambda: proxy.dropped_replies >= 8, "eight lost replies")
    proxy.drop_reply_ratio = 0.0
    oracle = producer.stop()
    wait_until_delivered(deployment, len(oracle))

    check_exactly_once(deployment, oracle, cpu_cores=os.cpu_count())
    # The collector saw those batches again, said so in its replies, and stored them once.
    assert proxy.duplicates > 0, (proxy.replies, proxy.dropped_replies)
    lost_share = proxy.dropped_replies / (proxy.replies + proxy.dropped_replies)
    assert 0.02 < lost_share < 0.3, (proxy.dropped_replies, proxy.replies)


def test_a_partition_leaves_a_backlog_that_drains_when_it_heals(linked, produce):
    """Two partitions of equal length: nothing gets through while one lasts, the backlog is
    shipped once it heals, and the second leaves the buffer file, and the agent's memory, no
    bigger than the first did (freed pages are reused, the backlog is read a batch at a
    time)."""
    deployment, proxy = linked(timeout_s=1, buffer_max_mb=64)
    producer = produce(deployment, rate_per_s=2500, chunk=50)
    watch = AgentWatch(deployment).start()
    producer.wait_until_committed(2500)
    peaks, drains = [], []
    for _ in range(2):
        start_s = watch.now_s()
        proxy.blackhole()
        stored = deployment.stored_count()
        time.sleep(3.0)  # the partition's length (a pushed batch times out after 1 s)
        # One batch may have been on its way at the start; nothing after it.
        assert deployment.stored_count() <= stored + 200
        backlog = deployment.buffered_count()
        assert backlog >= 5000, backlog
        proxy.heal()
        healed, committed = time.monotonic(), producer.committed()
        # Drained: whatever was committed when the partition healed is in the collector.
        wait_until(lambda count=committed: deployment.stored_count() >= count, "the backlog drained")
        drains.append(time.monotonic() - healed)
        peaks.append(max(sample.buffer_bytes for sample in watch.since(start_s)))
    oracle = producer.stop()
    wait_until_delivered(deployment, len(oracle))
    samples = watch.stop()

    check_exactly_once(deployment, oracle, cpu_cores=os.cpu_count())
    assert all(drain < 15 for drain in drains), drains
    assert peaks[1] <= peaks[0] * 1.25 + MB, peaks
    assert max(sample.buffer_bytes for sample in samples) < 64 * MB
    rss = [sample.rss_bytes for sample in samples if sample.t_s > 1.0]
    assert max(rss) - rss[0] < 10 * MB, (rss[0], max(rss))


def test_connection_resets_lose_and_duplicate_nothing(linked, produce):
    deployment, proxy = linked()
    rng = random.Random(11)
    producer = produce(deployment, rate_per_s=1000)
    producer.wait_until_committed(500)
    # Resets in the middle of requests and replies ...
    proxy.reset_ratio = 0.05
    wait_until(lambda: proxy.resets >= 10, "ten resets mid-stream")
    proxy.reset_ratio = 0.0
    # ... and of whole connections, at random moments.
    for _ in range(5):
        time.sleep(rng.uniform(0.1, 0.5))
        proxy.reset_all()
    oracle = producer.stop()
    wait_until_delivered(deployment, len(oracle))

    check_exactly_once(deployment, oracle, cpu_cores=os.cpu_count())
    assert proxy.connections > 10
