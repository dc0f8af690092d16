"""A space checks a config once: a valid config is remembered, an invalid one never."""

from __future__ import annotations

import pytest

from eqsearch.errors import InputError
from eqsearch.space import LayerChoice, SubnetConfig, elastic

from .search_fixtures import enumerable_space


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[SubnetConfig]:
    checked: list[SubnetConfig] = []
    real = elastic.validate_config

    def counted(space: elastic.ElasticSpace, config: SubnetConfig) -> SubnetConfig:
        checked.append(config)
        return real(space, config)

    monkeypatch.setattr(elastic, "validate_config", counted)
    return checked


def test_a_valid_config_is_checked_once_however_often_it_is_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked = _counting(monkeypatch)
    space = enumerable_space()
    config = space.uniform(4, 4, space.forms[0])
    same = SubnetConfig(config.choices)  # equal, another object
    assert space.validate(config) is config
    assert space.validate(same) is same
    assert space.validate(config) is config
    assert checked == [config]


def test_an_invalid_config_is_refused_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = _counting(monkeypatch)
    space = enumerable_space()
    good = space.uniform(4, 4, space.forms[0])
    bad = SubnetConfig((LayerChoice(5, 4, space.forms[0]), *good.choices[1:]))
    for _ in range(2):
        with pytest.raises(InputError, match="pinned to w8/a8"):
            space.validate(bad)
    assert checked == [bad, bad]


def test_the_space_remembers_the_last_configs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(elastic, "VALIDATED_CONFIGS", 2)
    checked = _counting(monkeypatch)
    space = enumerable_space()
    first, second, third = (space.uniform(bits, 4, space.forms[0]) for bits in (2, 3, 4))
    for config in (first, second, third, third, second, first):
        space.validate(config)
    # the third pushed the first out; the second and third were still known; the first was
    # checked again
    assert checked == [first, second, third, first]
