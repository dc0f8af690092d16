"""N2UQ vs LSQ+ elastic supernets from one full-precision start, scored at uniform bit widths."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eqsearch.app.commands.common import non_negative_int, positive_int, seed_int
from eqsearch.errors import InputError, require_positive_integers
from eqsearch.files import atomic_write_text, check_outputs
from eqsearch.locks import hold_directory
from eqsearch.space import QuantForm
from supernet.evaluation.evaluate import evaluate_configs, evaluation_set
from supernet.evaluation.oracle import measure_accuracy
from supernet.training.config import TrainConfig
from supernet.training.loop import train_supernet
from supernet.training.run_files import FP_CHECKPOINT_NAME

FORM = QuantForm("channel", True, False)
"""The one form both quantizers express: N2UQ's (per-channel symmetric weights, asymmetric
activations); LSQ+ is restricted to it so that both supernets train the same space."""
QUANTIZER_LABELS = {"lsq": "LSQ+", "n2uq": "N2UQ"}


@dataclass(frozen=True)
class ComparisonConfig:
    """Settings of the comparison (the same budget for every quantizer).

    Args:
        model, dataset: what to train (``lenet5`` on the embedded ``mnist5k`` by default).
        quantizers: registered quantizer names to compare.
        bits: uniform (weight, activation) bit widths to score.
        fp_epochs: full-precision pretraining epochs of the shared start.
        epochs: supernet epochs of each quantizer (joint schedule over bits 2..8).
        seed: seeds the pretraining, data order and subnet draws of every run.
    """

    model: str = "lenet5"
    dataset: str = "mnist5k"
    quantizers: tuple[str, ...] = ("lsq", "n2uq")
    bits: tuple[tuple[int, int], ...] = ((2, 2), (3, 3), (4, 4))
    fp_epochs: int = 10
    epochs: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.quantizers:
            raise InputError("quantizers must name at least one registered quantizer")
        require_positive_integers(self, ("fp_epochs", "epochs"))
        if not self.bits or any(len(pair) != 2 for pair in self.bits):
            raise InputError(f"bits must be (weight, activation) pairs; got {self.bits!r}")

    def train_config(self, quantizer: str, init: str | None) -> TrainConfig:
        """The training settings of one run (``init`` None: the pretraining run)."""
        return TrainConfig(
            model=self.model,
            dataset=self.dataset,
            quantizer=quantizer,
            granularities=(FORM.w_granularity.value,),
            w_symmetries=(FORM.w_symmetric,),
            a_symmetries=(FORM.a_symmetric,),
            epochs=self.epochs,
            fp_epochs=0 if init else self.fp_epochs,
            init=init,
            seed=self.seed,
        )


def pretrain(config: ComparisonConfig, out_dir: Path, *, progress: bool = False) -> Path:
    """The shared full-precision start ``out_dir/fp/fp.pt`` (reused when it exists)."""
    path = out_dir / "fp" / FP_CHECKPOINT_NAME
    if not path.exists():
        train_config = config.train_config(config.quantizers[0], None)
        train_supernet(train_config, out_dir / "fp", progress=progress, stop_after=0)
    return path


def compare_quantizers(
    config: ComparisonConfig, out_dir: str | Path, *, progress: bool = False
) -> pd.DataFrame:
    """Train one supernet per quantizer from the same FP weights and score uniform subnets.

    Returns:
        One row per ``W/A`` bit pair (and ``FP``), one top-1 % column per quantizer on the
        test split (BN re-calibrated per subnet), plus each run's training seconds in
        ``frame.attrs["seconds"]`` and the test images in ``frame.attrs["images"]``.
    """
    out = Path(out_dir)
    fp_path = pretrain(config, out, progress=progress)
    columns: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    images = 0
    for quantizer in config.quantizers:
        label = QUANTIZER_LABELS.get(quantizer, quantizer)
        start = time.perf_counter()
        result = train_supernet(
            config.train_config(quantizer, str(fp_path)), out / quantizer, progress=progress
        )
        seconds[label] = time.perf_counter() - start
        space = result.supernet.space
        evaluation = evaluation_set(result.data, split="test")
        images = len(evaluation.labels)
        configs = [space.uniform(w, a, FORM) for w, a in config.bits]
        frame = evaluate_configs(result.supernet, evaluation, configs)
        accuracies = frame["accuracy"].tolist()
        column = {f"W{w}/A{a}": acc for (w, a), acc in zip(config.bits, accuracies, strict=True)}
        column["FP (latent weights)"] = measure_accuracy(
            result.supernet, None, evaluation.scoring, evaluation.calibration
        )
        columns[label] = column
    table = pd.DataFrame(columns)
    table.index.name = "bits"
    table.attrs["seconds"] = seconds
    table.attrs["images"] = images
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """The comparison as a markdown table (top-1 %, and the difference of the last two)."""
    labels = list(table.columns)
    header = ["W/A bits", *(f"{label} top-1 %" for label in labels)]
    if len(labels) == 2:
        header.append(f"{labels[1]} − {labels[0]}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for bits, row in table.iterrows():
        cells = [str(bits), *(f"{row[label]:.2f}" for label in labels)]
        if len(labels) == 2:
            cells.append(f"{row[labels[1]] - row[labels[0]]:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    seconds = table.attrs.get("seconds") or {}
    if seconds:
        timing = ", ".join(f"{label} {value:.0f} s" for label, value in seconds.items())
        lines.append("")
        lines.append(f"Supernet training time: {timing}.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m studies.compare_quantizers --out runs/compare``: train, score, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="directory of the runs and table.md")
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--quantizers", default="lsq,n2uq")
    parser.add_argument("--fp-epochs", type=non_negative_int, default=10)
    parser.add_argument("--epochs", type=positive_int, default=25)
    parser.add_argument("--seed", type=seed_int, default=0)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--force", action="store_true", help="replace an existing table.md")
    args = parser.parse_args(argv)
    config = ComparisonConfig(
        model=args.model,
        dataset=args.dataset,
        quantizers=tuple(args.quantizers.split(",")),
        fp_epochs=args.fp_epochs,
        epochs=args.epochs,
        seed=args.seed,
    )
    check_outputs(args.out, {"table.md": "report"}, force=args.force)
    with hold_directory(args.out, what="the study directory"):
        table = compare_quantizers(config, args.out, progress=args.progress)
        text = to_markdown(table)
        atomic_write_text(Path(args.out) / "table.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
