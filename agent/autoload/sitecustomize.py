"""Run by the interpreter at start-up when this folder is on sys.path (`infermeter wrap` puts
it there): zero-code metering (agent.auto) when INFERMETER_AUTO is set, then the sitecustomize
module this one shadows, if there is one further along sys.path."""

import importlib.machinery
import importlib.util
import os
import sys


def _start_metering() -> None:
    if os.environ.get("INFERMETER_AUTO", "").strip().lower() not in {"1", "true", "yes", "on"}:
        return  # nothing imported: a process that is not metered starts as fast as ever
    try:
        from agent.auto import install_from_environment
    except ImportError as err:  # started with a Python that has no infermeter installed
        print(f"infermeter: zero-code metering is off: {err}", file=sys.stderr)
        return
    install_from_environment()


def _run_shadowed() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_start_metering()
_run_shadowed()
