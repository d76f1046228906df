"""Reading the one-value attribute files of sysfs (RAPL zones, hwmon channels, INA3221 rails,
GPU load), with their failures sorted into kinds a sensor can warn about once each.

A file reads as an OSError when it cannot be read and as a ValueError when what it holds is not
the decimal integer expected (garbage, an empty file, bytes that are not ASCII). The reader of
the text is injected (ReadText), so that tests can deny or break single files.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path

from agent.energy.sensor import WarnOnce

ReadText = Callable[[Path], str]

# A sysfs attribute is at most a page; the ones read here are a few digits.
_MAX_BYTES = 4096
_UNSIGNED = re.compile(r"[0-9]+")
_SIGNED = re.compile(r"-?[0-9]+")


def read_head(path: Path, max_bytes: int = _MAX_BYTES) -> bytes:
    """The first max_bytes of a file, read with the bare system calls: the sampler reads a few
    such files every pass (sysfs attributes, /proc/stat), and Path.read_text or open() cost two
    to three times as much."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, max_bytes)
    finally:
        os.close(fd)


def read_sysfs(path: Path) -> str:
    """The attribute's text; a byte that is not ASCII raises UnicodeDecodeError, a ValueError."""
    return read_head(path).decode("ascii")


def read_uint(path: Path, read_text: ReadText = read_sysfs) -> int:
    """An unsigned decimal attribute; OSError when unreadable, ValueError for anything else."""
    return _decimal(read_text(path), _UNSIGNED)


def read_int(path: Path, read_text: ReadText = read_sysfs) -> int:
    """A decimal attribute that may be negative (a current a little below zero on an idle
    rail); OSError when unreadable, ValueError for anything else."""
    return _decimal(read_text(path), _SIGNED)


def _decimal(text: str, pattern: re.Pattern[str]) -> int:
    text = text.strip()
    if not pattern.fullmatch(text):
        raise ValueError(f"not a counter value: {text[:40]!r}")
    return int(text)


def failure_kind(err: OSError | ValueError) -> str:
    """The kind of failure, for WarnOnce. Only EACCES is a file's permissions; a driver that
    refuses a read (EPERM, e.g. a device asleep) is an I/O failure."""
    if isinstance(err, FileNotFoundError):
        return "missing"
    if isinstance(err, OSError) and err.errno == errno.EACCES:
        return "denied"
    return "garbage" if isinstance(err, ValueError) else "io"


def read_or_warn(
    path: Path, warn: WarnOnce, read_text: ReadText = read_sysfs, *, signed: bool = False
) -> int | None:
    """The attribute's value, or None with the failure given to warn under its kind."""
    try:
        return (read_int if signed else read_uint)(path, read_text)
    except (OSError, ValueError) as err:
        warn(failure_kind(err), "cannot read %s: %s", path, err)
        return None
