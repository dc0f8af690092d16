"""`eqsearch nsga` on a joint space's checkpoint: budgets on BitOPs, size and MACs."""

from __future__ import annotations

import json

import pytest
import torch

from eqsearch import costs
from eqsearch.app.cli import main

from .joint_fixtures import joint_space


@pytest.fixture
def checkpoint(tmp_path):
    """A version-2 checkpoint file with a joint space and no weights."""
    path = tmp_path / "run" / "supernet.pt"
    path.parent.mkdir()
    payload = {
        "format": "eqsearch-supernet",
        "version": 2,
        "kind": "supernet",
        "build_info": {"model": "joint"},
        "space": joint_space().to_dict(),
        "state_dict": {},
    }
    torch.save(payload, path)
    return path


def test_joint_search_from_the_command_line(checkpoint, capsys) -> None:
    out = checkpoint.parent / "front"
    argv = [
        "nsga",
        "--supernet",
        str(checkpoint),
        "--objectives",
        "bitops,macs",
        "--macs",
        "300000",
        "--bitops",
        "2e7",
        "--population",
        "20",
        "--generations",
        "10",
        "--out",
        str(out),
        "--target",
        "tensorrt",
    ]
    assert main(argv) == 0
    data = json.loads((out / "pareto.json").read_text())
    assert data["version"] == 2
    assert data["info"]["constraints"] == {"bitops_budget": 2e7, "macs_budget": 300000.0}
    space = joint_space()
    for entry in data["configs"]:
        assert entry["macs"] <= 300_000 and entry["bitops"] <= 2e7
        assert "arch" in entry["config"]
    smallest = costs.macs(space, space.smallest())
    assert (
        main(["nsga", "--supernet", str(checkpoint), "--objectives", "bitops", "--macs", "1000"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.strip().endswith(
        f"error: the budget --macs <= 1000 cannot be met: the smallest reachable MACs is "
        f"{smallest:.2f}"
    )
