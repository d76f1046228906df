"""Regenerate the Python code for proto/infermeter/v1/*.proto, or check that it is current.

    python proto/generate.py          # rewrite the generated modules beside the .proto files
    python proto/generate.py --check  # exit 1, naming the stale files, if they differ

The output depends on the grpcio-tools version; the `dev` extra pins the one the committed
code was made with, so the check is reproducible.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every .proto under PROTO_ROOT, writing into out_dir."""
    from grpc_tools import protoc

    sources = sorted(PROTO_ROOT.glob("infermeter/**/*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(path) for path in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in out_dir.rglob("*") if p.name.endswith(GENERATED_SUFFIXES))


def stale_files() -> list[str]:
    """Names of generated files that differ from a fresh generation (or are missing/extra)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.relative_to(tmp): p.read_bytes() for p in generate(Path(tmp))}
    committed = {
        p.relative_to(PROTO_ROOT): p.read_bytes()
        for p in PROTO_ROOT.rglob("*")
        if p.name.endswith(GENERATED_SUFFIXES)
    }
    names = set(fresh) | set(committed)
    return sorted(str(n) for n in names if fresh.get(n) != committed.get(n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report stale generated files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: proto/{name}", file=sys.stderr)
        return 1 if stale else 0
    for path in generate(PROTO_ROOT):
        print(f"wrote proto/{path.relative_to(PROTO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
