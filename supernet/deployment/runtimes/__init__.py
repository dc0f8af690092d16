"""Inference runtimes eqsearch measures: what they run, and how fast (ONNX Runtime, OpenVINO)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from eqsearch.errors import InputError
from eqsearch.registry import Registry
from supernet.deployment.runtimes.base import ExecNode, Profile, Runtime, RuntimeSession

RUNTIMES: Registry[Callable[[], Runtime]] = Registry("runtime")
"""Every runtime's loader by the runtime's package name: ``"onnxruntime"``, ``"openvino"``
(a loader imports the package, so only an installed runtime is loaded)."""


@RUNTIMES.register("onnxruntime")
def _onnxruntime() -> Runtime:
    from supernet.deployment.runtimes.ort import OnnxRuntime

    return OnnxRuntime()


@RUNTIMES.register("openvino")
def _openvino() -> Runtime:
    from supernet.deployment.runtimes.ov import OpenVino

    return OpenVino()


def runtime_available(name: str) -> bool:
    """Whether the runtime's package is installed."""
    return name in RUNTIMES and importlib.util.find_spec(name) is not None


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name`` (InputError: unknown, or not installed here)."""
    load = RUNTIMES.lookup(name)
    if not runtime_available(name):
        raise InputError(f"runtime {name!r} is not installed here (pip install 'eqsearch[{name}]')")
    return load()


__all__ = [
    "RUNTIMES",
    "ExecNode",
    "Profile",
    "Runtime",
    "RuntimeSession",
    "get_runtime",
    "runtime_available",
]
