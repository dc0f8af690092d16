"""What eqsearch asks of an inference runtime: sessions, timed runs, and per-node profiles."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ExecNode:
    """One node the runtime executes (after its own graph rewrites and fusions).

    Args:
        name: the runtime's name of the node.
        op_type: its operator (``QLinearConv``, ``Convolution``, ...).
        kernel: the implementation that ran it (ONNX Runtime: the operator; OpenVINO: the
            primitive, e.g. ``brgconv_avx512_I8``).
        integer: whether it computes in integers.
        main: whether it is a layer's conv or matmul (not a reorder, a quantize step, ...).
        names: names that tie it to the exported graph (its own, the original nodes it fused,
            its output tensors).
        inputs: names of the executed nodes that feed it.
    """

    name: str
    op_type: str
    kernel: str
    integer: bool
    main: bool
    names: tuple[str, ...]
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """Per-node times of repeated runs: ``times[r, i]`` µs of ``nodes[i]`` in run ``r``."""

    nodes: tuple[ExecNode, ...]
    times: FloatArray


class RuntimeSession(ABC):
    """A model loaded in a runtime with one fixed input."""

    @abstractmethod
    def __init__(
        self, model: bytes, inputs: npt.NDArray[np.float32], threads: int, profiling: bool
    ) -> None:
        """Load ``model`` with ``threads`` intra-op threads and ``inputs`` as its input,
        ready to record a per-node profile when ``profiling``."""

    @abstractmethod
    def run(self, *, record: bool = True) -> None:
        """One inference on the stored input (left out of the profile with ``record=False``,
        e.g. a run that only warms the caches)."""

    @abstractmethod
    def outputs(self) -> npt.NDArray[np.float32]:
        """The first output of one inference (to check what the model computes)."""

    @abstractmethod
    def record(self) -> None:
        """Profile the runs from now on (the session must have been opened with
        ``profiling=True``); earlier runs (warm-up) are left out."""

    @abstractmethod
    def profile(self) -> Profile:
        """Per-node times of the runs since :meth:`record` (call once, at the end)."""

    def close(self) -> None:  # noqa: B027 - most runtimes free on garbage collection
        """Free the runtime's resources."""


def profile_runs(session: RuntimeSession, repeats: int, *, warmup: int = 2) -> Profile:
    """``warmup`` runs, then ``repeats`` profiled runs of one session."""
    for _ in range(warmup):
        session.run()
    session.record()
    for _ in range(repeats):
        session.run()
    return session.profile()


class Runtime(ABC):
    """An inference runtime eqsearch measures (``supernet.deployment.runtimes.get_runtime``).

    Attributes:
        name: ``onnxruntime`` or ``openvino``.
        float_fallback_weights: whether an export for this runtime stores the float weight of
            a layer that cannot run as an integer kernel (ONNX Runtime would otherwise
            dequantize it at every inference; OpenVINO folds it by itself and runs some
            of those layers as integer kernels).
    """

    name: str
    float_fallback_weights: bool

    session: type[RuntimeSession]
    """The runtime's session class, which :meth:`open` makes."""

    def open(
        self, model: bytes, inputs: npt.NDArray[np.float32], *, threads: int, profiling: bool
    ) -> RuntimeSession:
        """Load an ONNX model with ``threads`` intra-op threads and ``inputs`` as its input."""
        return self.session(model, inputs, threads, profiling)
