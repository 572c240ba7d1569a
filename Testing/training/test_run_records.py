"""The metadata pieces every patch trainer records the same way (training.engine.records)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from training.engine import FitResult
from training.engine.checkpoint import TrainState
from training.engine.records import optimizer_text, patch_metrics, run_figures

MODELS = Path(__file__).resolve().parents[2] / "Resources" / "Models"


def test_run_figures_average_the_epochs_and_skip_missing_rates():
    history = [{"samples_per_s": 2.0, "val_dice": 0.5, "val_loss": 0.9},
               {"samples_per_s": math.nan}, {"samples_per_s": 4.0, "val_dice": 0.7, "val_loss": 0.4}]
    result = FitResult(state=TrainState(epoch=3, step=30, best_metric=0.75), history=history)
    assert run_figures(result, 12.345) == {"epochs_done": 3, "steps": 30, "samples_per_s": 3.0, "wall_s": 12.3}
    assert patch_metrics(result) == {"val_patch_dice": 0.7, "val_patch_loss": 0.4, "best_val_patch_dice": 0.75}


def test_a_run_without_epochs_records_none():
    result = FitResult(state=TrainState())
    assert run_figures(result, 0.0)["samples_per_s"] is None
    assert patch_metrics(result) == {"val_patch_dice": None, "val_patch_loss": None, "best_val_patch_dice": None}


@pytest.mark.parametrize("model", ["pelabelup-arteries", "pelabelup-segmenter"])
def test_optimizer_text_is_what_the_bundled_metadata_says(model):
    training = json.loads((MODELS / model / "metadata.json").read_text())["training"]
    lr, wd = (float(x) for x in re.match(r"AdamW lr (\S+) wd (\S+),", training["optimizer"]).groups())
    assert optimizer_text(lr, wd) == training["optimizer"]
