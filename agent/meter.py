"""Meter: the metering library's front door.

    from agent import Meter
    with Meter(buffer="/var/lib/infermeter/buffer.db", tags={"project": "search"}) as meter:
        sess = meter.wrap_onnx(onnxruntime.InferenceSession(path), model="resnet50", version="3")
        sess.run(None, {"input": batch})
        client = meter.wrap_triton(tritonclient.grpc.InferenceServerClient("localhost:8001"))
        with meter.span("my-llm") as span:
            span.set_tokens(input=120, output=512)

Calls are recorded in memory on the caller's thread; a background flusher writes them to the
device buffer (SQLite) every flush_interval_s, where the agent daemon picks them up. Creating a
Meter does no I/O and starts no thread: the first wrapped session or span starts the flusher's
thread, and the first record opens the buffer. Records still in memory at
interpreter exit are flushed (for AT_EXIT_TIMEOUT_S at most); a forked child meters into the
same buffer with its own connection.

Budgets (agent.enforcer): before each run and span, the budget state the agent daemon keeps in
the buffer is consulted; a `block` budget that is exceeded (or whose device lease is spent)
raises BudgetExceeded before the model runs, a `throttle` budget makes the call wait. The state
is read once at the first wrap_onnx/span and then re-read by the flusher thread when it changes.

Tags (meter, session, span) must map str to str; wrap_onnx, span and Meter itself raise
TypeError/ValueError for anything else, since that is a mistake in the setup code. Per-call tags
(run(..., tags=...)) are checked off the caller's thread: a bad one is counted in
stats().errors and the record keeps its session tags. Once set up, metering never raises into
the application: its failures are counted in stats() and logged once per kind.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.buffer import Buffer
from agent.clock import Clock, SystemClock
from agent.config import AgentConfig, load_config
from agent.enforcer import BudgetGuard
from agent.entry import check_tags, merge_tags, static_fields
from agent.flusher import Flusher, MeterStats
from agent.in_flight import InFlight
from agent.onnx_session import RUN_CODE, MeteredSession, onnx_static_fields
from agent.record import Kind
from agent.router import Route, RoutePolicy, Router
from agent.span import RUNTIME as SPAN_RUNTIME
from agent.span import Span
from agent.triton_client import INFER_CODE as TRITON_INFER_CODE

__all__ = ["Meter", "MeterStats"]


class Meter:
    def __init__(
        self,
        buffer: str | Path | None = None,
        tags: Mapping[str, str] | None = None,
        *,
        max_queue: int = 100_000,
        flush_interval_s: float = 0.05,
        start_thread: bool = True,
        clock: Clock | None = None,
    ) -> None:
        """buffer: the device buffer's path (default: AgentConfig's). tags: added to every
        record. max_queue: records held in memory before new ones are dropped (and counted).
        start_thread=False leaves writing to flush()/flusher.run_once() (tests)."""
        self.buffer_path = Path(buffer) if buffer is not None else AgentConfig().buffer_path
        self.tags = merge_tags(check_tags(tags, "Meter"))
        self._clock = clock if clock is not None else SystemClock()
        self.budgets = BudgetGuard()
        self.flusher = Flusher(
            functools.partial(Buffer.open, self.buffer_path),
            max_queue=max_queue, interval_s=flush_interval_s, start_thread=start_thread,
            buffer_label=str(self.buffer_path), clock=self._clock, in_flight=InFlight([RUN_CODE, TRITON_INFER_CODE]),
            watch=self.budgets.refresh, buffer_exists=self.buffer_path.exists,
        )

    @classmethod
    def from_config(cls, path: str | Path | None = None, **knobs: Any) -> Meter:
        """A Meter on the agent configuration's buffer and device tags (agent.config)."""
        config = load_config(path)
        return cls(config.buffer_path, config.tags, **knobs)

    def wrap_onnx(
        self,
        session: Any,
        *,
        model: str | None = None,
        version: str = "",
        tags: Mapping[str, str] | None = None,
        model_resident_bytes: int = 0,
    ) -> MeteredSession:
        """Meter every run of an onnxruntime.InferenceSession. model defaults to the model
        file's stem (or the model's metadata, else "unknown"). model_resident_bytes: what
        loading the model took in memory, if known (load_onnx measures it)."""
        if type(session) is MeteredSession:
            raise ValueError("this session is metered already; wrap the original session")
        if type(model_resident_bytes) is not int or model_resident_bytes < 0:
            raise ValueError(f"model_resident_bytes must be a non-negative int, got {model_resident_bytes!r}")
        static = onnx_static_fields(
            session, meter_tags=self.tags, model=model, version=version, tags=tags,
            model_resident_bytes=model_resident_bytes,
        )
        self._start()
        return MeteredSession(session, static, self.flusher, self._clock, self.budgets)

    def load_onnx(
        self,
        path_or_bytes: str | Path | bytes,
        sess_options: Any = None,
        *,
        model: str | None = None,
        version: str = "",
        tags: Mapping[str, str] | None = None,
        **session_kwargs: Any,
    ) -> MeteredSession:
        """onnxruntime.InferenceSession(path_or_bytes, sess_options, **session_kwargs), metered
        as by wrap_onnx, with what loading the model added to this process's resident memory
        (RSS after the load minus before: the weights and graph; arenas grow later, on the
        first runs) carried by every record as memory.model_resident_bytes."""
        import onnxruntime
        import psutil

        process = psutil.Process()
        rss_before = process.memory_info().rss
        model_path = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
        session = onnxruntime.InferenceSession(model_path, sess_options, **session_kwargs)
        resident = max(process.memory_info().rss - rss_before, 0)
        return self.wrap_onnx(session, model=model, version=version, tags=tags, model_resident_bytes=resident)

    def wrap_triton(self, client: Any, *, tags: Mapping[str, str] | None = None) -> Any:
        """Meter every inference of a tritonclient.grpc / tritonclient.http client or of their
        asyncio variants (agent.triton_client): one record per call or streamed response."""
        from agent.triton_wrap import wrap_client

        wrapped = wrap_client(
            client, flusher=self.flusher, clock=self._clock, guard=self.budgets, meter_tags=self.tags, tags=tags
        )
        self._start()
        return wrapped

    def router(self, routes: Sequence[Route | MeteredSession], *, policy: RoutePolicy | None = None) -> Router:
        """A Router over metered sessions of this meter (agent.router): each run() goes to the
        cheapest route that meets the policy, within the budgets. Raises TypeError/ValueError
        for routes or a policy that cannot work (a setup mistake)."""
        return Router(routes, policy if policy is not None else RoutePolicy(), self.budgets, clock=self._clock)

    def span(self, name: str, *, tags: Mapping[str, str] | None = None, version: str = "") -> Span:
        """Meter the work done inside `with meter.span(name) as span:` (kind SPAN)."""
        span_tags = check_tags(tags, "span")
        static = static_fields(
            Kind.SPAN, name, model_version=version, runtime=SPAN_RUNTIME, execution_provider="",
            tags=self.tags,
        )
        # Checked now so a span with too many tags fails here, not later on the flusher.
        merge_tags(self.tags, span_tags)
        self._start()
        return Span(self.flusher, static, span_tags or None, self._clock, self.budgets)

    def _start(self) -> None:
        # Started now so that even a long first call is watched (agent.in_flight); the budget
        # state is read before the first call (later, the flusher's rounds re-read it).
        self.flusher.start()
        if not self.budgets.loaded:
            self.flusher.watch_now()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Write everything recorded so far to the buffer; True if it is all committed."""
        return self.flusher.flush(timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Flush and stop the flusher. Idempotent; metering afterwards records nothing (each
        such record is counted in stats().dropped)."""
        self.flusher.close(timeout_s)

    def stats(self) -> MeterStats:
        return self.flusher.stats()

    def __enter__(self) -> Meter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Meter(buffer={str(self.buffer_path)!r}, tags={self.tags!r})"
