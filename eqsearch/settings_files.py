"""Settings files in JSON or YAML, read alike: one number parser, no repeated key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from eqsearch.errors import InputError, warn
from eqsearch.files import MAX_JSON_BYTES, parse_json, read_bytes
from eqsearch.numbers import NumberError, parse_integer, parse_number

YAML_SUFFIXES = (".yaml", ".yml")
"""File name endings read as YAML; every other file is read as JSON."""

_NON_FINITE_YAML = frozenset({".nan", ".inf"})
# PyYAML follows YAML 1.1, where ``1e-4`` (no dot) is text; here it is the number it looks like.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")
_TAG = "tag:yaml.org,2002:"


class _Unplaced(NumberError):
    """A refused number whose key is not known yet (the mapping that holds it names it)."""


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no types here
    """Plain values, lists and mappings only: no tag constructs an object, no alias, every
    number read by :mod:`eqsearch.numbers`, every key text and given once."""

    yaml_constructors: dict[Any, Any] = {}  # noqa: RUF012 -- PyYAML's class-level registry

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise InputError(
                f"the alias *{event.anchor} (line {event.start_mark.line + 1}) is not read; "
                "write the value out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise InputError(f"expected a mapping (line {node.start_mark.line + 1})")
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise InputError(
                    f"keys must be text; got {key!r} (line {key_node.start_mark.line + 1})"
                )
            if key in mapping:
                raise InputError(f"the key {key!r} appears twice in one mapping")
            try:
                mapping[key] = self.construct_object(value_node, deep=True)
            except _Unplaced as error:
                raise NumberError(repr(key), error.reason) from None
        return mapping

    def construct_unknown(self, node: Any) -> Any:
        tag = node.tag.replace(_TAG, "!!")
        raise InputError(
            f"the tag {tag} (line {node.start_mark.line + 1}) is not read; a settings file "
            "holds plain values, lists and mappings"
        )


def _read_integer(loader: _StrictLoader, node: Any) -> int:
    try:
        return parse_integer(loader.construct_scalar(node))
    except NumberError as error:
        raise _Unplaced("", error.reason) from None


def _read_number(loader: _StrictLoader, node: Any) -> float:
    text = loader.construct_scalar(node)
    if text.lower().lstrip("+-") in _NON_FINITE_YAML:
        raise _Unplaced("", f"must be finite; got {text}")
    try:
        return parse_number(text)
    except NumberError as error:
        raise _Unplaced("", error.reason) from None


def _read_map(loader: _StrictLoader, node: Any) -> dict[str, Any]:
    return loader.construct_mapping(node, deep=True)


def _read_list(loader: _StrictLoader, node: Any) -> list[Any]:
    return [loader.construct_object(child, deep=True) for child in node.value]


for _tag, _constructor in (
    ("null", yaml.SafeLoader.construct_yaml_null),
    ("bool", yaml.SafeLoader.construct_yaml_bool),
    ("int", _read_integer),
    ("float", _read_number),
    ("str", yaml.SafeLoader.construct_yaml_str),
    ("timestamp", yaml.SafeLoader.construct_yaml_str),  # a date is its text here
    ("seq", _read_list),
    ("map", _read_map),
):
    _StrictLoader.add_constructor(_TAG + _tag, _constructor)
_StrictLoader.add_constructor(None, _StrictLoader.construct_unknown)
_StrictLoader.add_implicit_resolver(_TAG + "float", _EXPONENT_FLOAT, list("-+0123456789."))


def parse_yaml(text: str | bytes, *, what: str = "YAML") -> Any:
    """One YAML document read safely and as strictly as :func:`eqsearch.files.parse_json`.

    Numbers go through :func:`eqsearch.numbers.parse_integer` / ``parse_number`` (``.nan``,
    ``.inf``, ``0x10``, ``1_000`` and overflowing numbers refused, named by their key); a
    mapping with a repeated key, a key that is not text, an alias and any tag that would
    construct an object (``!!python/...``, ``!!binary``, ``!!set``) are refused; ``1e-4``
    is a number.

    Raises:
        InputError: one line naming ``what`` and the reason.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # the strict loader above, never a full one
    except InputError as error:
        raise InputError(f"{what}: {error}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"
        reason = " ".join(part for part in (error.context, error.problem) if part)
        raise InputError(f"{what} is not YAML: {reason}{where}") from None
    except yaml.YAMLError as error:
        first = next((line for line in str(error).splitlines() if line.strip()), "")
        raise InputError(f"{what} is not YAML: {first.strip()}") from None
    except RecursionError:
        raise InputError(f"{what} is nested too deeply to be an eqsearch file") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{what} is not UTF-8 text ({error.reason})") from None


def read_settings(path: str | Path, *, limit: int = MAX_JSON_BYTES, what: str = "file") -> Any:
    """The document in a JSON file, or a YAML one where the name ends in ``.yaml``/``.yml``,
    of at most ``limit`` bytes (see :func:`eqsearch.files.read_bytes`).

    Raises:
        InputError: the file cannot be read, is not JSON/YAML, or holds a refused value.
    """
    data = read_bytes(path, limit=limit, what=what)
    if Path(path).suffix.lower() in YAML_SUFFIXES:
        return parse_yaml(data, what=f"{what} {path}")
    return parse_json(data, what=f"{what} {path}")


def keys_as_fields(
    data: Mapping[str, Any], fields_by_key: Mapping[str, str], *, what: str, quiet: bool = False
) -> dict[str, Any]:
    """``data``, a settings file's mapping keyed as the command line names its settings, keyed
    by the fields ``fields_by_key`` maps those keys to. A field's own name, where it differs
    from its key (an older file's), is read with one warning naming the key (none when
    ``quiet``); keys of neither kind are kept for the reader to name.

    Raises:
        InputError: naming ``what``: one setting given under both its key and its field name.
    """
    keys_by_field = {field: key for key, field in fields_by_key.items() if key != field}
    values: dict[str, Any] = {}
    for key, value in data.items():
        field = fields_by_key.get(key, key)
        if key in keys_by_field and key not in fields_by_key and not quiet:
            warn(f"{what}: the key {key} is now {keys_by_field[key]}")
        if field in values:
            raise InputError(
                f"{what}: {key} is given twice (also as {keys_by_field.get(field, field)})"
            )
        values[field] = value
    return values
