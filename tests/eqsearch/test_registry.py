"""The registry helper's error for an unknown name: the default wording and a template."""

from __future__ import annotations

import pytest

from eqsearch.errors import InputError
from eqsearch.registry import UNKNOWN_REGISTERED, Registry


def test_an_unknown_name_is_refused_in_the_registry_s_own_words() -> None:
    shapes: Registry[int] = Registry("shape")
    shapes.add("square", 4)
    shapes.add("triangle", 3)
    with pytest.raises(InputError, match=r"^shape must be one of square, triangle; got 'circle'$"):
        shapes.lookup("circle")
    named: Registry[int] = Registry("shape", unknown=UNKNOWN_REGISTERED)
    named.add("square", 4)
    with pytest.raises(InputError, match=r"^unknown shape 'circle'; registered: square$"):
        named.lookup("circle")
    with pytest.raises(InputError, match=r"^unknown --shape 3; registered: $"):
        named.lookup(3, "--shape", where=lambda sides: sides == 3)
