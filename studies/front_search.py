"""The NSGA-II searches of a study: their size and the configs measured from each front."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from eqsearch.app.commands.common import positive_int
from eqsearch.errors import InputError


@dataclass(frozen=True)
class FrontSearch:
    """How a study runs each of its NSGA-II searches (pymoo) and measures its front.

    Args:
        population, generations: of each NSGA-II search.
        verify: configs spread over each front and measured on the supernet (K of
            ``eqsearch nsga --verify K``).
    """

    population: int = 100
    generations: int = 500
    verify: int = 12

    def __post_init__(self) -> None:
        for name, least in (("population", 2), ("generations", 1), ("verify", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                message = f"FrontSearch.{{field}} must be an integer >= {least}; got {value!r}"
                raise InputError(message, field=name)

    def require_verify(self, least: int, owner: str) -> None:
        """Refuse fewer than ``least`` configs per front for a study that compares fronts
        by what it measures of them (``owner``: the study's settings class, for the message)."""
        if self.verify < least:
            raise InputError(
                f"{owner}.{{field}} must be an integer >= {least}; got {self.verify!r}",
                field="verify",
            )


def add_front_search_arguments(
    parser: argparse.ArgumentParser, defaults: FrontSearch, verify_help: str
) -> None:
    """``--population``, ``--generations`` and ``--verify`` with ``defaults``' values."""
    helps = {
        "population": "NSGA-II population",
        "generations": "NSGA-II generations",
        "verify": verify_help,
    }
    for name, text in helps.items():
        parser.add_argument(
            f"--{name}", type=positive_int, default=getattr(defaults, name), help=text
        )


def front_search_from_args(args: argparse.Namespace) -> FrontSearch:
    """The :class:`FrontSearch` of parsed :func:`add_front_search_arguments` flags."""
    return FrontSearch(population=args.population, generations=args.generations, verify=args.verify)


def settings_record(settings: Any) -> dict[str, Any]:
    """A study's settings dataclass as one flat JSON-able dict, its :class:`FrontSearch`'s
    fields in its place (the keys of the study's JSON file)."""
    record: dict[str, Any] = {}
    for name, value in asdict(settings).items():
        if isinstance(getattr(settings, name), FrontSearch):
            record.update(value)
        else:
            record[name] = list(value) if isinstance(value, tuple) else value
    return record
