"""kill -9 of the collector 20 times while a producer meters a stream: a push may die before,
during or after the collector's commit, and the agent, which keeps retrying, sends again what
was not acknowledged. Nothing is lost, nothing is counted twice."""

from __future__ import annotations

import os
import random
import time

import pytest

from collector.demo import processes
from tests.reliability.stream import check_exactly_once, wait_until_delivered

pytestmark = pytest.mark.timeout(240)

KILLS = 20


def test_kill_9_of_the_collector_20_times_during_a_stream(deployment, produce):
    rng = random.Random(20261124)
    deployment.start_collector()
    deployment.start_agent()
    producer = produce(deployment, rate_per_s=1000)
    for _ in range(KILLS):
        # Each kill at a random moment once pushes reach this collector (the agent's channel
        # reconnects after a back-off of its own, a second or more).
        wait_for_more(deployment, than=deployment.stored_count())
        time.sleep(rng.uniform(0.0, 0.4))
        processes.kill(deployment.collector.process)
        time.sleep(rng.uniform(0.0, 0.3))  # down for a while: the agent backs off and retries
        deployment.start_collector()
    oracle = producer.stop()
    wait_until_delivered(deployment, len(oracle))
    processes.stop(deployment.agent)

    check_exactly_once(deployment, oracle, cpu_cores=os.cpu_count())
    assert deployment.buffer_integrity() == "ok"


def wait_for_more(deployment, *, than: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while deployment.stored_count() <= than:
        assert time.monotonic() < deadline, f"nothing stored in {timeout_s} s\n{deployment.logs()}"
        time.sleep(0.02)
