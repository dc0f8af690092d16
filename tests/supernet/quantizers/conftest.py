"""Fixtures shared by the quantizer tests."""

from __future__ import annotations

import pytest

from supernet.quantizers import integer_conv


@pytest.fixture
def integer_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets a 1 for every call of the integer convolution (which still runs)."""
    calls: list[int] = []
    convolve = integer_conv.integer_conv2d
    monkeypatch.setattr(integer_conv, "integer_conv2d", lambda *a: calls.append(1) or convolve(*a))
    return calls
