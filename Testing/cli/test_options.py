"""The number types of :mod:`PELabelUpLib.cli.options` and the one-line error."""

from __future__ import annotations

import argparse

import pytest

from PELabelUpLib.cli.options import error_line, fraction, non_negative_float, positive_float


@pytest.mark.parametrize(("convert", "good", "bad"), [
    (positive_float, {"5e-4": 5e-4, "2": 2.0}, ["0", "-1", "nan", "inf", "-inf"]),
    (fraction, {"0": 0.0, "0.6": 0.6, "1": 1.0}, ["1.01", "-0.5", "nan", "inf"]),
    (non_negative_float, {"0": 0.0, "1e-4": 1e-4}, ["-0.1", "nan", "inf"]),
])
def test_numbers_are_checked_while_parsing(convert, good: dict, bad: list[str]) -> None:
    for text, value in good.items():
        assert convert(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=f"got {text}$"):
            convert(text)
    with pytest.raises(ValueError, match="could not convert"):  # argparse: "invalid ... value"
        convert("x")


def test_an_error_is_one_line() -> None:
    message = ValueError("cohort: no\n  case")
    assert error_line("pelabelup finetune", message) == "pelabelup finetune: error: cohort: no case"
