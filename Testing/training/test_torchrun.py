"""Two processes under ``torchrun`` (gloo on CPU) train the same model as one process with the same global batch.

Same seed, same data, the same global order sharded over the ranks, per-rank batch = global / 2, GroupNorm and
no dropout in the toy network: the weights may differ only by float reduction order. Real subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.engine import CHECKPOINT_DIR, EPOCHS_CSV, LAST_CHECKPOINT, STEPS_CSV, read_csv
from training.toy_trainer import load_toy_model

REPO_ROOT = Path(__file__).resolve().parents[2]
GLOBAL_BATCH = 32
TRAIN_SAMPLES = 256
EPOCHS = 2
STEPS = EPOCHS * TRAIN_SAMPLES // GLOBAL_BATCH
TOLERANCE = 1e-5

pytestmark = pytest.mark.slow
MODEL_DIR = "model"


def toy_command(out: Path, batch_size: int, *extra: str) -> list[str]:
    """The toy trainer with its logs and checkpoints in ``out`` and its model folder in ``out/model``."""
    return ["-m", "training.toy_trainer", "--out", str(out / MODEL_DIR), "--run-dir", str(out), "--epochs", str(EPOCHS), "--batch-size",
            str(batch_size), "--train-samples", str(TRAIN_SAMPLES), "--val-samples", "64", "--seed", "7",
            "--device", "cpu", "--progress", "lines", *extra]


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
                        "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                *toy_command(out, GLOBAL_BATCH // 2, *extra)])


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    run(toy_command(out, GLOBAL_BATCH))
    return out


def max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = load_toy_model(a / MODEL_DIR)[0].state_dict(), load_toy_model(b / MODEL_DIR)[0].state_dict()
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def test_two_processes_agree_with_one(single_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    done = torchrun(out)
    assert "[rank 0]" in done.stderr
    assert "2 processes" in done.stderr
    assert max_weight_difference(single_run, out) < TOLERANCE
    training = load_toy_model(out / MODEL_DIR)[1]["training"]
    assert (training["world_size"], training["global_batch_size"]) == (2, GLOBAL_BATCH)
    # logs: one row per step, written once (rank 0 only), same losses as the single process
    steps = read_csv(out / STEPS_CSV)
    assert [int(r["step"]) for r in steps] == list(range(1, STEPS + 1))
    single_steps = read_csv(single_run / STEPS_CSV)
    for ddp_row, one_row in zip(steps, single_steps, strict=True):
        assert float(ddp_row["loss"]) == pytest.approx(float(one_row["loss"]), rel=1e-4, abs=1e-6)
    epochs = read_csv(out / EPOCHS_CSV)
    assert len(epochs) == EPOCHS
    assert float(epochs[-1]["val_accuracy"]) > 0.95
    assert float(epochs[-1]["val_loss"]) == pytest.approx(float(read_csv(single_run / EPOCHS_CSV)[-1]["val_loss"]),
                                                         rel=1e-4)
    assert sorted(p.name for p in (out / CHECKPOINT_DIR).iterdir()) == [LAST_CHECKPOINT], "no temp file left"
    assert sorted(p.name for p in out.iterdir()) == sorted([CHECKPOINT_DIR, EPOCHS_CSV, STEPS_CSV, MODEL_DIR])


def test_two_processes_resumed_after_an_epoch_agree_with_one(single_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    torchrun(out, "--stop-after-epoch", "1")
    assert not (out / MODEL_DIR).exists()
    checkpoint = torch.load(out / CHECKPOINT_DIR / LAST_CHECKPOINT, weights_only=True)
    assert checkpoint["world_size"] == 2
    assert len(checkpoint["rng"]) == 2, "every rank's random state is kept"
    torchrun(out, "--resume")
    assert max_weight_difference(single_run, out) < TOLERANCE
    assert [int(r["step"]) for r in read_csv(out / STEPS_CSV)] == list(range(1, STEPS + 1))
