"""The error type for bad user input (files, values, settings): one line, exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Iterable


class InputError(ValueError):
    """Bad input from the user: a value, file or setting that cannot be used as given.

    The command line reports it as one ``error: ...`` line with exit code 2. It is a
    ``ValueError``, so code that catches ``ValueError`` keeps working.

    An error about one field of a request or config names it: ``field`` is the field's
    name and ``{field}`` in the message stands where it is named, so that each caller can
    call the field its own way (:meth:`naming`: the command line names its flag).

    >>> error = InputError("{field} must be at least 2; got 1", field="population")
    >>> str(error), error.naming("--population")
    ('population must be at least 2; got 1', '--population must be at least 2; got 1')
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.template = message
        super().__init__(message.replace("{field}", field) if field is not None else message)

    def naming(self, name: str) -> str:
        """The message with the field called ``name`` (its text unchanged without a field)."""
        if self.field is None:
            return str(self)
        return self.template.replace("{field}", name)


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
