"""Turning a model into an elastic supernet: module swap, layer measurement, subnet switching."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from eqsearch.errors import InputError
from eqsearch.space import (
    ElasticSpace,
    Granularity,
    LayerSpec,
    SubnetConfig,
)
from eqsearch.space.spec import SpaceSpec, parse_first_last
from supernet.networks.dynamic import DynamicConv2d, DynamicQuantConv2d
from supernet.networks.layers import (
    ElasticQuantConv2d,
    ElasticQuantLayer,
    ElasticQuantLinear,
    weights_quantized_together,
)
from supernet.quantizers import QuantizerSpec, quantizer_class
from supernet.runtime import keep_freed_memory


@runtime_checkable
class ElasticArchitecture(Protocol):
    """A model elastic in its architecture: it runs the architecture it is given."""

    def set_arch(self, arch: Mapping[str, int] | None) -> None:
        """Run ``arch`` (active gene values by name; None: the largest architecture)."""


class Supernet(nn.Module):
    """A model whose quantizable layers are elastic, with the space they span.

    Attributes:
        model: the wrapped network (its Conv2d/Linear modules replaced by elastic twins).
        space: the :class:`ElasticSpace` of every subnet it serves.
        build_info: JSON-able arguments that rebuild the same architecture (checkpoints).
    """

    def __init__(
        self,
        model: nn.Module,
        space: ElasticSpace,
        layers: dict[str, ElasticQuantLayer],
        build_info: dict[str, Any],
    ) -> None:
        super().__init__()
        self.model = model
        self.space = space
        self.build_info = build_info
        self._layer_names = tuple(layers)
        self._layer_list = tuple(layers.values())
        self._active: SubnetConfig | None = None
        self._arch_model: ElasticArchitecture | None = None
        if space.genes:
            if not isinstance(model, ElasticArchitecture):
                raise InputError(
                    "a joint space needs a model with set_arch(arch) (an elastic architecture)"
                )
            self._arch_model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._active is None or self._arch_model is not None or not torch.is_grad_enabled():
            return self.model(x)  # type: ignore[no-any-return]
        # training a subnet of a fixed architecture: its layers' weights quantized together
        with weights_quantized_together(self._layer_list):
            return self.model(x)  # type: ignore[no-any-return]

    @property
    def joint(self) -> bool:
        """Whether the supernet is elastic in its architecture too (a joint space)."""
        return self._arch_model is not None

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Supernet:
        result = super()._apply(fn, *args, **kwargs)
        self.set_subnet(self._active)  # re-resolve handles against the moved parameters
        return result  # type: ignore[no-any-return]

    def elastic_layers(self) -> dict[str, ElasticQuantLayer]:
        """Elastic layers by module path, in the space's order."""
        return dict(zip(self._layer_names, self._layer_list, strict=True))

    def active_subnet(self) -> SubnetConfig | None:
        """The config set by :meth:`set_subnet` (None: full precision)."""
        return self._active

    def set_subnet(self, config: SubnetConfig | None) -> None:
        """Run every following forward as ``config`` (None: full precision).

        Raises:
            ValueError: ``config`` is not in the space; no layer is changed then.
        """
        if config is None:
            for layer in self._layer_list:
                layer.set_choice(None)
            if self._arch_model is not None:
                self._arch_model.set_arch(None)
            self._active = None
            return
        if self._arch_model is not None:
            self._set_joint_subnet(config)
            return
        self.space.validate(config)
        handles = [
            layer.quantizer.resolve(choice)
            for layer, choice in zip(self._layer_list, config.choices, strict=True)
        ]
        for layer, choice, handle in zip(self._layer_list, config.choices, handles, strict=True):
            active = layer.active
            active.choice, active.handle = choice, handle
        self._active = config

    def _set_joint_subnet(self, config: SubnetConfig) -> None:
        """The architecture to the model, each running layer its choice (layers that do not
        run keep none: they are not called)."""
        assert self._arch_model is not None
        choices = self.space.layer_choices(config)  # validates
        handles = [
            None if choice is None else layer.quantizer.resolve(choice)
            for layer, choice in zip(self._layer_list, choices, strict=True)
        ]
        self._arch_model.set_arch(config.arch_dict)
        for layer, choice, handle in zip(self._layer_list, choices, handles, strict=True):
            active = layer.active
            active.choice, active.handle = choice, handle
        self._active = config

    @contextmanager
    def using(self, config: SubnetConfig | None) -> Iterator[Supernet]:
        """Context manager: run as ``config`` inside, restore the previous subnet after."""
        previous = self._active
        self.set_subnet(config)
        try:
            yield self
        finally:
            self.set_subnet(previous)


