"""The hardware-target registry's contract: every preset is registered under its own name,
describes itself, and serves its forms of a space that has them."""

from __future__ import annotations

import pytest

from eqsearch.space import ALL_FORMS
from eqsearch.targets import TARGET_NAMES, TARGETS, HardwareTarget, get_target
from tests.eqsearch.search_fixtures import enumerable_space


def test_the_presets_and_the_names_a_search_takes() -> None:
    assert tuple(TARGETS) == ("tensorrt", "snpe", "tflite", "any")
    assert TARGET_NAMES == ("tensorrt", "snpe", "tflite", "any", "onnxruntime", "openvino")
    with pytest.raises(ValueError, match=r"^target must be one of tensorrt, snpe, tflite, any, "):
        get_target("coreml")


@pytest.mark.parametrize("name", tuple(TARGETS))
def test_each_preset_serves_its_forms(name: str) -> None:
    target = TARGETS[name]
    assert isinstance(target, HardwareTarget) and target.name == name
    assert get_target(name) is target and target.description
    space = enumerable_space()
    served = target.forms_in(space)
    assert served and set(served) <= set(space.forms)
    if target.forms is None:
        assert served == space.forms
    else:
        assert set(target.forms) <= set(ALL_FORMS)
        assert served == tuple(form for form in target.forms if form in space.forms)
