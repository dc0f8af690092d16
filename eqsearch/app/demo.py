"""``eqsearch demo``: train, sample, fit both predictors, search with both engines, verify."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.app.demo_report import (
    DemoResult,
    print_export,
    print_metrics,
    print_summary,
    write_summary,
)
from eqsearch.app.demo_settings import DEMO_MODELS, DemoSettings
from eqsearch.errors import InputError
from eqsearch.files import (
    check_output_directory,
    check_outputs,
    directory_owner,
    owned_directory,
)

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.pareto import ParetoFront


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
    from predictors.fitting import save_fitted
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
            report = {
                "backend": backend,
                "samples": str(samples_path),
                "held_out_fraction": 0.2,
                "seed": settings.seed,
                "n_train": len(train_rows),
                "n_test": len(test_rows),
                "metrics": metrics[backend],
            }
            save_fitted(predictor, run_dir / predictor_filename(backend), report)
            predictors[backend] = predictor
    chosen = max(metrics, key=lambda name: metrics[name]["kendall_tau"])
    seconds["predictors"] = time.perf_counter() - started
    print_metrics(console, metrics, chosen, len(train_rows), len(test_rows))

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
    print_export(console, export)
    demo = DemoResult(root, checkpoint, metrics, chosen, searches, seconds, fronts, export)
    print_summary(console, demo, front_table)
    write_summary(demo, settings, front_table)
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


def _reference_bitops(front: ParetoFront) -> float:
    """BitOPs of the 8-bit uniform subnet: a reference point shared by both engines' fronts."""
    point = front.reference.get("W8A8")
    if point is not None:
        return float(point[front.objective_names.index("bitops")])
    return float(front.column("bitops").max())
