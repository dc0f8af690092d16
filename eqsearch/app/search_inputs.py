"""What a search reads: its checkpoint (once), scoring images, predictor and latency table."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.oracle import AccuracyOracle
    from eqsearch.pareto import ParetoFront
    from eqsearch.space import ElasticSpace
    from supernet.evaluation.evaluate import EvaluationSet
    from supernet.networks.elastic import Supernet


class NoOracle:
    """Stands in for the oracle while input is validated (never asked for accuracy)."""

    def evaluate(self, configs: Sequence[Any]) -> Any:
        raise RuntimeError("the oracle is not loaded yet")


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A ``supernet.pt`` read once: its payload, its space and, where the search scores
    subnets, the network (weights checked finite once, either way)."""

    path: Path
    payload: dict[str, Any]
    space: ElasticSpace
    supernet: Supernet | None = None

    @property
    def model(self) -> str:
        """The model's name (``supernet`` where the checkpoint records none)."""
        return str((self.payload.get("build_info") or {}).get("model", "supernet"))

    def need_supernet(self) -> Supernet:
        """The loaded network (the search asked for it when reading)."""
        assert self.supernet is not None, "read the checkpoint with with_supernet=True"
        return self.supernet


def read_checkpoint(
    path: str | Path, remedy: str, *, with_supernet: bool, device: str = "auto"
) -> LoadedCheckpoint:
    """Read ``path`` once: the network on ``device`` too where ``with_supernet``; a
    full-precision checkpoint is refused with ``remedy``.

    Raises:
        InputError: a missing, corrupt or full-precision checkpoint, non-finite weights, or a
            device this machine lacks.
    """
    from eqsearch.space import ElasticSpace
    from supernet.files.checkpoint import check_finite_weights, load_checkpoint, load_supernet

    location = Path(path)
    supernet = None
    if with_supernet:
        supernet, payload = load_supernet(location, map_location=device)  # checks the weights
    else:
        payload = load_checkpoint(location)
    if payload.get("kind") != "supernet":
        raise InputError(f"{location} is a full-precision checkpoint; {remedy}", field="supernet")
    if supernet is None:
        check_finite_weights(payload["state_dict"], location)
        return LoadedCheckpoint(location, payload, ElasticSpace.from_dict(payload["space"]))
    return LoadedCheckpoint(location, payload, supernet.space, supernet)


def trust_named_dataset(dataset: str | None) -> None:
    """Trust a dataset factory the user names (never one a file names on its own)."""
    from eqsearch.factories import is_reference, locate_module, parse_reference, trust_factories

    if dataset is not None and is_reference(dataset):
        locate_module(parse_reference(dataset, what="dataset factory"))
        trust_factories([dataset])


def scoring_images(
    loaded: LoadedCheckpoint,
    bn_images: int | None = None,
    val_images: int | None = None,
    data: Mapping[str, str | None] | None = None,
) -> EvaluationSet:
    """The checkpoint's held-out training images that score subnets, and its calibration
    images (the checkpoint's data; ``data``'s ``dataset``, ``data_root`` and ``transforms``
    override it)."""
    from supernet.evaluation.evaluate import checkpoint_data, evaluation_set, stored_bn_images

    options: dict[str, Any] = dict(data or {})
    trust_named_dataset(options.get("dataset"))
    bundle = checkpoint_data(loaded.payload, **options)
    count = bn_images or stored_bn_images(loaded.payload)
    return evaluation_set(bundle, split="holdout", bn_images=count, val_images=val_images)


def predictor_oracle(
    supernet: str | Path,
    predictor: str | Path | None,
    space: ElasticSpace,
    console: Console | None = None,
) -> AccuracyOracle:
    """The CQAP oracle of ``predictor`` (or the newest one found beside ``supernet``),
    checked against ``space``.

    The file chosen is printed on ``console`` (path, backend, held-out Kendall τ) and kept as
    the oracle's ``source`` for ``pareto.json``; a held-out τ below
    :data:`predictors.provenance.LOW_TAU` is warned about on standard error.

    Raises:
        InputError: no predictor beside the checkpoint, or one of another space.
    """
    from predictors import PredictorOracle, find_predictor, load_predictor
    from predictors.provenance import predictor_source
    from predictors.xgb import skip_sklearn_wrappers

    skip_sklearn_wrappers()  # a search uses boosters only: 1.7 s less of import
    checkpoint = Path(supernet)
    path = Path(predictor) if predictor else find_predictor(checkpoint.parent)
    if path is None:
        raise InputError(
            f"no predictor beside {checkpoint}: make one with `eqsearch sample --supernet "
            f"{checkpoint}` then `eqsearch fit-predictor --samples "
            f"{checkpoint.parent / 'samples.csv'} --backend mlp`, or search with --oracle supernet"
        )
    fitted = load_predictor(path)
    if fitted.space.fingerprint != space.fingerprint:
        raise InputError(
            f"{path} was fitted on another space than {checkpoint}'s; fit one on its samples",
            field="predictor",
        )
    source = predictor_source(
        path, fitted.name, relative_to=None if predictor else checkpoint.parent
    )
    if console is not None:
        chosen = "given" if predictor else "newest beside the checkpoint"
        console.print(f"predictor ({chosen}): {source.describe()}")
    warning = source.warning()
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    return PredictorOracle(fitted, source)


def with_predictor_source(front: ParetoFront, oracle: AccuracyOracle) -> ParetoFront:
    """``front`` with ``info.predictor`` naming the predictor file behind ``oracle`` (path,
    backend, sha256, held-out τ); unchanged for any other oracle."""
    source = getattr(oracle, "source", None)
    if source is None:
        return front
    return replace(front, info={**front.info, "predictor": source.to_dict()})


def latency_table(
    table: str | Path | None,
    supernet: str | Path,
    space: ElasticSpace,
    *,
    needed: bool,
) -> Any:
    """The latency table a search asks for (None without a latency objective or budget).

    Raises:
        InputError: a table given where no latency is asked for, or none found.
    """
    from eqsearch.app.search_latency import load_latency_table

    if table is not None and not needed:
        raise InputError(
            "{field} goes with the latency objective or --latency-ms", field="latency_table"
        )
    return load_latency_table(None if table is None else str(table), supernet, space, needed=needed)


def check_front_directory(out: Path, force: bool) -> Path:
    """``out``, refused where its front files may not be written (``force``)."""
    from eqsearch.files import check_output_directory, check_output_file
    from eqsearch.pareto import FRONT_FILES

    directory = check_output_directory(out)
    for name, kind in zip(FRONT_FILES, ("pareto", "table", "image"), strict=True):
        check_output_file(directory / name, kind=kind, force=force)
    return directory