def _measure(model: nn.Module, example: torch.Tensor, names: set[str]) -> dict[str, dict[str, Any]]:
    """Execution order, per-sample input size, MACs of the named Conv2d/Linear modules.

    A module called several times in one forward (a shared block) counts its MACs and input
    activations once per call; its weights once.
    """
    modules = dict(model.named_modules())
    found: dict[str, dict[str, Any]] = {}
    handles = []

    def hook(name: str) -> Any:
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            x = inputs[0]
            batch = x.shape[0]
            out_per_sample = output.numel() // batch
            if isinstance(module, nn.Conv2d):
                kernel = module.kernel_size[0] * module.kernel_size[1]
                macs = out_per_sample * (module.in_channels // module.groups) * kernel
                kind = "conv"
            else:
                assert isinstance(module, nn.Linear)
                macs = out_per_sample * module.in_features
                kind = "linear"
            if name in found:
                found[name]["macs"] += macs
                found[name]["n_inputs"] += x.numel() // batch
                found[name]["calls"] += 1
                return
            found[name] = {
                "kind": kind,
                "n_params": module.weight.numel(),
                "macs": macs,
                "n_inputs": x.numel() // batch,
                "out_channels": module.weight.shape[0],
                "calls": 1,
            }

        return record

    for name in names:
        handles.append(modules[name].register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return found


class UnquantizedLayersWarning(UserWarning):
    """A model holds layers the supernet cannot quantize (they stay in full precision)."""


UNQUANTIZABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.MultiheadAttention,
    nn.Bilinear,
    nn.RNNBase,
    nn.Embedding,
)
"""Layers with weights that no elastic twin replaces."""


def unquantizable_layers(model: nn.Module, never_called: set[str]) -> list[str]:
    """The layers of ``model`` left in full precision, as ``"path (Type)"``: those of
    :data:`UNQUANTIZABLE_TYPES`, and Conv2d/Linear modules the forward never called (their
    weights used another way, e.g. by an attention module). Children of a listed layer are not
    listed again."""
    listed: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(parent + ".") for parent in listed):
            continue
        if isinstance(module, UNQUANTIZABLE_TYPES) or name in never_called:
            listed.append(name)
    modules = dict(model.named_modules())
    return [f"{name} ({type(modules[name]).__name__})" for name in listed]


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def to_supernet(
    model: nn.Module,
    *,
    example_input: torch.Tensor,
    spec: QuantizerSpec | None = None,
    first_last: str = "8/8",
    build_info: dict[str, Any] | None = None,
) -> Supernet:
    """Swap every Conv2d/Linear of ``model`` for its elastic twin and measure the space.

    Also applies :func:`supernet.runtime.keep_freed_memory` to the process (once): without it,
    a training step's fresh multi-megabyte buffers page-fault every step, and a quantized step
    has more of them than a full-precision one.

    Args:
        model: a full-precision model (changed in place).
        example_input: one batch of the model's input shape, for the measuring forward.
        spec: the bits and forms elastic layers serve (LSQ+ over 2..8 bits and every form by
            default).
        first_last: policy for the first and last layers in execution order: pinned bits
            (``"8/8"``), full precision (``"fp"``) or ``"elastic"``.
        build_info: JSON-able arguments that rebuild the architecture (stored in checkpoints).
    """
    spec = spec or QuantizerSpec()
    quantizer_class(spec.name)  # fail early on an unknown quantizer name
    pin = parse_first_last(first_last)
    keep_freed_memory()  # fake quantization allocates; see supernet.runtime
    candidates = {
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
        and not isinstance(module, (ElasticQuantConv2d, ElasticQuantLinear))
    }
    if not candidates:
        raise InputError("the model has no Conv2d or Linear layer to quantize")
    measured = _measure(model, example_input, candidates)
    for facts in measured.values():
        facts.pop("calls")
    unquantized = unquantizable_layers(model, candidates - set(measured))
    if unquantized:
        warnings.warn(
            f"{len(unquantized)} layer(s) cannot be quantized and stay in full precision, "
            f"outside every cost: {', '.join(unquantized[:6])}"
            + (", ..." if len(unquantized) > 6 else "")
            + " (they are listed in supernet.space.unquantized)",
            UnquantizedLayersWarning,
            stacklevel=2,
        )
    order = list(measured)  # dicts keep insertion (execution) order
    if len(order) < 3 and pin is not None:
        raise InputError(
            f"the model has {len(order)} quantizable layers; pinning the first and last "
            "leaves nothing to search (use first_last='elastic')"
        )
    pinned_names = {order[0], order[-1]} if pin is not None else set()
    layer_specs = []
    layers: dict[str, ElasticQuantLayer] = {}
    for name in order:
        module = model.get_submodule(name)
        layer_pin = pin if name in pinned_names else None
        layer_spec = spec if layer_pin is None else spec.pinned(*layer_pin)
        elastic: ElasticQuantLayer
        if isinstance(module, nn.Conv2d):
            elastic = ElasticQuantConv2d.from_module(module, layer_spec)
        else:
            assert isinstance(module, nn.Linear)
            elastic = ElasticQuantLinear.from_module(module, layer_spec)
        _set_submodule(model, name, elastic)
        layers[name] = elastic
        layer_specs.append(LayerSpec(name=name, pinned=layer_pin, **measured[name]))
    space = ElasticSpace(
        layers=tuple(layer_specs), unquantized=tuple(unquantized), **spec.space_choices
    )
    info = dict(build_info or {})
    architecture = info.pop("architecture", {})
    return _supernet_described(model, space, layers, spec, first_last, architecture, info)


