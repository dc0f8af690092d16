"""``SampleRequest`` → ``sample_checkpoint``, and ``eqsearch sample``'s flags: ``--subnets``,
``--output``, the data options, the old spellings as aliases that warn."""

from __future__ import annotations

from pathlib import Path

import pytest

from eqsearch.app.cli import build_parser, main
from eqsearch.app.sampling import SampleRequest, sample_checkpoint
from eqsearch.errors import InputError


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "supernet.pt"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"subnets": 0}, "subnets", "subnets must be a positive integer; got 0"),
        ({"seed": -1}, "seed", "seed must be an integer >= 0"),
        ({"strategy": "grid"}, "strategy", "strategy must be one of spread, uniform"),
        ({"form_draw": "all"}, "form_draw", "form_draw must be one of global, per_layer"),
        ({"split": "val"}, "split", "split must be one of holdout, test"),
        ({"shard": "3/2"}, "shard", "a shard is written i/n"),
    ],
)
def test_a_bad_request_names_its_field(checkpoint: Path, fields, field, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as raised:
        SampleRequest(checkpoint, **fields)
    assert raised.value.field == field and message in str(raised.value)


def test_a_request_without_a_checkpoint_or_merge_output_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="give supernet") as raised:
        SampleRequest()
    assert raised.value.field == "supernet"
    with pytest.raises(InputError) as raised:
        SampleRequest(merge=[tmp_path / "a.csv"])
    assert raised.value.naming("--output") == (
        "--merge writes the merged file to --output; give --output"
    )
    with pytest.raises(InputError, match="checkpoint not found"):
        SampleRequest(tmp_path / "missing.pt")


def test_a_shard_is_read_from_its_text(checkpoint: Path) -> None:
    assert SampleRequest(checkpoint, shard="1/4").shard == (1, 4)
    assert SampleRequest(checkpoint, shard=(0, 2)).shard == (0, 2)


def test_the_cli_names_the_flag_of_the_field(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sample", "--supernet", str(checkpoint), "--strategy", "grid"]) == 2
    assert capsys.readouterr().err.startswith("error: --strategy must be one of spread, uniform")
    assert main(["sample", "--merge", str(checkpoint)]) == 2
    assert capsys.readouterr().err == (
        "error: --merge writes the merged file to --output; give --output\n"
    )


def test_old_spellings_are_hidden_aliases_that_warn(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["sample", "--supernet", "s.pt", "--n", "7", "--out", "x.csv"])
    assert args.subnets == 7 and args.output == "x.csv"
    err = capsys.readouterr().err
    assert "--n is now --subnets" in err and "--out is now --output" in err
    args = parser.parse_args(["sample", "--subnets", "9", "--output", "y.csv"])
    assert (args.subnets, args.output) == (9, "y.csv") and capsys.readouterr().err == ""
    with pytest.raises(SystemExit):
        parser.parse_args(["sample", "--help"])
    text = capsys.readouterr().out
    assert "--subnets" in text and "--output" in text and "--dataset" in text
    assert "--n " not in text and "--out " not in text


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny_convnet supernet on the 8×8 digits, quantizers initialised, untrained."""
    import torch

    from supernet import build_supernet, init_quantizers
    from supernet.data.datasets import build_data
    from supernet.data.spec import DataSpec
    from supernet.files.checkpoint import save_supernet

    spec = DataSpec("digits", holdout=60, eval_batch_size=60)
    data = build_data(spec, seed=0)
    torch.manual_seed(0)
    supernet = build_supernet("tiny_convnet", num_classes=10, in_channels=1, w_bits=(2, 8))
    init_quantizers(supernet, data.calibration_images(32))
    path = tmp_path_factory.mktemp("sample-run") / "supernet.pt"
    save_supernet(path, supernet, data=spec.to_dict(), train_config={"bn_images": 32})
    return path


def test_sample_scores_on_the_data_it_is_given(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import supernet.evaluation.evaluate as evaluate

    seen: list[dict[str, object]] = []
    real = evaluate.checkpoint_data

    def recorded(checkpoint, **options):  # type: ignore[no-untyped-def]
        seen.append(options)
        return real(checkpoint, **options)

    monkeypatch.setattr(evaluate, "checkpoint_data", recorded)
    out = tmp_path / "s.csv"
    request = SampleRequest(
        tiny_checkpoint, output=out, subnets=3, dataset="digits", transforms="none"
    )
    outcome = sample_checkpoint(request)
    assert outcome.run is not None and outcome.run.rows == 3 and outcome.run.path == out
    assert seen[-1]["dataset"] == "digits" and seen[-1]["transforms"] == "none"
    assert seen[-1]["data_root"] is None
