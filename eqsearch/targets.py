"""Hardware targets: the quantization forms a deployment runtime accepts."""

from __future__ import annotations

from dataclasses import dataclass

from eqsearch.errors import InputError
from eqsearch.registry import Registry
from eqsearch.space import ElasticSpace, QuantForm


@dataclass(frozen=True)
class HardwareTarget:
    """A deployment runtime and the forms it executes.

    Args:
        name: the preset's name (``--target`` value).
        description: one line for help texts and tables.
        forms: the accepted forms, or None for every form of the space.
    """

    name: str
    description: str
    forms: tuple[QuantForm, ...] | None

    def __post_init__(self) -> None:
        if not self.name:
            raise InputError("HardwareTarget.name must be a non-empty string")
        if self.forms is not None:
            forms = tuple(self.forms)
            if not forms or not all(isinstance(form, QuantForm) for form in forms):
                raise InputError(
                    f"HardwareTarget.forms must be None or QuantForms; got {self.forms!r}"
                )
            object.__setattr__(self, "forms", forms)

    def forms_in(self, space: ElasticSpace) -> tuple[QuantForm, ...]:
        """The target's forms that ``space`` serves (ValueError when it serves none)."""
        if self.forms is None:
            return space.forms
        served = tuple(form for form in self.forms if form in space.forms)
        if not served:
            wanted = ", ".join(map(str, self.forms))
            available = ", ".join(map(str, space.forms))
            raise InputError(
                f"target {self.name!r} needs {wanted}, but the supernet serves only {available}"
            )
        return served


TARGETS: Registry[HardwareTarget] = Registry("target")
"""The presets by name."""
for _target in (
    HardwareTarget(
        "tensorrt",
        "NVIDIA TensorRT: per-channel symmetric weights, symmetric activations",
        (QuantForm("channel", True, True),),
    ),
    HardwareTarget(
        "snpe",
        "Qualcomm SNPE / Hexagon DSP: per-tensor asymmetric weights and activations",
        (QuantForm("tensor", False, False),),
    ),
    HardwareTarget(
        "tflite",
        "TensorFlow Lite: per-channel symmetric weights, asymmetric activations",
        (QuantForm("channel", True, False),),
    ),
    HardwareTarget("any", "no restriction: the search chooses the form too", None),
):
    TARGETS.add(_target.name, _target)


RUNTIME_TARGETS = ("onnxruntime", "openvino")
"""Targets read from a probe of the runtime on this machine (``eqsearch runtime probe``)."""
TARGET_NAMES = (*TARGETS, *RUNTIME_TARGETS)


def runtime_target(name: str) -> HardwareTarget:
    """The forms ``name`` ran as integer kernels in its stored probe of this machine.

    Raises:
        InputError: the runtime is not installed, was not probed here, or ran no form as
            integer kernels.
    """
    from eqsearch.latency.cache import find_probe

    probe = find_probe(name)
    if probe is None:
        raise InputError(
            f"--target {name} reads a probe of {name} on this machine; run `eqsearch runtime "
            f"probe --runtime {name}` first"
        )
    forms = probe.integer_forms()
    if not forms:
        raise InputError(f"{name} {probe.key.version} ran no form as integer kernels here")
    return HardwareTarget(
        name, f"{name} {probe.key.version} on this CPU: the forms it runs as integer kernels", forms
    )


def get_target(name: str) -> HardwareTarget:
    """The preset called ``name``, or a probed runtime's forms (ValueError naming the presets
    otherwise)."""
    if name in RUNTIME_TARGETS:
        return runtime_target(name)
    try:
        return TARGETS[name]
    except KeyError:
        raise InputError(f"target must be one of {', '.join(TARGET_NAMES)}; got {name!r}") from None
