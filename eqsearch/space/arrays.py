"""Array and tuple types shared by the space's modules."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
ArchChoices = tuple[tuple[str, int], ...]
FormsMode = Literal["global", "per_layer"]
