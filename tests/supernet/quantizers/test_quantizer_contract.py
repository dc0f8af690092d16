"""The quantizer registry's contract: every registered quantizer builds from a spec, quantizes
onto as many levels as its bits allow, says itself whether it exports, and exports if so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from eqsearch.space import ALL_FORMS, LayerChoice, QuantForm
from supernet import build_supernet
from supernet.deployment.export import export_packed_weights
from supernet.quantizers import (
    QUANTIZERS,
    ElasticQuantizer,
    QuantizerSpec,
    build_quantizer,
    exportable_quantizers,
    quantizer_class,
)

NAMES = sorted(QUANTIZERS)
BITS = (2, 3)


def _first_form(cls: type[ElasticQuantizer]) -> QuantForm:
    return next(form for form in ALL_FORMS if cls.supports(form))


def _weight() -> torch.Tensor:
    """Eight output channels, each spanning [-1, 1] evenly (0 included)."""
    return torch.linspace(-1.0, 1.0, 45).reshape(1, 5, 3, 3).repeat(8, 1, 1, 1)


def _quantizer(name: str) -> tuple[ElasticQuantizer, QuantForm]:
    """A calibrated quantizer of a weight whose every channel spans [-1, 1], with inputs
    that span [0, 3]."""
    form = _first_form(QUANTIZERS[name])
    spec = QuantizerSpec(
        name, BITS, BITS, (form.w_granularity,), (form.w_symmetric,), (form.a_symmetric,)
    )
    quantizer = build_quantizer(_weight(), spec)
    quantizer.calibrate(_weight(), torch.linspace(0.0, 3.0, 1000), 0.0, 3.0)
    return quantizer, form


def test_every_quantizer_is_registered_under_its_own_name() -> None:
    assert NAMES == ["lsq", "n2uq"]
    for name, cls in QUANTIZERS.items():
        assert issubclass(cls, ElasticQuantizer) and cls.name == name
        assert quantizer_class(name) is cls
    with pytest.raises(ValueError, match=r"unknown quantizer 'nope'; registered: lsq, n2uq"):
        quantizer_class("nope")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bits", BITS)
def test_each_quantizer_quantizes_onto_its_levels(name: str, bits: int) -> None:
    quantizer, form = _quantizer(name)
    assert bool(quantizer.calibrated)
    handle = quantizer.resolve(LayerChoice(bits, bits, form))
    weight = 2 * _weight()  # beyond the calibrated range, densely: every level is reached
    with torch.no_grad():
        quantized_weight = quantizer.quantize_weight(weight, handle)
        inputs = torch.linspace(-1.0, 4.0, 5001)
        quantized_input = quantizer.quantize_input(inputs, handle)
        # the frozen form (constants computed once, for scoring) computes the same numbers
        assert torch.equal(quantizer.frozen_input_quantizer(handle)(inputs), quantized_input)
    assert quantized_weight.shape == weight.shape
    # every channel fills its 2^b levels, no more
    assert [len(torch.unique(row)) for row in quantized_weight.reshape(8, -1)] == [2**bits] * 8
    assert len(torch.unique(quantized_input)) == 2**bits


@pytest.mark.parametrize("name", NAMES)
def test_each_quantizer_says_whether_it_exports(name: str, tmp_path: Path) -> None:
    cls = QUANTIZERS[name]
    assert isinstance(cls.exportable, bool)
    assert (name in exportable_quantizers()) is cls.exportable
    supernet = build_supernet(
        "tiny_convnet", num_classes=3, in_channels=1, quantizer=name, w_bits=(2, 4), a_bits=(2, 4)
    )
    config = supernet.space.uniform(4, 4, _first_form(cls))
    path = tmp_path / f"{name}.npz"
    if cls.exportable:
        quantizer, form = _quantizer(name)
        params = quantizer.quant_params(LayerChoice(2, 3, form))
        assert params is not None
        assert (params.w_qmax - params.w_qmin, params.a_qmax - params.a_qmin) == (3, 7)
        report = export_packed_weights(supernet, config, path)
        assert path.is_file() and report.payload_bytes > 0
    else:
        assert cls.export_refusal
        message = f"quantizer {name!r}, which cannot be exported: {cls.export_refusal}"
        with pytest.raises(ValueError, match=re.escape(message)):
            export_packed_weights(supernet, config, path)
        assert not path.exists()


def test_exportable_quantizers_are_those_that_say_so() -> None:
    assert exportable_quantizers() == ("lsq",)
