"""ONNX export of the torchvision models (a file of its own, so that the test runner's two
workers share the long export tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.supernet.test_export import (
    DEPLOYED_FORMS,
    SLOW_MODELS,
    TIE_ALIGNED_MODELS,
    _check_export,
)


@pytest.mark.slow
@pytest.mark.parametrize("model_name", sorted(SLOW_MODELS))
def test_onnx_export_of_torchvision_models(model_name: str, tmp_path: Path) -> None:
    for form in DEPLOYED_FORMS:
        _check_export(
            model_name,
            SLOW_MODELS[model_name],
            form,
            tmp_path,
            tie_aligned=model_name in TIE_ALIGNED_MODELS,
        )
