"""Which requirements the wheels in a folder leave unmet on the target: printed one per line
(none: the folder is complete). Used by build-deb.sh after `pip download`.

    python packaging/missing-wheels.py --python-version 3.10 --machine aarch64 WHEELS 'infermeter[collector]'

`pip download --python-version` chooses wheels for the target, but evaluates environment
markers for the Python that runs pip: a dependency the target alone needs (tomli for Python
3.10 when pip runs on 3.11; greenlet on aarch64) would be left out, and the install on the
device would fail. This walks the dependency tree from the wheels' own metadata, with the
target's markers.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
except ImportError:  # pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.utils import canonicalize_name


def target_environment(python_version: str, machine: str) -> dict[str, str]:
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "implementation_version": f"{python_version}.0",
        "platform_machine": machine,
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_release": "",
        "platform_version": "",
    }


def read_wheels(folder: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, Requires-Dist lines) of each wheel in folder."""
    wheels = {}
    for path in folder.glob("*.whl"):
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            meta = HeaderParser().parsestr(archive.read(name).decode("utf-8"))
        wheels[canonicalize_name(meta["Name"])] = (meta["Version"], meta.get_all("Requires-Dist") or [])
    return wheels


def missing(folder: Path, root: str, environment: dict[str, str]) -> list[str]:
    wheels = read_wheels(folder)
    unmet: dict[str, tuple[str, SpecifierSet]] = {}
    seen: set[tuple[str, str]] = set()
    todo = [Requirement(root)]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name not in wheels or not requirement.specifier.contains(wheels[name][0], prereleases=True):
            shown, specifier = unmet.get(name, (requirement.name, SpecifierSet()))
            unmet[name] = (shown, specifier & requirement.specifier)
            continue
        for extra in ("", *requirement.extras):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            for text in wheels[name][1]:
                dependency = Requirement(text)
                if dependency.marker is None or dependency.marker.evaluate({**environment, "extra": extra}):
                    todo.append(dependency)
    return sorted(f"{shown}{specifier}" for shown, specifier in unmet.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-version", required=True)
    parser.add_argument("--machine", required=True, help="x86_64 or aarch64")
    parser.add_argument("folder", type=Path)
    parser.add_argument("requirement")
    args = parser.parse_args(argv)
    for line in missing(args.folder, args.requirement, target_environment(args.python_version, args.machine)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
