"""ImageNet-style image folders (``train/`` and ``val/`` class folders) and their images."""

from __future__ import annotations

import os
from typing import Any

from eqsearch.errors import InputError
from supernet.data.bundle import DataBundle
from supernet.data.spec import DataSpec
from supernet.data.streamed import transformed_bundle


def require_dir(path: str, what: str) -> None:
    """Refuse a data root that is not a directory, saying what was expected there."""
    if not os.path.isdir(path):
        raise InputError(f"{what} not found: expected the directory {path}")


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file.

    A DataLoader worker's exception comes back re-raised as its type with the worker's whole
    traceback as the message; its last line is this error's own message, which is kept.
    """

    def __init__(self, message: str) -> None:
        if message.startswith("Caught "):
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(message)


def load_image(path: str) -> Any:
    """An RGB PIL image from ``path``; a file PIL cannot decode is an UnreadableImageError."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            image = Image.open(handle)
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:  # what PIL raises for broken files
        raise UnreadableImageError(f"cannot read the image {path}: {error}") from None


def imagefolder_bundle(spec: DataSpec, seed: int, pin_memory: bool) -> DataBundle:
    """The bundle of ``train/`` and ``val/`` class folders under ``spec.root`` (ImageNet-style
    transforms unless ``spec.transforms`` names others)."""
    from torchvision import datasets

    root = str(spec.root)
    require_dir(root, "image data root")
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    require_dir(train_dir, f"{spec.name} training images (class folders)")
    require_dir(val_dir, f"{spec.name} validation images (class folders)")
    try:
        # each tree listed once; the augmented and the plain view share the list
        train = datasets.ImageFolder(train_dir, loader=load_image)
        test = datasets.ImageFolder(val_dir, loader=load_image)
    except (FileNotFoundError, RuntimeError) as error:
        raise InputError(f"malformed image folder under {root}: {error}") from None
    if train.classes != test.classes:
        raise InputError(f"train/ and val/ under {root} hold different class folders")
    return transformed_bundle(
        spec, seed, train, test, len(train.classes), pin_memory, default="imagenet"
    )
