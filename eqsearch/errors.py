"""The error type for bad user input (files, values, settings): one line, exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Iterable


class InputError(ValueError):
    """Bad input from the user: a value, file or setting that cannot be used as given.

    The command line reports it as one ``error: ...`` line with exit code 2. It is a
    ``ValueError``, so code that catches ``ValueError`` keeps working.
    """


_WARNED: set[str] = set()


def warn(message: str) -> None:
    """Tell the user, once per process, about something that did not stop the command (one
    ``warning: ...`` line on stderr)."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    print(f"warning: {message}", file=sys.stderr, flush=True)


def require_positive_integers(owner: object, names: Iterable[str], prefix: str = "") -> None:
    """Refuse the first of ``owner``'s attributes ``names`` that is not an integer >= 1 (a
    ``bool`` is not one), as ``<prefix><name> must be a positive integer; got <value>``.

    Raises:
        InputError: naming the attribute and its value.
    """
    for name in names:
        value = getattr(owner, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{prefix}{name} must be a positive integer; got {value!r}")
