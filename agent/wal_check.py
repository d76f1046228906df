"""Whether SQLite will lose committed transactions that a WAL file holds.

SQLite reads a WAL from its header on, frame by frame, and stops at the first frame whose salts
or running checksum do not match: after a crash that is the transaction that was being written,
never committed, and nothing is lost. But a damaged header (a garbage file) or a damaged frame
(a bit flip) makes it stop early, silently: every transaction from there on is gone, and
`PRAGMA quick_check` still answers ok. So the WAL is read here the way SQLite reads it, and
then past the first bad frame: an intact commit frame of the same WAL generation after it (its
checksum follows on from the stored checksum of the frame before it) can only be committed data
that SQLite will not read.

Format: https://www.sqlite.org/fileformat2.html#walformat (all header fields big-endian; the
checksums' words in the byte order the magic number names).
"""

from __future__ import annotations

import struct
from pathlib import Path

WAL_MAGIC_LITTLE_ENDIAN = 0x377F0682
WAL_MAGIC_BIG_ENDIAN = 0x377F0683
WAL_FORMAT_VERSION = 3007000
HEADER_BYTES = 32
FRAME_HEADER_BYTES = 24
# A WAL kept to journal_size_limit is a few MiB; reading further would only slow the start.
MAX_CHECKED_BYTES = 64 * 1024 * 1024
_MASK = 0xFFFFFFFF


def checksum(data: bytes, start: tuple[int, int], big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum of data (a multiple of 8 bytes), continuing from start."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    s0, s1 = start
    pairs = iter(words)
    for x0, x1 in zip(pairs, pairs):
        s0 = (s0 + x0 + s1) & _MASK
        s1 = (s1 + x1 + s0) & _MASK
    return s0, s1


def wal_damage(path: Path) -> str | None:
    """Why SQLite would lose committed transactions of the WAL at path; None when it would
    not (no WAL, an empty one, or one whose only bad frames are an uncommitted tail)."""
    try:
        with path.open("rb") as wal:
            return _damage(wal.read(HEADER_BYTES), wal)
    except FileNotFoundError:
        return None


def _damage(header: bytes, wal) -> str | None:
    if len(header) < HEADER_BYTES:
        return None  # the header is written with the first frame: nothing was committed
    magic, version, page_size, _, salt1, salt2, sum1, sum2 = struct.unpack(">8I", header)
    if magic not in (WAL_MAGIC_LITTLE_ENDIAN, WAL_MAGIC_BIG_ENDIAN):
        return "the WAL file's header is not a WAL header"
    big_endian = magic == WAL_MAGIC_BIG_ENDIAN
    if version != WAL_FORMAT_VERSION or page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return "the WAL file's header is damaged"
    if checksum(header[:24], (0, 0), big_endian) != (sum1, sum2):
        return "the WAL file's header fails its checksum"
    running: tuple[int, int] | None = (sum1, sum2)  # None once a frame failed
    stored_before = (sum1, sum2)
    broken_at = 0
    for index in range(MAX_CHECKED_BYTES // (FRAME_HEADER_BYTES + page_size)):
        frame_header = wal.read(FRAME_HEADER_BYTES)
        page = wal.read(page_size)
        if len(frame_header) < FRAME_HEADER_BYTES or len(page) < page_size:
            return None
        page_number, commit_pages, salt_1, salt_2, sum_1, sum_2 = struct.unpack(">6I", frame_header)
        ours = page_number != 0 and (salt_1, salt_2) == (salt1, salt2)
        if running is not None:
            if ours and checksum(frame_header[:8] + page, running, big_endian) == (sum_1, sum_2):
                running = (sum_1, sum_2)
            else:
                running, broken_at = None, index
        elif ours and commit_pages and checksum(frame_header[:8] + page, stored_before, big_endian) == (sum_1, sum_2):
            return f"WAL frame {broken_at + 1} is damaged, and committed frames follow it (frame {index + 1})"
        stored_before = (sum_1, sum_2)
    return None
