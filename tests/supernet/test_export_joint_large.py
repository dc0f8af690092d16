"""ONNX export of the larger elastic-architecture models (a file of its own, so that the test
runner's two workers share the long export tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.supernet.test_export import SLOW_JOINT_MODELS, _check_joint_export, one_thread

__all__ = ["one_thread"]  # the fixture the tests below take


@pytest.mark.slow
@pytest.mark.parametrize("model_name", sorted(SLOW_JOINT_MODELS))
def test_onnx_export_of_the_imagenet_joint_model(
    model_name: str, tmp_path: Path, one_thread: None
) -> None:
    _check_joint_export(model_name, SLOW_JOINT_MODELS[model_name], "channel-sym-sym", tmp_path)
