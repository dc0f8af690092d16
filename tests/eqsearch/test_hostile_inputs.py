"""Bad values, hostile files and wrong environments across every command: exit 2, one line.

Every case runs one command as a user does (``python -m eqsearch ...``, a process of its own,
on its own copy of a small trained run) and asserts the exit code, a single ``error:`` line
on stderr as a terminal shows it (no warning or traceback before it), and that no file of
the run (nor anything beside it) was created, changed or removed. The cases run side by
side; a hang fails the case after a bounded wait.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from eqsearch.app.cli import main
from eqsearch.files import exclusive_writer

TINY_TRAIN = shlex.split(
    "train --model tiny_convnet --dataset digits --epochs 1 --fp-epochs 1 --w-choices 2,4,8 "
    "--a-choices 2,4,8 --holdout 150 --calib-images 150 --quant-init-images 64 --no-progress"
)
CASE_SECONDS = 120
PARALLEL_CASES = max(2, min(4, os.cpu_count() or 2))
"""Cases run side by side (each is a process of its own, one torch thread each)."""


class _Payload:
    """A pickle that would run a shell command when loaded (it must never run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained run (checkpoint, fp.pt, samples, predictor, front) and hostile files."""
    root = tmp_path_factory.mktemp("hostile")
    run = root / "run"
    assert main([*TINY_TRAIN, "--out", str(run)]) == 0
    checkpoint = run / "supernet.pt"
    assert main(["sample", "--supernet", str(checkpoint), "--subnets", "12", "--no-progress"]) == 0
    samples = run / "samples.csv"
    assert main(["fit-predictor", "--samples", str(samples), "--backend", "ridge"]) == 0
    assert (
        main(
            [
                "nsga",
                "--supernet",
                str(checkpoint),
                "--population",
                "8",
                "--generations",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    paths = {
        "root": root,
        "run": run,
        "checkpoint": checkpoint,
        "fp": run / "fp.pt",
        "samples": samples,
        "predictor": run / "predictor-ridge.json",
        "pareto": run / "pareto.json",
    }
    hostile = root / "hostile"
    hostile.mkdir()

    def add(name: str, content: bytes | str) -> Path:
        path = hostile / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        paths[name] = path
        return path

    paths["marker"] = hostile / "PAYLOAD-RAN"
    add("random.pt", b"{" + random.Random(0).randbytes(4095))  # binary, even opening as JSON
    add("pickle.pt", pickle.dumps(_Payload(paths["marker"])))
    torch.save({"state_dict": _Payload(paths["marker"])}, hostile / "zip-pickle.pt")
    paths["zip-pickle.pt"] = hostile / "zip-pickle.pt"
    torch.save({"conv.weight": torch.zeros(3, 3)}, hostile / "wrong-shapes.pt")
    paths["wrong-shapes.pt"] = hostile / "wrong-shapes.pt"
    add("notes.csv", "my,own\nnotes,1\n")
    add("deep.json", "[" * 50_000 + "]" * 50_000)
    add("big.json", "{" + " " * (2 << 20) + "}")
    add("form-3.json", '{"choices": [{"w_bits": 4, "a_bits": 4, "form": 3}]}')
    add("string.json", '"a config"')
    add("checkpoint-as.onnx", checkpoint.read_bytes())
    add("existing.onnx", b"\x08\x07\x12\x07pytorch")
    (hostile / "a-directory.onnx").mkdir()
    paths["a-directory.onnx"] = hostile / "a-directory.onnx"
    (hostile / "not-a-demo").mkdir()
    (hostile / "not-a-demo" / "thesis.tex").write_text("\\begin{document}")
    paths["not-a-demo"] = hostile / "not-a-demo"
    (hostile / "empty-run").mkdir()
    paths["empty-run"] = hostile / "empty-run"
    # a run whose supernet.pt is really an fp.pt, and one whose weights are NaN
    (hostile / "fp-as-run").mkdir()
    shutil.copy(paths["fp"], hostile / "fp-as-run" / "supernet.pt")
    paths["fp-as-run"] = hostile / "fp-as-run"
    payload = torch.load(checkpoint, weights_only=True)
    name = next(key for key in payload["state_dict"] if key.endswith(".weight"))
    payload["state_dict"][name] = payload["state_dict"][name] * float("nan")
    (hostile / "nan-run").mkdir()
    torch.save(payload, hostile / "nan-run" / "supernet.pt")
    paths["nan-run"] = hostile / "nan-run"
    paths["nan.pt"] = hostile / "nan-run" / "supernet.pt"
    # front files edited by hand
    front = json.loads(paths["pareto"].read_text())
    for key, value in (
        ("format", "eqsearch-samples"),
        ("version", 7),
        ("space_fingerprint", "0" * 16),
    ):
        add(f"pareto-{key}.json", json.dumps({**front, key: value}))
    # samples with a duplicated row, and with an accuracy out of range
    lines = samples.read_text().splitlines()
    add("duplicated.csv", "\n".join([*lines, lines[1]]) + "\n")
    fields = lines[1].rsplit(",", 2)
    add("bad-accuracy.csv", "\n".join([lines[0], f"{fields[0]},150.0,{fields[2]}"]) + "\n")
    shutil.copy(run / "samples.space.json", hostile / "duplicated.space.json")
    shutil.copy(run / "samples.space.json", hostile / "bad-accuracy.space.json")
    # damaged predictors: huge coefficients, a garbage XGBoost booster
    ridge = json.loads(paths["predictor"].read_text())
    ridge["model"]["coefficients"] = [1e308] * len(ridge["model"]["coefficients"])
    add("predictor-huge.json", json.dumps(ridge))
    garbage = {**ridge, "backend": "xgboost", "options": {}}
    garbage["model"] = {"booster": "{not a booster", "score_scale": 1.0, "score_offset": 0.0}
    add("predictor-garbage.json", json.dumps(garbage))
    # one shard of a sampling run (the others never ran)
    shard = run / "shards" / "s.shard-0-of-2.csv"
    shard.parent.mkdir()
    assert (
        main(
            [
                "sample",
                "--supernet",
                str(checkpoint),
                "--n",
                "4",
                "--shard",
                "0/2",
                "--out",
                str(run / "shards" / "s.csv"),
                "--no-progress",
            ]
        )
        == 0
    )
    paths["shard"] = shard
    _add_round_3_files(paths, add)
    return paths


def _add_round_3_files(paths: dict[str, Path], add: Callable[[str, bytes | str], Path]) -> None:
    """Hostile files of the third round: numbers, repeated keys, provenance, caches, links."""
    run, root = paths["run"], paths["root"]
    hostile = paths["marker"].parent
    front_text = paths["pareto"].read_text()
    front = json.loads(front_text)
    add("pareto-empty.json", json.dumps({**front, "configs": []}))
    add("pareto-configs-twice.json", front_text.rstrip()[:-1] + ', "configs": []}\n')
    add("pareto-huge-integer.json", front_text.rstrip()[:-1] + ', "x": ' + "9" * 5000 + "}\n")
    add("train-nan-lr.json", '{"model": "tiny_convnet", "dataset": "digits", "lr": NaN}')
    add("train-long-decay.json", '{"weight_decay": ' + "7" * 350 + ".5}")
    add("train-huge-epochs.json", '{"epochs": ' + "1" * 5000 + "}")
    add("train-twice.yaml", "model: tiny_convnet\nepochs: 1\nepochs: 2\n")
    add("train-nan.yaml", "model: tiny_convnet\ndataset: digits\nlr: .nan\n")
    tag = "!!python/object/apply:os.system"
    add("train-python.yaml", f"epochs: {tag} ['touch {paths['marker']}']\n")
    # samples with no sidecars, and a resumable-looking file with a repeated row
    add("bare.csv", paths["samples"].read_text())
    lines = paths["samples"].read_text().splitlines()
    add("again.csv", "\n".join([*lines, lines[-1]]) + "\n")
    shutil.copy(run / "samples.space.json", hostile / "again.space.json")
    shutil.copy(run / "samples.source.json", hostile / "again.source.json")
    # samples whose provenance is missing, or says "calibrate on all images but 5"
    for name in ("unsourced", "negative-bn"):
        (hostile / name).mkdir()
        shutil.copy(paths["samples"], hostile / name / "samples.csv")
        shutil.copy(run / "samples.space.json", hostile / name / "samples.space.json")
        paths[name] = hostile / name / "samples.csv"
    source = json.loads((run / "samples.source.json").read_text())
    source["source"]["bn_images"] = -5
    (hostile / "negative-bn" / "samples.source.json").write_text(json.dumps(source))
    # sensitivity caches: one renamed from another checkpoint's, one with an absurd value
    for method in ("hessian", "measured"):
        argv = ["strategy", "ilp", "--supernet", str(paths["checkpoint"]), "--no-progress"]
        argv += ["--sensitivity", method, "--out", str(root / f"ilp-{method}")]
        assert main(argv) == 0
        shutil.rmtree(root / f"ilp-{method}")
        (cache,) = run.glob(f"sensitivities-{method}-*.json")
        data = json.loads(cache.read_text())
        if method == "hessian":
            data["info"]["checkpoint_sha256"] = "0" * 64
        else:
            data["weight"][0][0][0] = 1e308
        cache.write_text(json.dumps(data))
    # output paths that lead nowhere
    os.symlink("nowhere", hostile / "dangling")
    os.symlink("loop-b", hostile / "loop-a")
    os.symlink("loop-a", hostile / "loop-b")
    paths["dangling"] = hostile / "dangling"
    paths["loop"] = hostile / "loop-a"


@dataclass(frozen=True)
class Case:
    """One bad input: the command (``{name}`` stands for a fixture path) and what it must say."""

    argv: str
    message: str
    env: dict[str, str] = field(default_factory=dict)
    lock: str | None = None
    code: int = 2


CASES: dict[str, Case] = {
    # 1. files destroyed with exit 0
    "eval-json-onto-checkpoint": Case(
        "eval --supernet {checkpoint} --json {checkpoint}", "holds an eqsearch checkpoint"
    ),
    "eval-json-onto-checkpoint-forced": Case(
        "eval --supernet {checkpoint} --json {checkpoint} --force", "not replacing it"
    ),
    "eval-json-onto-samples": Case(
        "eval --supernet {checkpoint} --json {samples}", "holds a samples file"
    ),
    "eval-json-onto-notes": Case(
        "eval --supernet {checkpoint} --json {notes.csv}", "exists; pass --force"
    ),
    "merge-onto-checkpoint": Case(
        "sample --merge {shard} --output {checkpoint} --force", "holds an eqsearch checkpoint"
    ),
    "merge-onto-notes": Case("sample --merge {shard} --output {notes.csv}", "exists; pass --force"),
    "fit-onto-checkpoint": Case(
        "fit-predictor --samples {samples} --output {checkpoint} --force", "holds an eqsearch"
    ),
    "fit-onto-predictor": Case(
        "fit-predictor --samples {samples} --backend ridge", "exists; pass --force"
    ),
    "export-onto-checkpoint": Case(
        "export --supernet {checkpoint} --uniform 4/4 --output {checkpoint-as.onnx} --force",
        "holds an eqsearch checkpoint",
    ),
    "export-onto-model": Case(
        "export --supernet {checkpoint} --uniform 4/4 --output {existing.onnx}",
        "exists; pass --force",
    ),
    "nsga-onto-front": Case("nsga --supernet {checkpoint}", "pareto.json exists; pass --force"),
    # 2. memory without bound
    "nsga-huge-population": Case(
        "nsga --supernet {checkpoint} --population 100000000 --generations 1 --out {root}/f",
        "needs about",
    ),
    "nsga-huge-generations": Case(
        "nsga --supernet {checkpoint} --population 100000 --generations 1000000 --out {root}/f",
        "needs about",
    ),
    "eval-config-dev-zero": Case(
        "eval --supernet {checkpoint} --subnet /dev/zero", "/dev/zero is not a regular file"
    ),
    "train-config-dev-zero": Case(
        "train --config /dev/zero --out {root}/new-run", "/dev/zero is not a regular file"
    ),
    "train-config-too-big": Case(
        "train --config {big.json} --out {root}/new-run", "the limit is 1,048,576 bytes"
    ),
    # 3. concurrent writers, duplicated rows
    "sample-while-another-writes": Case(
        "sample --supernet {checkpoint} --subnets 12 --no-progress",
        "another process is writing samples file",
        lock="samples",
    ),
    "fit-duplicated-configs": Case(
        "fit-predictor --samples {duplicated.csv} --backend ridge --output {root}/new.json",
        "holds the same config as row 1",
    ),
    # 4. resume
    "train-rerun-over-checkpoint": Case(
        " ".join(TINY_TRAIN) + " --out {run}", "supernet.pt exists; pass --resume"
    ),
    "train-resume-nothing": Case("train --resume --out {empty-run}", "nothing to resume"),
    "train-resume-other-settings": Case(
        "train --resume --out {run} --lr 0.5", "stored settings; drop --lr"
    ),
    "train-resume-fp-as-supernet": Case("train --resume --out {fp-as-run}", "cannot be resumed"),
    # 5. front files
    "eval-front-edited-format": Case(
        "eval --supernet {checkpoint} --subnet {pareto-format.json}#0", "not an eqsearch Pareto"
    ),
    "eval-front-edited-version": Case(
        "eval --supernet {checkpoint} --subnet {pareto-version.json}#0", "format version 7"
    ),
    "eval-front-edited-space": Case(
        "eval --supernet {checkpoint} --subnet {pareto-space_fingerprint.json}#0",
        "searched on another space",
    ),
    "export-front-edited-space": Case(
        "export --supernet {checkpoint} --subnet {pareto-space_fingerprint.json}#0 "
        "--output {root}/m.onnx",
        "searched on another space",
    ),
    "eval-front-negative-index": Case(
        "eval --supernet {checkpoint} --subnet {pareto}#-1", "must be a config index"
    ),
    "eval-front-index-past-end": Case(
        "eval --supernet {checkpoint} --subnet {pareto}#999", "configs (#0"
    ),
    "eval-front-word-index": Case(
        "eval --supernet {checkpoint} --subnet {pareto}#best", "must be a config index"
    ),
    # 6. where output goes
    "eval-json-is-directory": Case("eval --supernet {checkpoint} --json {run}", "is a directory"),
    "eval-json-below-a-file": Case(
        "eval --supernet {checkpoint} --json {notes.csv}/t.json", "notes.csv is not a directory"
    ),
    "train-out-is-file": Case("train --out {notes.csv}", "exists and is not a directory"),
    "nsga-out-is-file": Case(
        "nsga --supernet {checkpoint} --out {notes.csv}", "exists and is not a directory"
    ),
    "sample-out-is-directory": Case(
        "sample --supernet {checkpoint} --output {run}", "is not a regular file"
    ),
    "fit-out-is-directory": Case(
        "fit-predictor --samples {samples} --output {run}", "is a directory"
    ),
    "export-out-is-directory": Case(
        "export --supernet {checkpoint} --uniform 4/4 --output {a-directory.onnx}", "is a directory"
    ),
    "study-predictors-out-is-file": Case(
        "study predictors --samples {samples} --out {notes.csv}", "exists and is not a directory"
    ),
    "study-tune-out-is-file": Case(
        "study tune-loss --out {notes.csv}", "exists and is not a directory"
    ),
    "study-ablations-out-is-file": Case(
        "study ablations --out {notes.csv}", "exists and is not a directory"
    ),
    "demo-out-not-a-demo": Case("demo --quick --out {not-a-demo}", "not an eqsearch demo"),
    "demo-out-is-file": Case("demo --quick --out {notes.csv}", "exists and is not a directory"),
    # 8. hostile and odd files on every load path
    "train-init-random-bytes": Case(
        "train --init {random.pt} --out {root}/new-run", "truncated or not a"
    ),
    "train-init-pickle": Case(
        "train --init {pickle.pt} --out {root}/new-run", "nothing in it was executed"
    ),
    "train-init-zip-pickle": Case(
        "train --init {zip-pickle.pt} --out {root}/new-run", "nothing in it was executed"
    ),
    "eval-weights-zip-pickle": Case(
        "eval --supernet {zip-pickle.pt} --model tiny_convnet --dataset digits",
        "nothing in it was executed",
    ),
    "eval-weights-wrong-shapes": Case(
        "eval --supernet {wrong-shapes.pt} --model tiny_convnet --dataset digits",
        "does not fit the tiny_convnet architecture",
    ),
    "train-init-wrong-shapes": Case(
        "train --model tiny_convnet --dataset digits --init {wrong-shapes.pt} --out {root}/new-run",
        "does not fit the tiny_convnet architecture",
    ),
    "eval-pickle": Case("eval --supernet {pickle.pt}", "nothing in it was executed"),
    "nsga-pickle": Case("nsga --supernet {zip-pickle.pt}", "nothing in it was executed"),
    "sample-pickle": Case(
        "sample --supernet {pickle.pt} --output {root}/s.csv", "nothing in it was executed"
    ),
    "export-pickle": Case(
        "export --supernet {zip-pickle.pt} --uniform 4/4 --output {root}/m.onnx",
        "nothing in it was executed",
    ),
    "fit-supernet-pickle": Case(
        "fit-predictor --samples {duplicated.csv} --supernet {pickle.pt} --output {root}/p.json",
        "nothing in it was executed",
    ),
    "nsga-predictor-pickle": Case(
        "nsga --supernet {checkpoint} --predictor {zip-pickle.pt} --out {root}/front",
        "nothing in it was executed",
    ),
    "nsga-predictor-random": Case(
        "nsga --supernet {checkpoint} --predictor {random.pt} --out {root}/front",
        "not a saved predictor",
    ),
    "eval-config-deep": Case(
        "eval --supernet {checkpoint} --subnet {deep.json}", "nested too deeply"
    ),
    "train-config-deep": Case(
        "train --config {deep.json} --out {root}/new-run", "nested too deeply"
    ),
    "nsga-predictor-deep": Case(
        "nsga --supernet {checkpoint} --predictor {deep.json} --out {root}/front",
        "nested too deeply",
    ),
    "eval-front-deep": Case(
        "eval --supernet {checkpoint} --subnet {deep.json}#0", "nested too deeply"
    ),
    "eval-config-form-is-a-number": Case(
        "eval --supernet {checkpoint} --subnet {form-3.json}", "is not a subnet config"
    ),
    "eval-config-is-a-string": Case(
        "eval --supernet {checkpoint} --subnet {string.json}", "subnet config"
    ),
    "nsga-nan-weights": Case("nsga --supernet {nan.pt} --out {root}/front", "non-finite weights"),
    "eval-nan-weights": Case("eval --supernet {nan.pt}", "non-finite weights"),
    "train-resume-nan-weights": Case("train --resume --out {nan-run}", "non-finite weights"),
    "fit-accuracy-out-of-range": Case(
        "fit-predictor --samples {bad-accuracy.csv} --backend ridge --output {root}/p.json",
        "not a percentage in 0..100",
    ),
    # 9. values that make no sense
    "train-image-size-0": Case(
        "train --image-size 0 --out {root}/new-run", "--image-size: must be a positive"
    ),
    "train-optimizer-unknown": Case(
        "train --optimizer rmsprop --out {root}/new-run", "optimizer must be one of adam, adamw"
    ),
    "train-warmup-as-long-as-training": Case(
        "train --epochs 2 --warmup-epochs 2 --out {root}/new-run",
        "warmup_epochs must be below epochs (2)",
    ),
    "train-transforms-unknown": Case(
        "train --dataset imagefolder --data-root {root} --transforms random --out {root}/new-run",
        "transforms must be one of imagenet, cifar, none",
    ),
    "eval-dataset-factory-missing": Case(
        "eval --supernet {checkpoint} --dataset {root}/nowhere.py:make",
        "nowhere.py:make': no such file",
    ),
    "eval-bn-images-0": Case(
        "eval --supernet {checkpoint} --bn-images 0", "--bn-images: must be a positive"
    ),
    "eval-bn-images-negative": Case(
        "eval --supernet {checkpoint} --bn-images -5", "--bn-images: must be a positive"
    ),
    "sample-bn-images-0": Case(
        "sample --supernet {checkpoint} --bn-images 0", "--bn-images: must be a positive"
    ),
    "sample-n-0": Case("sample --supernet {checkpoint} --subnets 0", "must be a positive integer"),
    "export-min-agreement-nan": Case(
        "export --supernet {checkpoint} --uniform 4/4 --output {root}/m.onnx --min-agreement nan",
        "--min-agreement must be a percentage",
    ),
    "sample-fp-checkpoint": Case(
        "sample --supernet {fp} --output {root}/s.csv", "is a full-precision checkpoint"
    ),
    "nsga-forms-per-layer-with-target": Case(
        "nsga --supernet {checkpoint} --target tensorrt --forms-per-layer --out {root}/front",
        "--forms-per-layer chooses among several forms",
    ),
    "nsga-predictor-huge-coefficients": Case(
        "nsga --supernet {checkpoint} --predictor {predictor-huge.json} --out {root}/front",
        "predicts non-finite or absurd accuracies",
    ),
    "merge-incomplete-shards": Case(
        "sample --merge {shard} --output {root}/merged.csv", "missing indices 1, 3"
    ),
    "nsga-seed-overflow": Case(
        "nsga --supernet {checkpoint} --seed 99999999999999999999999", "a seed must be in"
    ),
    "train-seed-overflow": Case(
        "train --seed 99999999999999999999999 --out {root}/new-run", "a seed must be in"
    ),
    "nsga-budget-nan": Case("nsga --supernet {checkpoint} --w-bits nan", "must be a finite number"),
    # 10. environment
    "train-world-size-without-launcher": Case(
        " ".join(TINY_TRAIN) + " --out {root}/new-run",
        "MASTER_ADDR and MASTER_PORT are not",
        env={"WORLD_SIZE": "2", "RANK": "0"},
    ),
    "train-rank-past-world-size": Case(
        " ".join(TINY_TRAIN) + " --out {root}/new-run",
        "RANK must be in 0..1",
        env={"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
    ),
    "sample-rank-not-a-number": Case(
        "sample --supernet {checkpoint} --output {root}/s.csv",
        "RANK must be an integer",
        env={"WORLD_SIZE": "2", "RANK": "abc"},
    ),
    "train-rendezvous-timeout-bad": Case(
        " ".join(TINY_TRAIN) + " --out {root}/new-run",
        "EQSEARCH_RENDEZVOUS_TIMEOUT must be a positive number",
        env={
            "WORLD_SIZE": "2",
            "RANK": "0",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29511",
            "EQSEARCH_RENDEZVOUS_TIMEOUT": "soon",
        },
    ),
    "export-opset-999": Case(
        "export --supernet {checkpoint} --uniform 4/4 --output {root}/m.onnx --opset 999",
        "opset must be <=",
    ),
    # the sensitivity strategies read the same files
    "strategy-pickle": Case(
        "strategy ilp --supernet {zip-pickle.pt} --out {root}/s", "nothing in it was executed"
    ),
    "strategy-nan-weights": Case(
        "strategy greedy --supernet {nan.pt} --out {root}/s", "non-finite weights"
    ),
    "strategy-onto-front": Case(
        "strategy uniform --supernet {checkpoint}", "pareto.json exists; pass --force"
    ),
    "strategy-unknown": Case(
        "strategy annealing --supernet {checkpoint}", "invalid choice: 'annealing'"
    ),
    # 12. messages that mislead
    "eval-device-tpu": Case("eval --supernet {checkpoint} --device tpu", "--device must be"),
    "sample-device-tpu": Case(
        "sample --supernet {checkpoint} --output {root}/s.csv --device tpu", "--device must be"
    ),
    "nsga-device-tpu": Case(
        "nsga --supernet {checkpoint} --verify 2 --device tpu --out {root}/front",
        "--device must be",
    ),
    "nsga-predictor-garbage-booster": Case(
        "nsga --supernet {checkpoint} --predictor {predictor-garbage.json} --out {root}/front",
        "is a damaged predictor file",
    ),
    # -- round 3 ------------------------------------------------------------------------
    # wrong results, silently
    "refine-samples-without-source": Case(
        "nsga --supernet {checkpoint} --verify 2 --refine 1 --samples {unsourced} "
        "--population 8 --generations 1 --out {root}/front --no-progress",
        "has no samples.source.json beside it",
    ),
    "refine-source-negative-bn-images": Case(
        "nsga --supernet {checkpoint} --verify 2 --refine 1 --samples {negative-bn} "
        "--population 8 --generations 1 --out {root}/front --no-progress",
        "bn_images must be a positive number of images",
    ),
    "strategy-cache-of-another-checkpoint": Case(
        "strategy ilp --supernet {checkpoint} --out {root}/s --no-progress",
        "was not computed for this checkpoint with these settings",
    ),
    "strategy-cache-absurd-value": Case(
        "strategy ilp --supernet {checkpoint} --sensitivity measured --out {root}/s --no-progress",
        "holds absurd values",
    ),
    "sample-resume-repeated-row": Case(
        "sample --supernet {checkpoint} --subnets 12 --output {again.csv} --no-progress",
        "repeats row index",
    ),
    "sample-adopt-file-without-sidecars": Case(
        "sample --supernet {checkpoint} --subnets 12 --output {bare.csv} --no-progress",
        "has no bare.space.json or bare.source.json beside it",
    ),
    # memory without bound
    "strategy-ilp-budgets-huge": Case(
        "strategy ilp --supernet {checkpoint} --budgets 1000000000 --out {root}/s", "needs about"
    ),
    "strategy-greedy-budgets-huge": Case(
        "strategy greedy --supernet {checkpoint} --budgets 1000000000 --out {root}/s",
        "needs about",
    ),
    "strategy-random-count-huge": Case(
        "strategy random --supernet {checkpoint} --count 1000000000000 --out {root}/s",
        "needs about",
    ),
    "strategy-random-count-exponent": Case(
        "strategy random --supernet {checkpoint} --count 1e12 --out {root}/s",
        "expected an integer; got '1e12'",
    ),
    "sample-n-huge": Case(
        "sample --supernet {checkpoint} --subnets 10000000000000 --output {root}/s.csv",
        "needs about",
    ),
    "study-tune-probe-mixed-huge": Case(
        "study tune-loss --out {root}/tune --trials 1 --epochs 1 --probe-mixed 1000000000",
        "probe_mixed must be an integer in 0..1000",
    ),
    "fit-mlp-width-huge": Case(
        "fit-predictor --samples {samples} --backend mlp --option width=1000000000 "
        "--output {root}/p.pt",
        "needs about",
    ),
    # numbers in files and flags
    "train-config-nan": Case(
        "train --config {train-nan-lr.json} --out {root}/new-run", "must be finite; got NaN"
    ),
    "train-config-float-overflows": Case(
        "train --config {train-long-decay.json} --out {root}/new-run", "which overflows"
    ),
    "train-config-integer-past-digit-limit": Case(
        "train --config {train-huge-epochs.json} --out {root}/new-run", "is out of range"
    ),
    "train-yaml-repeated-key": Case(
        "train --config {train-twice.yaml} --out {root}/new-run", "the key 'epochs' appears twice"
    ),
    "train-yaml-nan": Case(
        "train --config {train-nan.yaml} --out {root}/new-run", "'lr' must be finite; got .nan"
    ),
    "train-yaml-python-tag": Case(
        "train --config {train-python.yaml} --out {root}/new-run",
        "the tag !!python/object/apply:os.system (line 1) is not read",
    ),
    "eval-front-integer-past-digit-limit": Case(
        "eval --supernet {checkpoint} --subnet {pareto-huge-integer.json}#0", "is out of range"
    ),
    "eval-front-superscript-index": Case(
        "eval --supernet {checkpoint} --subnet {pareto}#²", "must be a config index"
    ),
    "eval-front-index-past-digit-limit": Case(
        "eval --supernet {checkpoint} --subnet {pareto}#" + "1" * 5000, "must be a config index"
    ),
    "eval-front-configs-twice": Case(
        "eval --supernet {checkpoint} --subnet {pareto-configs-twice.json}#0",
        "the key 'configs' appears twice",
    ),
    "eval-front-no-configs": Case(
        "eval --supernet {checkpoint} --subnet {pareto-empty.json}#0", "lists no configs"
    ),
    "fit-option-nan": Case(
        "fit-predictor --samples {samples} --backend ridge --option alpha=NaN "
        "--output {root}/p.json",
        "must be finite; got NaN",
    ),
    "fit-option-infinity": Case(
        "fit-predictor --samples {samples} --backend ridge --option alpha=-Infinity "
        "--output {root}/p.json",
        "must be finite; got -Infinity",
    ),
    "fit-option-huge-integer": Case(
        "fit-predictor --samples {samples} --backend mlp --option "
        "width=1000000000000000000000000000000 --output {root}/p.pt",
        "is out of range",
    ),
    "nsga-population-arabic-digits": Case(
        "nsga --supernet {checkpoint} --population ٣٠ --out {root}/front",
        "expected an integer; got '٣٠'",
    ),
    # flags that were silently ignored
    "eval-config-with-uniform": Case(
        "eval --supernet {checkpoint} --subnet {pareto}#0 --uniform 4/4", "drop --uniform"
    ),
    "eval-config-with-form": Case(
        "eval --supernet {checkpoint} --subnet {pareto}#0 --form channel-sym-sym", "drop --form"
    ),
    "eval-form-empty": Case("eval --supernet {checkpoint} --form ''", "--form is empty"),
    "study-predictors-option-of-a-backend-not-run": Case(
        "study predictors --samples {samples} --backends ridge --option mlp.epochs=0 "
        "--out {root}/study",
        "options for the mlp backend",
    ),
    # output paths that lead nowhere
    "train-out-dangling-link": Case(
        " ".join(TINY_TRAIN) + " --out {dangling}", "is a symbolic link that leads nowhere"
    ),
    "nsga-out-under-a-link-loop": Case(
        "nsga --supernet {checkpoint} --out {loop}/front", "is a symbolic link that leads nowhere"
    ),
    "eval-json-under-a-dangling-link": Case(
        "eval --supernet {checkpoint} --json {dangling}/t.json",
        "is a symbolic link that leads nowhere",
    ),
    # torch's warning about a protocol-4 pickle never precedes the line
    "nsga-protocol-4-pickle": Case("nsga --supernet {pickle.pt}", "nothing in it was executed"),
    "strategy-protocol-4-pickle": Case(
        "strategy ilp --supernet {pickle.pt} --out {root}/s", "nothing in it was executed"
    ),
    "export-protocol-4-pickle": Case(
        "export --supernet {pickle.pt} --uniform 4/4 --output {root}/m.onnx",
        "nothing in it was executed",
    ),
    # 13. runtimes and latency tables
    "runtime-probe-unknown": Case(
        "runtime probe --runtime tvm", "--runtime must be one of onnxruntime, openvino"
    ),
    "runtime-probe-onto-checkpoint": Case(
        "runtime probe --runtime onnxruntime --output {checkpoint} --force",
        "holds an eqsearch checkpoint",
    ),
    "latency-build-onto-front": Case(
        "latency build --supernet {checkpoint} --output {pareto} --force",
        "holds a Pareto front file",
    ),
    "latency-build-pickle": Case(
        "latency build --supernet {zip-pickle.pt} --output {root}/t.json",
        "nothing in it was executed",
    ),
    "latency-show-front": Case("latency show {pareto}", "is not an eqsearch latency table"),
    "inspect-random": Case("inspect {random.pt}", "its contents are unknown"),
    "inspect-zip-pickle": Case("inspect {zip-pickle.pt}", "nothing in it was executed"),
    "inspect-notes": Case("inspect {notes.csv}", "is not a checkpoint, a Pareto front"),
    "inspect-onnx-header-only": Case("inspect {existing.onnx}", "is not an ONNX model"),
    "inspect-directory": Case("inspect {a-directory.onnx}", "is a directory"),
    "inspect-deep-json": Case("inspect {deep.json}", "is not a checkpoint, a Pareto front"),
    "nsga-latency-table-is-front": Case(
        "nsga --supernet {checkpoint} --objectives bitops,latency --latency-table {pareto} "
        "--out {root}/front",
        "is not an eqsearch latency table",
    ),
}
if not torch.cuda.is_available():
    CASES["eval-device-cuda-without-cuda"] = Case(
        "eval --supernet {checkpoint} --device cuda", "CUDA is not available"
    )


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): (
            "link"
            if path.is_symlink()
            else hashlib.sha256(path.read_bytes()).hexdigest()
            if path.is_file()
            else "dir"
        )
        for path in sorted(root.rglob("*"))
    }


@dataclass(frozen=True)
class Outcome:
    """What one case's process did: its exit code, its stderr as a terminal shows it, and
    whether its copy of the files changed."""

    code: int
    err: str
    changed: bool
    payload_ran: bool


def _command_environment(case: Case) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK")
        and not key.startswith(("PYTEST_", "EQSEARCH_", "PYTHONWARNINGS"))
    }
    environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    environment["OMP_NUM_THREADS"] = "1"  # the cases run side by side
    environment["COLUMNS"] = "100"
    environment.update(case.env)
    return environment


def run_case(name: str, files: dict[str, Path]) -> Outcome:
    """Run case ``name`` as a user does (``python -m eqsearch ...`` in a process of its own)
    on its own copy of the fixture files (hard links: a file changed in place or replaced
    shows in the copy's snapshot)."""
    case = CASES[name]
    source = files["root"]
    root = source.parent / f"case-{name}"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(source, root, symlinks=True, copy_function=os.link)
    copied = {key: root / path.relative_to(source) for key, path in files.items()}
    argv = shlex.split(re.sub(r"\{([^{}]+)\}", lambda match: str(copied[match[1]]), case.argv))
    before = _snapshot(root)
    command = [sys.executable, "-m", "eqsearch", *argv]
    environment = _command_environment(case)
    if case.lock is not None:
        with exclusive_writer(copied[case.lock]):
            done = subprocess.run(
                command, env=environment, capture_output=True, text=True, timeout=CASE_SECONDS
            )
    else:
        done = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=CASE_SECONDS
        )
    outcome = Outcome(
        done.returncode, done.stderr, _snapshot(root) != before, copied["marker"].exists()
    )
    shutil.rmtree(root)
    return outcome


def test_there_are_enough_cases_from_every_command() -> None:
    commands = {case.argv.split()[0] for case in CASES.values()}
    import argparse

    from eqsearch.app.cli import build_parser

    subcommands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    # every command but `models` (which reads nothing) has cases
    assert commands == set(subcommands.choices) - {"models"}
    assert len(CASES) >= 60


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, files: dict[str, Path]
) -> Iterator[dict[str, Future[Outcome]]]:
    """Every selected case, started at once on a few threads (each case is a process)."""
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", "")
        == "test_bad_input_exits_2_with_one_line_and_touches_nothing"
    ]
    if os.environ.get("PYTEST_XDIST_WORKER"):
        selected = []  # xdist spreads the cases over its workers: each runs its own
    with ThreadPoolExecutor(max_workers=PARALLEL_CASES) as pool:
        futures = {name: pool.submit(run_case, name, files) for name in selected}
        yield futures
        for future in futures.values():
            future.cancel()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_one_line_and_touches_nothing(
    name: str, files: dict[str, Path], outcomes: dict[str, Future[Outcome]]
) -> None:
    case = CASES[name]
    future = outcomes.get(name)
    outcome = future.result() if future is not None else run_case(name, files)
    err = outcome.err
    assert outcome.code == case.code, err
    assert "Traceback" not in err and "weights_only=False" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert case.message in lines[0], lines[0]
    assert not outcome.changed
    assert not outcome.payload_ran  # no pickle payload ever ran


