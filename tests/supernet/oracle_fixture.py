"""A fixed, seeded LeNet-5 supernet and subnets whose plain-path scores the tests store.

Built only from APIs that predate the fast measuring path (so the stored scores could be
computed with the code of the commit before it), and with every quantizer step set by an
explicit rule rather than by ``init_quantizers``, whose data-driven search may change.
"""

from __future__ import annotations

import math

import torch

from eqsearch.space import LayerChoice, QuantForm, SubnetConfig
from supernet import build_supernet
from supernet.networks.calibrate import calibrate_bn, preserved_bn_state
from supernet.networks.elastic import Supernet

BATCH_SIZE = 64
"""Calibration batches of 64, 64 and 22 images: the per-batch averaging is exercised."""

FORMS = {
    "cs": QuantForm("channel", True, True),
    "ca": QuantForm("channel", False, False),
    "ts": QuantForm("tensor", True, True),
    "ta": QuantForm("tensor", False, True),
    "tx": QuantForm("tensor", True, False),
}

# (conv2, fc1, fc2) choices as "w/a form"; the first and last layers are pinned at 8/8.
SUBNETS = {
    "W8A8 cs": ("8/8 cs", "8/8 cs", "8/8 cs"),
    "W4A4 ca": ("4/4 ca", "4/4 ca", "4/4 ca"),
    "W3A3 ts": ("3/3 ts", "3/3 ts", "3/3 ts"),
    "W2A2 cs": ("2/2 cs", "2/2 cs", "2/2 cs"),
    "W2A2 ta": ("2/2 ta", "2/2 ta", "2/2 ta"),
    "mixed 1": ("2/8 cs", "3/4 cs", "8/2 cs"),
    "mixed 2": ("4/2 ca", "2/3 ca", "3/8 ca"),
    "per-layer forms": ("3/2 tx", "2/4 ca", "4/3 ts"),
}


def _choice(text: str) -> LayerChoice:
    bits, form = text.split()
    w_bits, a_bits = (int(value) for value in bits.split("/"))
    return LayerChoice(w_bits, a_bits, FORMS[form])


def subnet(name: str) -> SubnetConfig:
    """The named subnet of :data:`SUBNETS` (pinned layers in the form of the second layer)."""
    middle = [_choice(text) for text in SUBNETS[name]]
    form = middle[0].form
    return SubnetConfig((LayerChoice(8, 8, form), *middle, LayerChoice(8, 8, form)))


def _set_steps(supernet: Supernet) -> None:
    """Weight steps max|w|/qmax (per channel or tensor), offsets of 1.5 steps; input steps
    3/(2^b − 1), input offsets −0.25."""
    with torch.no_grad():
        for layer in supernet.elastic_layers().values():
            quantizer = layer.quantizer
            flat = layer.weight.detach().reshape(layer.weight.shape[0], -1).abs()
            for key, log_step in quantizer.weight_log_steps.items():
                bits = int(key.split("_")[0][1:])
                qmax = 2 ** (bits - 1) - 1
                peak = flat.amax(dim=1) if "_channel_" in key else flat.amax().reshape(1)
                log_step.copy_(torch.log(peak / qmax))
                if key in quantizer.weight_offsets:
                    quantizer.weight_offsets[key].copy_(-1.5 * log_step.exp())
            for key, log_step in quantizer.input_log_steps.items():
                bits = int(key.split("_")[0][1:])
                log_step.fill_(math.log(3.0 / (2**bits - 1)))
                if key in quantizer.input_offsets:
                    quantizer.input_offsets[key].fill_(-0.25)


def fixed_setup() -> tuple[Supernet, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(supernet, images, labels, calibration images): labels are the full-precision
    subnet's own predictions, so scores fall from 100 % as bits drop."""
    torch.manual_seed(0)
    supernet = build_supernet(
        "lenet5", num_classes=10, in_channels=1, w_bits=(2, 3, 4, 8), a_bits=(2, 3, 4, 8)
    )
    _set_steps(supernet)
    generator = torch.Generator().manual_seed(1)
    calibration = torch.rand(150, 1, 28, 28, generator=generator)
    images = torch.rand(200, 1, 28, 28, generator=generator)
    with torch.no_grad(), preserved_bn_state(supernet), supernet.using(None):
        calibrate_bn(supernet, calibration, batch_size=BATCH_SIZE)
        supernet.eval()
        labels = supernet(images).argmax(dim=1)
    supernet.train()
    return supernet, images, labels, calibration