@runtime_checkable
class JointModel(ElasticArchitecture, Protocol):
    """A model elastic in its architecture that declares its joint space."""

    def elastic_space(
        self,
        *,
        w_bits: tuple[int, ...],
        a_bits: tuple[int, ...],
        granularities: tuple[Granularity, ...],
        w_symmetries: tuple[bool, ...],
        a_symmetries: tuple[bool, ...],
        first_last: tuple[int, int] | None,
    ) -> ElasticSpace:
        """The joint space: layer names are module paths, in execution order."""

    def largest_arch(self) -> dict[str, int]:
        """The value of every gene in the largest architecture."""


def to_joint_supernet(
    model: nn.Module,
    *,
    spec: QuantizerSpec | None = None,
    first_last: str = "8/8",
    build_info: dict[str, Any] | None = None,
) -> Supernet:
    """Make an elastic-architecture model a joint supernet: every layer of its declared space
    becomes elastic in bits and forms (a :class:`DynamicConv2d` a :class:`DynamicQuantConv2d`
    that keeps its slicing, a fixed Conv2d/Linear its elastic twin).

    Args:
        model: a :class:`JointModel` (changed in place).
        spec, first_last, build_info: as for :func:`to_supernet`; ``build_info`` records the
            model's architecture choice sets in its space description.

    Raises:
        ValueError: the model declares no space, or a Conv2d/Linear outside its space.
    """
    keep_freed_memory()  # as to_supernet: fake quantization allocates
    spec = spec or QuantizerSpec()
    quantizer_class(spec.name)
    if not isinstance(model, JointModel):
        raise InputError("to_joint_supernet needs a model that declares its joint space")
    space = model.elastic_space(first_last=parse_first_last(first_last), **spec.space_choices)
    names = {layer.name for layer in space.layers}
    stray = [
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear)) and name not in names
    ]
    if stray:
        raise InputError(f"layers outside the declared space: {', '.join(stray[:3])}")
    layers: dict[str, ElasticQuantLayer] = {}
    for layer_spec in space.layers:
        module = model.get_submodule(layer_spec.name)
        pinned = layer_spec.pinned
        layer_quantizer = spec if pinned is None else spec.pinned(*pinned)
        elastic: ElasticQuantLayer
        if isinstance(module, DynamicConv2d):
            elastic = DynamicQuantConv2d.from_module(module, layer_quantizer)
        elif isinstance(module, nn.Conv2d):
            elastic = ElasticQuantConv2d.from_module(module, layer_quantizer)
        elif isinstance(module, nn.Linear):
            elastic = ElasticQuantLinear.from_module(module, layer_quantizer)
        else:
            raise InputError(f"layer {layer_spec.name!r} is not a Conv2d or Linear module")
        _set_submodule(model, layer_spec.name, elastic)
        layers[layer_spec.name] = elastic
    use_channels_last(model, layers.values())
    options = getattr(getattr(model, "layout", None), "architecture_options", {})
    info = dict(build_info or {})
    return _supernet_described(model, space, layers, spec, first_last, options, info)


def _supernet_described(
    model: nn.Module,
    space: ElasticSpace,
    layers: dict[str, ElasticQuantLayer],
    spec: QuantizerSpec,
    first_last: str,
    architecture: Mapping[str, Any],
    info: dict[str, Any],
) -> Supernet:
    """The supernet, its build info recording the space it was built with (a ``SpaceSpec``)."""
    described = SpaceSpec(
        quantizer=spec.name,
        w_bits=spec.w_bits,
        a_bits=spec.a_bits,
        granularities=tuple(g.value for g in spec.granularities),
        w_symmetries=spec.w_symmetries,
        a_symmetries=spec.a_symmetries,
        first_last=first_last,
        architecture=tuple(architecture.items()),
    )
    info["space"] = described.to_dict()
    return Supernet(model, space, layers, info)


def use_channels_last(model: nn.Module, layers: Iterable[ElasticQuantLayer]) -> None:
    """Store a model that asks for it (``memory_format`` channels-last) in that layout, and
    let its conv layers compute with channels-last operands (see ``layers.channels_last``)."""
    if getattr(model, "memory_format", None) is not torch.channels_last:
        return
    model.to(memory_format=torch.channels_last)
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            layer.channels_last = True
