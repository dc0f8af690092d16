"""Build a measured latency table of a supernet's space on a runtime (no trained weights needed)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from eqsearch import costs
from eqsearch.errors import InputError
from eqsearch.latency.fingerprint import machine_key
from eqsearch.latency.kernels import KernelTable
from eqsearch.latency.settings import LatencySettings
from eqsearch.latency.table import LatencyTable, LayerUnit
from eqsearch.space import ALL_FORMS, ConfigBatch, ElasticSpace, LayerChoice, SubnetConfig
from supernet.deployment.runtimes.attribution import layer_profile
from supernet.deployment.runtimes.base import Runtime, RuntimeSession
from supernet.deployment.runtimes.design import (
    class_mapping,
    class_sweep,
    layer_roles,
    shape_keys,
    shape_sweep,
)
from supernet.deployment.runtimes.exporting import (
    Extractions,
    RuntimeGraph,
    input_size,
    random_images,
    runtime_graph,
)
from supernet.deployment.runtimes.timing import interleaved_timing
from supernet.networks.elastic import Supernet

Progress = Callable[[str, int, int], None]
FloatArray = npt.NDArray[np.float64]
REFERENCE_BITS = 8
CHUNK = 64
"""Sessions held at once while timing: all held-out subnets in one set of interleaved rounds
(timed in two sets of 24, OpenVINO's second set measured 2× the first on the busy machine;
memory: an ImageNet-size network takes ~50 MB a session)."""


def _export_all(
    supernet: Supernet,
    configs: Sequence[SubnetConfig],
    runtime: Runtime,
    phase: str,
    progress: Progress | None,
) -> list[RuntimeGraph]:
    graphs = []
    extractions = Extractions(supernet)
    for done, config in enumerate(configs):
        graphs.append(runtime_graph(supernet, config, runtime, extractions=extractions))
        if progress is not None:
            progress(phase, done + 1, len(configs))
    return graphs


def _open(
    runtime: Runtime,
    supernet: Supernet,
    graphs: Sequence[RuntimeGraph],
    settings: LatencySettings,
    *,
    profiling: bool,
) -> list[RuntimeSession]:
    sessions = []
    for graph in graphs:
        images = random_images(supernet, graph.image_size, settings.batch, settings.seed)
        sessions.append(
            runtime.open(graph.model, images, threads=settings.threads, profiling=profiling)
        )
    return sessions


def measure_wall(
    runtime: Runtime,
    supernet: Supernet,
    graphs: Sequence[RuntimeGraph],
    settings: LatencySettings,
    *,
    phase: str = "timing",
    progress: Progress | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Median ms per inference and relative spread of each graph, in interleaved rounds
    (chunks of :data:`CHUNK` sessions at a time)."""
    medians = np.zeros(len(graphs))
    spreads = np.zeros(len(graphs))
    for start in range(0, len(graphs), CHUNK):
        chunk = graphs[start : start + CHUNK]
        sessions = _open(runtime, supernet, chunk, settings, profiling=False)
        try:
            timing = interleaved_timing(sessions, settings.repeats, seed=settings.seed + start)
        finally:
            for session in sessions:
                session.close()
        medians[start : start + len(chunk)] = timing.median_ms
        spreads[start : start + len(chunk)] = timing.spread
        if progress is not None:
            progress(phase, start + len(chunk), len(graphs))
    return medians, spreads


def _profile_layers(
    runtime: Runtime,
    supernet: Supernet,
    graphs: Sequence[RuntimeGraph],
    settings: LatencySettings,
    progress: Progress | None,
) -> list[dict[str, float]]:
    """Per graph, each layer's median ms over interleaved profiled rounds."""
    results: list[dict[str, float]] = []
    for start in range(0, len(graphs), CHUNK):
        chunk = graphs[start : start + CHUNK]
        sessions = _open(runtime, supernet, chunk, settings, profiling=True)
        try:
            for session in sessions:
                session.run()
                session.run()
                session.record()
            rng = np.random.default_rng(settings.seed + start)
            for _ in range(settings.repeats):
                for index in rng.permutation(len(sessions)):
                    # as in the timing: each profiled run follows a run of the same model
                    sessions[index].run(record=False)
                    sessions[index].run()
            for session, graph in zip(sessions, chunk, strict=True):
                medians = layer_profile(session.profile(), graph.owners).median_us
                results.append({layer: value / 1e3 for layer, value in medians.items()})
        finally:
            for session in sessions:
                session.close()
        if progress is not None:
            progress("profiling layers", start + len(chunk), len(graphs))
    return results


