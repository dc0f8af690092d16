"""One reading of numbers, for every file and flag: plain ASCII digits, finite, bounded."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from eqsearch.errors import InputError

MAX_INTEGER = 2**63 - 1
"""Largest magnitude of an integer read (a seed, a count, an index, a value in a file)."""

MAX_NUMBER_CHARACTERS = 400
"""Longest number text read; a longer one is refused before it is converted."""

_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_NON_FINITE = frozenset({"nan", "inf", "infinity"})


class NumberError(InputError):
    """A number that is not read: ``reason`` says why without naming where it came from."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} {reason}" if what else reason)
        self.reason = reason


def shown_text(text: object) -> str:
    """The text of a number for a message, shortened where it is long."""
    value = str(text)
    if len(value) <= 40:
        return repr(value)
    return f"{value[:12]!r}… ({len(value)} characters)"


def parse_integer(text: str, *, what: str = "") -> int:
    """An integer written in plain ASCII digits (an optional sign), within ±:data:`MAX_INTEGER`.

    Unicode digits (``²``, ``٣``), underscores, spaces, exponents and fractions are refused, and
    so is a number too long to be converted (Python's 4,300-digit limit is never reached).

    Raises:
        NumberError: naming ``what`` (an InputError).
    """
    if not isinstance(text, str) or not _INTEGER.fullmatch(text):
        raise NumberError(what, f"expected an integer; got {shown_text(text)}")
    if len(text.lstrip("+-").lstrip("0")) > len(str(MAX_INTEGER)) or abs(int(text)) > MAX_INTEGER:
        raise NumberError(
            what, f"is out of range (integers up to ±{MAX_INTEGER:,}); got {shown_text(text)}"
        )
    return int(text)


def parse_number(text: str, *, what: str = "") -> float:
    """A finite number in plain ASCII digits (``0.5``, ``-3``, ``1e-4``).

    ``nan``, ``inf``, a number that overflows to infinity, Unicode digits, underscores and
    text longer than :data:`MAX_NUMBER_CHARACTERS` are refused.

    Raises:
        NumberError: naming ``what`` (an InputError).
    """
    if isinstance(text, str) and text.strip().lstrip("+-").lower() in _NON_FINITE:
        raise NumberError(what, f"must be a finite number; got {text}")
    if not isinstance(text, str) or not _NUMBER.fullmatch(text):
        raise NumberError(what, f"expected a number; got {shown_text(text)}")
    if len(text) > MAX_NUMBER_CHARACTERS:
        raise NumberError(what, f"is too long to be a number; got {shown_text(text)}")
    value = float(text)
    if not math.isfinite(value):
        raise NumberError(what, f"must be a finite number; got {shown_text(text)}, which overflows")
    return value


class _Refused:
    """A number the JSON reader refused, kept until the key that holds it is known."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _refusing(parse: Any) -> Any:
    def read(text: str) -> Any:
        try:
            return parse(text)
        except NumberError as error:
            return _Refused(error.reason)

    return read


_json_integer = _refusing(parse_integer)
_json_float = _refusing(parse_number)


def _json_constant(text: str) -> _Refused:
    return _Refused(f"must be finite; got {text}")


def _first_refused(value: Any, where: str) -> tuple[str, _Refused] | None:
    """The place and reason of the first refused number in a value (arrays searched too)."""
    if isinstance(value, _Refused):
        return where, value
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_refused(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def _raise_refused(found: tuple[str, _Refused] | None) -> None:
    if found is not None:
        where, refused = found
        raise NumberError(where, refused.reason)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InputError(f"the key {key!r} appears twice in one object")
        _raise_refused(_first_refused(value, repr(key)))
        result[key] = value
    return result


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` that reads every number with :func:`parse_integer` and
    :func:`parse_number` and refuses ``NaN``/``Infinity`` and an object with a repeated key;
    a refused number is named by the key that holds it (``'lr' must be finite; got NaN``).

    Raises:
        InputError: a number or key as above (malformed JSON raises ``json.JSONDecodeError``).
    """
    value = json.loads(
        text,
        parse_int=_json_integer,
        parse_float=_json_float,
        parse_constant=_json_constant,
        object_pairs_hook=_unique_keys,
    )
    _raise_refused(_first_refused(value, "a number"))
    return value
