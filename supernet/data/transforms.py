"""Named image transform presets: ImageNet-style, CIFAR-style, or none (the images as they are)."""

from __future__ import annotations

from typing import Any

import torch

from eqsearch.errors import InputError

TRANSFORMS = ("imagenet", "cifar", "none")
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def check_transforms(name: Any) -> None:
    """Refuse a preset name that is not one of :data:`TRANSFORMS` (None: the dataset's own).

    Raises:
        InputError: naming the allowed presets.
    """
    if name is not None and name not in TRANSFORMS:
        raise InputError(f"transforms must be one of {', '.join(TRANSFORMS)}; got {name!r}")


class ToTensorImage:
    """A PIL image to a float tensor in [0, 1] (torchvision's ``ToTensor``); a tensor passes
    unchanged, except that integer pixels are scaled to [0, 1]."""

    def __call__(self, image: Any) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            if image.is_floating_point():
                return image
            return image.float() / 255.0
        from torchvision.transforms import functional

        return functional.to_tensor(image)


def preset_normalization(
    name: str, channels: int = 3
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The per-channel ``(mean, std)`` preset ``name`` normalises with (None for ``none``);
    other channel counts than three get the mean of the three."""
    check_transforms(name)
    if name == "none":
        return None
    mean, std = IMAGENET_MEAN_STD if name == "imagenet" else CIFAR_MEAN_STD
    if channels != 3:
        return (sum(mean) / 3,) * channels, (sum(std) / 3,) * channels
    return mean, std


def preset_transforms(name: str, image_size: int, *, channels: int = 3) -> tuple[Any, Any]:
    """``(augment, plain)`` of preset ``name`` for square images of ``image_size`` pixels.

    - ``imagenet``: RandomResizedCrop + horizontal flip for training; Resize to 256/224 of
      the size + CenterCrop for evaluation; ImageNet's mean and std.
    - ``cifar``: RandomCrop with size/8 pixels of zero padding + horizontal flip for
      training, a center crop of the size for evaluation (the image unchanged where it has
      that size); CIFAR-10's mean and std.
    - ``none``: the image as a tensor, unresized and unnormalised, for both.

    The normalisation's three means and stds apply to 3-channel images; other channel counts
    are normalised with their mean over the three.
    """
    check_transforms(name)
    from torchvision import transforms

    to_tensor = ToTensorImage()
    if name == "none":
        return to_tensor, to_tensor
    normalization = preset_normalization(name, channels)
    assert normalization is not None
    normalize = transforms.Normalize(*normalization)
    if name == "imagenet":
        augment = transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size),
                transforms.RandomHorizontalFlip(),
                to_tensor,
                normalize,
            ]
        )
        plain = transforms.Compose(
            [
                transforms.Resize(round(image_size * 256 / 224)),
                transforms.CenterCrop(image_size),
                to_tensor,
                normalize,
            ]
        )
        return augment, plain
    augment = transforms.Compose(
        [
            transforms.RandomCrop(image_size, padding=max(1, image_size // 8)),
            transforms.RandomHorizontalFlip(),
            to_tensor,
            normalize,
        ]
    )
    plain = transforms.Compose([transforms.CenterCrop(image_size), to_tensor, normalize])
    return augment, plain
