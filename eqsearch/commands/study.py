"""``eqsearch study``: predictors, loss-weight tuning, the paper's ablations, strategies, joint."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from eqsearch.commands.common import Parser

# study name → (module in studies/, help); each module has add_arguments and run_from_args.
STUDIES = {
    "predictors": (
        "studies.compare_predictors",
        "k-fold comparison of every predictor backend on one samples file",
    ),
    "tune-loss": (
        "studies.tune_loss_weights",
        "Optuna tuning of the training loss weights (GPG λ, WDR, K_T, lr)",
    ),
    "ablations": (
        "studies.ablations",
        "EQ-Net's ablations (WDR, GPG, per-tensor steps, static QAT, schedules) as a report",
    ),
    "strategies": (
        "studies.strategies",
        "sensitivity ILP (HAWQ-V3), greedy, uniform, random vs NSGA-II + CQAP, all measured",
    ),
    "joint": (
        "studies.joint_search",
        "joint architecture × bits front vs bits-only and architecture-only fronts, measured",
    ),
    "latency": (
        "studies.latency",
        "BitOPs, MACs and a measured latency table against a runtime's latency; fronts "
        "searched against BitOPs vs against latency, every pick exported and timed",
    ),
}


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(STUDIES[args.study][0])
    result: int = module.run_from_args(args)
    return result


def register(commands: argparse._SubParsersAction[Any], *, with_options: bool = True) -> None:
    """Add ``study`` and its sub-commands.

    The options live beside each study (so that ``python -m studies.X`` and ``eqsearch study
    X`` accept the same ones), and importing a study imports torch: ``with_options=False``
    adds the sub-commands without them, for a command line that runs no study.
    """
    study = commands.add_parser(
        "study", help="experiments: predictors, tune-loss, ablations, strategies, joint, latency"
    )
    studies = study.add_subparsers(dest="study", metavar="STUDY", parser_class=Parser)
    studies.required = True
    for name, (module_name, help_text) in STUDIES.items():
        parser = studies.add_parser(name, help=help_text)
        if with_options:
            importlib.import_module(module_name).add_arguments(parser)
        parser.set_defaults(handler=_run)
