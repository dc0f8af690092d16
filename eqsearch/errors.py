"""The error type for bad user input (files, values, settings): one line, exit code 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: a value, file or setting that cannot be used as given.

    The command line reports it as one ``error: ...`` line with exit code 2. It is a
    ``ValueError``, so code that catches ``ValueError`` keeps working.
    """
