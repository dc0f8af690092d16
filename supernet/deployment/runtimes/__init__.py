"""Inference runtimes eqsearch measures: what they run, and how fast (ONNX Runtime, OpenVINO)."""

from __future__ import annotations

import importlib.util

from eqsearch.errors import InputError
from supernet.deployment.runtimes.base import ExecNode, Profile, Runtime, RuntimeSession

RUNTIMES = ("onnxruntime", "openvino")


def runtime_available(name: str) -> bool:
    """Whether the runtime's package is installed."""
    return name in RUNTIMES and importlib.util.find_spec(name) is not None


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name`` (InputError: unknown, or not installed here)."""
    if name not in RUNTIMES:
        raise InputError(f"runtime must be one of {', '.join(RUNTIMES)}; got {name!r}")
    if not runtime_available(name):
        raise InputError(f"runtime {name!r} is not installed here (pip install 'eqsearch[{name}]')")
    if name == "onnxruntime":
        from supernet.deployment.runtimes.ort import OnnxRuntime

        return OnnxRuntime()
    from supernet.deployment.runtimes.ov import OpenVino

    return OpenVino()


__all__ = [
    "RUNTIMES",
    "ExecNode",
    "Profile",
    "Runtime",
    "RuntimeSession",
    "get_runtime",
    "runtime_available",
]
