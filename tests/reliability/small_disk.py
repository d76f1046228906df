"""A small file system for the disk-full tests: a tmpfs of a few megabytes, mounted on a folder
of the test's and grown or unmounted again. Mounting needs root (CAP_SYS_ADMIN); where the
tests do not have it, they are skipped with that reason."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest


class SmallDisk:
    def __init__(self, path: Path) -> None:
        self.path = path

    def mount(self, size_bytes: int) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(self.path))
        return self

    def resize(self, size_bytes: int) -> None:
        """Grow (or shrink) the file system in place: space returns, the files stay."""
        self._mount("-o", f"remount,size={size_bytes}", str(self.path))

    def fill(self, leave_bytes: int = 0) -> Path:
        """Take the free space but about leave_bytes with a ballast file, a MiB at a time (others
        may be writing meanwhile: a write that finds the disk full ends it, and leave_bytes of the
        ballast are given back); its path."""
        ballast = self.path / "ballast"
        chunk = b"\0" * (1024 * 1024)
        with open(ballast, "wb", buffering=0) as out:
            try:
                while (free := self.free_bytes()) > leave_bytes:
                    out.write(chunk[: free - leave_bytes])
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                out.truncate(max(out.tell() - leave_bytes, 0))
        return ballast

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path).free

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)

    @staticmethod
    def _mount(*args: str) -> None:
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        if done.returncode:
            raise OSError(f"mount {' '.join(args)}: {done.stderr.strip()}")


def small_disk_or_skip(path: Path, size_bytes: int) -> SmallDisk:
    """A SmallDisk of size_bytes mounted at path; skips the test where tmpfs cannot be mounted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    try:
        return SmallDisk(path).mount(size_bytes)
    except OSError as err:
        pytest.skip(f"cannot mount a small tmpfs here: {err}")
