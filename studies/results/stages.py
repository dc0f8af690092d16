"""The studies behind the docs' result tables, each as one seeded stage of ``study all``.

Every stage calls the study's own function (the demo, the strategies, joint and latency
studies, the predictor and quantizer comparisons, the ablations) at the documented settings,
or at toy sizes for ``--quick``, and returns its tables as :class:`SeedTable` s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from studies.front_search import FrontSearch
from studies.results.finetune import finetune_resnet20
from studies.results.runs import Log, seed_dir, train_once
from studies.results.tables import SeedTable, numeric_frame

if TYPE_CHECKING:
    from eqsearch.app.demo_report import DemoResult
    from eqsearch.app.demo_settings import DemoSettings

StageRun = Callable[[Path, int, bool, Log], dict[str, SeedTable]]


@dataclass(frozen=True)
class Stage:
    """One study of ``study all``.

    Args:
        name: its sub-folder and key.
        title: what its tables show.
        docs: the docs page whose table it regenerates.
        command: the stand-alone command that measures the same table (``{seed}``: the seed).
        run: ``(root, seed, quick, log) -> tables``; ``root`` is ``study all``'s ``--out``,
            where a stage finds the demo run of the same seed.
        seeded: False where one run stands for every seed (the latency tables are timings of
            one machine, not draws of a seed).
    """

    name: str
    title: str
    docs: str
    command: str
    run: StageRun
    seeded: bool = True


def _demo_settings(model: str, seed: int, quick: bool) -> DemoSettings:
    from eqsearch.app.demo_settings import DemoSettings

    if model == "lenet5":
        return DemoSettings.quick(seed) if quick else DemoSettings(seed=seed)
    return DemoSettings.joint(seed, quick=quick)


def ensure_demo(root: Path, model: str, seed: int, quick: bool, log: Log) -> DemoResult:
    """The demo run of ``model`` and ``seed`` under ``root`` (run once; a rerun reuses its
    trained supernet), as :class:`eqsearch.app.demo.DemoResult`."""
    from rich.console import Console

    from eqsearch.app.demo import run_demo

    stage = "demo" if model == "lenet5" else "joint-demo"
    out = seed_dir(root, stage, seed)
    log(f"{stage} seed {seed}: {out}")
    console = Console(quiet=True)
    return run_demo(out, _demo_settings(model, seed, quick), console=console, progress=False)


def _demo(root: Path, seed: int, quick: bool, log: Log) -> dict[str, SeedTable]:
    from eqsearch.app.console import front_table

    result = ensure_demo(root, "lenet5", seed, quick, log)
    settings = _demo_settings("lenet5", seed, quick)
    rows = {}
    for engine, front in result.fronts.items():
        frame = front_table(front)
        measured = frame["measured_accuracy"].to_numpy(dtype=float)
        search = result.searches[engine]
        rows[engine] = {
            "front": float(search["front_size"]),
            "best predicted %": float(search["best_accuracy"]),
            "best verified %": float(np.nanmax(measured)),
            "Kendall τ": np.nan if search["kendall_tau"] is None else search["kendall_tau"],
        }
    from supernet.evaluation.evaluate import checkpoint_data, evaluation_set
    from supernet.files.checkpoint import load_checkpoint

    # The fronts are verified on the images the samples were scored on.
    data = checkpoint_data(load_checkpoint(result.checkpoint), holdout=settings.sample_holdout)
    images = len(evaluation_set(data, split="holdout").labels)
    predictors = numeric_frame(pd.DataFrame(result.predictor_metrics).T)
    return {
        "search": SeedTable(
            numeric_frame(pd.DataFrame(rows).T), images, ("best predicted %", "best verified %")
        ),
        "demo-predictors": SeedTable(predictors, precision=3),
    }


def _demo_checkpoint(root: Path, seed: int, quick: bool, log: Log, model: str = "lenet5") -> Path:
    from supernet.training.run_files import CHECKPOINT_NAME

    stage = "demo" if model == "lenet5" else "joint-demo"
    checkpoint = seed_dir(root, stage, seed) / "run" / CHECKPOINT_NAME
    if not (checkpoint.parent / "samples.csv").is_file():
        ensure_demo(root, model, seed, quick, log)
    return checkpoint


def _uniform_bits(root: Path, seed: int, quick: bool, log: Log) -> dict[str, SeedTable]:
    from supernet.evaluation.evaluate import load_for_evaluation, uniform_table

    checkpoint = _demo_checkpoint(root, seed, quick, log)
    supernet, _, evaluation = load_for_evaluation(checkpoint, split="test")
    bits = (8, 4, 2) if quick else None
    frame = numeric_frame(uniform_table(supernet, evaluation, bits=bits))
    images = len(evaluation.labels)
    return {"uniform-bits": SeedTable(frame, images, tuple(frame.columns))}


def _predictors(root: Path, seed: int, quick: bool, log: Log) -> dict[str, SeedTable]:
    from studies.compare_predictors import compare_predictors

    checkpoint = _demo_checkpoint(root, seed, quick, log)
    out = seed_dir(root, "predictors", seed)
    comparison = compare_predictors(
        checkpoint.parent / "samples.csv", folds=3 if quick else 5, seed=seed, out_dir=out
    )
    return {"predictors": SeedTable(numeric_frame(comparison.table), precision=3)}


def _strategies(root: Path, seed: int, quick: bool, log: Log) -> dict[str, SeedTable]:
    checkpoint = _demo_checkpoint(root, seed, quick, log)
    return _strategy_tables(checkpoint, seed_dir(root, "strategies", seed), seed, quick)


RESNET20_TRAINING: dict[str, object] = {
    "model": "resnet20",
    "dataset": "digits",
    "fp_epochs": 20,
    "epochs": 40,
}
"""The ResNet-20 supernet of the strategies table: scikit-learn's 8×8 digits at their size."""
RESNET20_SAMPLES = 600


