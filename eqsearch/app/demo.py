"""``eqsearch demo``: train, sample, fit both predictors, search with both engines, verify."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.errors import InputError, require_positive_integers
from eqsearch.files import (
    atomic_write_text,
    check_output_directory,
    check_outputs,
    directory_owner,
    owned_directory,
)

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.pareto import ParetoFront


DEMO_MODELS = {"lenet5": "mnist5k", "oqa_mbv3_tiny": "digits"}
"""The demo's models and the embedded data each trains on: LeNet-5 (bits and forms on a fixed
architecture) and the OQA MobileNetV3 family's tiny member (the joint architecture × bits
space)."""
JOINT_DEMO_BITOPS = 1.5e6
"""The joint demo's BitOPs budget: about a seventh of the largest architecture's at W8A8
(1.02e7 on the digits' 8×8 images)."""


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of every demo stage (the defaults take about 5 minutes on a 2-core CPU).

    Args:
        seed: seeds training, sampling, predictor fitting and the searches.
        model: a key of :data:`DEMO_MODELS` (its dataset comes with it).
        fp_epochs, epochs: full-precision pretraining and supernet epochs.
        samples: subnets measured on the supernet for the predictors (80 % fit, 20 % held out).
        sample_holdout: training images each sampled (and verified) subnet is scored on; more
            images than the training run holds out give the accuracies a finer grain
            (100/4000 = 0.025 points), which the predictors' ranking needs at MNIST's
            ~1-point spread. None: the training run's holdout.
        population, generations: NSGA-II settings of both engines.
        w_bits: the average weight-bit budget of the search.
        bitops: a BitOPs budget of the search instead (None: the ``w_bits`` budget).
        verify: front configs measured on the supernet per engine.
        backends: predictor backends to fit; the one with the best held-out Kendall τ drives
            the searches.
    """

    seed: int = 0
    model: str = "lenet5"
    fp_epochs: int = 10
    epochs: int = 25
    samples: int = 1000
    sample_holdout: int | None = 4000
    population: int = 100
    generations: int = 500
    w_bits: float = 3.0
    bitops: float | None = None
    verify: int = 12
    backends: tuple[str, ...] = ("mlp", "xgboost")
    train_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in DEMO_MODELS:
            raise InputError(
                f"DemoSettings.model must be one of {', '.join(DEMO_MODELS)}; got {self.model!r}"
            )
        if self.bitops is not None and not self.bitops > 0:
            raise InputError(f"DemoSettings.bitops must be positive or None; got {self.bitops!r}")
        require_positive_integers(
            self,
            ("fp_epochs", "epochs", "samples", "population", "generations", "verify"),
            "DemoSettings.",
        )
        if self.samples < 10:
            raise InputError(f"DemoSettings.samples must be >= 10; got {self.samples}")

    @classmethod
    def quick(cls, seed: int = 0) -> DemoSettings:
        """Tiny settings that run in well under a minute (tests, smoke checks)."""
        return cls(
            seed=seed,
            fp_epochs=1,
            epochs=1,
            samples=30,
            population=12,
            generations=4,
            verify=3,
            sample_holdout=None,
            train_overrides={"holdout": 300, "bn_images": 200, "quant_init_images": 64},
        )

    @classmethod
    def joint(cls, seed: int = 0, *, quick: bool = False) -> DemoSettings:
        """The joint demo: ``oqa_mbv3_tiny`` on the embedded 8×8 digits, searched for
        architecture, per-layer bits and forms under a BitOPs budget (``quick``: tiny sizes
        for tests)."""
        overrides = {"batch_size": 32, "lr": 3e-3, "holdout": 400, "bn_images": 200}
        if quick:
            return cls(
                seed=seed,
                model="oqa_mbv3_tiny",
                fp_epochs=1,
                epochs=1,
                samples=20,
                sample_holdout=None,
                population=12,
                generations=4,
                bitops=JOINT_DEMO_BITOPS,
                verify=3,
                backends=("xgboost",),
                train_overrides={**overrides, "holdout": 1400, "quant_init_images": 32},
            )
        return cls(
            seed=seed,
            model="oqa_mbv3_tiny",
            fp_epochs=10,
            epochs=12,
            samples=500,
            sample_holdout=None,
            population=60,
            generations=200,
            bitops=JOINT_DEMO_BITOPS,
            verify=12,
            train_overrides={**overrides, "quant_init_images": 64},
        )


@dataclass
class DemoResult:
    """Where the demo put things and what it measured."""

    out: Path
    checkpoint: Path
    predictor_metrics: dict[str, dict[str, float]]
    chosen_backend: str
    searches: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    fronts: dict[str, ParetoFront] = field(repr=False)
    export: dict[str, Any] = field(default_factory=dict)


DEMO_OWNER = "demo"
"""How a demo marks its directory (``eqsearch.files.owned_directory``): a rerun reuses it."""


def demo_outputs(settings: DemoSettings) -> dict[str, str]:
    """The files a demo writes under its directory (name → kind, see ``eqsearch.files.KINDS``),
    besides the training run in ``run/``."""
    from eqsearch.engines import ENGINES
    from eqsearch.pareto import FRONT_FILES
    from predictors import predictor_filename

    outputs = {"run/samples.csv": "samples"}
    outputs.update({f"run/{predictor_filename(b)}": "predictor" for b in settings.backends})
    for engine in ENGINES:
        for name, kind in zip(FRONT_FILES, ("pareto", "table", "image"), strict=True):
            outputs[f"{engine}/{name}"] = kind
    outputs.update(
        {
            "export/model.onnx": "onnx",
            "export/weights.npz": "weights",
            "summary.json": "json",
            "summary.md": "report",
        }
    )
    return outputs


def run_demo(
    out: str | Path,
    settings: DemoSettings,
    *,
    console: Console,
    progress: bool = True,
    force: bool = False,
) -> DemoResult:
    """The whole pipeline on embedded digits, every file under ``out``.

    Stages: FP pretraining and supernet training of ``settings.model`` on its dataset
    (:data:`DEMO_MODELS`; reused when ``out/run`` already
    holds the finished checkpoint), measuring ``settings.samples`` subnets on the supernet,
    fitting every predictor backend, NSGA-II with the pymoo and the DEAP engine on the best
    predictor, verifying each front on the supernet, exporting the best verified config to
    ONNX (checked in ONNX Runtime) and packed integer weights. Prints rich tables and writes
    ``summary.json`` and ``summary.md``.

    ``out`` is new, empty, or a demo's directory (marked by the demo, which a rerun reuses);
    ``force`` writes the demo's files into another directory, replacing files of the same
    kind at their names (never a file of another kind). The directory is locked while the
    demo runs.

    Raises:
        InputError: ``out`` is not usable as above (checked before any work), or another
            process is writing it.
    """
    root = check_output_directory(out)
    own = directory_owner(root) == DEMO_OWNER
    if root.is_dir() and any(root.iterdir()) and not own and not force:
        raise InputError(
            f"--out {root} holds files that are not an eqsearch demo's; give a new or empty "
            "directory, or pass --force to write the demo's files there (a demo directory "
            "is reused: its trained supernet is kept)"
        )
    check_outputs(root, demo_outputs(settings), force=force, owner=DEMO_OWNER)
    with owned_directory(root, DEMO_OWNER, what="the demo directory"):
        return _run_stages(root, settings, console, progress)


def _run_stages(root: Path, settings: DemoSettings, console: Console, progress: bool) -> DemoResult:
    from eqsearch.app.console import front_table, generation_bar, status
    from eqsearch.app.measure import sample_subnets, verify_front
    from eqsearch.engines import ENGINES, nsga2
    from eqsearch.problem import make_problem
    from predictors import (
        PredictorOracle,
        build_predictor,
        load_samples,
        prediction_metrics,
        predictor_filename,
        split_indices,
    )
    from supernet.training.config import TrainConfig
    from supernet.training.loop import train_supernet
    from supernet.training.run_files import CHECKPOINT_NAME

    run_dir = root / "run"
    seconds: dict[str, float] = {}
    checkpoint = run_dir / CHECKPOINT_NAME
    dataset = DEMO_MODELS[settings.model]
    config = TrainConfig(
        model=settings.model,
        dataset=dataset,
        fp_epochs=settings.fp_epochs,
        epochs=settings.epochs,
        seed=settings.seed,
        device="cpu",
        **settings.train_overrides,
    )
    started = time.perf_counter()
    console.rule(f"1/6 training {settings.model} on {dataset} (FP pretraining, then the supernet)")
    result = train_supernet(config, run_dir, resume=checkpoint.exists(), progress=progress)
    supernet = result.supernet
    space = supernet.space
    seconds["train"] = time.perf_counter() - started

    console.rule(f"2/6 measuring {settings.samples} subnets on the supernet")
    started = time.perf_counter()
    samples_path = run_dir / "samples.csv"
    sample_subnets(
        checkpoint,
        samples_path,
        settings.samples,
        seed=settings.seed,
        holdout=settings.sample_holdout,
        progress=progress,
    )
    configs, accuracies = load_samples(samples_path, space)
    seconds["sample"] = time.perf_counter() - started

    console.rule("3/6 fitting the accuracy predictors")
    started = time.perf_counter()
    train_rows, test_rows = split_indices(len(configs), holdout=0.2, seed=settings.seed)
    metrics: dict[str, dict[str, float]] = {}
    predictors: dict[str, Any] = {}
    for backend in settings.backends:
        with status(console, f"fitting the {backend} predictor", progress):
            predictor = build_predictor(backend, space, seed=settings.seed)
            predictor.fit([configs[i] for i in train_rows], accuracies[train_rows])
            predicted = predictor.predict([configs[i] for i in test_rows])
            metrics[backend] = prediction_metrics(accuracies[test_rows], predicted)
            predictor.save(run_dir / predictor_filename(backend))
            predictors[backend] = predictor
    chosen = max(metrics, key=lambda name: metrics[name]["kendall_tau"])
    seconds["predictors"] = time.perf_counter() - started
    _print_metrics(console, metrics, chosen, len(train_rows), len(test_rows))

    from supernet.evaluation.evaluate import checkpoint_data, evaluation_set, supernet_oracle
    from supernet.files.checkpoint import load_checkpoint

    # Verify on the images the samples were scored on, so predicted and measured compare.
    scoring_data = checkpoint_data(load_checkpoint(checkpoint), holdout=settings.sample_holdout)
    evaluation = evaluation_set(scoring_data, split="holdout", bn_images=config.bn_images)
    measured_oracle = supernet_oracle(supernet, evaluation)
    searches: dict[str, dict[str, Any]] = {}
    fronts: dict[str, ParetoFront] = {}
    oracle = PredictorOracle(predictors[chosen])
    if settings.bitops is None:
        problem = make_problem(space, oracle, w_bits=settings.w_bits, target="any")
        budget = f"W ≤ {settings.w_bits:g} bits"
    else:
        problem = make_problem(space, oracle, bitops=settings.bitops, target="any")
        budget = f"BitOPs ≤ {settings.bitops:.3g}"
    searched = "architecture, bits and forms" if space.is_joint else "bits and forms"
    for step, engine in enumerate(ENGINES, start=4):
        console.rule(
            f"{step}/6 NSGA-II ({engine}) over {searched}: accuracy ({chosen} predictor) vs "
            f"BitOPs, {budget}, verified on the supernet"
        )
        started = time.perf_counter()
        with generation_bar(
            console, f"{engine} generations", settings.generations, progress
        ) as bar:
            front = nsga2(
                problem,
                engine=engine,
                population=settings.population,
                generations=settings.generations,
                seed=settings.seed,
                progress=bar,
            )
        search_seconds = time.perf_counter() - started
        with status(
            console, f"measuring {settings.verify} front configs on the supernet", progress
        ):
            front, tau = verify_front(front, measured_oracle, settings.verify)
        title = f"{settings.model} / {dataset}: NSGA-II ({engine}), {chosen} predictor, {budget}"
        front = replace(front, info={**front.info, "title": title})
        front.write(root / engine)
        fronts[engine] = front
        searches[engine] = {
            "seconds": search_seconds,
            "front_size": len(front),
            "hypervolume": front.hypervolume((0.0, _reference_bitops(front))),
            "kendall_tau": tau,
            "best_accuracy": float(front.column("accuracy").max()),
        }
        seconds[f"search_{engine}"] = time.perf_counter() - started
    console.rule("6/6 exporting the best verified config to ONNX and packed integer weights")
    started = time.perf_counter()
    export = _export_best(fronts[ENGINES[0]], supernet, result.data, config.bn_images, root)
    seconds["export"] = time.perf_counter() - started
    _print_export(console, export)
    demo = DemoResult(root, checkpoint, metrics, chosen, searches, seconds, fronts, export)
    _print_summary(console, demo, front_table)
    _write_summary(demo, settings, front_table)
    return demo


def _export_best(
    front: ParetoFront, supernet: Any, data: Any, bn_images: int, root: Path
) -> dict[str, Any]:
    """Export the verified front config with the best measured accuracy (ONNX checked in
    ONNX Runtime on the test images, and packed integer weights); returns the figures."""
    import numpy as np

    from supernet.deployment.export import export_onnx
    from supernet.deployment.packed import export_packed_weights

    measured = front.measured if front.measured is not None else np.full(len(front), np.nan)
    index = int(np.nanargmax(measured)) if np.isfinite(measured).any() else 0
    config = front.configs[index]
    out = root / "export"
    out.mkdir(parents=True, exist_ok=True)
    images, labels = data.test_tensors()
    onnx = export_onnx(
        supernet,
        config,
        out / "model.onnx",
        verify_images=images,
        verify_labels=labels,
        calibration_images=data.calibration_images(bn_images),
    )
    packed = export_packed_weights(supernet, config, out / "weights.npz")
    return {
        "front_index": index,
        "images": onnx.images,
        "top1_agreement": onnx.top1_agreement,
        "max_logit_diff": onnx.max_logit_diff,
        "torch_accuracy": onnx.torch_accuracy,
        "onnx_accuracy": onnx.onnx_accuracy,
        "onnx_bytes": onnx.onnx_bytes,
        "packed_bytes": packed.file_bytes,
        "fp32_bytes": packed.fp32_bytes,
    }


def _print_export(console: Console, export: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"pymoo front config #{export['front_index']} exported (export/)")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_row("test images", str(export["images"]))
    table.add_row("top-1 PyTorch / ONNX Runtime", _percent_pair(export))
    table.add_row("top-1 agreement", f"{export['top1_agreement']:.2f} %")
    table.add_row("max |logit difference|", f"{export['max_logit_diff']:.3g}")
    table.add_row("FP32 weights", f"{export['fp32_bytes']:,} B")
    table.add_row("model.onnx (int8 storage)", f"{export['onnx_bytes']:,} B")
    table.add_row("weights.npz (packed at bit width)", f"{export['packed_bytes']:,} B")
    console.print(table)


def _percent_pair(export: dict[str, Any]) -> str:
    torch_accuracy, onnx_accuracy = export["torch_accuracy"], export["onnx_accuracy"]
    if torch_accuracy is None or onnx_accuracy is None:
        return "-"
    return f"{torch_accuracy:.2f} / {onnx_accuracy:.2f} %"


def _reference_bitops(front: ParetoFront) -> float:
    """BitOPs of the 8-bit uniform subnet: a reference point shared by both engines' fronts."""
    point = front.reference.get("W8A8")
    if point is not None:
        return float(point[front.objective_names.index("bitops")])
    return float(front.column("bitops").max())


def _print_metrics(
    console: Console, metrics: dict[str, dict[str, float]], chosen: str, n_fit: int, n_test: int
) -> None:
    from rich.table import Table

    table = Table(title=f"predictors: fitted on {n_fit} subnets, scored on {n_test} held out")
    table.add_column("backend")
    keys = list(next(iter(metrics.values())))
    for key in keys:
        table.add_column(key, justify="right")
    for backend, values in metrics.items():
        name = f"{backend} (drives the search)" if backend == chosen else backend
        table.add_row(name, *(f"{values[key]:.3f}" for key in keys))
    console.print(table)


def _print_summary(console: Console, demo: DemoResult, front_table: Any) -> None:
    from rich.table import Table

    from eqsearch.app.console import print_frame

    table = Table(title="NSGA-II searches (predictor-driven, verified on the supernet)")
    for column in ("engine", "seconds", "front", "hypervolume", "best acc.", "Kendall τ"):
        table.add_column(column, justify="right")
    for engine, row in demo.searches.items():
        tau = row["kendall_tau"]
        table.add_row(
            engine,
            f"{row['seconds']:.1f}",
            str(row["front_size"]),
            f"{row['hypervolume']:.4g}",
            f"{row['best_accuracy']:.2f}",
            "-" if tau is None else f"{tau:.2f}",
        )
    console.print(table)
    first = next(iter(demo.fronts))
    print_frame(console, _verified_rows(front_table(demo.fronts[first])), f"{first} front")
    total = sum(demo.seconds.values())
    console.print(f"every file is under {demo.out}/ — {total:.0f} s in all")


def _verified_rows(frame: Any) -> Any:
    if "measured_accuracy" in frame.columns:
        return frame[frame["measured_accuracy"].notna()]
    return frame


def _write_summary(demo: DemoResult, settings: DemoSettings, front_table: Any) -> None:
    summary = {
        "settings": {k: v for k, v in asdict(settings).items() if k != "train_overrides"},
        "seconds": demo.seconds,
        "predictors": demo.predictor_metrics,
        "chosen_predictor": demo.chosen_backend,
        "searches": demo.searches,
        "export": demo.export,
    }
    atomic_write_text(demo.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    lines = ["# eqsearch demo", "", "| engine | seconds | front | best acc. | Kendall τ |"]
    lines.append("|---|---|---|---|---|")
    for engine, row in demo.searches.items():
        tau = "-" if row["kendall_tau"] is None else f"{row['kendall_tau']:.2f}"
        lines.append(
            f"| {engine} | {row['seconds']:.1f} | {row['front_size']} | "
            f"{row['best_accuracy']:.2f} | {tau} |"
        )
    for engine, front in demo.fronts.items():
        frame = _verified_rows(front_table(front))
        lines += ["", f"## {engine} front (verified configs)", "", *_markdown(frame)]
    if demo.export:
        export = demo.export
        lines += [
            "",
            f"## Export of pymoo front config #{export['front_index']}",
            "",
            f"- top-1 on {export['images']} test images, PyTorch / ONNX Runtime: "
            f"{_percent_pair(export)}; agreement {export['top1_agreement']:.2f} %, "
            f"max |logit difference| {export['max_logit_diff']:.3g}",
            f"- FP32 weights {export['fp32_bytes']:,} B; model.onnx {export['onnx_bytes']:,} B; "
            f"weights.npz {export['packed_bytes']:,} B",
        ]
    atomic_write_text(demo.out / "summary.md", "\n".join(lines) + "\n")


def _markdown(frame: Any) -> list[str]:
    """A DataFrame as a Markdown table (numbers with four significant digits)."""
    from eqsearch.app.console import format_cell

    header = ["#", *map(str, frame.columns)]
    rows = [
        [str(index), *(format_cell(value) for value in row.tolist())]
        for index, row in frame.iterrows()
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
