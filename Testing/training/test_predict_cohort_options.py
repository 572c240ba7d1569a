"""``python -m training.predict_cohort`` options: the candidate wall rule is off by default and takes mm or 'off'."""

from __future__ import annotations

import pytest

from PELabelUpLib.labelup.pipeline import LabelUpSettings
from training.predict_cohort import parse_args

REQUIRED = ["--cohort", "c", "--out", "o", "--artery-model", "a", "--classifier-model", "k"]


def test_wall_rule_defaults_to_the_chain_setting_and_parses_mm_or_off():
    assert parse_args(REQUIRED).wall_clear_mm is LabelUpSettings.wall_clear_mm is None
    assert parse_args([*REQUIRED, "--wall-clear-mm", "1.5"]).wall_clear_mm == 1.5
    assert parse_args([*REQUIRED, "--wall-clear-mm", "off"]).wall_clear_mm is None


@pytest.mark.parametrize("bad", ["-1", "wide", "nan"])
def test_wall_rule_refuses_what_is_not_a_distance(bad, capsys):
    with pytest.raises(SystemExit):
        parse_args([*REQUIRED, "--wall-clear-mm", bad])
    assert "--wall-clear-mm" in capsys.readouterr().err
