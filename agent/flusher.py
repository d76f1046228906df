"""The flusher: moves what metered calls queue into the device buffer, from a background thread,
in one transaction per round (group commit).

The hot path appends an entry to `queue` while `len(queue) < accept_limit` (a deque append is
atomic, so no lock); anything else goes through admit(). accept_limit is 0 until the first record
starts the flusher — lazily, so creating a Meter does no I/O and starts no thread — again in a
forked child until the child's first record, and for good after close. The check and the append
are not one atomic step, so under contention the queue may pass max_queue by a few entries, one
per racing thread at most.

A write that fails (disk full, database locked, unwritable path) keeps its rows in memory, up to
max_queue of them, and is retried next round: logged once per failure streak, counted in
stats().errors every time, never raised. A full buffer (SQLITE_FULL: its cap or the disk) gets
the oldest rows that fit, in small transactions, and keeps the rest.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sqlite3
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from agent.boot import boot_key
from agent.buffer import Buffer, is_full
from agent.clock import Clock, SystemClock
from agent.entry import Entry, rows_from_entries
from agent.health import Health
from agent.in_flight import InFlight

logger = logging.getLogger(__name__)

# At interpreter exit, how long close() may wait for the last write: short scripts keep their
# records, and a wedged buffer cannot hang the exit for long.
AT_EXIT_TIMEOUT_S = 2.0
# How long a fork waits for a write in flight; past it (a wedged disk) the fork goes on.
FORK_WAIT_S = 5.0
# A call running this long is marked in the buffer, so energy attribution waits for it (it
# trails the present by a second anyway, which covers every shorter call).
LONG_CALL_NS = 500_000_000
LONG_CALL_SCAN_NS = 200_000_000
# When the buffer is full, held records are retried in transactions this small, so that those
# that fit in the room compaction made get in, oldest first.
FULL_CHUNK_ROWS = 500


@dataclass(frozen=True, slots=True)
class MeterStats:
    recorded: int  # records accepted into the queue
    written: int  # records committed to the buffer
    dropped: int  # records lost: queue full, metered after close, backlog full, closed unwritten
    errors: int  # metering failures: failed buffer writes, invalid per-call tags, internal faults
    pending: int  # records queued or held in memory, not yet written


class Flusher:
    """Owns the record queue and the process's connection to the buffer."""

    def __init__(
        self,
        open_buffer: Callable[[], Buffer],
        *,
        max_queue: int = 100_000,
        interval_s: float = 0.05,
        start_thread: bool = True,
        buffer_label: str = "the buffer",
        clock: Clock | None = None,
        in_flight: InFlight | None = None,
        watch: Callable[[Buffer], None] | None = None,
        buffer_exists: Callable[[], bool] = lambda: True,
    ) -> None:
        """watch: called with the buffer after each round (the budget state: agent.enforcer),
        once the buffer is open or its file exists; a failure is counted in stats().errors."""
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.queue: deque[Entry] = deque()
        self.accept_limit = 0
        self.health = Health()
        self._open_buffer = open_buffer
        self._max_queue = max_queue
        self._interval_s = interval_s
        self._start_thread = start_thread
        self._buffer_label = buffer_label
        self._clock = clock if clock is not None else SystemClock()
        self.in_flight = in_flight if in_flight is not None else InFlight(())
        self._watch_buffer = watch
        self._buffer_exists = buffer_exists
        self._closed = False
        self._at_exit: Callable[[], None] | None = None
        self._inherited_buffers: list[Buffer] = []
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._gate_lock = threading.Lock()  # admit() and close()
        self._write_lock = threading.Lock()  # one round at a time: thread, flush(), close()
        self._stop = threading.Event()
        self._held_for_fork = False  # the write lock, taken by a fork's `before` hook
        self._thread: threading.Thread | None = None
        self._started = False
        self._pid = 0
        self._boot = 0
        self._marked_long_call_ns: int | None = None
        self._last_scan_ns = -LONG_CALL_SCAN_NS
        self._oldest_call_ns: int | None = None
        self._buffer: Buffer | None = None
        self._held: list[tuple] = []  # rows a failed write left behind, oldest first
        self._drained = 0
        self._written = 0
        self._failing = False

    def submit(self, entry: Entry) -> None:
        queue = self.queue
        if len(queue) < self.accept_limit:
            queue.append(entry)
        else:
            self.admit(entry)

    def start(self) -> None:
        """Start the thread now rather than at the first record (a wrapped session's first
        call may be a long one, which the thread watches for). Idempotent; no I/O."""
        with self._gate_lock:
            if not self._started and not self._closed:
                self._start()

    def admit(self, entry: Entry) -> None:
        """Queue an entry that the fast check turned away: start on the first record, count a
        drop when closed or full."""
        with self._gate_lock:
            if self._closed:
                reason = "metering after Meter.close() records nothing"
            else:
                if not self._started:
                    self._start()
                if len(self.queue) < self._max_queue:
                    self.queue.append(entry)
                    return
                reason = f"the metering queue is full ({self._max_queue} records)"
        self.health.drop(1, reason)

    def run_once(self) -> int:
        """Write everything queued so far in one transaction; return the rows written."""
        with self._write_lock:
            written = self._write_pending()
            self._watch()
            return written

    def watch_now(self) -> None:
        """Run the watch once now (a Meter reads the budget state before its first call)."""
        with self._write_lock:
            self._watch()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Write everything recorded so far; True when nothing is left unwritten."""
        timeout = -1 if timeout_s is None else max(timeout_s, 0)
        if not self._write_lock.acquire(timeout=timeout):
            return False
        try:
            self._write_pending()
            self._watch()
            return not self._held
        finally:
            self._write_lock.release()

    def close(self, timeout_s: float | None = None) -> None:
        """Stop accepting records, stop the thread, write what is pending. Idempotent."""
        with self._gate_lock:
            if self._closed:
                return
            self._closed = True
            self.accept_limit = 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_remaining_s(deadline))
        remaining_s = _remaining_s(deadline)
        if self._write_lock.acquire(timeout=-1 if remaining_s is None else remaining_s):
            try:
                self._write_pending()
                self._mark_long_call(None)
                self._discard_pending("the meter closed before they could be written")
                self._close_buffer()
            finally:
                self._write_lock.release()
        if self._at_exit is not None:
            atexit.unregister(self._at_exit)

    def stats(self) -> MeterStats:
        queued = len(self.queue)
        if self._closed:
            # A call that passed the accept check just before close() may append after close
            # has written what was queued: nothing will write it now.
            return MeterStats(
                recorded=self._drained, written=self._written,
                dropped=self.health.dropped + queued, errors=self.health.errors, pending=0,
            )
        return MeterStats(
            recorded=self._drained + queued, written=self._written,
            dropped=self.health.dropped, errors=self.health.errors,
            pending=queued + len(self._held),
        )

    def _start(self) -> None:
        self._pid = os.getpid()
        self._boot = boot_key()
        self._register_process_hooks()
        _close_when_multiprocessing_worker_ends(self)
        if self._start_thread:
            self._thread = threading.Thread(
                target=self._loop, name="infermeter-flusher", daemon=True
            )
            self._thread.start()
        self._started = True
        self.accept_limit = self._max_queue

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.run_once()

    def _write_pending(self) -> int:
        try:
            # Looked at before draining: a call that ends in between is both, never neither.
            long_call_since_ns = self._long_call_since_ns()
            rows = self._held + self._drain_rows()
            self._held = []
            if not rows:
                self._mark_long_call(long_call_since_ns)
                return 0
            try:
                if self._buffer is None:
                    self._buffer = self._open_buffer()
                self._buffer.append(rows)
            except Exception as err:
                written = self._append_what_fits(rows, err)
                if written < len(rows):
                    self._written += written
                    self._hold(rows[written:], err)  # and the mark stays: a call's record is not in yet
                    return written
            # Only once the rows are in: a long call that ended is among them, and attribution
            # must not stop waiting for it before its record can be read.
            self._mark_long_call(long_call_since_ns)
            self._written += len(rows)
            if self._failing:
                self._failing = False
                logger.info("metering records reach %s again", self._buffer_label)
            return len(rows)
        except Exception as err:  # a fault in metering itself must not end the thread
            self.health.error("flusher", err)
            return 0

    def _watch(self) -> None:
        if self._watch_buffer is None or self._closed:
            return
        if self._buffer is None:
            if not self._buffer_exists():
                return
            try:
                self._buffer = self._open_buffer()
            except Exception:  # the writes that need it fail too, and are counted there
                logger.debug("cannot open %s for the budget state", self._buffer_label, exc_info=True)
                return
        try:
            self._watch_buffer(self._buffer)
        except Exception as err:  # enforcement keeps its last state; metering goes on
            self.health.error("budget state", err)

    def _long_call_since_ns(self) -> int | None:
        """The start of the oldest metered call running for LONG_CALL_NS or more, if any. The
        threads' stacks are looked through every LONG_CALL_SCAN_NS at most (tens of µs in a
        process with many threads); in between, the last answer stands."""
        now_ns = self._clock.perf_counter_ns()
        if now_ns - self._last_scan_ns >= LONG_CALL_SCAN_NS:
            self._last_scan_ns = now_ns
            self._oldest_call_ns = self.in_flight.oldest_start_ns()
        oldest_ns = self._oldest_call_ns
        if oldest_ns is not None and now_ns - oldest_ns >= LONG_CALL_NS:
            return oldest_ns
        return None

    def _mark_long_call(self, since_ns: int | None) -> None:
        """Tell energy attribution (in the buffer) to wait for a long call of this process, or
        that it need not any more; written only when that changes."""
        if since_ns == self._marked_long_call_ns or not self._started:
            return  # not started: no pid and boot to mark it under yet (see _start)
        try:
            if self._buffer is None:
                self._buffer = self._open_buffer()
            self._buffer.mark_long_call(self._boot, self._pid, since_ns)
            self._marked_long_call_ns = since_ns
        except Exception as err:  # attribution then just does not wait: counted, not raised
            self.health.error("long-call mark", err)

    def _drain_rows(self) -> list[tuple]:
        queue = self.queue
        entries = [queue.popleft() for _ in range(len(queue))]
        self._drained += len(entries)
        if not entries:
            return []
        perf_ns = self._clock.perf_counter_ns()
        unix_offset_ns = self._clock.time_ns() - perf_ns
        return rows_from_entries(entries, self._pid, self._boot, unix_offset_ns, self._bad_call_tags)

    def _bad_call_tags(self, err: Exception) -> None:
        self.health.error("per-call tags (the record keeps its session tags)", err)

    def _append_what_fits(self, rows: list[tuple], err: Exception) -> int:
        """After a write failed for want of room: write the oldest rows in small transactions,
        as many as fit (the daemon frees room a batch at a time); the number written."""
        if not is_full(err) or self._buffer is None or len(rows) <= FULL_CHUNK_ROWS:
            return 0
        written = 0
        for start in range(0, len(rows), FULL_CHUNK_ROWS):
            chunk = rows[start:start + FULL_CHUNK_ROWS]
            try:
                self._buffer.append(chunk)
            except Exception:
                break
            written += len(chunk)
        return written

    def _hold(self, rows: list[tuple], err: Exception) -> None:
        self.health.error("buffer write", err, log=False)
        # Reopen next round: a fresh open may succeed where this connection keeps failing
        # (file deleted, permissions or disk space fixed).
        self._close_buffer()
        self._held = rows[: self._max_queue]
        if len(rows) > len(self._held):
            self.health.drop(
                len(rows) - len(self._held),
                "the buffer is unwritable and the in-memory backlog is full",
            )
        if not self._failing:
            self._failing = True
            why = "it is full: its cap, or the disk; the agent daemon makes room" if is_full(err) else err
            logger.warning(
                "cannot write metering records to %s (%s): keeping up to %d in memory and "
                "retrying every %.2f s", self._buffer_label, why, self._max_queue,
                self._interval_s,
            )

    def _discard_pending(self, reason: str) -> None:
        lost = len(self._held) + len(self.queue)
        self._held = []
        self.queue.clear()
        if lost:
            self.health.drop(lost, reason)

    def _close_buffer(self) -> None:
        if self._buffer is not None:
            with suppress(sqlite3.Error):
                self._buffer.close()
            self._buffer = None

    def _register_process_hooks(self) -> None:
        if self._at_exit is not None:  # once per flusher; a forked child inherits them
            return
        ref = weakref.ref(self)
        self._at_exit = functools.partial(_close_at_exit, ref)
        atexit.register(self._at_exit)
        if hasattr(os, "register_at_fork"):
            # A fork waits for a write in flight (as logging does for its handlers' locks): a
            # child forked mid-transaction would inherit SQLite's lock state of a write it
            # can never finish, and wait on it at every write of its own.
            os.register_at_fork(
                before=functools.partial(_hold_writes_for_fork, ref),
                after_in_parent=functools.partial(_release_writes_after_fork, ref),
                after_in_child=functools.partial(_reset_in_child, ref),
            )

    def _after_fork_in_child(self) -> None:
        # The queue and held rows are the parent's: the parent writes them. Locks may have been
        # held by parent threads that do not exist here, so they are made anew. The parent's
        # SQLite connection must not be used here, nor closed (SQLite's close path would act on
        # lock and WAL state copied from the parent), so it is kept referenced and left alone;
        # the child's first record opens its own.
        if self._buffer is not None:
            self._inherited_buffers.append(self._buffer)
        self.accept_limit = 0  # the child's first record starts the child's own flusher
        self.queue.clear()
        self.in_flight.spans.clear()  # the parent's threads' spans
        self.health = Health()
        self._reset_process_state()


def _remaining_s(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _close_at_exit(ref: weakref.ref[Flusher]) -> None:
    flusher = ref()
    if flusher is not None:
        flusher.close(timeout_s=AT_EXIT_TIMEOUT_S)


def _close_when_multiprocessing_worker_ends(flusher: Flusher) -> None:
    """A process started by multiprocessing ends with os._exit, which skips atexit: its own
    finalizers are what runs last, so the flusher closes there too."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None or multiprocessing.parent_process() is None:
        return
    from multiprocessing import util

    util.Finalize(flusher, _close_at_exit, args=(weakref.ref(flusher),), exitpriority=10)


def _hold_writes_for_fork(ref: weakref.ref[Flusher]) -> None:
    flusher = ref()
    if flusher is not None:
        flusher._held_for_fork = flusher._write_lock.acquire(timeout=FORK_WAIT_S)


def _release_writes_after_fork(ref: weakref.ref[Flusher]) -> None:
    flusher = ref()
    if flusher is not None and flusher._held_for_fork:
        flusher._held_for_fork = False
        flusher._write_lock.release()


def _reset_in_child(ref: weakref.ref[Flusher]) -> None:
    flusher = ref()
    if flusher is not None:
        flusher._after_fork_in_child()