def _zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def test_the_zip_pickle_really_is_a_torch_file(files: dict[str, Path]) -> None:
    assert any(name.endswith("data.pkl") for name in _zip_names(files["zip-pickle.pt"]))


def _full_disk_after(count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ``count``-th and every later fsync fail as a full disk does."""
    real_fsync = os.fsync
    calls = [0]

    def fsync(descriptor: int) -> None:
        calls[0] += 1
        if calls[0] >= count:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_during_nsga_is_one_line_and_leaves_no_front(
    files: dict[str, Path], tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "front"
    _full_disk_after(1, monkeypatch)
    argv = ["nsga", "--supernet", str(files["checkpoint"]), "--population", "8"]
    code = main([*argv, "--generations", "2", "--out", str(out), "--no-progress"])
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error: No space left on device")
    assert not out.exists() or list(out.iterdir()) == []


def test_a_full_disk_during_sample_keeps_the_rows_written_before(
    files: dict[str, Path], tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "s.csv"
    argv = ["sample", "--supernet", str(files["checkpoint"]), "--output", str(out), "--no-progress"]
    # sidecars (2 files) + the header + 3 rows fit; the 4th row does not
    _full_disk_after(7, monkeypatch)
    code = main([*argv, "--n", "8"])
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "No space left on device" in err[0]
    kept = out.read_text().splitlines()[1:]
    assert 0 < len(kept) < 8
    assert main([*argv, "--n", "8"]) == 0  # the rerun keeps every finished row
    rows = out.read_text().splitlines()[1:]
    assert len(rows) == len({row.split(",")[0] for row in rows}) == 8
    assert rows[: len(kept)] == kept


class _FullDiskStream:
    """A binary file whose writes fail as on a full disk once ``room`` bytes are written."""

    def __init__(self, stream: Any, room: int) -> None:
        self.stream = stream
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return int(self.stream.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __enter__(self) -> _FullDiskStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()


def _full_disk_for_torch(monkeypatch: pytest.MonkeyPatch, room: int = 1000) -> None:
    """Every binary file eqsearch.files opens for writing fills up after ``room`` bytes."""
    import eqsearch.files

    real_fdopen = os.fdopen

    def fdopen(descriptor: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        stream = real_fdopen(descriptor, mode, *args, **kwargs)
        return _FullDiskStream(stream, room) if mode == "wb" else stream

    monkeypatch.setattr(eqsearch.files.os, "fdopen", fdopen)


def test_a_full_disk_under_torch_save_is_the_os_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eqsearch.files import atomic_torch_save

    _full_disk_for_torch(monkeypatch)
    with pytest.raises(OSError) as caught:  # not torch's RuntimeError of its zip writer
        atomic_torch_save({"state_dict": {"w": torch.zeros(4096)}}, tmp_path / "supernet.pt")
    assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_saving_an_mlp_predictor_is_one_line(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    out = tmp_path / "predictor.pt"
    argv = ["fit-predictor", "--samples", str(files["samples"]), "--backend", "mlp"]
    argv += ["--option", "epochs=2", "--out", str(out), "--no-progress"]
    _full_disk_for_torch(monkeypatch)
    code = main(argv)
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == ["error: No space left on device"], err
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_a_path_the_terminal_cannot_encode_is_printed_escaped(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "frönt"
    command = [sys.executable, "-m", "eqsearch", "nsga", "--supernet", str(files["checkpoint"])]
    command += ["--population", "8", "--generations", "1", "--out", str(out), "--no-progress"]
    environment = {**_command_environment(Case("nsga", "")), "PYTHONIOENCODING": "ascii"}
    done = subprocess.run(
        command, env=environment, capture_output=True, timeout=CASE_SECONDS, check=False
    )
    assert done.returncode == 0, done.stderr.decode("ascii", "replace")
    assert done.stderr == b""
    assert f"wrote {tmp_path}/fr\\xf6nt/pareto.json".encode() in done.stdout
    assert (out / "pareto.json").is_file()
