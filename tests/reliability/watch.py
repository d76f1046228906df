"""Watches the agent daemon from outside while a test or the soak runs: its resident memory,
its open file descriptors, and the size of the device buffer on disk, sampled on a thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class Sample:
    t_s: float  # since the watch started
    rss_bytes: int
    fds: int
    buffer_bytes: int


class AgentWatch:
    """Samples deployment.agent (whichever process that is now) every period_s until stop()."""

    def __init__(self, deployment, *, period_s: float = 0.1) -> None:
        self._deployment = deployment
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agent-watch", daemon=True)
        self._started = time.monotonic()
        self.samples: list[Sample] = []

    def start(self) -> AgentWatch:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(5)
        return self.samples

    def since(self, t_s: float) -> list[Sample]:
        return [sample for sample in self.samples if sample.t_s >= t_s]

    def now_s(self) -> float:
        return time.monotonic() - self._started

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            agent = self._deployment.agent
            try:
                process = psutil.Process(agent.pid)
                rss, fds = process.memory_info().rss, process.num_fds()
            except (AttributeError, psutil.Error):  # not started yet, or just killed
                continue
            self.samples.append(Sample(self.now_s(), rss, fds, self._deployment.buffer_file_bytes()))
