"""The training engine in one process: learning, exact resume, sharded sampling, checkpoints, CSV logs.

Ranks of a multi-process run are played by :class:`DistContext` values (samplers need only rank and world
size); the real two-process run is in ``test_torchrun.py``.
"""

from __future__ import annotations

import argparse
import logging
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

from PELabelUpLib.cli.options import PROG_ENV
from PELabelUpLib.models.inference import cpu_has_native_bf16
from training.engine import (
    CHECKPOINT_DIR,
    EPOCHS_CSV,
    LAST_CHECKPOINT,
    STEPS_CSV,
    CsvLogger,
    DistContext,
    EarlyStopping,
    FitConfig,
    Means,
    Progress,
    TrainState,
    WeightedDistributedSampler,
    fit,
    load_checkpoint,
    make_loader,
    make_precision,
    read_csv,
    resume,
    save_checkpoint,
    seed_everything,
    set_loader_epoch,
    setup_distributed,
)
from training.engine.cli import run_training
from training.toy_trainer import evaluate, load_toy_model, main, make_squares, parse_args, train

SINGLE = DistContext()


def run_toy(run_dir: Path, *extra: str) -> object:
    """A toy run whose logs and checkpoints go to ``run_dir`` and its model folder to ``run_dir/model``."""
    args = parse_args(["--out", str(run_dir / "model"), "--run-dir", str(run_dir), "--device", "cpu",
                       "--progress", "off", *extra])
    return train(args, SINGLE)


def weights(folder_or_checkpoint: Path) -> dict[str, torch.Tensor]:
    if folder_or_checkpoint.is_dir():
        return load_toy_model(folder_or_checkpoint)[0].state_dict()
    return load_checkpoint(folder_or_checkpoint)["model"]


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs by {(a[key] - b[key]).abs().max().item()}"


# --- end to end -------------------------------------------------------------------------------------------

def test_toy_classifier_learns_and_writes_a_model_folder(tmp_path: Path) -> None:
    run = run_toy(tmp_path / "run", "--epochs", "3")
    network, metadata = load_toy_model(run.model_folder)
    assert metadata["task"] == "classifier"
    assert metadata["metrics"]["val_accuracy"] > 0.95
    assert metadata["training"]["samples_per_s"] > 0
    unseen = make_squares(200, seed=987_654)  # data the run never saw
    means = evaluate(network, torch.utils.data.DataLoader(unseen, batch_size=50), torch.device("cpu"))
    accuracy = means.reduce(SINGLE)["val_accuracy"]
    assert accuracy > 0.95