def _resnet20_checkpoint(root: Path, seed: int, quick: bool, log: Log) -> Path:
    """The ResNet-20 supernet of ``seed`` under ``root`` with its samples: trained and sampled
    once (an interrupted run is resumed), reused by a rerun."""
    from eqsearch.app.sampling import SampleRequest, sample_checkpoint

    run = seed_dir(root, "resnet20", seed)
    settings = {**RESNET20_TRAINING, "seed": seed}
    if quick:
        settings.update(fp_epochs=1, epochs=1)
    log(f"resnet20 seed {seed}: {run}")
    checkpoint = train_once(run, settings)
    subnets = 24 if quick else RESNET20_SAMPLES
    sample_checkpoint(SampleRequest(supernet=checkpoint, subnets=subnets, seed=seed))
    return checkpoint


def _strategies_resnet20(root: Path, seed: int, quick: bool, log: Log) -> dict[str, SeedTable]:
    checkpoint = _resnet20_checkpoint(root, seed, quick, log)
    tables = _strategy_tables(checkpoint, seed_dir(root, "strategies-resnet20", seed), seed, quick)
    return {"strategies-resnet20": tables["strategies"]}


def _strategy_tables(checkpoint: Path, out: Path, seed: int, quick: bool) -> dict[str, SeedTable]:
    """The strategies study of one supernet with its samples, as the docs' table."""
    from studies.strategies import StrategyStudySettings, run_strategy_study

    settings = StrategyStudySettings(seed=seed)
    if quick:
        settings = replace(
            settings,
            budgets=3,
            refine=1,
            search=FrontSearch(population=8, generations=3, verify=2),
            hessian_images=32,
            hessian_probes=2,
        )
    study = run_strategy_study(checkpoint, out, settings, log=lambda _: None)
    columns = {b: f"best % at W ≤ {b:g}" for b in settings.weight_budgets}
    rows = {
        o.label: _scored_row(o.measurements, o.hypervolume, o.best_at, columns)
        for o in study.outcomes
    }
    frame = numeric_frame(pd.DataFrame(rows).T)
    return {"strategies": SeedTable(frame, study.scoring_images, tuple(columns.values()))}


