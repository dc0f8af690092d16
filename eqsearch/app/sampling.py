"""``sample_checkpoint(SampleRequest)``: a supernet's measured subnets, or merged shards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.app.scoring_options import ScoringOptions
from eqsearch.errors import InputError

if TYPE_CHECKING:
    from predictors.samples.collect import SampleRun


@dataclass(frozen=True)
class SampleRequest(ScoringOptions):
    """One ``eqsearch sample``: measure ``subnets`` sampled configs, or merge shard files.

    Args:
        supernet: the ``supernet.pt`` measured (not needed with ``merge``).
        output: the samples CSV (default: ``samples.csv`` beside the checkpoint; required
            with ``merge``).
        subnets: distinct subnets over all shards.
        seed, strategy, form_draw: how configs are drawn (``spread``/``uniform``,
            ``global``/``per_layer``).
        shard: ``(i, n)`` or ``"i/n"`` (default: torchrun's rank, else unsharded).
        split: ``holdout`` (training images held out) or ``test``.
        holdout: training images held out for scoring (the checkpoint's setting).
        bn_images, val_images, device, dataset, data_root, transforms: how the supernet
            scores subnets (see :class:`~eqsearch.app.scoring_options.ScoringOptions`).
        merge: shard files merged into ``output`` instead of sampling; ``force`` replaces a
            samples file there.
    """

    supernet: str | Path | None = None
    output: str | Path | None = None
    subnets: int = 1000
    seed: int = 0
    strategy: str = "spread"
    form_draw: str = "global"
    shard: tuple[int, int] | str | None = None
    split: str = "holdout"
    holdout: int | None = None
    merge: Sequence[str | Path] = ()
    force: bool = False

    def __post_init__(self) -> None:
        from predictors.samples.drawing import FORM_DRAWS, STRATEGIES
        from predictors.samples.settings import parse_shard
        from predictors.samples.source import SCORING_SPLITS

        object.__setattr__(self, "merge", tuple(self.merge))
        if self.merge:
            if self.output is None:
                raise InputError(
                    "--merge writes the merged file to {field}; give {field}", field="output"
                )
            missing = [path for path in self.merge if not Path(path).is_file()]
            if missing:
                raise InputError(f"shard file not found: {missing[0]}", field="merge")
            return
        if self.supernet is None:
            raise InputError("give {field} (or --merge with --output)", field="supernet")
        if not Path(self.supernet).is_file():
            raise InputError(f"checkpoint not found: {self.supernet}", field="supernet")
        for name, smallest in (("subnets", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
                what = "a positive integer" if smallest else "an integer >= 0"
                raise InputError(f"{{field}} must be {what}; got {value!r}", field=name)
        for name, allowed in (
            ("strategy", STRATEGIES),
            ("form_draw", FORM_DRAWS),
            ("split", SCORING_SPLITS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise InputError(
                    f"{{field}} must be one of {', '.join(allowed)}; got {value!r}", field=name
                )
        self.check_scoring()
        if isinstance(self.shard, str):
            try:
                object.__setattr__(self, "shard", parse_shard(self.shard))
            except InputError as error:
                raise InputError(str(error), field="shard") from None


@dataclass(frozen=True)
class SampleOutcome:
    """What :func:`sample_checkpoint` did: a sampling run, or the merged file.

    Attributes:
        run: the sampling run (None for a merge).
        merged: the merged samples file (of a merge, or of the last shard's run).
        shards: shard files merged (0 where nothing was merged by request).
    """

    run: SampleRun | None = None
    merged: Path | None = None
    shards: int = 0


def sample_checkpoint(request: SampleRequest, *, progress: bool = False) -> SampleOutcome:
    """Measure ``request.subnets`` sampled subnets of ``request.supernet`` into its samples
    file (resuming one a rerun finds), or merge ``request.merge``'s shard files.

    The checkpoint is read once; its weights checked once.

    Raises:
        InputError: bad input (naming the request's field where one is at fault).
    """
    if request.merge:
        from predictors.samples.merge import merge_samples

        assert request.output is not None  # checked by the request
        merged = merge_samples(request.merge, request.output, force=request.force)
        return SampleOutcome(merged=merged, shards=len(request.merge))
    from eqsearch.app.measure import sample_subnets
    from eqsearch.app.search_inputs import trust_named_dataset

    assert request.supernet is not None  # checked by the request
    trust_named_dataset(request.dataset)
    shard = request.shard if isinstance(request.shard, tuple) else None
    same_names = ("seed", "strategy", "split", "bn_images", "holdout", "val_images", "device")
    settings: dict[str, Any] = {name: getattr(request, name) for name in same_names}
    settings.update(request.data_options, forms=request.form_draw, shard=shard)
    run = sample_subnets(
        request.supernet, request.output, request.subnets, progress=progress, **settings
    )
    return SampleOutcome(run=run, merged=run.merged)
