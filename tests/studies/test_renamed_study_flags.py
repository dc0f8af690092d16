"""One flag name per concept: the studies' K and R are ``--verify`` and ``--refine`` (as in
``eqsearch nsga``); the former names still work and warn."""

from __future__ import annotations

import pytest

from eqsearch import errors
from eqsearch.app.commands.common import Parser
from studies import joint_search, strategies


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors, "_WARNED", set())


def _parser(module: object) -> Parser:
    parser = Parser(prog="study")
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return parser


def test_strategies_per_round_is_now_verify(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser(strategies).parse_args(["--supernet", "s.pt", "--per-round", "5"])
    assert args.verify == 5 and args.refine == 2
    assert "--per-round is now --verify" in capsys.readouterr().err
    assert _parser(strategies).parse_args(["--supernet", "s.pt", "--verify", "4"]).verify == 4
    assert "--per-round" not in _parser(strategies).format_help()


def test_joint_rounds_is_now_refine(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser(joint_search).parse_args(["--supernet", "s.pt", "--out", "o", "--rounds", "1"])
    assert args.refine == 1 and args.verify == 10
    assert "--rounds is now --refine" in capsys.readouterr().err
    fresh = _parser(joint_search).parse_args(["--supernet", "s.pt", "--out", "o"])
    assert fresh.refine == 3
    assert "--rounds" not in _parser(joint_search).format_help()
