"""How a request's supernet scores subnets: images, device and the data that overrides its own."""

from __future__ import annotations

from dataclasses import dataclass

from eqsearch.errors import InputError


@dataclass(frozen=True, kw_only=True)
class ScoringOptions:
    """The scoring settings every request that measures subnets on the supernet shares.

    Args:
        bn_images: training images that re-estimate the BN statistics (the checkpoint's
            setting by default).
        val_images: the scoring images (the checkpoint's holdout by default).
        device: of the supernet (``auto``: CUDA when available).
        dataset, data_root, transforms: override the checkpoint's dataset (a registered one or
            a factory, trusted because the caller names it), its data root and its transform
            preset.
    """

    bn_images: int | None = None
    val_images: int | None = None
    device: str = "auto"
    dataset: str | None = None
    data_root: str | None = None
    transforms: str | None = None

    @property
    def data_options(self) -> dict[str, str | None]:
        """``dataset``, ``data_root`` and ``transforms``: what overrides the checkpoint's data."""
        return {name: getattr(self, name) for name in ("dataset", "data_root", "transforms")}

    def check_scoring(self) -> None:
        """Refuse an image count that is not a positive integer.

        Raises:
            InputError: naming the field.
        """
        for name in ("bn_images", "val_images"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InputError(
                    f"{{field}} must be a positive number of images; got {value!r}", field=name
                )
