"""MeteredSession: an onnxruntime.InferenceSession that records every run.

Drop-in: run(), run_with_ort_values() and run_with_iobinding() return what the wrapped session
returns and raise what it raises (the very exception object, once the record is queued); every
other attribute is the wrapped session's, and isinstance(s, onnxruntime.InferenceSession) holds.
run_async() and run_with_ortvaluevector() pass through unmetered.

Per call, on the caller's thread: one read of the budget guard (agent.enforcer; a check only
when some budget acts), four clock reads (monotonic and thread CPU time, before and
after; the flusher maps the monotonic start to wall time), the sizes of the inputs and outputs,
one tuple, one deque append. Everything known at wrap time (model, version, provider, encoded
tags) is in a StaticFields the tuple points at.

Nothing here imports onnxruntime: sizes are read by duck typing (numpy arrays have .nbytes,
OrtValues .tensor_size_in_bytes()), so the agent installs without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import CodeType
from typing import Any

from agent.clock import Clock
from agent.enforcer import BudgetGuard
from agent.entry import (
    STATUS_ERROR,
    STATUS_OK,
    StaticFields,
    check_tags,
    merge_tags,
    static_fields,
)
from agent.flusher import Flusher
from agent.record import InvalidRecord, Kind, check_text

RUNTIME = "onnxruntime"
UNKNOWN_MODEL = "unknown"
# Graph names exporters write by default: they say nothing about which model it is.
_GENERIC_GRAPH_NAMES = frozenset({"", "main_graph", "torch_jit", "torch-jit-export", "tf2onnx"})
# Custom metadata keys a model's author may set to name it.
_MODEL_NAME_KEYS = ("model_name", "name")


def model_name_of(session: Any) -> str:
    """The model file's stem, else a name from the model's metadata, else "unknown"."""
    for name in _model_name_candidates(session):
        try:
            check_text("model", name, required=True)
        except InvalidRecord:
            continue
        return name
    return UNKNOWN_MODEL


def _model_name_candidates(session: Any):
    path = getattr(session, "_model_path", None)  # private in onnxruntime: absent when from bytes
    if isinstance(path, (str, os.PathLike)) and str(path):
        yield Path(path).stem
    try:
        meta = session.get_modelmeta()
    except Exception:  # not a real session, or one without metadata: the name is only a label
        return
    custom = getattr(meta, "custom_metadata_map", None) or {}
    yield from (custom[key] for key in _MODEL_NAME_KEYS if key in custom)
    graph_name = getattr(meta, "graph_name", "")
    if graph_name not in _GENERIC_GRAPH_NAMES:
        yield graph_name


def first_provider(session: Any) -> str:
    providers = session.get_providers() if hasattr(session, "get_providers") else []
    return providers[0] if providers else ""


def onnx_static_fields(
    session: Any, *, meter_tags: Mapping[str, str], model: str | None, version: str,
    tags: Mapping[str, str] | None, model_resident_bytes: int = 0,
) -> StaticFields:
    """Everything a record of this session shares; raises TypeError/ValueError for bad
    arguments (a setup mistake, reported at wrap time)."""
    return static_fields(
        Kind.INFERENCE,
        model_name_of(session) if model is None else model,
        model_version=version,
        runtime=RUNTIME,
        execution_provider=first_provider(session),
        tags=merge_tags(meter_tags, check_tags(tags, "wrap_onnx")),
        model_resident_bytes=model_resident_bytes,
    )


def _ortvalue_nbytes(value: Any) -> int:
    try:
        return value.tensor_size_in_bytes()
    except Exception:  # a sequence, map or sparse value, or an onnxruntime without the method
        return 0


def _first_dim(value: Any) -> int:
    try:
        shape = value.shape
        if type(shape) is not tuple:  # OrtValue.shape is a method returning a list
            shape = shape()
        return shape[0] if shape else 0
    except Exception:  # not an array: no batch to speak of
        return 0


def io_sizes(feed: Any, outputs: Any) -> tuple[int, int, int]:
    """(batch_size, input_bytes, output_bytes): the first dimension of the first input, and the
    bytes of all inputs and outputs. What is not an array counts 0 (judging the feed is the
    wrapped session's job). The general path, for what the inline numpy case cannot take."""
    batch_size = input_bytes = output_bytes = 0
    try:
        first = True
        for value in feed.values():
            try:
                input_bytes += value.nbytes
            except AttributeError:
                input_bytes += _ortvalue_nbytes(value)
            if first:
                first = False
                batch_size = _first_dim(value)
        for value in outputs:
            try:
                output_bytes += value.nbytes
            except AttributeError:
                output_bytes += _ortvalue_nbytes(value)
    except Exception:  # a feed without .values(), or no outputs (run_with_iobinding, a failure)
        pass
    return batch_size, input_bytes, output_bytes


def _snapshot(tags: Any) -> Any:
    """Per-call tags copied at the call, so the caller may reuse its dict; what cannot be copied
    goes on as it is, for the flusher to reject and count without losing the record."""
    try:
        return dict(tags)
    except (TypeError, ValueError):
        return tags


def metered_call(
    call: Callable, static: StaticFields, flusher: Flusher, clock: Clock, guard: BudgetGuard
) -> Callable:
    """`call` (a session's run-like method), metered. A closure rather than a method of a class:
    free variables are the cheapest lookups CPython has, and handing out the function itself
    (not a bound method) costs one Python frame per call. On this path every lookup shows in
    the budget, which is also why Flusher.submit and the common case of io_sizes are inlined."""
    queue = flusher.queue  # cleared in place, never replaced: safe to hold
    perf_counter_ns = clock.perf_counter_ns
    thread_time_ns = clock.thread_time_ns

    def run(output_names, input_feed, run_options=None, *, tags: Mapping[str, str] | None = None):
        """The wrapped session's method, metered. tags: per-call tags, merged over the
        session's (checked off this thread: a bad one is counted in Meter.stats().errors).
        BudgetExceeded: a `block` budget covers the call and is over; the model did not run."""
        enforcer = guard.enforcer
        if enforcer is not None and (tags is not None or static not in enforcer.clear):
            enforcer.check(static, tags)
        cpu_start_ns = thread_time_ns()
        start_ns = perf_counter_ns()
        try:
            outputs = call(output_names, input_feed, run_options)
        except BaseException as err:
            _queue_error(flusher, static, err, input_feed, tags, start_ns, cpu_start_ns, clock)
            raise
        duration_ns = perf_counter_ns() - start_ns
        cpu_time_ns = thread_time_ns() - cpu_start_ns
        try:
            try:  # numpy inputs and outputs: the common case, inline
                input_bytes = output_bytes = 0
                first = None
                for value in input_feed.values():
                    input_bytes += value.nbytes
                    if first is None:
                        first = value
                for value in outputs:
                    output_bytes += value.nbytes
                batch_size = first.shape[0]
            except Exception:  # OrtValues, scalars, an empty feed: the general path
                batch_size, input_bytes, output_bytes = io_sizes(input_feed, outputs)
            entry = (
                static, None if tags is None else _snapshot(tags), start_ns, duration_ns,
                cpu_time_ns, batch_size, input_bytes, output_bytes, 0, 0, STATUS_OK, "",
            )
            if len(queue) < flusher.accept_limit:
                queue.append(entry)
            else:
                flusher.admit(entry)
        except Exception as err:
            flusher.health.error(RUNTIME, err)
        return outputs

    return run


def _queue_error(
    flusher: Flusher, static: StaticFields, err: BaseException, feed, tags, start_ns: int,
    cpu_start_ns: int, clock: Clock,
) -> None:
    duration_ns = clock.perf_counter_ns() - start_ns
    cpu_time_ns = clock.thread_time_ns() - cpu_start_ns
    try:
        batch_size, input_bytes, _ = io_sizes(feed, ())
        flusher.submit((
            static, None if tags is None else _snapshot(tags), start_ns, duration_ns,
            cpu_time_ns, batch_size, input_bytes, 0, 0, 0, STATUS_ERROR, type(err).__name__,
        ))
    except Exception as meter_err:  # the model's exception is the one the caller must see
        flusher.health.error(RUNTIME, meter_err)


# The code of every metered run(): while the model runs, its frame is on the caller's stack
# (agent.in_flight finds running calls by it).
RUN_CODE = next(
    const for const in metered_call.__code__.co_consts if isinstance(const, CodeType) and const.co_name == "run"
)


class MeteredSession:
    """A wrapped onnxruntime.InferenceSession. run and run_with_ort_values take the wrapped
    methods' arguments plus a keyword-only tags=; they are instance attributes (closures made
    by metered_call) rather than methods, which saves a Python frame per call."""

    __slots__ = ("_run_with_iobinding", "_session", "_static", "run", "run_with_ort_values")

    def __init__(
        self, session: Any, static: StaticFields, flusher: Flusher, clock: Clock, guard: BudgetGuard | None = None
    ) -> None:
        self._session = session
        self._static = static
        guard = guard if guard is not None else BudgetGuard()
        self.run = metered_call(session.run, static, flusher, clock, guard)
        self.run_with_ort_values = metered_call(session.run_with_ort_values, static, flusher, clock, guard)
        # Metered through the same path with the binding in the feed's place: not being a
        # mapping, it counts as zero bytes (the binding does not expose its sizes cheaply).
        run_with_iobinding = session.run_with_iobinding
        self._run_with_iobinding = metered_call(
            lambda _names, iobinding, run_options: run_with_iobinding(iobinding, run_options),
            static, flusher, clock, guard,
        )

    @property
    def __class__(self) -> type:  # type: ignore[override]
        # What isinstance() consults after type(): wrapped sessions pass library type checks.
        return type(self._session)

    @property
    def session(self) -> Any:
        """The wrapped session, unmetered."""
        return self._session

    @property
    def static_fields(self) -> StaticFields:
        return self._static

    def run_with_iobinding(self, iobinding, run_options=None, *, tags: Mapping[str, str] | None = None) -> None:
        """InferenceSession.run_with_iobinding, metered (batch_size and bytes recorded as 0)."""
        return self._run_with_iobinding(None, iobinding, run_options, tags=tags)

    def __getattr__(self, name: str) -> Any:
        # Called only for names this class lacks: everything else is the wrapped session's.
        return getattr(object.__getattribute__(self, "_session"), name)

    def __dir__(self) -> list[str]:
        return sorted(set(object.__dir__(self)) | set(dir(self._session)))

    def __repr__(self) -> str:
        return f"<MeteredSession model={self._static.model!r} of {self._session!r}>"
