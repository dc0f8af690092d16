"""A latency table made by hand for a test space: each layer's time from its MACs."""

from __future__ import annotations

from eqsearch.latency import LatencyTable, MeasurementKey
from eqsearch.latency.table import LayerUnit
from eqsearch.space import ALL_FORMS, ElasticSpace

KEY = MeasurementKey("Test CPU", 2, "onnxruntime", "1.0", 2, 1, 32)


def _classes(space: ElasticSpace) -> tuple[tuple[str, ...], dict]:
    """Two classes: 8-bit activations (full) and narrower ones (a clip)."""
    entries = {
        (w, a, str(form)): 0 if a == 8 else 1
        for w in (*space.w_bits, 8)
        for a in (*space.a_bits, 8)
        for form in ALL_FORMS
    }
    return ("full", "clip"), {"dense": entries}


def latency_table(space: ElasticSpace, *, clip_ratio: float = 1.5) -> LatencyTable:
    """Each layer costs (its MACs / 1e6) ms, ×1.5 with a narrow activation grid."""
    batch = space.sample(0, 400)
    classes, class_map = _classes(space)
    units = []
    for column, layer in enumerate(space.layers):
        running = batch.active[:, column]
        shapes = sorted(
            {
                (int(p), int(m), int(i))
                for p, m, i in zip(
                    batch.params[running, column],
                    batch.macs[running, column],
                    batch.inputs[running, column],
                    strict=True,
                )
            }
        )
        units.append(
            LayerUnit(
                layer.name,
                "dense",
                tuple(shapes),
                tuple(m / 1e6 for _, m, _ in shapes),
                (1.0, clip_ratio),
            )
        )
    return LatencyTable(KEY, space.fingerprint, classes, class_map, tuple(units), 0.25, 2.0)
