"""Hardware targets: the quantization forms a deployment runtime accepts."""

from __future__ import annotations

from dataclasses import dataclass

from eqsearch.errors import InputError
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


TARGETS: dict[str, HardwareTarget] = {
    target.name: target
    for target in (
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
    )
}
"""The presets by name."""


def get_target(name: str) -> HardwareTarget:
    """The preset called ``name`` (ValueError naming the presets otherwise)."""
    try:
        return TARGETS[name]
    except KeyError:
        raise InputError(f"target must be one of {', '.join(TARGETS)}; got {name!r}") from None