def _spearman(x: FloatArray, y: FloatArray) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def build_latency_table(
    supernet: Supernet,
    runtime: Runtime,
    kernels: KernelTable,
    settings: LatencySettings,
    *,
    progress: Progress | None = None,
) -> LatencyTable:
    """Measure ``supernet``'s space on ``runtime`` and return its latency table.

    Designed subnets run every layer at every shape (one bit choice) and every kernel class
    (the largest architecture); each is exported as ``eqsearch export --runtime`` would and
    profiled, and each layer's time is the sum of the nodes the runtime runs for it. A
    layer's time at (shape, class) is its time at the shape × the class's ratio; the sum
    over layers is scaled by the median ratio of measured latency to it over
    ``settings.calibration`` random subnets. ``settings.holdout`` other random whole subnets,
    timed in the same rounds, are predicted to state the table's error; they are not
    fitted on.
    """
    started = time.perf_counter()
    space = supernet.space
    rng = np.random.default_rng(settings.seed)
    roles = layer_roles(supernet)
    classes, class_map = class_mapping(space, roles, kernels)
    bits = REFERENCE_BITS if REFERENCE_BITS in space.w_bits else max(space.w_bits)
    a_bits = REFERENCE_BITS if REFERENCE_BITS in space.a_bits else max(space.a_bits)
    reference = LayerChoice(bits, a_bits, space.forms[0])
    shapes = shape_sweep(space, reference, rng, settings.candidates)
    designed = shapes + class_sweep(space, roles, class_map)
    holdout = (
        list(space.sample(rng, settings.holdout, forms="per_layer")) if settings.holdout else []
    )
    calibration = (
        list(space.sample(settings.seed + 1, settings.calibration, forms="per_layer"))
        if settings.calibration
        else []
    )
    graphs = _export_all(supernet, designed, runtime, "exporting designed subnets", progress)
    layer_ms = _profile_layers(runtime, supernet, graphs, settings, progress)
    wall, spread = measure_wall(
        runtime, supernet, graphs, settings, phase="timing designed subnets", progress=progress
    )
    del graphs
    units = _fit_units(space, roles, classes, class_map, designed, len(shapes), layer_ms)
    table = LatencyTable(
        key=machine_key(
            runtime.name,
            threads=settings.threads,
            batch=settings.batch,
            image_size=input_size(supernet, space.largest()),
        ),
        space_fingerprint=space.fingerprint,
        classes=classes,
        class_map=class_map,
        units=units,
    )
    raw = table.predict(space.batch(designed))
    # The calibration subnets (random per-layer choices, like those a search asks about)
    # are timed in the same interleaved rounds as the held-out ones: OpenVINO ran the same
    # kind of subnets 1.7× slower among the 62 models of those rounds than among the 43 of
    # the designed rounds (ONNX Runtime within a few %), and the ratio must be the one the
    # held-out subnets are timed under. It is fitted on the calibration subnets alone.
    timed_configs = calibration + holdout
    timed_wall = np.zeros(0)
    timed_spread = np.zeros(0)
    if timed_configs:
        timed_graphs = _export_all(
            supernet, timed_configs, runtime, "exporting calibration and held-out subnets", progress
        )
        timed_wall, timed_spread = measure_wall(
            runtime,
            supernet,
            timed_graphs,
            settings,
            phase="timing calibration and held-out subnets",
            progress=progress,
        )
        del timed_graphs
    calibration_wall = timed_wall[: len(calibration)]
    calibration_raw = table.predict(space.batch(calibration)) if calibration else raw[:0]
    if calibration:
        intercept, slope = _calibrate(calibration_raw, calibration_wall)
    else:
        intercept, slope = _calibrate(raw, wall)
    validation: dict[str, float] = {
        "designed": float(len(designed)),
        "calibration": float(len(calibration)),
        "designed_median_abs_error": float(np.median(np.abs(slope * raw - wall) / wall)),
    }
    rows: list[dict[str, object]] = []
    if holdout:
        measured = timed_wall[len(calibration) :]
        predicted = intercept + slope * table.predict(space.batch(holdout))
        validation.update(_validation(space, holdout, predicted, measured))
        rows = [
            {"config": config.to_dict(), "measured_ms": float(m), "predicted_ms": float(p)}
            for config, m, p in zip(holdout, measured, predicted, strict=True)
        ]
    holdout_spread = timed_spread
    return LatencyTable(
        key=table.key,
        space_fingerprint=table.space_fingerprint,
        classes=classes,
        class_map=class_map,
        units=units,
        intercept_ms=intercept,
        slope=slope,
        spread=float(np.median(np.concatenate([spread, holdout_spread]))),
        validation=validation,
        holdout=tuple(rows),
        designed=tuple(
            {
                "config": config.to_dict(),
                "measured_ms": float(m),
                "layers_ms": float(r),
                "calibration": index >= len(designed),
            }
            for index, (config, m, r) in enumerate(
                zip(
                    designed + calibration,
                    np.concatenate([wall, calibration_wall]),
                    np.concatenate([raw, calibration_raw]),
                    strict=True,
                )
            )
        ),
        seconds=time.perf_counter() - started,
    )


