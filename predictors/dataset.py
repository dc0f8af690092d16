"""<config, accuracy> sample files: spread sampling, resumable sharded runs, loading, splits."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from eqsearch import costs
from eqsearch.errors import InputError
from eqsearch.files import (
    atomic_write_text,
    check_output_file,
    exclusive_writer,
    file_sha256,
    parse_json,
    read_json,
    read_text,
    sniff_kind,
)
from eqsearch.launcher import launch_environment
from eqsearch.numbers import NumberError, parse_integer, parse_number, shown_text
from eqsearch.oracle import AccuracyOracle
from eqsearch.resources import check_memory, configs_memory_bytes
from eqsearch.space import ALL_FORMS, ConfigBatch, ElasticSpace, SubnetConfig

SAMPLE_COLUMNS = ("index", "config", "w_bits", "a_bits", "bitops", "w_comp", "accuracy", "seconds")
"""Columns of a samples file: position in the seeded draw, config JSON, average weight and
activation bits, BitOPs, W-Comp, measured accuracy (%), seconds the oracle took."""

REQUIRED_COLUMNS = ("config", "accuracy")
STRATEGIES = ("spread", "uniform")
SCORING_SPLITS = ("holdout", "test")
"""The images a sample is scored on: training images held out, or the test split."""
FORM_DRAWS = ("global", "per_layer")
DRAW_CHUNK = 256
"""Configs are drawn in chunks of this size, so the first N of the stream do not depend on N."""

_SHARD_NAME = re.compile(r"^(?P<stem>.+)\.shard-(?P<index>\d+)-of-(?P<count>\d+)$")


@dataclass(frozen=True)
class SamplingConfig:
    """Which subnets a samples file holds.

    Args:
        n: number of distinct subnets over all shards.
        seed: seeds the draw; the same seed gives the same configs in the same order.
        strategy: ``"spread"`` (average-bit targets uniform over the space's range, per-layer
            bits drawn around them) or ``"uniform"`` (each layer's bits uniform, independently).
        forms: ``"global"`` (one form per subnet) or ``"per_layer"``.
        shard: ``(i, count)``: this process evaluates rows ``i, i+count, ...``.
    """

    n: int
    seed: int = 0
    strategy: str = "spread"
    forms: str = "global"
    shard: tuple[int, int] = (0, 1)

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise InputError(f"SamplingConfig.n must be a positive integer; got {self.n!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"SamplingConfig.seed must be an integer; got {self.seed!r}")
        if self.strategy not in STRATEGIES:
            raise InputError(
                f"SamplingConfig.strategy must be one of {', '.join(STRATEGIES)}; "
                f"got {self.strategy!r}"
            )
        if self.forms not in FORM_DRAWS:
            raise InputError(
                f"SamplingConfig.forms must be one of {', '.join(FORM_DRAWS)}; got {self.forms!r}"
            )
        index, count = self.shard
        if count < 1 or not 0 <= index < count:
            raise InputError(
                f"SamplingConfig.shard must be (i, n) with 0 <= i < n; got {self.shard!r}"
            )


@dataclass(frozen=True)
class SampleSource:
    """What measured the rows of a samples file: the supernet (by content) and the scoring.

    Args:
        supernet_sha256: SHA-256 of the checkpoint file (another epoch is another supernet).
        supernet: the checkpoint's path when sampled (for messages only).
        split, bn_images, holdout, val_images: the scoring images (see
            ``eqsearch.measure.sample_subnets``).
    """

    supernet_sha256: str
    supernet: str = ""
    split: str = "holdout"
    bn_images: int | None = None
    holdout: int | None = None
    val_images: int | None = None

    def __post_init__(self) -> None:
        digest = self.supernet_sha256
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise InputError(f"supernet_sha256 must be 64 hex digits; got {shown_text(digest)}")
        if not isinstance(self.supernet, str):
            raise InputError(f"supernet must be a path; got {self.supernet!r}")
        if self.split not in SCORING_SPLITS:
            raise InputError(
                f"split must be one of {', '.join(SCORING_SPLITS)}; got {self.split!r}"
            )
        for name in ("bn_images", "holdout"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InputError(f"{name} must be a positive number of images; got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields (``val_images`` only where it is set)."""
        data = dataclasses.asdict(self)
        if data["val_images"] is None:
            del data["val_images"]
        return data

    def same_measurement(self, other: SampleSource) -> bool:
        """Whether rows measured under ``other`` may share a file with these (the path may
        differ; the supernet's content and the scoring may not)."""
        return dataclasses.replace(other, supernet=self.supernet) == self


def checkpoint_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in blocks (the identity of a supernet checkpoint)."""
    return file_sha256(path)


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/4"`` → ``(1, 4)`` (ValueError for anything else)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not int(match[1]) < int(match[2]):
        raise InputError(f"a shard is written i/n with 0 <= i < n (e.g. 0/4); got {text!r}")
    return int(match[1]), int(match[2])


def shard_from_environment() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` of a torchrun launch, else ``(0, 1)``.

    Raises:
        InputError: the variables are malformed (see ``eqsearch.launcher``).
    """
    rank, world = launch_environment()
    return (rank, world) if world > 1 else (0, 1)


# -- drawing configs ---------------------------------------------------------------------------

_TILT_GRID = np.linspace(-60.0, 60.0, 4801)


def _tilted_choice(
    values: tuple[int, ...],
    targets: npt.NDArray[np.float64],
    columns: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """Per row, ``columns`` draws from the max-entropy distribution over ``values`` whose mean
    is the row's target: p(b) ∝ exp(λ·b), λ solved by interpolation."""
    bits = np.asarray(values, dtype=np.float64)
    scaled = (bits - bits.min()) / max(1.0, float(bits.max() - bits.min()))
    logits = _TILT_GRID[:, None] * scaled[None, :]
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    means = (weights * bits).sum(axis=1) / weights.sum(axis=1)
    tilt = np.interp(targets, means, _TILT_GRID)
    row_logits = tilt[:, None] * scaled[None, :]
    probabilities = np.exp(row_logits - row_logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative[:, -1] = 1.0
    uniform = rng.random((len(targets), columns))
    chosen = (uniform[:, :, None] > cumulative[:, None, :]).sum(axis=2)
    result: npt.NDArray[np.int64] = np.asarray(values, dtype=np.int64)[chosen]
    return result


CANDIDATES_PER_TARGET = 16
"""Configs drawn around each average-bit target; the one whose averages land nearest is kept."""


def spread_sample(
    space: ElasticSpace, n: int, rng: np.random.Generator, *, forms: str = "global"
) -> ConfigBatch:
    """``n`` subnets spread evenly over the whole range of average bit widths.

    Each subnet draws a weight-bit target and an activation-bit target uniformly between the
    space's smallest and largest bit widths. Around them, :data:`CANDIDATES_PER_TARGET`
    candidates draw each elastic layer's bits from the max-entropy distribution over the
    space's bits with the target as mean, and the candidate whose parameter- and
    input-weighted averages land nearest the targets is kept. Layers still differ, but the
    averages are no longer piled up in the middle (independent uniform per-layer draws) nor
    at the ends (one large layer deciding the average alone). In a joint space each subnet
    also draws a size target in [0, 1], and every candidate's architecture genes are drawn
    around it (index ≈ target × the gene's last index), so shallow-and-narrow and
    deep-and-wide subnets are sampled as often as middling ones.
    """
    if forms not in FORM_DRAWS:
        raise InputError(f"forms must be one of {', '.join(FORM_DRAWS)}; got {forms!r}")
    k = CANDIDATES_PER_TARGET
    w_low, w_high = min(space.w_bits), max(space.w_bits)
    a_low, a_high = min(space.a_bits), max(space.a_bits)
    w_targets = np.repeat(rng.uniform(w_low, w_high, n), k)
    a_targets = np.repeat(rng.uniform(a_low, a_high, n), k)
    w_bits = _tilted_choice(space.w_bits, w_targets, space.n_layers, rng)
    a_bits = _tilted_choice(space.a_bits, a_targets, space.n_layers, rng)
    space_forms = np.asarray([ALL_FORMS.index(form) for form in space.forms], dtype=np.int64)
    shape = (n, 1) if forms == "global" else (n, space.n_layers)
    form_index = np.repeat(
        np.broadcast_to(space_forms[rng.integers(0, len(space_forms), shape)], (n, space.n_layers)),
        k,
        axis=0,
    )
    arch = _spread_arch(space, n, k, rng) if space.genes else None
    candidates = ConfigBatch.from_arrays(space, w_bits, a_bits, form_index, arch=arch)
    w_miss = (costs.average_weight_bits(space, candidates) - w_targets) / max(1, w_high - w_low)
    a_miss = (costs.average_activation_bits(space, candidates) - a_targets) / max(1, a_high - a_low)
    distance = np.nan_to_num(w_miss**2 + a_miss**2).reshape(n, k)
    chosen = np.arange(n) * k + distance.argmin(axis=1)
    return candidates.take(chosen)


def _spread_arch(
    space: ElasticSpace, n: int, candidates: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Gene indices ``(n·candidates, genes)`` drawn around one size target per subnet."""
    targets = np.repeat(rng.uniform(0.0, 1.0, n), candidates)
    sizes = np.asarray([len(gene.values) for gene in space.genes], dtype=np.int64)
    arch = np.zeros((len(targets), len(sizes)), dtype=np.int64)
    for size in np.unique(sizes):
        columns = np.flatnonzero(sizes == size)
        indices = tuple(range(int(size)))
        arch[:, columns] = _tilted_choice(indices, targets * (size - 1), len(columns), rng)
    return arch


def draw_configs(
    space: ElasticSpace, n: int, *, seed: int = 0, strategy: str = "spread", forms: str = "global"
) -> ConfigBatch:
    """The first ``n`` distinct configs of the seeded stream (the rows of a samples file).

    The stream is drawn in fixed chunks, so a larger ``n`` extends a smaller one.

    Raises:
        ValueError: the space has fewer than ``n`` distinct configs the strategy reaches.
    """
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    check_memory(configs_memory_bytes(n, space.n_layers, len(space.genes)), f"{n} subnets")
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    kept: list[ConfigBatch] = []
    total = 0
    fruitless = 0
    while total < n:
        if strategy == "spread":
            chunk = spread_sample(space, DRAW_CHUNK, rng, forms=forms)
        else:
            chunk = space.sample(
                rng, DRAW_CHUNK, forms="global" if forms == "global" else "per_layer"
            )
        rows: list[int] = []
        for row, key in enumerate(chunk.keys()):
            if key not in seen and total + len(rows) < n:
                seen.add(key)
                rows.append(row)
        fruitless = 0 if rows else fruitless + 1
        if fruitless >= 20:
            raise InputError(
                f"the space has only about {total} distinct configs that the {strategy!r} "
                f"strategy reaches; asked for n={n}"
            )
        kept.append(chunk.take(np.asarray(rows, dtype=np.int64)))
        total += len(rows)
    return ConfigBatch.concatenate(space, kept)


# -- sample files ----------------------------------------------------------------------------


def shard_path(out_csv: str | Path, shard: tuple[int, int]) -> Path:
    """Where shard ``(i, n)`` writes: ``samples.shard-i-of-n.csv`` (``out_csv`` when n = 1)."""
    path = Path(out_csv)
    index, count = shard
    if count == 1:
        return path
    return path.with_name(f"{path.stem}.shard-{index}-of-{count}{path.suffix}")


def space_path(samples_csv: str | Path) -> Path:
    """The sidecar recording a samples file's space: ``samples.space.json``."""
    path = Path(samples_csv)
    match = _SHARD_NAME.match(path.stem)
    stem = match["stem"] if match else path.stem
    return path.with_name(f"{stem}.space.json")


def read_samples_space(samples_csv: str | Path) -> ElasticSpace | None:
    """The space recorded beside a samples file, or None when there is no sidecar."""
    sidecar = space_path(samples_csv)
    if not sidecar.is_file():
        return None
    data = read_json(sidecar, what="space file")
    try:
        return ElasticSpace.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"{sidecar} is not a space file: {error}") from None


SOURCE_FORMAT = "eqsearch-samples-source"


def source_path(samples_csv: str | Path) -> Path:
    """The sidecar recording what measured a samples (or shard) file: ``<name>.source.json``."""
    path = Path(samples_csv)
    return path.with_name(f"{path.stem}.source.json")


def read_samples_source(samples_csv: str | Path) -> tuple[SampleSource, dict[str, Any]] | None:
    """The source and drawing settings recorded beside a samples file (None: no sidecar)."""
    sidecar = source_path(samples_csv)
    if not sidecar.is_file():
        return None
    data = read_json(sidecar, what="samples source file")
    try:
        if data.get("format") != SOURCE_FORMAT:
            raise InputError("not a samples source file")
        source = SampleSource(**data["source"])
        settings = dict(data["settings"])
        SamplingConfig(**settings)  # the draw's n, seed, strategy and forms, checked
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"{sidecar} is not a samples source file ({error})") from None
    return source, settings


def _draw_settings(config: SamplingConfig) -> dict[str, Any]:
    return {"n": config.n, "seed": config.seed, "strategy": config.strategy, "forms": config.forms}


def _record_source(path: Path, source: SampleSource, settings: dict[str, Any]) -> None:
    """Record (or check) what measured the rows of ``path``."""
    stored = read_samples_source(path)
    if stored is not None:
        stored_source, stored_settings = stored
        if not stored_source.same_measurement(source):
            raise InputError(
                f"{path} holds subnets measured on another supernet or with other scoring "
                f"images ({stored_source.supernet or 'unknown'}, split {stored_source.split}); "
                "use another --out"
            )

        def drawn(values: dict[str, Any]) -> dict[str, Any]:
            return {key: value for key, value in values.items() if key != "n"}

        if drawn(stored_settings) != drawn(settings):  # a larger n extends the same draw
            raise InputError(
                f"{path} was drawn with other settings ({stored_settings}); use another --out "
                "or the original settings"
            )
        if stored_settings == settings:
            return
    payload = {"format": SOURCE_FORMAT, "source": source.to_dict(), "settings": settings}
    atomic_write_text(source_path(path), json.dumps(payload, indent=2) + "\n")


def _record_space(samples_csv: Path, space: ElasticSpace) -> None:
    stored = read_samples_space(samples_csv)
    if stored is not None and stored.fingerprint != space.fingerprint:
        raise InputError(
            f"{space_path(samples_csv)} records another space (fingerprint "
            f"{stored.fingerprint}, this supernet's is {space.fingerprint}); use another --out"
        )
    if stored is None:
        atomic_write_text(space_path(samples_csv), space.to_json())


def _format_row(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _recover_rows(path: Path) -> dict[int, dict[str, str]]:
    """Rows already in a samples file, by index; a torn last line (a kill mid-write) is cut off.

    Raises:
        ValueError: the file exists but is not a samples file (it is left untouched).
    """
    if not path.exists() or path.stat().st_size == 0:
        return {}
    data = path.read_bytes()
    header = _format_row(SAMPLE_COLUMNS).encode()
    if not data.startswith(header):
        if header.startswith(data):
            return {}  # killed while writing the header
        raise InputError(
            f"{path} exists and is not a samples file of this version; not touching it"
        )
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with path.open("r+b") as stream:
            stream.truncate(len(complete))
            stream.flush()
            os.fsync(stream.fileno())
    rows: dict[int, dict[str, str]] = {}
    reader = csv.DictReader(io.StringIO(complete.decode("utf-8", errors="replace")))
    for line, row in enumerate(reader, start=2):
        try:
            index = parse_integer(row["index"])
        except (TypeError, ValueError):
            raise InputError(
                f"{path} line {line}: bad index {shown_text(row.get('index'))}"
            ) from None
        _check_accuracy(row.get("accuracy"), f"{path} line {line}")
        if index in rows:
            raise InputError(
                f"{path} line {line} repeats row index {index} (did two runs write into it?); "
                "fit-predictor refuses such a file: use another --out"
            )
        rows[index] = row
    return rows


def _check_accuracy(value: str | None, where: str) -> float:
    """A measured accuracy: a finite percentage in [0, 100]."""
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "infinity"):
        raise InputError(f"{where}: accuracy {value!r} is not a percentage in 0..100")
    try:
        accuracy = parse_number(value)  # type: ignore[arg-type]
    except NumberError:
        raise InputError(f"{where}: accuracy {shown_text(value)} is not a number") from None
    if not 0.0 <= accuracy <= 100.0:
        raise InputError(f"{where}: accuracy {value!r} is not a percentage in 0..100")
    return accuracy


@dataclass(frozen=True)
class SampleRun:
    """What a sampling call did.

    Attributes:
        path: the file this process appended to (a shard file when sharded).
        rows: rows in that file now.
        new_rows: rows this call added.
        seconds: wall time of this call.
        merged: the merged samples file, when this call completed the last shard.
    """

    path: Path
    rows: int
    new_rows: int
    seconds: float
    merged: Path | None


def check_samples_target(path: str | Path, *, with_source: bool = False) -> Path:
    """Check before any work that ``path`` can receive samples: missing, empty, or a samples
    file to resume (never another kind of file, nor one whose rows have no recorded space,
    or with ``with_source`` no recorded source).

    Raises:
        InputError: ``path`` is a directory or holds something other than samples, or a
            samples file without the sidecars that say what measured it.
    """
    target = Path(path)
    if target.exists() and not target.is_file():
        raise InputError(f"{target} exists and is not a regular file")
    if target.is_file():
        if target.stat().st_size > 0 and sniff_kind(target) != "samples":
            raise InputError(
                f"{target} exists and is not a samples file of this version; not touching it"
            )
        if target.stat().st_size > 0:
            needed = (space_path(target), source_path(target))[: 2 if with_source else 1]
            missing = [sidecar.name for sidecar in needed if not sidecar.is_file()]
            if missing:
                raise InputError(
                    f"{target} has no {' or '.join(missing)} beside it: nothing shows which "
                    "supernet and space measured its rows, so it is not resumed; use another --out"
                )
        return target
    return check_output_file(target, kind="samples")


def collect_samples(
    oracle: AccuracyOracle,
    space: ElasticSpace,
    out_csv: str | Path,
    config: SamplingConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    source: SampleSource | None = None,
) -> SampleRun:
    """Evaluate this shard's configs with ``oracle``, appending one fsync'd row per subnet.

    Rows already present are kept and skipped, so a rerun after any interruption (even
    ``kill -9``) finishes the file without losing or duplicating rows. While it runs the file
    is locked: a second process sampling into it is refused at once. When the last shard
    completes, the shards are merged into ``out_csv``.

    Args:
        oracle: scores configs (the supernet oracle in ``eqsearch.measure``).
        space: the space to draw from.
        out_csv: the samples file (shards write beside it, see :func:`shard_path`).
        config: how many configs, drawn how, which shard.
        progress: called with (rows done, rows of this shard) after each row.
        source: what measures the rows; recorded beside the file, and a file measured by
            another supernet or scoring is refused.

    Raises:
        InputError: the file holds rows drawn with other settings, of another space or
            another source, or another process is writing it.
    """
    started = time.perf_counter()
    path = shard_path(out_csv, config.shard)
    check_samples_target(path, with_source=source is not None)
    with exclusive_writer(path, what="samples file"):
        run = _collect_locked(oracle, space, Path(out_csv), path, config, progress, source)
    return dataclasses.replace(run, seconds=time.perf_counter() - started)


def _collect_locked(
    oracle: AccuracyOracle,
    space: ElasticSpace,
    out_csv: Path,
    path: Path,
    config: SamplingConfig,
    progress: Callable[[int, int], None] | None,
    source: SampleSource | None,
) -> SampleRun:
    configs = draw_configs(
        space, config.n, seed=config.seed, strategy=config.strategy, forms=config.forms
    )
    shard_index, shard_count = config.shard
    mine = np.arange(shard_index, config.n, shard_count)
    existing = _recover_rows(path)
    expected_json = {int(i): configs[int(i)].to_json() for i in mine}
    for index, row in existing.items():
        if expected_json.get(index) != row.get("config"):
            raise InputError(
                f"{path} holds row index {index} that this draw (n={config.n}, seed={config.seed}, "
                f"strategy={config.strategy}, forms={config.forms}, shard {shard_index}/"
                f"{shard_count}) does not produce; use another --out or the original settings"
            )
    todo = [int(i) for i in mine if int(i) not in existing]
    _record_space(out_csv, space)
    if source is not None:
        _record_source(path, source, _draw_settings(config))
    table = costs.cost_table(space, configs)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = len(mine) - len(todo)
    if progress is not None:
        progress(done, len(mine))
    with path.open("a", encoding="utf-8") as stream:
        if path.stat().st_size == 0:
            stream.write(_format_row(SAMPLE_COLUMNS))
            stream.flush()
            os.fsync(stream.fileno())
        measurements = _measure_in_order(oracle, configs.take(np.asarray(todo, dtype=np.int64)))
        try:
            for index, (accuracy, seconds) in zip(todo, measurements, strict=True):
                if not np.isfinite(accuracy) or not 0.0 <= accuracy <= 100.0:
                    raise RuntimeError(
                        f"the oracle measured {accuracy!r} % for row {index} of {path}; the "
                        "rows before it are kept (is the supernet diverged?)"
                    )
                _append_row(stream, index, expected_json[index], table, accuracy, seconds)
                done += 1
                if progress is not None:
                    progress(done, len(mine))
        finally:
            close = getattr(measurements, "close", None)
            if close is not None:
                close()
    merged = None
    if shard_count > 1:
        shards = [shard_path(out_csv, (i, shard_count)) for i in range(shard_count)]
        if all(
            _shard_complete(p, len(range(i, config.n, shard_count))) for i, p in enumerate(shards)
        ):
            merged = merge_samples(shards, out_csv, force=True)
    return SampleRun(path, len(mine), len(todo), 0.0, merged)


@runtime_checkable
class OrderedOracle(Protocol):
    """An oracle that measures a batch of configs as a stream: ``(accuracy %, seconds)`` per
    config, in order, as each completes (``SupernetOracle`` over worker processes)."""

    def measure_in_order(
        self, configs: Sequence[SubnetConfig]
    ) -> Iterator[tuple[float, float]]: ...


def _measure_in_order(
    oracle: AccuracyOracle, configs: ConfigBatch
) -> Iterator[tuple[float, float]]:
    """``(accuracy, seconds)`` of each config in order: the oracle's own stream, or one
    ``evaluate`` call per config."""
    if isinstance(oracle, OrderedOracle):
        return oracle.measure_in_order(configs)
    return (_timed_evaluate(oracle, configs.take([row])) for row in range(len(configs)))


def _timed_evaluate(oracle: AccuracyOracle, config: ConfigBatch) -> tuple[float, float]:
    tick = time.perf_counter()
    accuracy = float(np.asarray(oracle.evaluate(config))[0])
    return accuracy, time.perf_counter() - tick


def _append_row(
    stream: io.TextIOBase,
    index: int,
    config_json: str,
    table: dict[str, Any],
    accuracy: float,
    seconds: float,
) -> None:
    """One row, flushed and fsync'd before the next is written (a kill loses no written row)."""
    line = _format_row(
        [
            index,
            config_json,
            repr(float(table["w_bits"][index])),
            repr(float(table["a_bits"][index])),
            repr(float(table["bitops"][index])),
            repr(float(table["w_comp"][index])),
            repr(accuracy),
            f"{seconds:.4f}",
        ]
    )
    stream.write(line)
    stream.flush()
    os.fsync(stream.fileno())


def _shard_complete(path: Path, expected: int) -> bool:
    if not path.is_file():
        return False
    try:
        return len(_recover_rows(path)) >= expected
    except ValueError:
        return False


def merge_samples(paths: Sequence[str | Path], out_csv: str | Path, *, force: bool = False) -> Path:
    """Merge shard files into one samples file ordered by index (written atomically).

    The shards must come from one sampling run: the same supernet and scoring (their source
    sidecars agree), the same space, rows that agree on the config of every index, and
    together every row of the draw (the message lists what is missing). The merged file gets
    the space and source sidecars of the shards.

    Args:
        paths: the shard files.
        out_csv: the merged samples file; an existing samples file is replaced only with
            ``force``, and never a file of another kind.

    Raises:
        InputError: any of the above does not hold.
    """
    if not paths:
        raise InputError("merging needs at least one shard file")
    target = check_output_file(out_csv, kind="samples", force=force)
    merged: dict[int, dict[str, str]] = {}
    sources: list[tuple[Path, tuple[SampleSource, dict[str, Any]]]] = []
    spaces: list[tuple[Path, ElasticSpace]] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(f"shard file not found: {path}")
        if path.resolve() == target.resolve():
            raise InputError(f"{path} is both a shard and the merged file; give another --out")
        for index, row in _recover_rows(path).items():
            previous = merged.setdefault(index, row)
            if previous["config"] != row["config"]:
                raise InputError(
                    f"{path}: row index {index} disagrees with another shard's config (shards "
                    "of different sampling runs?)"
                )
        stored = read_samples_source(path)
        if stored is not None:
            sources.append((path, stored))
        space = read_samples_space(path)
        if space is not None:
            spaces.append((path, space))
    for path, (source, settings) in sources[1:]:
        first_path, (first_source, first_settings) = sources[0]
        if not first_source.same_measurement(source) or first_settings != settings:
            raise InputError(
                f"{path} and {first_path} were measured on different supernets or with "
                "different settings; merge the shards of one sampling run"
            )
    if len({space.fingerprint for _, space in spaces}) > 1:
        raise InputError("the shards record different spaces; merge the shards of one run")
    expected = int(sources[0][1][1]["n"]) if sources else (max(merged) + 1 if merged else 0)
    missing = sorted(set(range(expected)) - set(merged))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise InputError(
            f"the shards hold {len(merged)} of the draw's {expected} rows; missing indices "
            f"{shown} — finish every shard (rerun its eqsearch sample --shard i/n) first"
        )
    text = _format_row(SAMPLE_COLUMNS) + "".join(
        _format_row([merged[i][column] for column in SAMPLE_COLUMNS]) for i in sorted(merged)
    )
    if spaces:
        _record_space(target, spaces[0][1])
    if sources:
        source, settings = sources[0][1]
        payload = {"format": SOURCE_FORMAT, "source": source.to_dict(), "settings": settings}
        atomic_write_text(source_path(target), json.dumps(payload, indent=2) + "\n")
    atomic_write_text(target, text)
    return target


# -- reading sample files ----------------------------------------------------------------------


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
            accuracy = _check_accuracy(value, where)
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
