"""A command's request built from its parsed arguments: each field from the option of its name."""

from __future__ import annotations

import argparse
from typing import Any, TypeVar

from eqsearch.app.request_checks import keyword_arguments

Request = TypeVar("Request")


def request_from(args: argparse.Namespace, request_type: type[Request], **values: Any) -> Request:
    """``request_type`` with each field read from the parsed option of the same name, where
    the command has one; ``values`` give the others (or override).

    Raises:
        InputError: the request's own validation refuses a value (naming the field).
    """
    return request_type(**{**keyword_arguments(args, request_type), **values})
