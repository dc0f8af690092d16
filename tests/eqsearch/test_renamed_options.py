"""A renamed option keeps its old name as a hidden alias that warns once and stores the same."""

from __future__ import annotations

import pytest

from eqsearch import errors
from eqsearch.app.commands.common import Parser, add_renamed_option, positive_int


def _parser() -> Parser:
    parser = Parser(prog="x")
    parser.add_argument("--calib-images", dest="bn_images", type=positive_int)
    add_renamed_option(parser, "--bn-images", "--calib-images", dest="bn_images", type=positive_int)
    parser.add_argument("--fast", action="store_true")
    add_renamed_option(parser, "--quick", "--fast", dest="fast", action="store_true")
    return parser


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors, "_WARNED", set())


def test_the_old_name_stores_as_the_new_one_after_one_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = _parser().parse_args(["--bn-images", "7", "--quick", "--bn-images", "9"])
    assert (args.bn_images, args.fast) == (9, True)
    assert capsys.readouterr().err.splitlines() == [
        "warning: --bn-images is now --calib-images here (the old name will be removed)",
        "warning: --quick is now --fast here (the old name will be removed)",
    ]


def test_the_new_name_and_the_defaults_say_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert vars(_parser().parse_args([])) == {"bn_images": None, "fast": False}
    assert vars(_parser().parse_args(["--calib-images", "3"]))["bn_images"] == 3
    assert capsys.readouterr().err == ""


def test_the_old_name_is_hidden_and_checked_as_the_new_one() -> None:
    text = _parser().format_help()
    assert "--calib-images" in text and "--bn-images" not in text and "--quick" not in text
    with pytest.raises(errors.InputError, match="--bn-images"):
        _parser().parse_args(["--bn-images", "0"])