def _scored_row(
    measured: int,
    hypervolume: float,
    best_at: dict[float, float | None],
    columns: dict[float, str],
) -> dict[str, float]:
    """A front's table row: configs measured, hypervolume, best accuracy within each budget."""
    row = {"measured": float(measured), "hypervolume": hypervolume}
    for budget, column in columns.items():
        value = best_at.get(budget)
        row[column] = np.nan if value is None else value
    return row


def _joint(root: Path, seed: int, quick: bool, log: Log) -> dict[str, SeedTable]:
    from studies.joint_search import JointStudySettings, run_joint_study

    checkpoint = _demo_checkpoint(root, seed, quick, log, model="oqa_mbv3_tiny")
    settings = JointStudySettings(seed=seed)
    if quick:
        settings = replace(
            settings,
            budgets=(0.1, 0.4),
            uniform_bits=(8, 2),
            refine=0,
            search=FrontSearch(population=8, generations=3, verify=2),
        )
    study = run_joint_study(checkpoint, seed_dir(root, "joint", seed), settings, log=lambda _: None)
    columns = {b: f"best ≤ {b:g}·B8" for b in settings.budgets}
    rows = {
        o.label: _scored_row(len(o.measured), o.hypervolume, o.best_at, columns)
        for o in study.outcomes
    }
    frame = numeric_frame(pd.DataFrame(rows).T)
    return {"joint": SeedTable(frame, study.scoring_images, tuple(columns.values()))}


def _quantizers(root: Path, seed: int, quick: bool, log: Log) -> dict[str, SeedTable]:
    from studies.compare_quantizers import ComparisonConfig, compare_quantizers

    config = ComparisonConfig(seed=seed)
    if quick:
        config = replace(config, fp_epochs=1, epochs=1, bits=((2, 2), (4, 4)))
    table = compare_quantizers(config, seed_dir(root, "quantizers", seed))
    frame = numeric_frame(table)
    return {"quantizers": SeedTable(frame, int(table.attrs["images"]), tuple(frame.columns))}


def _ablations(root: Path, seed: int, quick: bool, log: Log) -> dict[str, SeedTable]:
    from studies.ablations import AblationConfig, run_ablations

    config = AblationConfig()
    config = replace(config, base=replace(config.base, seed=seed))
    if quick:
        config = replace(
            config,
            base=replace(config.base, fp_epochs=1, epochs=1),
            bits=(2, 8),
            parts=("schedule",),
        )
    report = run_ablations(config, seed_dir(root, "ablations", seed))
    tables = {}
    for name, frame in report.tables.items():
        cells = numeric_frame(frame)
        accuracy = tuple(c for c in cells.columns if c.startswith("W") or "sym" in c)
        accuracy += tuple(c for c in ("mean", "supernet", "static QAT") if c in cells.columns)
        tables[f"ablation-{name}"] = SeedTable(
            cells, report.images if accuracy else None, tuple(dict.fromkeys(accuracy))
        )
    return tables


def _latency(root: Path, seed: int, quick: bool, log: Log) -> dict[str, SeedTable]:
    from studies.latency import run_latency_study
    from studies.latency_tables import LatencyStudySettings

    settings = LatencyStudySettings(seed=seed)
    checkpoint: Path | None = None
    if quick:
        # Part A on the tests' tiny space only: exporting and timing the searched picks of
        # part B takes many minutes at any size.
        settings = replace(
            settings,
            spaces=("tiny_convnet",),
            image_size=8,
            runtimes=("onnxruntime",),
            threads=1,
            holdout=3,
            repeats=1,
        )
    else:
        checkpoint = _demo_checkpoint(root, seed, quick, log, model="oqa_mbv3_tiny")
    study = run_latency_study(
        seed_dir(root, "latency", seed), settings, supernet=checkpoint, log=lambda _: None
    )
    proxies = {
        f"{row.space} @ {row.table.key.image_size}, {row.runtime}": {
            "ρ BitOPs": row.value("bitops_spearman"),
            "ρ MACs": row.value("macs_spearman"),
            "ρ latency table": row.value("spearman"),
            "median relative error %": 100 * row.value("median_abs_error"),
        }
        for row in study.proxies
    }
    fronts = {}
    for front in study.fronts:
        row = {"best accuracy %": float(front.accuracy.max())}
        for runtime, value in front.hypervolume.items():
            row[f"hypervolume ({runtime})"] = value
        fronts[front.label] = row
    tables = {"latency-proxies": SeedTable(numeric_frame(pd.DataFrame(proxies).T), precision=3)}
    if fronts:
        tables["latency-search"] = SeedTable(numeric_frame(pd.DataFrame(fronts).T))
    return tables


