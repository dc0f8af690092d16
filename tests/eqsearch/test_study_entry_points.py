"""Studies are found through the ``eqsearch.studies`` entry points, eqsearch's own and others'."""

from __future__ import annotations

import argparse
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from eqsearch.app.commands import study


def test_the_seven_studies_of_eqsearch_are_installed() -> None:
    found = study.installed_studies()
    assert {name: point.value for name, point in found.items()} == {
        "ablations": "studies.ablations",
        "all": "studies.results.run_all",
        "joint": "studies.joint_search",
        "latency": "studies.latency",
        "predictors": "studies.compare_predictors",
        "strategies": "studies.strategies",
        "tune-loss": "studies.tune_loss_weights",
    }


def test_a_summary_is_read_without_importing_the_study() -> None:
    sys.modules.pop("studies.joint_search", None)
    assert study._summary("studies.joint_search").startswith("what joint search buys")
    assert "studies.joint_search" not in sys.modules
    assert study._summary("no_such_module_here") == "no_such_module_here"


def test_another_package_adds_a_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_study.py").write_text(
        textwrap.dedent(
            '''
            """Study: counts to three.

            More words that are not the summary.
            """


            def add_arguments(parser):
                parser.add_argument("--upto", type=int, default=3)


            def run_from_args(args):
                return args.upto
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    mine = EntryPoint(name="count", value="my_study", group=study.GROUP)
    own = list(study.installed_studies().values())
    monkeypatch.setattr(study, "entry_points", lambda group: [mine, *own])
    parser = argparse.ArgumentParser()
    study.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["study", "count", "--upto", "7"])
    assert args.handler(args) == 7
    assert list(study.installed_studies())[-1] == "count"  # after eqsearch's own
    help_text = parser._subparsers._group_actions[0].choices["study"].format_help()  # type: ignore[union-attr]
    assert "count" in help_text and "counts to three" in help_text
