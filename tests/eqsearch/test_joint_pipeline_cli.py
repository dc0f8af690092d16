"""The joint pipeline from the command line on oqa_mbv3_tiny: train (progressive), sample,
fit-predictor, nsga with BitOPs / MACs / weight-bit budgets, eval and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eqsearch import costs
from eqsearch.app.cli import main
from eqsearch.space import ElasticSpace, SubnetConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A joint supernet trained for two progressive epochs on ~300 of the 8×8 digits, its
    samples and an XGBoost predictor fitted on them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # hundreds of tiny ops: a second thread only waits
    directory = tmp_path_factory.mktemp("joint-run")
    try:
        train = [
            "train",
            "--model",
            "oqa_mbv3_tiny",
            "--dataset",
            "digits",
            "--out",
            str(directory),
            "--fp-epochs",
            "1",
            "--epochs",
            "2",
            "--schedule",
            "progressive",
            "--w-choices",
            "4,8",
            "--a-choices",
            "4,8",
            "--holdout",
            "1500",
            "--batch-size",
            "64",
            "--calib-images",
            "100",
            "--quant-init-images",
            "32",
            "--no-progress",
        ]
        assert main(train) == 0
        samples = directory / "samples.csv"
        checkpoint = str(directory / "supernet.pt")
        assert (
            main(["sample", "--supernet", checkpoint, "--output", str(samples), "--subnets", "12"])
            == 0
        )
        predictor = str(directory / "xgb.json")
        fit = ["fit-predictor", "--samples", str(samples), "--supernet", checkpoint]
        assert main([*fit, "--backend", "xgboost", "--output", predictor]) == 0
    finally:
        torch.set_num_threads(threads)
    return directory


def _space(run: Path) -> ElasticSpace:
    from supernet.files.checkpoint import load_checkpoint

    return ElasticSpace.from_dict(load_checkpoint(run / "supernet.pt")["space"])


def test_progressive_training_opens_bits_and_scores_both_ends(run: Path) -> None:
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    supernet_epochs = [entry for entry in log if entry["phase"] == "supernet"]
    # two epochs over two bit widths: the highest first, then both (OQAT's bit inheritance)
    assert [entry["open_bits"] for entry in supernet_epochs] == [[8], [4, 8]]
    for entry in supernet_epochs:
        assert 0.0 <= entry["acc_smallest"] <= 100.0 and 0.0 <= entry["acc_largest"] <= 100.0
    space = _space(run)
    assert space.is_joint and len(space.genes) == 15


def test_samples_are_joint_configs_of_distinct_architectures(run: Path) -> None:
    import pandas as pd

    space = _space(run)
    frame = pd.read_csv(run / "samples.csv")
    assert len(frame) == 12
    configs = [space.validate(SubnetConfig.from_json(text)) for text in frame["config"]]
    assert len({config.arch for config in configs}) > 1
    expected = [costs.bitops(space, config) for config in configs]
    np.testing.assert_allclose(frame["bitops"].to_numpy(), expected, rtol=1e-9)
    assert ((frame["accuracy"] >= 0) & (frame["accuracy"] <= 100)).all()


def test_nsga_budgets_on_bitops_macs_and_weight_bits(run: Path) -> None:
    space = _space(run)
    checkpoint, predictor = str(run / "supernet.pt"), str(run / "xgb.json")
    search = ["nsga", "--supernet", checkpoint, "--predictor", predictor, "--no-progress"]
    small = ["--population", "12", "--generations", "6"]
    largest_bitops = costs.bitops(space, space.largest())
    budget = 0.3 * largest_bitops
    out = run / "front-bitops"
    assert main([*search, *small, "--bitops", str(budget), "--verify", "2", "--out", str(out)]) == 0
    data = json.loads((out / "pareto.json").read_text())
    assert sum("measured_accuracy" in entry for entry in data["configs"]) == 2
    for entry in data["configs"]:
        config = space.validate(SubnetConfig.from_dict(entry["config"]))
        assert entry["bitops"] == pytest.approx(costs.bitops(space, config))
        assert entry["bitops"] <= budget
    macs_budget = 0.6 * costs.macs(space, space.largest())
    out = run / "front-macs"
    argv = [*search, *small, "--macs", str(macs_budget), "--w-bits", "6", "--out", str(out)]
    assert main(argv) == 0
    for entry in json.loads((out / "pareto.json").read_text())["configs"]:
        config = space.validate(SubnetConfig.from_dict(entry["config"]))
        assert costs.macs(space, config) <= macs_budget
        assert costs.average_weight_bits(space, config) <= 6.0 + 1e-9


def test_eval_and_export_of_a_joint_config(run: Path) -> None:
    space = _space(run)
    checkpoint = str(run / "supernet.pt")
    config = space.sample(np.random.default_rng(3), forms="per_layer")
    pick = str(run / "config.json")
    Path(pick).write_text(config.to_json())
    table = run / "eval.json"
    argv = ["eval", "--supernet", checkpoint, "--subnet", pick, "--json", str(table)]
    assert main([*argv, "--no-progress"]) == 0
    (row,) = json.loads(table.read_text()).values()  # one row per evaluated config
    assert row["macs"] == pytest.approx(costs.macs(space, config))
    assert row["bitops"] == pytest.approx(costs.bitops(space, config))
    onnx_path = run / "model.onnx"
    export = ["export", "--supernet", checkpoint, "--subnet", pick, "--no-progress"]
    assert main([*export, "--output", str(onnx_path)]) == 0
    import onnx

    model = onnx.load(onnx_path)
    nodes = [node.op_type for node in model.graph.node]
    # one input quantization per layer the chosen architecture runs
    assert nodes.count("QuantizeLinear") == len(space.active_layers(config))
    props = {entry.key: entry.value for entry in model.metadata_props}
    # the joint space's architecture and layer names, not those of the extracted network
    assert json.loads(props["eqsearch.architecture"]) == space.canonical(config).arch_dict
    running = [space.layers[index].name for index in space.active_layers(config)]
    bits = json.loads(props["eqsearch.bits_per_layer"])
    assert [entry["layer"] for entry in bits] == running
    assert [entry["w_bits"] for entry in bits] == [
        choice.w_bits for choice in space.canonical(config).choices
    ]
    weights = run / "weights.npz"
    assert main([*export, "--output", str(weights), "--format", "weights"]) == 0
    from supernet.deployment.export import load_packed_weights

    assert len(load_packed_weights(weights)) == len(space.active_layers(config))
