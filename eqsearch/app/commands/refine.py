"""``eqsearch nsga --refine R``: the options of predictor-in-the-loop refinement."""

from __future__ import annotations

import argparse


def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--refine R`` and ``--samples`` of ``eqsearch nsga`` (see
    :mod:`eqsearch.app.refined_search`)."""
    from eqsearch.app.commands.common import non_negative_int

    parser.add_argument(
        "--refine",
        type=non_negative_int,
        default=0,
        metavar="R",
        help="measure --verify K configs of the predicted front, refit the predictor on them "
        "and search again, R times; writes the measured front",
    )
    parser.add_argument(
        "--samples",
        help="with --refine: the predictor's samples (default samples.csv beside the checkpoint)",
    )
