"""An accuracy predictor fitted on a samples file and saved with its held-out metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.app.request_checks import check_checkpoint_file, check_choice, check_output_path
from eqsearch.errors import InputError

if TYPE_CHECKING:
    from eqsearch.space import ElasticSpace
    from predictors.fitting import FitResult


@dataclass(frozen=True)
class FitRequest:
    """Which samples to fit on, how, and where the predictor goes (see :func:`fit_predictor_file`).

    Args:
        samples: a samples CSV written by ``eqsearch sample``.
        backend: a registered predictor backend (``mlp``, ``xgboost``, ``ridge``).
        test_fraction: fraction of the samples held out for the metrics, in (0, 1).
        seed: seeds the split and the fit.
        options: backend hyper-parameters.
        supernet: read the space from this checkpoint (default: the samples' sidecar file).
        output: the predictor file (default: ``predictor-<backend>.<ext>`` beside the samples).
        force: replace an existing predictor file and its metrics.
    """

    samples: str
    backend: str = "mlp"
    test_fraction: float = 0.2
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    supernet: str | None = None
    output: str | None = None
    force: bool = False

    def __post_init__(self) -> None:
        from predictors import PREDICTORS

        check_choice(self.backend, PREDICTORS, "backend")
        fraction = self.test_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            fraction = -1.0
        if not 0 < fraction < 1:
            raise InputError(
                f"{{field}} must be in (0, 1); got {self.test_fraction!r}", field="test_fraction"
            )


def samples_space(samples: str | Path, supernet: str | Path | None = None) -> ElasticSpace:
    """The space a samples file was measured on: from ``supernet`` where given, else from the
    samples' sidecar file, else from a ``supernet.pt`` beside them (read once).

    Raises:
        InputError: none of those is there.
    """
    from predictors.samples.sidecars import read_samples_space

    checkpoint = Path(supernet) if supernet else None
    if checkpoint is None:
        stored = read_samples_space(samples)
        if stored is not None:
            return stored
        checkpoint = Path(samples).parent / "supernet.pt"
        if not checkpoint.is_file():
            raise InputError(
                f"no space file beside {samples} and no supernet.pt there; give {{field}}",
                field="supernet",
            )
    from eqsearch.space import ElasticSpace
    from supernet.files.checkpoint import load_checkpoint

    return ElasticSpace.from_dict(load_checkpoint(check_checkpoint_file(checkpoint))["space"])


def fit_predictor_file(
    request: FitRequest,
    *,
    spinner: Callable[[str], AbstractContextManager[Any]] | None = None,
) -> FitResult:
    """Fit the request's predictor and save it with its metrics beside it; both outputs are
    checked before any work. ``spinner(text)`` (optional) is shown while it fits.

    Raises:
        InputError: a missing samples file, outputs that may not be written, no space.
    """
    from predictors.fitting import FitConfig, default_predictor_path, fit_predictor, metrics_path

    if not Path(request.samples).is_file():
        raise InputError(f"samples file not found: {request.samples}", field="samples")
    config = FitConfig(
        backend=request.backend,
        holdout=request.test_fraction,
        seed=request.seed,
        options=dict(request.options),
    )
    target = Path(request.output or default_predictor_path(request.samples, request.backend))
    check_output_path(target, kind="predictor", force=request.force, field="output")
    check_output_path(metrics_path(target), kind="json", force=request.force, field="output")
    space = samples_space(request.samples, request.supernet)
    with (spinner or (lambda text: nullcontext()))(f"fitting the {request.backend} predictor"):
        return fit_predictor(request.samples, space, config, out=target)