def test_resume_after_two_epochs_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    straight = run_toy(tmp_path / "straight", "--epochs", "4")
    first = run_toy(tmp_path / "resumed", "--epochs", "4", "--stop-after-epoch", "2")
    assert first.fit.ended == "interrupted"
    assert first.model_folder is None
    assert (tmp_path / "resumed" / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file()
    second = run_toy(tmp_path / "resumed", "--epochs", "4", "--resume")
    assert second.fit.state.epoch == 4
    assert_identical(weights(straight.model_folder), weights(second.model_folder))
    rows_straight = read_csv(tmp_path / "straight" / EPOCHS_CSV)
    rows_resumed = read_csv(tmp_path / "resumed" / EPOCHS_CSV)
    assert [(r["epoch"], r["train_loss"], r["val_loss"]) for r in rows_resumed] == \
           [(r["epoch"], r["train_loss"], r["val_loss"]) for r in rows_straight]
    steps = [int(r["step"]) for r in read_csv(tmp_path / "resumed" / STEPS_CSV)]
    assert steps == list(range(1, straight.fit.state.step + 1))


def test_resume_mid_epoch_with_a_weighted_sampler_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    common = ("--epochs", "2", "--balance", "--positive-fraction", "0.25", "--checkpoint-every-steps", "3")
    straight = run_toy(tmp_path / "straight", *common)
    # A job that logged steps 1-5 and died; its last checkpoint is from step 3 (of 8 in the epoch).
    run_toy(tmp_path / "died", *common, "--stop-after-step", "5")
    run_toy(tmp_path / "step3", *common, "--stop-after-step", "3")
    checkpoint = tmp_path / "died" / CHECKPOINT_DIR / LAST_CHECKPOINT
    (tmp_path / "step3" / CHECKPOINT_DIR / LAST_CHECKPOINT).replace(checkpoint)
    assert load_checkpoint(checkpoint)["train_state"]["batch_in_epoch"] == 3
    resumed = run_toy(tmp_path / "died", *common, "--resume")
    assert_identical(weights(straight.model_folder), weights(resumed.model_folder))
    steps = [int(r["step"]) for r in read_csv(tmp_path / "died" / STEPS_CSV)]
    assert steps == list(range(1, 17)), "rows 4 and 5 of the lost leg must be dropped, not duplicated"


def test_toy_cli_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    """The default run folder is ``<out>.run``: a second run there needs --resume, a finished one is not
    overwritten, and --resume without a checkpoint is refused."""
    out = tmp_path / "toy"
    common = ["--out", str(out), "--epochs", "1", "--device", "cpu", "--progress", "off"]
    assert main([*common, "--resume"]) == 2
    assert main([*common, "--stop-after-epoch", "1"]) == 0
    assert (tmp_path / "toy.run" / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file() and not out.exists()
    assert main(common) == 2
    assert main([*common, "--resume"]) == 0
    assert load_toy_model(out)[1]["training"]["epochs_done"] == 1
    assert main([*common, "--resume"]) == 2  # the model folder exists


def test_a_refused_run_is_one_line_and_leaves_no_run_folder_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """A user error after the run folder was started (label_sources.csv, logs) removes it, unless it holds a
    checkpoint (--resume) or was there before; a command running the trainer in a child process names itself."""
    def refused(args: argparse.Namespace, ctx: DistContext, checkpoint: bool = False) -> None:
        (args.run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
        (args.run_dir / "label_sources.csv").write_text("case_id\n")
        if checkpoint:
            (args.run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT).write_bytes(b"a checkpoint")
        raise ValueError("batch_size must be at least 1,\n got 0")

    fresh = argparse.Namespace(device="cpu", run_dir=tmp_path / "fresh.run")
    assert run_training(fresh, refused)[:2] == (False, None)
    assert not fresh.run_dir.exists()
    resumable = argparse.Namespace(device="cpu", run_dir=tmp_path / "resumable.run")
    assert not run_training(resumable, lambda a, c: refused(a, c, checkpoint=True))[0]
    assert (resumable.run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file()
    earlier = argparse.Namespace(device="cpu", run_dir=tmp_path / "earlier.run")
    earlier.run_dir.mkdir()
    assert not run_training(earlier, refused)[0]
    assert (earlier.run_dir / "label_sources.csv").is_file()

    capsys.readouterr()
    monkeypatch.setenv(PROG_ENV, "pelabelup finetune")
    assert not run_training(fresh, refused)[0]
    assert capsys.readouterr().err == "pelabelup finetune: error: batch_size must be at least 1, got 0\n"
    if not torch.cuda.is_available():  # a device torch does not see is a user error too, not a traceback
        assert not run_training(argparse.Namespace(device="cuda"), refused)[0]
        assert capsys.readouterr().err == ("pelabelup finetune: error: device 'cuda' asked for, but torch sees "
                                           "no CUDA device\n")


# --- fit on its own ---------------------------------------------------------------------------------------

def test_fit_stops_early_and_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    seed_everything(0)
    data = TensorDataset(torch.randn(16, 3), torch.randn(16))
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # nothing improves: stop after patience
    loader = make_loader(data, 8, shuffle=True, seed=0, ctx=SINGLE)
    config = FitConfig(epochs=10, early_stopping=EarlyStopping(monitor="val_metric", patience=2), progress="off")
    result = fit(model, optimizer, loader, lambda m, b: ((m(b[0]).squeeze(1) - b[1]) ** 2).mean(), ctx=SINGLE,
                 config=config, out_dir=tmp_path, validate=lambda m: {"val_metric": 1.0})
    assert result.ended == "early_stopped"
    assert result.state.epoch == 3  # the first validation sets the best, two more fail to improve it
    assert (tmp_path / CHECKPOINT_DIR / "best.pt").is_file()
    assert load_checkpoint(tmp_path / CHECKPOINT_DIR / "best.pt")["train_state"]["epoch"] == 1
    assert [int(r["epoch"]) for r in read_csv(tmp_path / EPOCHS_CSV)] == [1, 2, 3]


def test_fit_stop_after_step_on_an_epoch_end_closes_the_epoch_first(tmp_path: Path) -> None:
    data = TensorDataset(torch.randn(8, 2), torch.randn(8))
    model = nn.Linear(2, 1)
    loader = make_loader(data, 4, shuffle=True, seed=0, ctx=SINGLE)  # 2 steps per epoch
    result = fit(model, torch.optim.SGD(model.parameters(), lr=0.01), loader,
                 lambda m, b: ((m(b[0]).squeeze(1) - b[1]) ** 2).mean(), ctx=SINGLE,
                 config=FitConfig(epochs=5, stop_after_step=4, progress="off"), out_dir=tmp_path)
    assert result.ended == "interrupted"
    assert (result.state.epoch, result.state.step, result.state.batch_in_epoch) == (2, 4, 0)
    assert load_checkpoint(tmp_path / CHECKPOINT_DIR / LAST_CHECKPOINT)["train_state"]["epoch"] == 2
    assert len(read_csv(tmp_path / EPOCHS_CSV)) == 2


def test_fit_refuses_a_non_finite_loss(tmp_path: Path) -> None:
    data = TensorDataset(torch.ones(4, 2))
    model = nn.Linear(2, 1)
    with pytest.raises(FloatingPointError, match="step 1"):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), make_loader(data, 2, shuffle=False, seed=0,
                                                                          ctx=SINGLE),
            lambda m, b: m(b[0]).sum() * float("nan"), ctx=SINGLE, config=FitConfig(epochs=1, progress="off"),
            out_dir=tmp_path)


# --- checkpoints ------------------------------------------------------------------------------------------

class _UnpicklableScheduler:
    def state_dict(self) -> dict:
        return {"lr_lambda": lambda step: step}  # pickling a lambda fails part-way through torch.save


def test_checkpoint_write_is_atomic_and_loads_weights_only(tmp_path: Path) -> None:
    model = nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters())
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, model=model, optimizer=optimizer, state=TrainState(epoch=1, step=7), ctx=SINGLE,
                    config={"seed": 3})
    payload = torch.load(path, weights_only=True)
    assert payload["train_state"]["step"] == 7
    with pytest.raises(Exception, match="pickle|lambda"):
        save_checkpoint(path, model=model, optimizer=optimizer, state=TrainState(epoch=2, step=9), ctx=SINGLE,
                        scheduler=_UnpicklableScheduler())
    assert load_checkpoint(path)["train_state"]["step"] == 7, "a failed save must leave the old checkpoint"
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"], "no temporary file may remain"
    assert not save_checkpoint(path, model=model, optimizer=optimizer, state=TrainState(), ctx=DistContext(
        rank=1, world_size=2, is_main=False)), "only rank 0 writes"


