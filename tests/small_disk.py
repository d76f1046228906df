"""Small real file systems for the disk-full tests: a tmpfs of a few megabytes mounted on a
folder of the test's, and a ballast file that fills it. Mounting takes root and mount(8):
where they are missing, the test is skipped with that reason."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of size ("2m") mounted at directory for the block."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    directory.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield directory
    finally:
        # Lazily: a process the test started may still hold a file there.
        subprocess.run(["umount", "-l", str(directory)], check=False, capture_output=True)


def fill_disk(path: Path, *, leave_bytes: int = 0) -> None:
    """Write zeros to path until its file system has no room left, then give leave_bytes of
    it back (others may be writing there meanwhile: whoever fills it, the ballast ends it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(65536))
    except OSError as err:
        assert err.errno == errno.ENOSPC, err
        os.ftruncate(fd, max(os.lseek(fd, 0, os.SEEK_CUR) - leave_bytes, 0))
    finally:
        os.close(fd)
