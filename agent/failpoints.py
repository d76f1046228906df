"""Failpoints: named places in the agent and the collector where a test can make the process
die, exactly there, as a power cut or kill -9 would.

    INFERMETER_FAILPOINTS="ship.before_delete=exit"           # die the first time it is reached
    INFERMETER_FAILPOINTS="ingest.after_commit=3*exit,ship.after_send=exit"   # the third time

The variable is read once, when this module is first imported; a process started without it
has no failpoint set, and `failpoint(name)` then costs one dict lookup. Dying is os._exit(137)
(the status a shell shows for kill -9): no atexit handlers, no finally blocks, no flushing of
buffers, so the process leaves its files and peers as a crash would.

The places (one line each, named after where they are):
    ingest.after_commit   collector: the store committed a batch, its reply is not sent yet
    ship.after_send       agent: a batch is on its way, its outcome not awaited yet
    ship.before_delete    agent: the collector acknowledged a batch, the device has not deleted it
"""

from __future__ import annotations

import os

ENV = "INFERMETER_FAILPOINTS"
EXIT_STATUS = 137
_ACTIONS = ("exit",)


def parse(spec: str) -> dict[str, int]:
    """"name=[N*]exit,..." -> {name: the hit that fires it (1-based)}. ValueError names the
    entry that is not understood, so a typo in a test fails loudly instead of testing nothing."""
    points: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, action = item.partition("=")
        count, _, action = action.strip().rpartition("*")
        count = count.strip() or "1"
        if not sep or not name.strip() or action not in _ACTIONS or not count.isdigit() or int(count) < 1:
            raise ValueError(f"{ENV}: {item!r} is not NAME=exit or NAME=N*exit")
        points[name.strip()] = int(count)
    return points


_points = parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Die here if the environment set this failpoint and this is the hit it names."""
    fire_at = _points.get(name)
    if fire_at is None:
        return
    _hits[name] = hits = _hits.get(name, 0) + 1
    if hits >= fire_at:
        # Straight to the file descriptor: os._exit skips logging's buffers, as a crash would.
        os.write(2, f"failpoint {name}: exiting with status {EXIT_STATUS}\n".encode())
        os._exit(EXIT_STATUS)
