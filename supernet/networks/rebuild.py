"""A supernet rebuilt from the build info a checkpoint stores (the architecture, no weights)."""

from __future__ import annotations

from typing import Any

from supernet.networks.build import build_supernet, stored_space_spec
from supernet.networks.elastic import Supernet
from supernet.networks.extract import rebuild_extracted
from supernet.networks.models import check_model_named_by_file


def rebuild_supernet(build_info: dict[str, Any]) -> Supernet:
    """Rebuild the architecture described by ``Supernet.build_info`` (weights not loaded).

    ``build_info`` is read from a file: a model factory it names must have been named by the
    user in this process (see :func:`supernet.networks.models.check_model_named_by_file`).
    """
    check_model_named_by_file(build_info["model"], source="the checkpoint's build_info")
    if "extracted_from" in build_info:
        return rebuild_extracted(build_info)
    return build_supernet(
        build_info["model"],
        num_classes=int(build_info["num_classes"]),
        in_channels=int(build_info["in_channels"]),
        image_size=int(build_info["image_size"]),
        space=stored_space_spec(build_info),
    )
