"""A subnet's ONNX graph as a runtime runs it: exported, rewritten to fuse, its layers named."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from eqsearch.space import SubnetConfig
from supernet.deployment.deploy import build_deploy_model, check_exportable
from supernet.deployment.onnx_fusable import FusableReport, make_fusable
from supernet.deployment.runtimes.attribution import LayerOwners, layer_of_scope
from supernet.deployment.runtimes.base import Runtime
from supernet.networks.elastic import Supernet
from supernet.runtime import one_thread

RESOLUTION_GENE = "resolution"


@dataclass(frozen=True)
class RuntimeGraph:
    """An exported subnet ready for a runtime.

    Attributes:
        model: the ONNX model's bytes.
        owners: which layer each of its nodes belongs to.
        image_size: the input's side.
        fusable: what the rewrite for the runtime changed (None: FP32 or plain export).
    """

    model: bytes
    owners: LayerOwners
    image_size: int
    fusable: FusableReport | None


def input_size(supernet: Supernet, config: SubnetConfig) -> int:
    """The input side a subnet runs at: its resolution gene, else the supernet's image size."""
    return int(config.arch_dict.get(RESOLUTION_GENE, supernet.build_info.get("image_size", 32)))


def random_images(
    supernet: Supernet, size: int, batch: int, seed: int = 0
) -> npt.NDArray[np.float32]:
    """Standard-normal images of the supernet's channels (what latency is measured on)."""
    channels = int(supernet.build_info.get("in_channels", 3))
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, channels, size, size)).astype(np.float32)


class Extractions:
    """A joint supernet's extracted static networks, the last few kept: configs that share an
    architecture (the choices of one network) extract it once."""

    def __init__(self, supernet: Supernet, keep: int = 2) -> None:
        self.supernet = supernet
        self.keep = keep
        self._networks: dict[tuple[tuple[str, int], ...], Supernet] = {}

    def static(self, config: SubnetConfig) -> tuple[Supernet, SubnetConfig]:
        """The network of ``config``'s architecture with ``config``'s choices active."""
        supernet = self.supernet
        if not supernet.joint:
            return supernet, supernet.space.validate(config)
        from supernet.networks.extract import extract

        arch = tuple(sorted(config.arch_dict.items()))
        static = self._networks.pop(arch, None)
        if static is None:
            with one_thread():
                static = extract(supernet, config)
        self._networks[arch] = static
        while len(self._networks) > self.keep:
            self._networks.pop(next(iter(self._networks)))
        static.set_subnet(static.space.validate(SubnetConfig(config.choices)))
        return static, static.space.validate(SubnetConfig(config.choices))


@torch.no_grad()
def runtime_graph(
    supernet: Supernet,
    config: SubnetConfig,
    runtime: Runtime | None,
    *,
    full_precision: bool = False,
    extractions: Extractions | None = None,
) -> RuntimeGraph:
    """The ONNX graph ``eqsearch export --runtime`` writes for ``config`` (no BN
    re-calibration, no agreement check: what it computes does not change its speed).

    The small torch operations of extraction and tracing run on one thread (on a busy
    machine each would otherwise wait for a core at a thread barrier: 31 s instead of 6 s
    for an ``oqa_mbv3`` subnet at load 13 on 2 cores).

    ``runtime`` None: the plain QDQ export; ``full_precision``: the FP32 network of the same
    architecture (every layer float, its latent weights). ``extractions`` reuses a joint
    supernet's extracted networks across calls.
    """
    import onnx

    from supernet.deployment.onnx_trace import DEFAULT_OPSET, trace_onnx

    if supernet.joint and not full_precision:
        check_exportable(supernet)
    static, static_config = (extractions or Extractions(supernet, keep=1)).static(config)
    was_training = static.training
    static.eval()
    try:
        deploy = build_deploy_model(static, static_config, full_precision=full_precision).cpu()
    finally:
        static.train(was_training)
    size = input_size(supernet, config)
    example = torch.from_numpy(random_images(supernet, size, 1))
    with one_thread():
        model = onnx.load_from_string(trace_onnx(deploy, example, DEFAULT_OPSET))
    layers = tuple(static.elastic_layers())
    report = None
    if runtime is not None and not full_precision:
        report = make_fusable(
            model,
            lambda name: layer_of_scope(name, layers),
            float_fallback_weights=runtime.float_fallback_weights,
        )
    return RuntimeGraph(model.SerializeToString(), LayerOwners(model, layers), size, report)
