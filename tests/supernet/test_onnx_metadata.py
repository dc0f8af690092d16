"""ONNX exports carry eqsearch's ``metadata_props``: bits, form, architecture, normalisation,
source checkpoint and version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
import pytest

from eqsearch import __version__
from eqsearch.app.cli import main
from eqsearch.errors import InputError
from eqsearch.space import LayerChoice, QuantForm, SubnetConfig
from supernet.data.datasets import build_data
from supernet.data.spec import DataSpec
from supernet.deployment.onnx_metadata import read_metadata
from supernet.files.checkpoint import load_supernet

from .tiny_run import tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("run"))


def _props(path: Path) -> dict[str, str]:
    return {entry.key: entry.value for entry in onnx.load(str(path)).metadata_props}


def _export(checkpoint: Path, out: Path, *extra: str) -> None:
    arguments = ["export", "--supernet", str(checkpoint), "--output", str(out), "--no-progress"]
    # an untrained net has near-tied logits: agreement is not what this test is about
    assert main([*arguments, "--val-images", "32", "--min-agreement", "0", *extra]) == 0


def test_a_uniform_export_records_bits_form_normalisation_and_source(
    checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model.onnx"
    _export(checkpoint, out, "--uniform", "4/2", "--form", "tensor-asym-asym")
    props = _props(out)
    supernet, _ = load_supernet(checkpoint)
    space = supernet.space
    bits = json.loads(props["eqsearch.bits_per_layer"])
    assert [entry["layer"] for entry in bits] == [layer.name for layer in space.layers]
    elastic = [bits[index] for index in space.elastic_indices]
    assert elastic and all(
        entry == {"layer": entry["layer"], "w_bits": 4, "a_bits": 2, "form": "tensor-asym-asym"}
        for entry in elastic
    )
    pinned = [bits[index]["w_bits"] for index in space.pinned_indices]
    assert pinned and all(w_bits == 8 for w_bits in pinned)  # first and last stay 8/8
    assert props["eqsearch.form"] == "tensor-asym-asym"
    assert "eqsearch.architecture" not in props  # a fixed architecture
    assert SubnetConfig.from_json(props["eqsearch.config"]) == space.uniform(
        4, 2, QuantForm.parse("tensor-asym-asym")
    )
    mean, std = build_data(DataSpec(name="digits")).normalization  # type: ignore[misc]
    assert json.loads(props["eqsearch.normalization"]) == {"mean": list(mean), "std": list(std)}
    assert props["eqsearch.source"] == "supernet.pt"
    assert props["eqsearch.source_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert props["eqsearch.version"] == __version__
    assert props["eqsearch.model"] == "tiny_convnet" and props["eqsearch.dataset"] == "digits"
    # read back as inspect shows it: JSON values parsed
    assert read_metadata(out)["eqsearch.bits_per_layer"] == bits


def test_mixed_forms_are_recorded_per_layer(checkpoint: Path, tmp_path: Path) -> None:
    supernet, _ = load_supernet(checkpoint)
    space = supernet.space
    forms = [QuantForm.parse("channel-sym-sym"), QuantForm.parse("tensor-asym-asym")]
    choices = [
        choice if index not in space.elastic_indices else LayerChoice(8, 4, forms[position % 2])
        for position, (index, choice) in enumerate(enumerate(space.uniform(8, 8, forms[0]).choices))
    ]
    config = tmp_path / "mixed.json"
    config.write_text(SubnetConfig(tuple(choices)).to_json())
    out = tmp_path / "mixed.onnx"
    _export(checkpoint, out, "--config", str(config))
    props = _props(out)
    assert props["eqsearch.form"] == "per_layer"
    recorded = {entry["form"] for entry in json.loads(props["eqsearch.bits_per_layer"])}
    assert recorded == {"channel-sym-sym", "tensor-asym-asym"}


def test_reading_metadata_of_a_file_that_is_no_onnx_model_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not a model at all")
    with pytest.raises(InputError, match="is not an ONNX model"):
        read_metadata(bogus)
    with pytest.raises(InputError, match="not found"):
        read_metadata(tmp_path / "missing.onnx")
