"""Metered Triton Inference Server clients: tritonclient.grpc, tritonclient.http and their
asyncio variants (tritonclient.grpc.aio, tritonclient.http.aio).

    client = meter.wrap_triton(tritonclient.grpc.InferenceServerClient("localhost:8001"))
    result = client.infer("resnet50", inputs, tags={"user": "alice"})

Drop-in: every call returns what the wrapped client returns and raises what it raises (the very
exception object, once the record is queued); every other attribute is the wrapped client's,
and isinstance() checks against the client's class hold. One record per inference: model name
and version (as the call gives them), wall time, the request's input bytes (the raw tensors) and
the response's output bytes (the raw outputs), batch size (the first dimension of the first
input), status and, on failure, the exception's class name. No CPU time: the work is the
server's, and reading the thread's CPU clock would cost more than the rest of the wrapper
together (a system call, twice a call); the server's compute times are joined instead.

- infer: metered on the caller's thread, as a wrapped ONNX Runtime session is.
- async_infer (grpc): the record is queued when the callback runs, timed from the call to the
  response. async_infer (http): the returned request's get_result() ends the record.
- start_stream / async_stream_infer (grpc), stream_infer (grpc.aio): one record per response,
  timed from the request (or from the request's previous response, for a decoupled model that
  answers one request several times); responses are matched to requests by request id, else in
  order. A stream error ends the oldest request still waiting.

Server-side queue and compute times, and GPU energy, are joined to these records afterwards by
the agent daemon (agent.triton_join). Nothing here imports tritonclient.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable, Mapping
from types import CodeType
from typing import Any

from agent.clock import Clock
from agent.enforcer import BudgetGuard
from agent.entry import STATUS_ERROR, STATUS_OK, StaticFields, static_fields
from agent.flusher import Flusher
from agent.record import InvalidRecord, Kind

RUNTIME = "triton"
# Triton's response parameter that says whether a decoupled model is done with a request.
_FINAL_PARAMETER = "triton_final_response"


class TritonMeter:
    """What every metered call of one wrapped client shares: the flusher, clocks, budget guard
    and the StaticFields of each (model, version) called, made once each."""

    def __init__(
        self, flusher: Flusher, clock: Clock, guard: BudgetGuard, tags: Mapping[str, str], protocol: str
    ) -> None:
        self.flusher = flusher
        self.clock = clock
        self.guard = guard
        self.tags = tags
        self.protocol = protocol
        self.statics: dict[tuple[object, object], StaticFields | None] = {}
        self._lock = threading.Lock()

    def static(self, model: object, version: object) -> StaticFields | None:
        """The StaticFields of (model, version); None (counted once) when they cannot be
        recorded: the call then runs unmetered and the client judges the arguments."""
        try:
            static = self.statics.get((model, version))
        except TypeError:  # not hashable, so not a name: the client will refuse it
            return None
        if static is None and (model, version) not in self.statics:
            with self._lock:
                try:
                    static = static_fields(
                        Kind.INFERENCE, model, model_version=version, runtime=RUNTIME,  # type: ignore[arg-type]
                        execution_provider=self.protocol, tags=self.tags,
                    )
                except (InvalidRecord, TypeError) as err:
                    self.flusher.health.error(RUNTIME, err)
                if len(self.statics) < 10_000:  # model names come from callers: keep it bounded
                    self.statics[(model, version)] = static
        return static

    def check_budget(self, static: StaticFields, tags: Mapping[str, str] | None) -> None:
        enforcer = self.guard.enforcer
        if enforcer is not None and (tags is not None or static not in enforcer.clear):
            enforcer.check(static, tags)

    def queue(
        self, static: StaticFields, tags: Any, start_ns: int, duration_ns: int, cpu_time_ns: int,
        batch_size: int, input_bytes: int, output_bytes: int | Callable[[], int], error: BaseException | None,
    ) -> None:
        """Queue one record; never raises (a metering failure is counted)."""
        try:
            self.flusher.submit((
                static, None if tags is None else _snapshot(tags), start_ns, duration_ns, cpu_time_ns,
                batch_size, input_bytes, output_bytes, 0, 0,
                STATUS_OK if error is None else STATUS_ERROR, "" if error is None else type(error).__name__,
            ))
        except Exception as err:
            self.flusher.health.error(RUNTIME, err)


def _snapshot(tags: Any) -> Any:
    try:
        return dict(tags)
    except (TypeError, ValueError):
        return tags


def request_size(inputs: Any) -> tuple[int, int]:
    """(batch_size, input_bytes) of a list of InferInputs: the first dimension of the first
    input, and the raw tensor bytes of all (grpc keeps them in _raw_content, http in
    _raw_data; JSON-encoded and shared-memory inputs count 0)."""
    batch_size = input_bytes = 0
    try:
        for index, value in enumerate(inputs):
            raw = getattr(value, "_raw_content", None)
            if raw is None:
                raw = getattr(value, "_raw_data", None)
            if raw is not None:
                input_bytes += len(raw)
            if index == 0:
                shape = value.shape()
                batch_size = max(int(shape[0]), 0) if shape else 0
    except Exception:  # not InferInputs (the client will say so): what was counted so far
        return batch_size, input_bytes
    return batch_size, input_bytes


def response_bytes(result: Any) -> int | Callable[[], int]:
    """The raw output bytes of an InferResult (http: the binary part of the body), or for grpc
    a function that counts them (the response's raw_output_contents): reading a protobuf bytes
    field copies it, so the flusher counts them, off the caller's thread, holding the response
    until then (agent.entry). 0 for what is neither."""
    try:
        response = result._result
        if hasattr(response, "raw_output_contents"):
            return functools.partial(_raw_outputs_bytes, response)
        body = getattr(result, "_buffer", None)
        return len(body) if body is not None else 0
    except Exception:  # not an InferResult
        return 0


def _raw_outputs_bytes(response: Any) -> int:
    """The raw output bytes of a grpc ModelInferResponse; 0 for anything else (never raises:
    the flusher calls it)."""
    try:
        return sum(map(len, response.raw_output_contents))
    except Exception:  # not a response: no outputs to count
        return 0


def metered_infer(meter: TritonMeter, call: Callable) -> Callable:
    """client.infer, metered on the caller's thread. A closure, as agent.onnx_session's run, for
    the same reason: free variables are the cheapest lookups, and on this path (a few
    microseconds in all) every lookup shows; the common cases of the sizes, the budget check
    and the flusher's submit are inlined."""
    perf_counter_ns = meter.clock.perf_counter_ns
    flusher = meter.flusher
    queue = flusher.queue  # cleared in place, never replaced: safe to hold
    guard = meter.guard
    by_model = meter.statics  # (model, version) -> StaticFields
    static_of = meter.static
    grpc = meter.protocol == "grpc"

    def infer(model_name, inputs, *args, tags: Mapping[str, str] | None = None, **kwargs):
        """The wrapped client's infer, metered; tags: per-call tags, merged over the client's."""
        version = args[0] if args else kwargs.get("model_version", "") if kwargs else ""
        try:
            static = by_model[model_name, version]
        except (KeyError, TypeError):  # first call of this model, or a name that is no key
            static = static_of(model_name, version)
        if static is None:
            return call(model_name, inputs, *args, **kwargs)
        enforcer = guard.enforcer
        if enforcer is not None and (tags is not None or static not in enforcer.clear):
            enforcer.check(static, tags)
        start_ns = perf_counter_ns()
        try:
            result = call(model_name, inputs, *args, **kwargs)
        except BaseException as err:
            meter.queue(static, tags, start_ns, perf_counter_ns() - start_ns, 0, *request_size(inputs), 0, err)
            raise
        duration_ns = perf_counter_ns() - start_ns
        try:
            try:  # tensors set from numpy, over grpc or http: the common case, inline
                input_bytes = 0
                if grpc:
                    for value in inputs:
                        input_bytes += len(value._raw_content)
                    batch_size = inputs[0]._input.shape[0]
                    output_bytes = functools.partial(_raw_outputs_bytes, result._result)  # see response_bytes
                else:
                    for value in inputs:
                        input_bytes += len(value._raw_data)
                    batch_size = inputs[0]._shape[0]
                    output_bytes = len(result._buffer)
            except Exception:  # JSON or shared-memory tensors, no outputs: the general path
                batch_size, input_bytes = request_size(inputs)
                output_bytes = response_bytes(result)
            entry = (
                static, None if tags is None else _snapshot(tags), start_ns, duration_ns, 0,
                batch_size, input_bytes, output_bytes, 0, 0, STATUS_OK, "",
            )
            if len(queue) < flusher.accept_limit:
                queue.append(entry)
            else:
                flusher.admit(entry)
        except Exception as err:
            flusher.health.error(RUNTIME, err)
        return result

    return infer


def metered_async_infer(meter: TritonMeter, call: Callable) -> Callable:
    """tritonclient.grpc's async_infer(model_name, inputs, callback, ...): the record is queued
    when the callback is called, before it runs."""
    perf_counter_ns = meter.clock.perf_counter_ns

    def async_infer(model_name, inputs, callback, *args, tags: Mapping[str, str] | None = None, **kwargs):
        static = meter.static(model_name, args[0] if args else kwargs.get("model_version", ""))
        if static is None:
            return call(model_name, inputs, callback, *args, **kwargs)
        meter.check_budget(static, tags)
        batch_size, input_bytes = request_size(inputs)
        start_ns = perf_counter_ns()

        def done(result, error):
            meter.queue(static, tags, start_ns, perf_counter_ns() - start_ns, 0, batch_size, input_bytes,
                        response_bytes(result) if error is None else 0, error)
            callback(result=result, error=error)

        try:
            return call(model_name, inputs, done, *args, **kwargs)
        except BaseException as err:
            meter.queue(static, tags, start_ns, perf_counter_ns() - start_ns, 0, batch_size, input_bytes, 0, err)
            raise

    return async_infer


class MeteredAsyncRequest:
    """tritonclient.http's InferAsyncRequest: get_result() ends the call's record (once)."""

    __slots__ = ("_done", "_meter", "_request", "_sizes", "_start_ns", "_static", "_tags")

    def __init__(self, request: Any, meter: TritonMeter, static: StaticFields, tags: Any,
                 start_ns: int, sizes: tuple[int, int]) -> None:
        self._request = request
        self._meter = meter
        self._static = static
        self._tags = tags
        self._start_ns = start_ns
        self._sizes = sizes
        self._done = False

    def get_result(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            result = self._request.get_result(block=block, timeout=timeout)
        except BaseException as err:
            self._end(None, err)
            raise
        self._end(result, None)
        return result

    def _end(self, result: Any, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        meter = self._meter
        meter.queue(self._static, self._tags, self._start_ns, meter.clock.perf_counter_ns() - self._start_ns, 0,
                    *self._sizes, response_bytes(result) if error is None else 0, error)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_request"), name)


def metered_http_async_infer(meter: TritonMeter, call: Callable) -> Callable:
    perf_counter_ns = meter.clock.perf_counter_ns

    def async_infer(model_name, inputs, *args, tags: Mapping[str, str] | None = None, **kwargs):
        static = meter.static(model_name, args[0] if args else kwargs.get("model_version", ""))
        if static is None:
            return call(model_name, inputs, *args, **kwargs)
        meter.check_budget(static, tags)
        sizes = request_size(inputs)
        start_ns = perf_counter_ns()
        try:
            request = call(model_name, inputs, *args, **kwargs)
        except BaseException as err:
            meter.queue(static, tags, start_ns, perf_counter_ns() - start_ns, 0, *sizes, 0, err)
            raise
        return MeteredAsyncRequest(request, meter, static, tags, start_ns, sizes)

    return async_infer


def metered_aio_infer(meter: TritonMeter, call: Callable) -> Callable:
    """An asyncio client's infer coroutine, metered (no CPU time: the thread runs other tasks)."""
    perf_counter_ns = meter.clock.perf_counter_ns

    async def infer(model_name, inputs, *args, tags: Mapping[str, str] | None = None, **kwargs):
        static = meter.static(model_name, args[0] if args else kwargs.get("model_version", ""))
        if static is None:
            return await call(model_name, inputs, *args, **kwargs)
        meter.check_budget(static, tags)
        start_ns = perf_counter_ns()
        try:
            result = await call(model_name, inputs, *args, **kwargs)
        except BaseException as err:
            meter.queue(static, tags, start_ns, perf_counter_ns() - start_ns, 0, *request_size(inputs), 0, err)
            raise
        meter.queue(static, tags, start_ns, perf_counter_ns() - start_ns, 0, *request_size(inputs),
                    response_bytes(result), None)
        return result

    return infer


class _Pending:
    """A streamed request waiting for its responses."""

    __slots__ = ("batch_size", "input_bytes", "last_ns", "request_id", "static", "tags")

    def __init__(self, static: StaticFields, tags: Any, request_id: str, start_ns: int, sizes: tuple[int, int]):
        self.static = static
        self.tags = tags
        self.request_id = request_id
        self.last_ns = start_ns
        self.batch_size, self.input_bytes = sizes


class StreamTracker:
    """The requests of one stream that wait for responses, and the record of each response."""

    def __init__(self, meter: TritonMeter) -> None:
        self._meter = meter
        self._pending: deque[_Pending] = deque()
        self._lock = threading.Lock()

    def sent(self, static: StaticFields, tags: Any, request_id: object, sizes: tuple[int, int]) -> _Pending:
        pending = _Pending(static, tags, request_id if type(request_id) is str else "",
                           self._meter.clock.perf_counter_ns(), sizes)
        with self._lock:
            self._pending.append(pending)
        return pending

    def failed_to_send(self, pending: _Pending, error: BaseException) -> None:
        with self._lock:
            if pending in self._pending:
                self._pending.remove(pending)
        self._record(pending, 0, error)

    def received(self, result: Any, error: BaseException | None) -> None:
        """One response (or stream error) arrived; never raises."""
        try:
            with self._lock:
                pending, final, empty = self._match(result, error)
            if pending is not None and not (final and empty and pending.input_bytes < 0):
                self._record(pending, response_bytes(result) if error is None else 0, error)
        except Exception as err:
            self._meter.flusher.health.error(RUNTIME, err)

    def _match(self, result: Any, error: BaseException | None) -> tuple[_Pending | None, bool, bool]:
        if not self._pending:
            return None, True, True
        if error is not None or result is None:  # ends the oldest request, recorded as failed
            return self._pending.popleft(), True, False
        response = result.get_response()
        pending = next((p for p in self._pending if p.request_id and p.request_id == response.id), None)
        if pending is None:
            pending = self._pending[0]
        final_parameter = response.parameters.get(_FINAL_PARAMETER)
        final = final_parameter is None or final_parameter.bool_param
        if final:
            self._pending.remove(pending)
        return pending, final, len(response.outputs) == 0

    def _record(self, pending: _Pending, output_bytes: int | Callable[[], int], error: BaseException | None) -> None:
        now_ns = self._meter.clock.perf_counter_ns()
        start_ns, pending.last_ns = pending.last_ns, now_ns
        input_bytes = max(pending.input_bytes, 0)
        pending.input_bytes = -1  # what was sent counts with the first response only
        self._meter.queue(pending.static, pending.tags, start_ns, now_ns - start_ns, 0, pending.batch_size,
                          input_bytes, output_bytes, error)


class GrpcStreams:
    """start_stream / async_stream_infer of tritonclient.grpc's client, metered."""

    def __init__(self, meter: TritonMeter, client: Any) -> None:
        self._meter = meter
        self._client = client
        self.tracker = StreamTracker(meter)

    def start_stream(self, callback: Callable, *args: Any, **kwargs: Any) -> Any:
        tracker = self.tracker = StreamTracker(self._meter)

        def received(result, error):
            tracker.received(result, error)
            callback(result=result, error=error)

        return self._client.start_stream(received, *args, **kwargs)

    def async_stream_infer(self, model_name, inputs, *args, tags: Mapping[str, str] | None = None, **kwargs):
        meter = self._meter
        static = meter.static(model_name, args[0] if args else kwargs.get("model_version", ""))
        if static is None:
            return self._client.async_stream_infer(model_name, inputs, *args, **kwargs)
        meter.check_budget(static, tags)
        request_id = args[2] if len(args) > 2 else kwargs.get("request_id", "")
        pending = self.tracker.sent(static, tags, request_id, request_size(inputs))
        try:
            return self._client.async_stream_infer(model_name, inputs, *args, **kwargs)
        except BaseException as err:
            self.tracker.failed_to_send(pending, err)
            raise


class MeteredResponseIterator:
    """tritonclient.grpc.aio's stream_infer responses: one record per (result, error)."""

    def __init__(self, responses: Any, tracker: StreamTracker) -> None:
        self._responses = responses
        self._tracker = tracker

    def __aiter__(self) -> MeteredResponseIterator:
        return self

    async def __anext__(self) -> Any:
        result, error = await self._responses.__anext__()
        self._tracker.received(result, error)
        return result, error

    def __getattr__(self, name: str) -> Any:  # cancel() and what else the iterator has
        return getattr(self._responses, name)


def metered_stream_infer(meter: TritonMeter, call: Callable) -> Callable:
    """tritonclient.grpc.aio's stream_infer(inputs_iterator, ...): each request dict may carry
    "tags" (taken out before the client sees it)."""

    def stream_infer(inputs_iterator, *args, **kwargs):
        tracker = StreamTracker(meter)

        async def requests():
            async for request in inputs_iterator:
                if isinstance(request, dict):
                    request = dict(request)
                    tags = request.pop("tags", None)
                    static = meter.static(request.get("model_name"), request.get("model_version", ""))
                    if static is not None:
                        meter.check_budget(static, tags)
                        tracker.sent(static, tags, request.get("request_id", ""), request_size(request.get("inputs")))
                yield request

        return MeteredResponseIterator(call(requests(), *args, **kwargs), tracker)

    return stream_infer



# The code of every metered blocking infer(): while the server works, its frame is on the
# caller's stack, where agent.in_flight finds running calls (energy attribution waits for them).
INFER_CODE = next(
    const for const in metered_infer.__code__.co_consts if isinstance(const, CodeType) and const.co_name == "infer"
)