STAGES: tuple[Stage, ...] = (
    Stage(
        "demo",
        "LeNet-5 demo: NSGA-II fronts on the better predictor, verified on the supernet",
        "docs/search.md",
        "eqsearch demo --out demo --seed {seed}",
        _demo,
    ),
    Stage(
        "uniform-bits",
        "LeNet-5 on MNIST-5k: uniform-bit subnets, test split",
        "docs/training.md",
        "eqsearch eval --supernet demo/run/supernet.pt --split test",
        _uniform_bits,
    ),
    Stage(
        "predictors",
        "accuracy predictors, 5-fold cross-validation on the demo's samples",
        "docs/predictors.md",
        "eqsearch study predictors --samples demo/run/samples.csv --seed {seed}",
        _predictors,
    ),
    Stage(
        "strategies",
        "strategies against NSGA-II + CQAP on the LeNet-5 supernet",
        "docs/strategies.md",
        "eqsearch study strategies --supernet demo/run/supernet.pt --seed {seed}",
        _strategies,
    ),
    Stage(
        "strategies-resnet20",
        "strategies against NSGA-II + CQAP on a ResNet-20 supernet (digits)",
        "docs/strategies.md",
        "eqsearch train --model resnet20 --dataset digits --fp-epochs 20 --epochs 40 --seed "
        "{seed} --out resnet20; eqsearch sample --supernet resnet20/supernet.pt --subnets 600 "
        "--seed {seed}; eqsearch study strategies --supernet resnet20/supernet.pt --seed {seed}",
        _strategies_resnet20,
    ),
    Stage(
        "finetune-resnet20",
        "fine-tuning an FP ResNet-20 (digits) into a supernet under four optimizer recipes",
        "docs/own-data-and-fine-tuning.md",
        "eqsearch train --model resnet20 --dataset digits --fp-epochs 15 --epochs 1 --w-choices "
        "2,4,8 --a-choices 2,4,8 --seed {seed} --out fp-run; eqsearch train --model resnet20 "
        "--dataset digits --w-choices 2,4,8 --a-choices 2,4,8 --init fp-run/fp.pt --epochs 9 "
        "--seed {seed} FLAGS; eqsearch eval --supernet supernet.pt --split test --uniform 8/8",
        finetune_resnet20,
    ),
    Stage(
        "joint",
        "joint against bits-only and architecture-only search (oqa_mbv3_tiny)",
        "docs/joint-spaces.md",
        "eqsearch demo --model oqa_mbv3_tiny --out joint-demo --seed {seed}; eqsearch study "
        "joint --supernet joint-demo/run/supernet.pt --seed {seed}",
        _joint,
    ),
    Stage(
        "quantizers",
        "N2UQ against LSQ+ from the same FP start",
        "docs/supernets-and-quantizers.md",
        "python -m studies.compare_quantizers --fp-epochs 10 --epochs 25 --seed {seed}",
        _quantizers,
    ),
    Stage(
        "ablations",
        "EQ-Net's ablations on LeNet-5 / MNIST-5k",
        "docs/tuning-and-ablations.md",
        "eqsearch study ablations --seed {seed}",
        _ablations,
    ),
    Stage(
        "latency",
        "latency proxies and search against measured latency",
        "docs/latency.md",
        "eqsearch study latency --supernet joint-demo/run/supernet.pt",
        _latency,
        seeded=False,
    ),
)
"""Every stage, in the order ``study all`` runs them (cheap and shared runs first)."""
