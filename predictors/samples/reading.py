"""Reading a samples file for fitting: its configs and accuracies, train/held-out splits."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.files import parse_json, read_text
from eqsearch.space import ElasticSpace, SubnetConfig
from predictors.samples.rows import check_accuracy

REQUIRED_COLUMNS = ("config", "accuracy")


def load_samples(
    path: str | Path, space: ElasticSpace
) -> tuple[list[SubnetConfig], npt.NDArray[np.float64]]:
    """Configs and measured accuracies of a samples file (``config`` and ``accuracy`` columns).

    Raises:
        InputError: missing file or columns, a row whose config is not JSON of a config of
            ``space`` or whose accuracy is not a percentage in 0..100, or a config listed
            twice (two runs wrote into one file) — naming the rows.
    """
    location = Path(path)
    text = read_text(location, what="samples file")
    configs: list[SubnetConfig] = []
    accuracies: list[float] = []
    first_row: dict[str, int] = {}
    with io.StringIO(text, newline="") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        missing = [column for column in REQUIRED_COLUMNS if column not in columns]
        if missing:
            raise InputError(
                f"{location} lacks the column(s) {', '.join(missing)}; a samples file needs "
                f"{', '.join(REQUIRED_COLUMNS)} (found: {', '.join(columns) or 'no header'})"
            )
        for number, row in enumerate(reader, start=1):
            where = f"{location} row {number} (line {reader.line_num})"
            config_text, value = row.get("config"), row.get("accuracy")
            if config_text is None or value is None:
                raise InputError(f"{where}: the row has fewer fields than the header")
            accuracy = check_accuracy(value, where)
            try:
                config = space.validate(SubnetConfig.from_dict(parse_json(config_text)))
            except (ValueError, TypeError, AttributeError, KeyError) as error:
                raise InputError(f"{where}: {error}") from None
            key = config.to_json()
            if key in first_row:
                raise InputError(
                    f"{where} holds the same config as row {first_row[key]}; a samples file "
                    "lists each config once (did two runs write into it?)"
                )
            first_row[key] = number
            configs.append(config)
            accuracies.append(accuracy)
    if not configs:
        raise InputError(f"{location} holds no samples")
    return configs, np.asarray(accuracies, dtype=np.float64)


def split_indices(
    n: int, *, holdout: float = 0.2, seed: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Seeded (train, held-out) row indices; ``holdout`` is the held-out fraction."""
    if not 0 < holdout < 1:
        raise InputError(f"holdout must be a fraction in (0, 1); got {holdout}")
    n_test = max(1, round(holdout * n))
    if n - n_test < 2:
        raise InputError(f"{n} samples are too few to hold out {holdout:.0%} and still fit")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def kfold_indices(n: int, folds: int, *, seed: int = 0) -> list[npt.NDArray[np.int64]]:
    """``folds`` seeded, disjoint test-index sets covering ``range(n)``."""
    if folds < 2 or folds > n:
        raise InputError(f"folds must be in 2..{n}; got {folds}")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


def read_sample_frame(path: str | Path) -> Any:
    """The samples file as a pandas DataFrame (for studies and notebooks)."""
    import pandas as pd

    return pd.read_csv(path, converters={"config": json.loads})
