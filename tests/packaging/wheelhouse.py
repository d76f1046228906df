"""A wheelhouse made from this environment's installed distributions, for building the .deb
packages offline: tests may not download, and build-deb.sh --wheelhouse takes wheels only.

Each installed distribution is zipped back into a wheel: the files its RECORD lists (those
inside site-packages, less compiled bytecode), its dist-info with a fresh RECORD, and a file
name made from the tags in its WHEEL file, so that pip resolves it for the platform it was
built for, as it would the wheel it came from.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(name: str, extras: tuple[str, ...] = ()) -> list[metadata.Distribution]:
    """The installed distributions that `name[extras]` needs, itself excluded."""
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [(name, extra) for extra in ("", *extras)]
    while todo:
        dist_name, extra = todo.pop()
        if (canonicalize_name(dist_name), extra) in done:
            continue
        done.add((canonicalize_name(dist_name), extra))
        dist = metadata.distribution(dist_name)
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({**default_environment(), "extra": extra}):
                todo.extend((requirement.name, sub) for sub in ("", *requirement.extras))
    found.pop(canonicalize_name(name))
    return list(found.values())


def _wheel_name(dist: metadata.Distribution) -> str:
    wheel_file = (dist.read_text("WHEEL") or "").splitlines()
    tags = [line.split(":", 1)[1].strip() for line in wheel_file if line.startswith("Tag:")]
    parts = [sorted({tag.split("-")[i] for tag in tags}) for i in range(3)]
    name = dist.metadata["Name"].replace("-", "_")
    return f"{name}-{dist.version}-{'.'.join(parts[0])}-{'.'.join(parts[1])}-{'.'.join(parts[2])}.whl"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def repack(dist: metadata.Distribution, dest: Path) -> Path:
    """dist as a wheel in dest."""
    wheel = dest / _wheel_name(dist)
    record_path = next(str(f) for f in dist.files if f.name == "RECORD" and f.parent.name.endswith(".dist-info"))
    lines = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        for file in dist.files or []:
            path = str(file)
            if path.startswith("..") or "__pycache__" in file.parts or path == record_path:
                continue
            if path.endswith(("/INSTALLER", "/direct_url.json", "/REQUESTED")):  # what the installer wrote
                continue
            source = Path(dist.locate_file(file))
            if not source.is_file():
                continue
            data = source.read_bytes()
            archive.writestr(path, data)
            lines.append(_record_line(path, data))
        lines.append(f"{record_path},,")
        archive.writestr(record_path, "\n".join(lines) + "\n")
    return wheel


def make(dest: Path, name: str = "infermeter", extras: tuple[str, ...] = ()) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    return [repack(dist, dest) for dist in closure(name, extras)]