def test_resume_restores_the_random_streams(tmp_path: Path) -> None:
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seed_everything(11)
    save_checkpoint(tmp_path / "c.pt", model=model, optimizer=optimizer, state=TrainState(step=1), ctx=SINGLE)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(99)
    resumed = resume(tmp_path / "c.pt", model=model, optimizer=optimizer, ctx=SINGLE)
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert resumed.state.step == 1
    assert got[:2] == expected[:2]
    assert torch.equal(got[2], expected[2])


# --- CSV logs and progress --------------------------------------------------------------------------------

def test_csv_logger_on_resume_drops_rows_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "steps.csv"
    with CsvLogger(path) as logger:
        for step in range(1, 13):
            logger.log(step=step, loss=1.0 / step)
        with pytest.raises(ValueError, match="not among the fixed columns"):
            logger.log(step=13, accuracy=0.5)
    with CsvLogger(path, resume_step=8) as logger:
        logger.log(step=9, loss=0.5)
    rows = read_csv(path)
    assert [int(r["step"]) for r in rows] == list(range(1, 10))
    assert float(rows[-1]["loss"]) == 0.5
    assert path.read_text().count("step,loss") == 1
    with CsvLogger(tmp_path / "rank1.csv", enabled=False) as logger:
        logger.log(step=1, loss=0.0)
    assert not (tmp_path / "rank1.csv").exists()


def test_progress_lines_report_loss_and_samples_per_second(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="training.engine.logs")
    progress = Progress(3, desc="epoch 1/1", mode="lines", every_s=0.0)
    for _ in range(3):
        progress.update(32, loss=0.25)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "step 3/3" in lines[-1]
    assert "loss 0.25" in lines[-1]
    assert "samples/s" in lines[-1]
    assert progress.samples == 96
    quiet = Progress(3, desc="rank 1", enabled=False, mode="lines", every_s=0.0)
    quiet.update(32, loss=0.25)
    assert len(caplog.records) == 3


# --- sharded sampling -------------------------------------------------------------------------------------

def ranks(world_size: int) -> list[DistContext]:
    return [DistContext(rank=r, world_size=world_size, is_main=r == 0) for r in range(world_size)]


