"""``--dataset``, ``--data-root`` and ``--transforms``: the data a command scores subnets on."""

from __future__ import annotations

import argparse


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The same three data options on every command that scores subnets (``eval``,
    ``sample``, ``nsga``/``strategy`` with the supernet oracle or ``--verify``): each
    overrides what the checkpoint records, and a dataset factory is imported only where
    the user names it (here, or ``--trust-dataset``)."""
    parser.add_argument("--data-root", help="override the data root stored in the checkpoint")
    parser.add_argument(
        "--dataset",
        help="override the checkpoint's dataset: a registered one or a factory "
        "package.module:function (e.g. for a run trained on DataLoaders in Python)",
    )
    parser.add_argument(
        "--transforms", help="override the checkpoint's transform preset: imagenet, cifar or none"
    )
