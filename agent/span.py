"""Span: meters any unit of work that is not an ONNX Runtime run — an LLM call, a pipeline step.

    with meter.span("my-llm", tags={"user": "alice"}) as span:
        reply = client.complete(prompt)
        span.set_tokens(input=reply.input_tokens, output=reply.output_tokens)

Wall time and the thread's CPU time are measured from __enter__ to __exit__ (under asyncio the
CPU time includes other tasks that ran on the thread meanwhile). An exception in the block
records status ERROR with its class name, then propagates. The setters never raise: a value that
is not a non-negative integer is a metering error, counted, and the field keeps its old value. Budgets are enforced on
entering (agent.enforcer): BudgetExceeded from __enter__ means the block did not run.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from types import TracebackType

from agent.clock import Clock
from agent.enforcer import BudgetGuard
from agent.entry import STATUS_ERROR, STATUS_OK, StaticFields
from agent.flusher import Flusher
from agent.record import INT64_MAX

RUNTIME = "span"


class Span:
    __slots__ = (
        "_clock",
        "_cpu_start_ns",
        "_flusher",
        "_guard",
        "_static",
        "_tags",
        "batch_size",
        "input_bytes",
        "input_tokens",
        "output_bytes",
        "output_tokens",
        "start_ns",
    )

    def __init__(
        self, flusher: Flusher, static: StaticFields, tags: Mapping[str, str] | None, clock: Clock,
        guard: BudgetGuard | None = None,
    ) -> None:
        self._flusher = flusher
        self._guard = guard if guard is not None else BudgetGuard()
        self._static = static
        self._tags = tags
        self._clock = clock
        self.start_ns = self._cpu_start_ns = 0
        self.batch_size = self.input_bytes = self.output_bytes = 0
        self.input_tokens = self.output_tokens = 0

    def set_tokens(self, *, input: int | None = None, output: int | None = None) -> None:
        """Tokens the work consumed and produced; a side left out keeps its value."""
        if input is not None:
            self.input_tokens = self._counter("input_tokens", input, self.input_tokens)
        if output is not None:
            self.output_tokens = self._counter("output_tokens", output, self.output_tokens)

    def set_batch_size(self, batch_size: int) -> None:
        self.batch_size = self._counter("batch_size", batch_size, self.batch_size)

    def set_bytes(self, *, input: int | None = None, output: int | None = None) -> None:
        if input is not None:
            self.input_bytes = self._counter("input_bytes", input, self.input_bytes)
        if output is not None:
            self.output_bytes = self._counter("output_bytes", output, self.output_bytes)

    def _counter(self, name: str, value: object, old: int) -> int:
        try:
            if isinstance(value, bool):
                raise TypeError("a bool is not a count")
            count = operator.index(value)  # ints, numpy integers
            if not 0 <= count <= INT64_MAX:
                raise ValueError(f"{count} is outside [0, {INT64_MAX}]")
        except (TypeError, ValueError) as err:
            self._flusher.health.error(f"Span.{name}", f"{value!r}: {err}")
            return old
        return count

    def __enter__(self) -> Span:
        enforcer = self._guard.enforcer
        if enforcer is not None:
            enforcer.check(self._static, self._tags)
        clock = self._clock
        self._cpu_start_ns = clock.thread_time_ns()
        self.start_ns = clock.perf_counter_ns()
        self._flusher.in_flight.spans.add(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        clock = self._clock
        duration_ns = clock.perf_counter_ns() - self.start_ns
        cpu_time_ns = clock.thread_time_ns() - self._cpu_start_ns
        try:
            self._flusher.submit((
                self._static, self._tags, self.start_ns, duration_ns, cpu_time_ns,
                self.batch_size, self.input_bytes, self.output_bytes, self.input_tokens,
                self.output_tokens, STATUS_OK if exc_type is None else STATUS_ERROR,
                "" if exc_type is None else exc_type.__name__,
            ))
        except Exception as err:  # the block's own exception, if any, is the one to propagate
            self._flusher.health.error(RUNTIME, err)
        # Queued first, then no longer running: never neither, so energy attribution waits.
        self._flusher.in_flight.spans.discard(self)
