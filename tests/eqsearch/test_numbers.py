"""The one number parser of files and flags: plain ASCII digits, finite, bounded."""

from __future__ import annotations

import argparse
import json

import pytest

from eqsearch.app.commands.common import finite_float, parse_option, positive_int, seed_int
from eqsearch.errors import InputError
from eqsearch.files import parse_json
from eqsearch.numbers import MAX_INTEGER, loads_json, parse_integer, parse_number


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("17", 17), ("-3", -3), ("+5", 5), ("007", 7), (str(MAX_INTEGER), MAX_INTEGER)],
)
def test_plain_integers_are_read(text: str, value: int) -> None:
    assert parse_integer(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("²", "expected an integer; got '²'"),
        ("٣٠", "expected an integer; got '٣٠'"),
        ("1_000", "expected an integer"),
        (" 5", "expected an integer"),
        ("1e3", "expected an integer"),
        ("", "expected an integer"),
        (str(MAX_INTEGER + 1), "is out of range"),
        ("9" * 5000, "is out of range"),  # past Python's 4,300-digit limit: never converted
        ("-" + "9" * 20, "is out of range"),
    ],
)
def test_other_integers_are_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_integer(text, what="--count")
    assert str(caught.value).startswith("--count ") and "\n" not in str(caught.value)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("text", "value"), [("0.5", 0.5), ("-3", -3.0), ("1e-4", 1e-4), (".5", 0.5), ("2.", 2.0)]
)
def test_plain_numbers_are_read(text: str, value: float) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nan", "must be a finite number; got nan"),
        ("-Infinity", "must be a finite number; got -Infinity"),
        ("1e400", "which overflows"),
        ("9" * 350 + ".5", "which overflows"),
        ("1" * 500, "is too long to be a number"),
        ("١٫٥", "expected a number"),
        ("1_0.5", "expected a number"),
        ("0x10", "expected a number"),
    ],
)
def test_other_numbers_are_refused(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_number(text)


def test_the_command_line_types_use_the_parser() -> None:
    for parse, text, message in (
        (positive_int, "٣", "expected an integer; got '٣'"),
        (positive_int, "9" * 5000, "is out of range"),
        (seed_int, "²", r"a seed must be in 0\.\.2\*\*63-1"),
        (finite_float, "1e999", "which overflows"),
        (finite_float, "three", "expected a number; got 'three'"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)
    assert positive_int("12") == 12 and finite_float("0.25") == 0.25


def test_json_numbers_are_finite_and_bounded_and_keys_unique() -> None:
    assert loads_json('{"a": [1, -2.5e3, 0.1], "b": {"c": 9223372036854775807}}') == {
        "a": [1, -2500.0, 0.1],
        "b": {"c": MAX_INTEGER},
    }
    for text, message in (
        ('{"lr": NaN}', "must be finite; got NaN"),
        ("[Infinity]", "must be finite; got Infinity"),
        ('{"x": ' + "7" * 5000 + "}", "is out of range"),
        ('{"x": 1e400}', "which overflows"),
        ('{"configs": [1], "configs": []}', "the key 'configs' appears twice"),
    ):
        with pytest.raises(InputError, match=message):
            loads_json(text)
    # the file reader names the file in the same single line
    with pytest.raises(InputError, match=r"^front\.json: 'x' must be finite; got NaN$"):
        parse_json('{"x": NaN}', what="front.json")
    with pytest.raises(InputError, match=r"^'a'\[1\] must be finite; got Infinity$"):
        loads_json('{"a": [0, Infinity]}')
    # malformed JSON is still the decoder's error
    with pytest.raises(json.JSONDecodeError):
        loads_json("{")


def test_option_values_are_read_by_the_same_parser() -> None:
    assert parse_option("alpha=0.5") == ("alpha", 0.5)
    assert parse_option("objective=ranking") == ("objective", "ranking")
    assert parse_option("alpha=nan") == ("alpha", "nan")  # not JSON: the backend refuses it
    for text, message in (
        ("alpha=NaN", "--option alpha=NaN: a number must be finite; got NaN"),
        ("width=" + "1" * 31, "is out of range"),
    ):
        with pytest.raises(InputError, match=message):
            parse_option(text)
