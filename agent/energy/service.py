"""Energy in the daemon: the sampler on its own thread (and its own buffer connection), and the
attributor that the daemon's main loop runs before each round of shipping."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from agent.boot import boot_key
from agent.buffer import Buffer
from agent.config import AgentConfig
from agent.energy.attributor import Attributor
from agent.energy.probe import MemoryProbe, Roots, probe
from agent.energy.sampler import Sampler

logger = logging.getLogger(__name__)


class EnergyService:
    def __init__(
        self, sampler: Sampler, attributor: Attributor, sampler_buffer: Buffer, *,
        gpu_memory: Callable[[], Mapping[int, int]] | None = None,
    ) -> None:
        """gpu_memory: each process's GPU memory by pid (NVML), where the probe found GPUs."""
        self.sampler = sampler
        self.gpu_memory = gpu_memory
        self.attributor = attributor
        self._sampler_buffer = sampler_buffer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=sampler.serve, args=(self._stop,), name="infermeter-sampler", daemon=True)

    @classmethod
    def create(cls, config: AgentConfig, buffer: Buffer, *, roots: Roots = Roots()) -> EnergyService:
        setup = probe(config, roots=roots)
        boot = boot_key(roots.proc / "sys" / "kernel" / "random" / "boot_id")
        sampler_buffer = Buffer.open(config.buffer_path)
        sampler = Sampler(
            sampler_buffer, setup.sensors, boot=boot, cpu=setup.cpu, gpu_load=setup.gpu_load,
            memory=MemoryProbe(setup.gpu_memory), pids=lambda: _waiting_pids(sampler_buffer),
            period_s=config.sample_period_s, passes_per_write=max(1, round(1 / config.sample_period_s)),
        )
        attributor = Attributor(
            buffer, sampler.infos, boot=boot, cpu_count=setup.cpu.cpu_count(),
            sample_period_ns=round(config.sample_period_s * 1e9), device_tags=config.tags,
            slack_ns=round(config.attribution_slack_s * 1e9), idle_record_ns=round(config.idle_record_s * 1e9),
        )
        return cls(sampler, attributor, sampler_buffer, gpu_memory=setup.gpu_memory)

    def start(self) -> None:
        """Take the first pass now (records from here on have a reading before them), then
        sample on the thread."""
        self.sampler.run_once()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sampler_buffer.close()


def _waiting_pids(buffer: Buffer) -> list[int]:
    return [pid for (pid,) in buffer.query("SELECT DISTINCT pid FROM records WHERE attributed = 0")]
