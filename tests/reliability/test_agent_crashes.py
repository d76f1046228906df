"""kill -9 of the agent daemon while a producer meters a stream through a real Meter: at 50
random moments, and at the named edges of a delivery (agent.failpoints). Whatever the moment,
every record the buffer committed reaches the collector's totals exactly once, with its cost,
and the buffer file stays sound (PRAGMA integrity_check after every kill)."""

from __future__ import annotations

import os
import random
import time

import pytest

from collector.demo import processes
from tests.reliability.stream import check_exactly_once, wait_until_delivered

pytestmark = pytest.mark.timeout(240)

FAILPOINT_EXIT = 137


@pytest.mark.parametrize(("energy", "kills", "max_delay_s"), [
    # The daemon ships as soon as records are in: kills land in its start, reads, sends, acks
    # and deletes.
    pytest.param(False, 50, 0.5, id="shipping"),
    # The daemon first attributes energy (records wait for the sampler's writes, a second
    # apart): kills land in sampling and attribution's writes to the buffer too.
    pytest.param(True, 15, 2.0, id="attributing-energy"),
])
def test_kill_9_of_the_agent_at_random_moments(energy, kills, max_delay_s, deployments, produce):
    deployment = deployments(energy=energy)
    rng = random.Random(20261123)
    deployment.start_collector()
    deployment.start_agent()
    producer = produce(deployment, rate_per_s=1000)
    stored_at_kills = []
    for _ in range(kills):
        time.sleep(rng.uniform(0.0, max_delay_s))  # the random moment in the daemon's life
        processes.kill(deployment.agent)
        assert deployment.buffer_integrity() == "ok"
        stored_at_kills.append(deployment.stored_count())
        deployment.start_agent()
    oracle = producer.stop()
    wait_until_delivered(deployment, len(oracle))
    processes.stop(deployment.agent)  # a clean stop: nothing in flight any more

    assert deployment.buffer_integrity() == "ok"
    check_exactly_once(deployment, oracle, cpu_cores=os.cpu_count())
    # The kills fell while records were moving, not only before the daemon got going: between
    # many pairs of kills the collector stored more.
    progressed = sum(b > a for a, b in zip(stored_at_kills, stored_at_kills[1:]))
    assert progressed >= kills // 3, stored_at_kills


# Where each failpoint is, and which process it kills.
EDGES = {
    "ingest.after_commit": "collector",  # the collector committed; its reply never leaves
    "ship.after_send": "agent",  # the batch is on its way; the agent never hears back
    "ship.before_delete": "agent",  # acknowledged; the device never deletes it
}


@pytest.mark.parametrize("point", list(EDGES))
def test_kill_9_at_a_named_edge_of_delivery(point, deployments, proxies, produce):
    """Three crashes at the edge (at its first, second and third hit in a process's life),
    with the stream flowing; the proxy between the two reads the collector's replies."""
    proxy = proxies()
    deployment = deployments(collector_address=proxy.address)
    proxy.upstream = deployment.grpc_address
    side = EDGES[point]
    deployment.start_collector(failpoints=f"{point}=1*exit" if side == "collector" else "")
    deployment.start_agent(failpoints=f"{point}=1*exit" if side == "agent" else "")
    producer = produce(deployment, rate_per_s=1000)
    for hit in (1, 2, 3):
        process = deployment.collector.process if side == "collector" else deployment.agent
        deadline = time.monotonic() + 30
        while process.poll() is None:
            assert time.monotonic() < deadline, f"{point} was not reached\n{deployment.logs()}"
            time.sleep(0.02)
        assert process.returncode == FAILPOINT_EXIT, deployment.logs()
        assert deployment.buffer_integrity() == "ok"
        again = f"{point}={hit + 1}*exit" if hit < 3 else ""
        if side == "collector":
            deployment.start_collector(failpoints=again)
        else:
            deployment.start_agent(failpoints=again)
    oracle = producer.stop()
    wait_until_delivered(deployment, len(oracle))
    processes.stop(deployment.agent)  # a clean stop: nothing in flight any more

    assert deployment.buffer_integrity() == "ok"
    check_exactly_once(deployment, oracle, cpu_cores=os.cpu_count())
    if point != "ship.after_send":  # there the batch may or may not have reached the collector
        # The batch was stored, then sent again: the collector said so, and counted it once.
        assert proxy.duplicates > 0, (proxy.replies, proxy.inserted)
