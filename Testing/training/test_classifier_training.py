"""The slice classifier trainer learns a trivially separable cohort, from slice labels and from study labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixed_networks import ThresholdNet
from toy_cohort import write_toy_cohort

from PELabelUpLib.errors import InputError
from PELabelUpLib.models.artery import predict_artery_territory
from PELabelUpLib.models.folder import load_model
from PELabelUpLib.models.slices import SliceSpec, build_slice_stack
from training.classifier.cohort import read_training_studies, training_studies
from training.classifier.data import (
    SliceDataset,
    balanced_weights,
    cache_key,
    cached_studies,
    territory_folder,
)
from training.classifier.train import main

SMALL = ["--pixel-mm", "1.0", "--size-px", "48", "--widths", "8", "8", "16", "16", "--progress", "off",
         "--territory", "gt", "--device", "cpu"]


@pytest.fixture(scope="module")
def a_toy_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return write_toy_cohort(root / "train", 8, seed=1), write_toy_cohort(root / "val", 6, seed=2)


def test_cache_is_reused_and_labels_align(a_toy_cohort, tmp_path):
    train, _ = a_toy_cohort
    spec = SliceSpec(pixel_mm=1.0, size_px=48)
    studies = read_training_studies(train)
    first = cached_studies(studies, tmp_path, spec, None)
    files = sorted(tmp_path.rglob("*.npz"))
    assert len(files) == 8
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = cached_studies(studies, tmp_path, spec, None)
    assert [f.stat().st_mtime_ns for f in sorted(tmp_path.rglob("*.npz"))] == mtimes
    for a, b, study in zip(first, again, studies, strict=True):
        np.testing.assert_array_equal(a.stack.image, b.stack.image)
        np.testing.assert_array_equal(a.slice_labels, study.slice_labels)
    direct = build_slice_stack(studies[1].load().hu, studies[1].load_arteries(), (1.0, 1.0, 2.0), spec)
    np.testing.assert_array_equal(direct.image, again[1].stack.image)
    dataset = SliceDataset(again, spec)
    x, y = dataset[0]
    assert tuple(x.shape) == (spec.channels, 48, 48)
    assert len(dataset) == 8 * 24
    w = balanced_weights(dataset.labels, 0.4)
    assert w[dataset.labels > 0].sum() == pytest.approx(0.4)


def test_artery_territories_are_cached_once_and_shared_by_slice_specs(a_toy_cohort, tmp_path):
    train, _ = a_toy_cohort
    studies = read_training_studies(train)[:3]
    network = ThresholdNet().eval()
    metadata = {"sha256": "ab" * 32, "preprocessing": {"spacing_mm": [2.0, 2.0, 2.0], "window_hu": [100.0, 600.0],
                                                         "roi_size": [16, 32, 32], "crop_to_body": False}}
    first = cached_studies(studies, tmp_path, SliceSpec(pixel_mm=1.0, size_px=48), (network, metadata))
    calls = network.calls
    assert calls > 0
    territories = sorted(territory_folder(tmp_path, metadata).glob("*.npz"))
    assert [p.stem for p in territories] == [s.case_id for s in studies]
    # another slice spec: new slice stacks, the same territories, no artery-model pass
    wider = SliceSpec(pixel_mm=1.0, size_px=48, territory_dilation_mm=8.0)
    second = cached_studies(studies, tmp_path, wider, (network, metadata))
    assert network.calls == calls
    assert len(list(tmp_path.glob("*/*.npz"))) == 6  # two slice caches of three studies
    for study, a, b in zip(studies, first, second, strict=True):
        # the cached territory builds the same stack as a freshly predicted one
        territory, _ = predict_artery_territory(study.load(), ThresholdNet().eval(), metadata)
        direct = build_slice_stack(study.load().hu, territory, (1.0, 1.0, 2.0), wider)
        assert (a.stack.territory > 0).any()
        np.testing.assert_array_equal(direct.territory, b.stack.territory)
    # another model (other weights), or the same weights with another threshold: their own territories
    for other in (metadata | {"sha256": "cd" * 32},
                  metadata | {"preprocessing": metadata["preprocessing"] | {"threshold": 0.7}}):
        assert territory_folder(tmp_path, other) != territory_folder(tmp_path, metadata)
        before = network.calls
        cached_studies(studies[:1], tmp_path, SliceSpec(pixel_mm=1.0, size_px=48), (network, other))
        assert network.calls > before


@pytest.mark.slow
@pytest.mark.parametrize("supervision", ["slice", "study"])
def test_classifier_learns_the_toy_cohort(a_toy_cohort, tmp_path, supervision):
    train, val = a_toy_cohort
    epochs = "4" if supervision == "slice" else "6"
    extra = ["--samples-per-epoch", "256", "--batch-size", "16"] if supervision == "slice" else ["--batch-size", "2"]
    code = main(["--cohort", str(train), "--val-cohort", str(val), "--out", str(tmp_path / "clf"),
                 "--supervision", supervision, "--epochs", epochs, "--lr", "3e-3", *SMALL, *extra])
    assert code == 0
    network, metadata = load_model(tmp_path / "clf")
    assert metadata["metrics"]["val_study_auc"] >= 0.95
    if supervision == "slice":
        assert metadata["metrics"]["val_slice_auc"] >= 0.95
    assert metadata["preprocessing"]["size_px"] == 48
    assert metadata["requires"]["territory"] == "gt"
    rows = (tmp_path / "clf.run" / "epochs.csv").read_text().strip().splitlines()
    assert len(rows) == int(epochs) + 1
    training = json.loads((tmp_path / "clf" / "metadata.json").read_text())["training"]
    assert training["supervision"] == supervision
    # names only, no machine paths
    assert (training["cohort"], training["val_cohort"], training["out"], training["run_dir"], training["cache_dir"]) \
        == ([train.name], val.name, "clf", "clf.run", "cache")


def _short_run(cohort, out, *options):
    """One short epoch on ``cohort`` with trainer ``options``; the model folder it writes, loaded."""
    assert main(["--cohort", str(cohort), "--out", str(out), "--epochs", "1", "--samples-per-epoch", "32",
                 "--batch-size", "8", *options, *SMALL]) == 0
    return load_model(out)


def test_group_norm_is_a_trainer_option(a_toy_cohort, tmp_path):
    train, _ = a_toy_cohort
    network, metadata = _short_run(train, tmp_path / "clf", "--norm", "group")
    assert metadata["network"]["kwargs"]["norm"] == "group"
    kinds = {type(m) for m in network.modules()}
    assert torch.nn.GroupNorm in kinds and torch.nn.BatchNorm2d not in kinds
    # a slice's output does not depend on the other slices of its batch
    torch.manual_seed(0)
    batch = torch.rand(4, SliceSpec(pixel_mm=1.0, size_px=48).channels, 48, 48)
    network.train()  # training mode: BatchNorm would mix the batch's statistics, GroupNorm does not
    for module in network.modules():
        if isinstance(module, torch.nn.Dropout | torch.nn.Dropout2d):
            module.eval()
    np.testing.assert_allclose(network(batch)[:1].detach().numpy(), network(batch[:1]).detach().numpy(), atol=1e-5)


def test_territory_dilation_is_a_trainer_option(a_toy_cohort, tmp_path):
    train, _ = a_toy_cohort
    _, metadata = _short_run(train, tmp_path / "clf", "--territory-dilation-mm", "6")
    spec = SliceSpec.from_metadata(metadata)
    assert spec.territory_dilation_mm == 6.0
    # the run cached the planes of that view (its own cache key), as build_slice_stack makes them
    study = read_training_studies(train)[1]
    folders = [p.parent.name for p in (tmp_path / "clf.run" / "cache").rglob("*.npz")]
    assert set(folders) == {cache_key(spec, "gt")} != {cache_key(SliceSpec(pixel_mm=1.0, size_px=48), "gt")}
    cached = cached_studies([study], tmp_path / "clf.run" / "cache", spec, None)[0].stack.image
    direct = build_slice_stack(study.load().hu, study.load_arteries(), (1.0, 1.0, 2.0), spec).image
    np.testing.assert_array_equal(cached, direct)


def test_several_cohorts_train_one_model_and_a_study_twice_is_refused(a_toy_cohort, tmp_path):
    train, val = a_toy_cohort
    more = write_toy_cohort(tmp_path / "more", 4, seed=3, prefix="more")
    _, metadata = _short_run(train, tmp_path / "clf", "--cohort", str(more))
    assert metadata["training"]["cohort"] == [train.name, more.name]
    assert metadata["training"]["studies"] == 8 + 4
    with pytest.raises(InputError, match="toy-000 is also in"):
        training_studies([train, val])


def test_shared_options_and_run_layout_stop_resume_and_reach_the_metadata(a_toy_cohort, tmp_path):
    """The options and run layout every trainer shares (training.engine.options, training.engine.layout) work here
    too: a run stopped after its first epoch writes no model folder and keeps its checkpoint in --run-dir; a
    second run there is refused without --resume; --resume finishes it; the settings and figures are recorded with
    the patch trainers' keys."""
    train, _ = a_toy_cohort
    out, run_dir = tmp_path / "models" / "clf", tmp_path / "runs" / "clf"
    common = ["--cohort", str(train), "--out", str(out), "--run-dir", str(run_dir), "--epochs", "2",
              "--samples-per-epoch", "32", "--batch-size", "8", "--threads", "1", "--num-workers", "1",
              "--cohort-description", "toy, seed 1", *SMALL]
    assert main([*common, "--resume"]) == 2  # nothing to resume: refused, nothing written
    assert not out.exists() and not (run_dir / "checkpoints").exists()
    assert main([*common, "--stop-after-epoch", "1"]) == 0
    assert torch.get_num_threads() == 1  # the conftest restores it
    assert not out.exists()
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert len((run_dir / "epochs.csv").read_text().strip().splitlines()) == 2  # header and epoch 1
    assert main(common) == 2  # the run folder holds a run: refused, the checkpoint kept
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert main([*common, "--resume"]) == 0
    training = load_model(out)[1]["training"]
    assert training["epochs_done"] == 2 and training["steps"] == 2 * 4 and training["samples_per_s"] > 0
    assert (training["threads"], training["num_workers"], training["cohort_description"]) == (1, 1, "toy, seed 1")
    assert training["optimizer"] == "AdamW lr 0.002 wd 0.0001, one-cycle per step, 15% warm-up"
    assert training["wall_s"] > 0 and training["device"] == "cpu"
    assert main(common) == 2  # the model folder exists: refused
