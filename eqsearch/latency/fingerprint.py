"""What a latency measurement depends on: the CPU, the runtime and its version, the settings."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from typing import Any

from eqsearch.errors import InputError, require_positive_integers

RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
"""Runtime name → the Python distribution whose version the measurements depend on."""


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else the platform's processor string)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def runtime_version(runtime: str) -> str:
    """The installed version of a runtime's package (InputError when it is not installed)."""
    package = RUNTIME_PACKAGES.get(runtime)
    if package is None:
        raise InputError(f"runtime must be one of {', '.join(RUNTIME_PACKAGES)}; got {runtime!r}")
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        raise InputError(
            f"runtime {runtime!r} is not installed here (pip install 'eqsearch[{runtime}]')"
        ) from None


@dataclass(frozen=True)
class MeasurementKey:
    """Everything a measured latency depends on besides the network.

    Args:
        cpu: the CPU's model name.
        cores: logical CPUs the machine has.
        runtime: ``onnxruntime`` or ``openvino``.
        version: the runtime's version.
        threads: intra-op threads of every session.
        batch: images per inference.
        image_size: the input's side in pixels.
    """

    cpu: str
    cores: int
    runtime: str
    version: str
    threads: int
    batch: int
    image_size: int

    def __post_init__(self) -> None:
        require_positive_integers(
            self, ("cores", "threads", "batch", "image_size"), "MeasurementKey."
        )
        for name in ("cpu", "runtime", "version"):
            if not isinstance(getattr(self, name), str):
                raise InputError(f"MeasurementKey.{name} must be a string")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeasurementKey:
        """Inverse of :meth:`to_dict`."""
        names = [field.name for field in fields(cls)]
        if not isinstance(data, Mapping) or set(data) != set(names):
            raise InputError(f"a measurement key needs exactly the keys {', '.join(names)}")
        return cls(**{name: data[name] for name in names})

    @property
    def digest(self) -> str:
        """A short hash of every field (file names, cache keys)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def differences(self, other: MeasurementKey) -> list[str]:
        """Names of the fields where ``other`` differs."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def machine_key(runtime: str, *, threads: int, batch: int, image_size: int) -> MeasurementKey:
    """The key of measurements taken here, now, with these settings."""
    return MeasurementKey(
        cpu=cpu_name(),
        cores=os.cpu_count() or 1,
        runtime=runtime,
        version=runtime_version(runtime),
        threads=threads,
        batch=batch,
        image_size=image_size,
    )
