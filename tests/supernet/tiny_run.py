"""A tiny saved supernet on the 8×8 digits, as ``eqsearch train`` leaves one (no training)."""

from __future__ import annotations

from pathlib import Path

import torch

from supernet import build_supernet, init_quantizers
from supernet.data.datasets import build_data
from supernet.data.spec import DataSpec
from supernet.files.checkpoint import save_supernet

HISTORY = [
    {"phase": "fp", "epoch": 1, "loss": 1.2, "acc_fp": 71.5, "seconds": 0.5},
    {
        "phase": "supernet",
        "epoch": 1,
        "loss_largest": 0.9,
        "loss_smallest": 1.4,
        "lr": 0.001,
        "acc_largest": 80.25,
        "acc_smallest": 41.0,
        "open_bits": [2, 4, 8],
        "seconds": 1.0,
    },
]
"""What the checkpoint records as its training log."""


def tiny_checkpoint(directory: Path) -> Path:
    """``directory/supernet.pt``: tiny_convnet on the digits, W/A bits 2, 4 and 8, quantizers
    initialised on 256 images, one recorded epoch of :data:`HISTORY`."""
    torch.manual_seed(0)
    spec = DataSpec(name="digits", holdout=100)
    images = build_data(spec).calibration_images(256)
    supernet = build_supernet(
        "tiny_convnet",
        num_classes=10,
        in_channels=1,
        image_size=8,
        w_bits=(2, 4, 8),
        a_bits=(2, 4, 8),
    )
    init_quantizers(supernet, images)
    path = directory / "supernet.pt"
    save_supernet(
        path,
        supernet,
        data=spec.to_dict(),
        train_config={"bn_images": 128, "epochs": 3, "model": "tiny_convnet"},
        history=HISTORY,
        epoch=1,
    )
    return path
