"""Zero-code metering: every ONNX Runtime InferenceSession and Triton client that an unmodified
app creates is metered, into the buffer and with the tags the agent's configuration and
environment name (INFERMETER_CONFIG, INFERMETER_BUFFER, INFERMETER_TAGS="project=search,user=alice").

    infermeter wrap -- python app.py

`infermeter wrap` puts agent/autoload on PYTHONPATH and sets INFERMETER_AUTO=1; the
sitecustomize module there calls install_from_environment() as the interpreter starts (and
then runs any sitecustomize it shadows). Child processes inherit both, so they are metered too;
INFERMETER_AUTO=0 turns it off for one of them.

How: onnxruntime.InferenceSession and each tritonclient InferenceServerClient (grpc, http and
their aio variants) are replaced, in their modules, by a subclass whose constructor builds the
original object and returns it wrapped (Meter.wrap_onnx / wrap_triton). isinstance() against
the replaced name still holds for metered and unmetered objects alike. Modules imported later
are patched as they load (an import hook), modules already loaded at once. Subclasses an app
defines of these classes are left unmetered: their constructors are the app's. Setting up never
breaks the app: a failure is logged and the app runs unmetered.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

ENABLE_VARIABLE = "INFERMETER_AUTO"
_TRUE = frozenset({"1", "true", "yes", "on"})
# module -> the name of the class to meter in it, and how to wrap an instance.
_TARGETS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("InferenceSession", "wrap_onnx"),
    "tritonclient.grpc": ("InferenceServerClient", "wrap_triton"),
    "tritonclient.http": ("InferenceServerClient", "wrap_triton"),
    "tritonclient.grpc.aio": ("InferenceServerClient", "wrap_triton"),
    "tritonclient.http.aio": ("InferenceServerClient", "wrap_triton"),
}
_METERED_MARK = "__infermeter_original__"


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    return env.get(ENABLE_VARIABLE, "").strip().lower() in _TRUE


def metered_class(original: type, wrap: Callable[[Any], Any]) -> type:
    """A subclass of original whose constructor returns wrap(original(...)); instances of
    original (metered or not) pass isinstance() checks against it."""

    class _Meta(type(original)):  # type: ignore[misc]
        def __instancecheck__(cls, instance: object) -> bool:
            return isinstance(instance, original)

        def __subclasscheck__(cls, subclass: type) -> bool:
            return issubclass(subclass, original)

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is not metered:  # an app's own subclass: its constructor is the app's
            return original.__new__(cls) if original.__new__ is object.__new__ else original.__new__(cls, *args, **kwargs)
        instance = original(*args, **kwargs)
        try:
            return wrap(instance)
        except Exception as err:  # metering never stops the app: this one runs unmetered
            logger.warning("infermeter: cannot meter %s (%s); it runs unmetered", original.__name__, err)
            return instance

    metered = _Meta(original.__name__, (original,), {
        "__new__": __new__, "__module__": original.__module__, "__qualname__": original.__qualname__,
        "__doc__": original.__doc__, _METERED_MARK: original,
    })
    return metered


def patch_module(module: ModuleType, meter: Any) -> bool:
    """Replace the class _TARGETS names in module by its metered subclass; False when the
    module has no such class, or it is patched already."""
    class_name, method = _TARGETS[module.__name__]
    original = getattr(module, class_name, None)
    if not isinstance(original, type) or _METERED_MARK in vars(original):
        return False
    setattr(module, class_name, metered_class(original, getattr(meter, method)))
    return True


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches each target module once it has run, by wrapping its loader's exec_module."""

    def __init__(self, meter: Any) -> None:
        self._meter = meter
        self._busy = threading.local()

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in _TARGETS or getattr(self._busy, "name", None) == name:
            return None
        self._busy.name = name  # the lookup below must not find this finder again
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._busy.name = None
        loader = getattr(spec, "loader", None) if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return None
        exec_module, meter = loader.exec_module, self._meter

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            try:
                patch_module(module, meter)
            except Exception as err:  # the app imports on, unmetered
                logger.warning("infermeter: cannot patch %s (%s)", module.__name__, err)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def install(meter: Any) -> list[str]:
    """Meter what the app creates from now on with meter: patch the target modules loaded
    already, and the others as they load. The modules patched now."""
    patched = [name for name, module in list(sys.modules.items()) if name in _TARGETS and patch_module(module, meter)]
    if not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport(meter))
    return patched


def install_from_environment(env: Mapping[str, str] = os.environ) -> Any:
    """With INFERMETER_AUTO set: a Meter from the agent's configuration, installed; else None.
    Never raises: a configuration that cannot be used is reported on stderr, once."""
    if not enabled(env):
        return None
    try:
        from agent.meter import Meter

        meter = Meter.from_config()
    except Exception as err:  # a bad config must not keep the app from starting
        print(f"infermeter: zero-code metering is off: {err}", file=sys.stderr)
        return None
    install(meter)
    return meter
