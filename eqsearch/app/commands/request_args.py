"""A command's request built from its parsed arguments: each field from the option of its name."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any, TypeVar

Request = TypeVar("Request")


def request_from(args: argparse.Namespace, request_type: type[Request], **values: Any) -> Request:
    """``request_type`` with each field read from the parsed option of the same name, where
    the command has one; ``values`` give the others (or override).

    Raises:
        InputError: the request's own validation refuses a value (naming the field).
    """
    names = {item.name for item in fields(request_type)}  # type: ignore[arg-type]
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return request_type(**{**given, **values})
