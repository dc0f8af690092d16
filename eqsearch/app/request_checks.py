"""Checks that the commands' request dataclasses share; each error names the field it concerns."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError
from eqsearch.numbers import NumberError, parse_number


def check_choice(value: Any, allowed: Iterable[Any], field: str) -> None:
    """Refuse ``value`` unless it is one of ``allowed``.

    Raises:
        InputError: naming ``field`` and the allowed values.
    """
    options = tuple(allowed)
    if value not in options:
        names = ", ".join(str(option) for option in options)
        raise InputError(f"{{field}} must be one of {names}; got {value!r}", field=field)


def check_positive(value: Any, field: str, *, optional: bool = True) -> None:
    """Refuse anything but an integer >= 1 (None too, unless ``optional``).

    Raises:
        InputError: naming ``field`` and the value.
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{{field}} must be a positive integer; got {value!r}", field=field)


def percentage(value: float | str, field: str) -> float:
    """``value`` (a number or its text) as a percentage in 0..100.

    Raises:
        InputError: naming ``field``: not a number, not finite, or out of range.
    """
    number = value
    if isinstance(value, str):
        try:
            number = parse_number(value)
        except NumberError:
            number = float("nan")
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        number = float("nan")
    if not 0.0 <= float(number) <= 100.0:
        raise InputError(f"{{field}} must be a percentage in 0..100; got {value}", field=field)
    return float(number)


def check_output_path(path: str | Path, *, kind: str, force: bool, field: str) -> Path:
    """:func:`eqsearch.files.check_output_file` on the output named by the request's
    ``field``, whose errors then name that field (the command line: its flag).

    Raises:
        InputError: as :func:`eqsearch.files.check_output_file` does, with ``field`` set.
    """
    from eqsearch.files import check_output_file

    try:
        return check_output_file(path, kind=kind, force=force, flag="{field}")
    except InputError as error:
        raise InputError(str(error), field=field) from None


def check_checkpoint_file(path: str | Path, field: str = "supernet") -> Path:
    """``path`` where it is a file (a checkpoint is read later, once).

    Raises:
        InputError: naming ``field``: no such file.
    """
    location = Path(path)
    if not location.is_file():
        raise InputError(f"checkpoint not found: {location}", field=field)
    return location


def keyword_arguments(source: object, target: Callable[..., Any]) -> dict[str, Any]:
    """``source``'s attributes named as ``target``'s keyword parameters (a class's fields, a
    function's options), for ``target(**keyword_arguments(request, target), other=...)``:
    a request passes on what it names alike without repeating each name."""
    names = inspect.signature(target).parameters
    return {name: getattr(source, name) for name in names if hasattr(source, name)}