def batches(loader: torch.utils.data.DataLoader, epoch: int, rank: int, skip: int = 0) -> list[list[int]]:
    set_loader_epoch(loader, epoch, seed=5, rank=rank, skip_batches=skip)
    return [b[0].tolist() for b in loader]


def test_ranks_together_see_the_single_process_batches() -> None:
    data = TensorDataset(torch.arange(64))
    single = batches(make_loader(data, 16, shuffle=True, seed=5, ctx=SINGLE), epoch=3, rank=0)
    per_rank = [batches(make_loader(data, 8, shuffle=True, seed=5, ctx=c), epoch=3, rank=c.rank) for c in ranks(2)]
    assert [sorted(a + b) for a, b in zip(*per_rank, strict=True)] == [sorted(b) for b in single]
    later = batches(make_loader(data, 16, shuffle=True, seed=5, ctx=SINGLE), epoch=4, rank=0)
    assert later != single


def test_skipping_batches_resumes_the_same_epoch_order() -> None:
    loader = make_loader(TensorDataset(torch.arange(40)), 4, shuffle=True, seed=5, ctx=SINGLE)
    full = batches(loader, epoch=2, rank=0)
    assert batches(loader, epoch=2, rank=0, skip=3) == full[3:]
    assert batches(loader, epoch=2, rank=0) == full, "the next epoch set-up must forget the skip"


def test_weighted_sampler_balances_classes_and_shards_its_draws() -> None:
    labels = torch.tensor([1] * 20 + [0] * 180)
    w = torch.where(labels > 0, 1 / 20, 1 / 180)
    single = WeightedDistributedSampler(w, num_replicas=1, rank=0, seed=1)
    shards = [WeightedDistributedSampler(w, num_replicas=2, rank=r, seed=1) for r in range(2)]
    drawn = list(single)
    assert Counter(drawn) == Counter(list(shards[0]) + list(shards[1]))
    assert list(shards[0]) == drawn[0::2]
    positives = float(labels[drawn].float().mean())
    assert 0.4 < positives < 0.6, f"balanced draws should be half positive, got {positives:.2f}"
    with pytest.raises(ValueError, match="non-negative"):
        WeightedDistributedSampler([1.0, -1.0], num_replicas=1, rank=0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 50), world_size=st.integers(1, 4), seed=st.integers(0, 10_000),
       epoch=st.integers(0, 5), shuffle=st.booleans())
def test_shards_have_equal_length_and_cover_the_dataset(n: int, world_size: int, seed: int, epoch: int,
                                                        shuffle: bool) -> None:
    data = TensorDataset(torch.arange(n))
    shards = []
    for ctx in ranks(world_size):
        sampler = make_loader(data, 4, shuffle=shuffle, seed=seed, ctx=ctx).sampler
        sampler.set_epoch(epoch)
        shards.append(list(sampler))
    assert len({len(s) for s in shards}) == 1
    assert set().union(*shards) == set(range(n))
    eval_shards = [list(make_loader(data, 4, shuffle=False, seed=seed, ctx=c, pad_shards=False).sampler)
                   for c in ranks(world_size)]
    assert sorted(sum(eval_shards, [])) == list(range(n)), "evaluation shards partition without padding"


# --- small pieces -----------------------------------------------------------------------------------------

def test_single_process_context_and_reductions(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = setup_distributed(device="cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    means = Means()
    means.add("loss", 3.0, 2)
    means.add("loss", 1.0, 2)
    assert means.reduce(ctx) == {"loss": 1.0}
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ValueError, match="RANK must lie"):
        setup_distributed(device="cpu")


def test_precision_is_full_float_on_cpu_unless_bf16_is_asked_for_where_native() -> None:
    precision = make_precision(torch.device("cpu"))
    assert precision.dtype is None
    assert not precision.scaler.is_enabled()
    with pytest.raises(ValueError, match="needs a CUDA device"):
        make_precision(torch.device("cpu"), "fp16")
    if cpu_has_native_bf16():
        assert make_precision(torch.device("cpu"), "bf16").dtype is torch.bfloat16
    else:
        with pytest.raises(ValueError, match="needs a CUDA device or a CPU with native bfloat16"):
            make_precision(torch.device("cpu"), "bf16")


def test_seeding_repeats_per_rank_and_differs_across_ranks() -> None:
    seed_everything(4, rank=0)
    a = torch.rand(4)
    seed_everything(4, rank=0)
    assert torch.equal(torch.rand(4), a)
    seed_everything(4, rank=1)
    assert not torch.equal(torch.rand(4), a)
