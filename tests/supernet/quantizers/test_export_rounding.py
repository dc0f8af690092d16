"""The training quantizer against its exported QuantizeLinear/DequantizeLinear in ONNX Runtime."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

from supernet.deployment.deploy import InputQuantizer
from supernet.deployment.export import onnx_session
from supernet.quantizers.clipping import integer_grid
from supernet.quantizers.fake_quant import lsq_fake_quantize

STEPS = 8
VALUES_PER_STEP = 1 << 19
MAX_DISAGREEMENT = 6e-6
"""The most values (a fraction, over :data:`STEPS` random steps) that may land one level apart
at 8 bits: :mod:`supernet.quantizers.fake_quant` states 2.0e-6 (signed) and 2.9e-6 (unsigned)
averaged over 48 random steps."""


def _exported(module: torch.nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation, as export.py
        torch.onnx.export(
            module,
            (example,),
            buffer,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    return buffer.getvalue()


def _disagreements(bits: int, signed: bool, seed: int) -> tuple[int, int]:
    """Values of :data:`STEPS` random steps (log-uniform in [1e-3, 1]), spread uniformly over
    the grid (half a step past each end), where the training forward and ONNX Runtime differ;
    and how many values were compared. Each difference is asserted to be one level, at a value
    within float32 rounding of a rounding tie."""
    generator = torch.Generator().manual_seed(seed)
    qmin, qmax = integer_grid(bits, signed=signed)
    differing = 0
    for _ in range(STEPS):
        step = float(np.float32(10 ** (3 * torch.rand(1, generator=generator).item() - 3)))
        levels = torch.rand(VALUES_PER_STEP, generator=generator) * (qmax - qmin + 1) + qmin - 0.5
        x = (levels * step).reshape(8, -1, 16, 16)
        ours = lsq_fake_quantize(x, torch.tensor([step]), None, qmin, qmax)
        session = onnx_session(_exported(InputQuantizer(step, 0, qmin, qmax), x[:1]))
        theirs = torch.from_numpy(session.run(["y"], {"x": x.numpy()})[0])
        differ = (ours != theirs).numpy()
        apart = ((ours - theirs).abs().numpy()[differ]) / step
        assert np.allclose(apart, 1.0, rtol=1e-4)
        scaled = x.double().numpy()[differ] / step
        distance = np.abs(scaled - np.floor(scaled) - 0.5)
        assert (distance <= 2.0**-21 * np.maximum(np.abs(scaled), 1.0)).all()
        differing += int(differ.sum())
    return differing, STEPS * VALUES_PER_STEP


@pytest.mark.parametrize("signed", [True, False])
def test_eight_bit_values_land_at_most_one_level_apart_near_ties(signed: bool) -> None:
    """ONNX Runtime divides by s, training multiplies by the float32 1/s: a few values in a
    million, each within float32 rounding of a rounding tie, land one level apart."""
    differing, values = _disagreements(8, signed, seed=8 + signed)
    assert 0 < differing <= MAX_DISAGREEMENT * values


def test_fewer_bits_disagree_less() -> None:
    """The chance grows with |x/s|: at 2 bits (levels within ±4) at most 1 in 10^6 values."""
    for signed in (True, False):
        differing, values = _disagreements(2, signed, seed=2 + signed)
        assert differing <= 1e-6 * values