def _validation(
    space: ElasticSpace,
    configs: Sequence[SubnetConfig],
    predicted: FloatArray,
    measured: FloatArray,
) -> dict[str, float]:
    relative = np.abs(predicted - measured) / measured
    batch = space.batch(configs)
    result = {
        "n": float(len(configs)),
        "median_abs_error": float(np.median(relative)),
        "p90_abs_error": float(np.percentile(relative, 90)),
        "spearman": _spearman(predicted, measured),
        "bitops_spearman": _spearman(np.asarray(costs.bitops(space, batch)), measured),
        "macs_spearman": _spearman(np.asarray(costs.macs(space, batch)), measured),
    }
    # A rank correlation is undefined on fewer than 3 subnets or constant values: left out
    # rather than stored as NaN, which no eqsearch JSON file may hold.
    return {name: value for name, value in result.items() if np.isfinite(value)}


def _calibrate(raw: FloatArray, wall: FloatArray) -> tuple[float, float]:
    """``wall ≈ slope · raw``: the median ratio of subnets' unprofiled latency to their
    summed profiled layer times.

    Profiling slows every node by a similar share, so the ratio is nearly the same for
    subnets alike (0.75–0.86 for 80 % of 50 held-out ``oqa_mbv3`` subnets at 224 on ONNX
    Runtime); a fitted intercept and slope were not: the designed subnets cluster at the
    largest architecture (the class sweep), where pairwise slopes are noise.
    """
    ratios = wall / np.maximum(raw, 1e-12)
    return 0.0, float(np.median(ratios))


def _fit_units(
    space: ElasticSpace,
    roles: Sequence[str],
    classes: Sequence[str],
    class_map: dict[str, dict[tuple[int, int, str], int]],
    designed: Sequence[SubnetConfig],
    n_shape_configs: int,
    layer_ms: Sequence[dict[str, float]],
) -> tuple[LayerUnit, ...]:
    """Per layer: the median time at each shape (the shape sweep, reference choice) and each
    class's median time over the reference class's, both at the largest architecture (the
    first designed subnet and the class sweep)."""
    keys = shape_keys(space, designed)
    batch = space.batch(designed)
    largest = [0, *range(n_shape_configs, len(designed))]
    reference = [
        class_map[roles[column]][_choice_key(batch, 0, column)] for column in range(space.n_layers)
    ]
    per_layer: list[tuple[dict[tuple[int, int, int], list[float]], dict[int, list[float]]]] = []
    for column, layer in enumerate(space.layers):
        shapes: dict[tuple[int, int, int], list[float]] = {}
        for row in range(n_shape_configs):
            value = layer_ms[row].get(layer.name)
            if batch.active[row, column] and value is not None:
                shapes.setdefault(_key(keys, row, column), []).append(value)
        by_class: dict[int, list[float]] = {}
        for row in largest:
            value = layer_ms[row].get(layer.name)
            if batch.active[row, column] and value is not None:
                index = class_map[roles[column]][_choice_key(batch, row, column)]
                by_class.setdefault(index, []).append(value)
        if not shapes or reference[column] not in by_class:
            raise InputError(f"layer {layer.name!r} never ran in the designed subnets")
        per_layer.append((shapes, by_class))
    pooled: dict[tuple[str, int], list[float]] = {}
    ratios: list[dict[int, float]] = []
    for column, (_, by_class) in enumerate(per_layer):
        base = float(np.median(by_class[reference[column]]))
        ratio = {
            index: float(np.median(values)) / base if base > 0 else 1.0
            for index, values in by_class.items()
        }
        ratio[reference[column]] = 1.0
        for index, value in ratio.items():
            pooled.setdefault((roles[column], index), []).append(value)
        ratios.append(ratio)
    units = []
    for column, ((shapes, by_class), ratio) in enumerate(zip(per_layer, ratios, strict=True)):
        largest_key = _key(keys, 0, column)
        times = {key: float(np.median(values)) for key, values in shapes.items()}
        times[largest_key] = float(np.median(by_class[reference[column]]))
        ratio_row: list[float] = []
        for index in range(len(classes)):
            if index in ratio:
                ratio_row.append(ratio[index])
            elif (roles[column], index) in pooled:  # a class this layer never took here
                ratio_row.append(float(np.median(pooled[(roles[column], index)])))
            else:
                ratio_row.append(1.0)
        ordered = sorted(times)
        units.append(
            LayerUnit(
                space.layers[column].name,
                roles[column],
                tuple(ordered),
                tuple(times[key] for key in ordered),
                tuple(ratio_row),
            )
        )
    return tuple(units)


def _key(keys: npt.NDArray[np.int64], row: int, column: int) -> tuple[int, int, int]:
    return (int(keys[row, column, 0]), int(keys[row, column, 1]), int(keys[row, column, 2]))


def _choice_key(batch: ConfigBatch, row: int, column: int) -> tuple[int, int, str]:
    return (
        int(batch.w_bits[row, column]),
        int(batch.a_bits[row, column]),
        str(ALL_FORMS[int(batch.form_index[row, column])]),
    )
