"""The segmenter trainer: label sources and their precedence, the working-grid cache (what inference sees),
patches, and a short run that overfits one case, scored on the input grid through a real model folder."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from clot_cohort import write_case_masks, write_clot_cohort

from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate import dice
from PELabelUpLib.evaluate.detection import lesion_detection
from PELabelUpLib.io import load_ct, read_label_file
from PELabelUpLib.models.folder import load_model
from PELabelUpLib.models.segmenter import (
    SegmenterPreprocessing,
    predict_segmentation,
    prepare_segmenter_input,
)
from training.artery.augment import NO_AUGMENTATION, Augmentation
from training.engine import DistContext
from training.segmenter.data import SegmenterPatchDataset, load_working_case
from training.segmenter.evaluate import case_scores, detection_summary, evaluate_cohort
from training.segmenter.evaluate import main as evaluate_main
from training.segmenter.records import LABEL_SOURCES_CSV
from training.segmenter.sources import (
    LabelSource,
    TerritorySource,
    default_territory,
    parse_label_source,
    parse_territory_source,
    resolve_cases,
)
from training.segmenter.train import parse_args, train

SMALL_PREP = SegmenterPreprocessing(roi_size=(16, 16, 16))


@pytest.fixture(scope="module")
def a_clot_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three clot cases (anisotropic 0.8 x 0.8 x 2 mm grids)."""
    return write_clot_cohort(tmp_path_factory.mktemp("clots"), 3, seed=1)


@pytest.fixture(scope="module")
def label_folders(a_clot_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``pseudo``: pseudo-masks (the clot cut short) and territories of cases 0 and 1; ``corrected``: case 0 only."""
    pseudo, corrected = tmp_path_factory.mktemp("pseudo"), tmp_path_factory.mktemp("corrected")
    for case_id in ("clot-000", "clot-001"):
        emboli, _ = read_label_file(a_clot_cohort / case_id / "emboli.nii.gz")
        arteries, _ = read_label_file(a_clot_cohort / case_id / "arteries.nii.gz")
        short = emboli.copy()
        short[np.flatnonzero(short.any(axis=(1, 2)))[-3:]] = 0
        write_case_masks(pseudo, a_clot_cohort, case_id, {"pseudomask.nii.gz": short, "arteries.nii.gz": arteries})
    emboli, _ = read_label_file(a_clot_cohort / "clot-000" / "emboli.nii.gz")
    write_case_masks(corrected, a_clot_cohort, "clot-000", {"corrected.nii.gz": emboli})
    return {"pseudo": pseudo, "corrected": corrected}


@pytest.mark.parametrize(("specs", "territory", "expected"), [
    (["corrected", "pseudo", "gt"], "gt", {"clot-000": "corrected", "clot-001": "pseudo", "clot-002": "gt"}),
    (["pseudo", "corrected"], "gt", {"clot-000": "pseudo", "clot-001": "pseudo"}),
    (["gt"], "gt", {"clot-000": "gt", "clot-001": "gt", "clot-002": "gt"}),
    (["corrected", "gt"], "pred", {"clot-000": "corrected", "clot-001": "gt"}),  # no predicted territory for 002
])
def test_the_first_label_source_holding_a_file_wins(a_clot_cohort: Path, label_folders: dict[str, Path],
                                                    specs: list[str], territory: str,
                                                    expected: dict[str, str]) -> None:
    sources = [parse_label_source(s if s == "gt" else f"{s}:{label_folders[s]}") for s in specs]
    terr = TerritorySource(label_folders["pseudo"] if territory == "pred" else None)
    cases = resolve_cases(a_clot_cohort, sources, terr)
    assert {c.case_id: c.label_kind for c in cases} == expected
    names = {"gt": "emboli.nii.gz", "pseudo": "pseudomask.nii.gz", "corrected": "corrected.nii.gz"}
    assert all(c.label_path.name == names[c.label_kind] and c.label_path.is_file() for c in cases)
    assert all(c.territory_path.is_relative_to(label_folders["pseudo"]) == (territory == "pred") for c in cases)


def test_the_territory_defaults_to_the_pseudo_masks_own(label_folders: dict[str, Path]) -> None:
    pseudo = parse_label_source(f"pseudo:{label_folders['pseudo']}")
    assert default_territory([LabelSource("gt"), pseudo]) == TerritorySource(label_folders["pseudo"])
    assert default_territory([LabelSource("gt")]) == TerritorySource()
    assert parse_territory_source(f"pred:{label_folders['pseudo']}").root == label_folders["pseudo"]


@pytest.mark.parametrize(("text", "error"), [
    ("pseudo", ValueError), ("corrected:", ValueError), ("gt:somewhere", ValueError), ("truth", ValueError),
    ("pseudo:no-such-folder", InputError),
])
def test_bad_label_sources_are_refused(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_label_source(text)
    with pytest.raises((ValueError, InputError)):
        parse_territory_source("pred:" if text == "pseudo" else text)


def test_no_usable_case_is_an_input_error(a_clot_cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no case"):
        resolve_cases(a_clot_cohort, [LabelSource("corrected", tmp_path)], TerritorySource())


def test_the_cache_holds_what_inference_sees_and_follows_its_sources(a_clot_cohort: Path,
                                                                      label_folders: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    gt_case, = resolve_cases(a_clot_cohort, [LabelSource("gt")], TerritorySource())[:1]
    work = load_working_case(gt_case, SMALL_PREP, tmp_path)
    volume = load_ct(gt_case.ct_path)
    territory, _ = read_label_file(gt_case.territory_path)
    prepared = prepare_segmenter_input(volume, territory, SMALL_PREP)
    assert work is not None and prepared is not None
    assert work.geometry.same_grid(prepared.geometry)
    np.testing.assert_array_equal(work.hu, prepared.hu)
    np.testing.assert_array_equal(work.territory, prepared.territory)
    assert work.label.dtype == np.uint8 and work.label.sum() == work.label_voxels.size > 0
    clot_hu, lumen_hu = work.hu[work.label > 0].mean(), work.hu[(work.territory > 0) & (work.label == 0)].mean()
    assert clot_hu < 150 < lumen_hu  # the label sits on the dark clot, not beside it

    pseudo_case = resolve_cases(a_clot_cohort, [parse_label_source(f"pseudo:{label_folders['pseudo']}")],
                                TerritorySource())[0]
    pseudo = load_working_case(pseudo_case, SMALL_PREP, tmp_path)
    assert pseudo is not None and 0 < pseudo.label.sum() < work.label.sum()  # its own entry: the shorter clot
    assert len(list((tmp_path / "segmenter").iterdir())) == 2

    record = next(p for p in (tmp_path / "segmenter").glob("*/case.json") if '"gt"' in p.read_text())
    written = record.stat().st_mtime_ns
    load_working_case(gt_case, SMALL_PREP, tmp_path)
    assert record.stat().st_mtime_ns == written  # read from the cache
    os.utime(gt_case.label_path, ns=(written + 10**9, written + 10**9))
    load_working_case(gt_case, SMALL_PREP, tmp_path)
    assert record.stat().st_mtime_ns != written  # the label changed: rebuilt


def test_patches_keep_ct_territory_and_label_together_when_flipped(a_clot_cohort: Path, tmp_path: Path) -> None:
    case = resolve_cases(a_clot_cohort, [LabelSource("gt")], TerritorySource())[0]
    work = load_working_case(case, SMALL_PREP, tmp_path)
    flip_always = Augmentation(flip_x_p=1.0, hu_scale=(1.0, 1.0), hu_shift=(0.0, 0.0), noise_hu=(0.0, 0.0))
    torch.manual_seed(0)
    for augmentation in (flip_always, NO_AUGMENTATION):
        dataset = SegmenterPatchDataset([work], SMALL_PREP, patches_per_epoch=6, patch_zyx=(16, 16, 16),
                                        label_fraction=1.0, augmentation=augmentation)
        for i in range(len(dataset)):
            item = dataset[i]
            assert item["image"].shape == (2, 16, 16, 16) and item["label"].shape == (1, 16, 16, 16)
            ct, territory, label = item["image"][0], item["image"][1], item["label"][0]
            assert label.sum() > 0  # centred on the clot
            assert territory[label > 0].min() == 1.0  # the clot lies in the territory ...
            assert ct[label > 0].mean() < 0.55 < ct[(territory > 0) & (label == 0)].mean()  # ... and is dark


@pytest.mark.slow
def test_a_tiny_segmenter_overfits_one_case_and_its_folder_predicts_it(a_clot_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "pelabelup-segmenter"
    args = parse_args(["--cohort", str(a_clot_cohort), "--labels", "gt", "--out", str(out),
                       "--cache-dir", str(tmp_path / "cache"), "--epochs", "3", "--patches-per-epoch", "60",
                       "--batch-size", "2", "--patch", "16", "16", "16", "--filters", "4", "8", "16", "--lr", "2e-2", "--cache-workers", "2",
                       "--augmentation", "none", "--val-cases", "2", "--val-patches", "1", "--progress", "off"])
    run = train(args, DistContext())
    assert run.fit.ended == "completed" and run.model_folder == out

    network, metadata = load_model(out)
    assert metadata["name"] == "pelabelup-segmenter" and metadata["task"] == "segmenter"
    assert metadata["network"]["name"] == "DynUNet" and metadata["network"]["kwargs"]["in_channels"] == 2
    assert SegmenterPreprocessing.from_metadata(metadata) == SMALL_PREP
    training = metadata["training"]
    assert training["epochs_done"] == 3 and training["labels"] == ["gt"] and training["territory"] == "gt"
    assert [(c["case_id"], c["role"], c["labels"]) for c in training["cases"]] == [
        ("clot-000", "train", "gt"), ("clot-001", "val", "gt"), ("clot-002", "val", "gt")]
    assert training["cases"][0]["label_file"] == f"{a_clot_cohort.name}/clot-000/emboli.nii.gz"
    assert training["cohort"]["val_cases"] == ["clot-001", "clot-002"]
    assert 0.0 <= metadata["metrics"]["val_patch_dice"] <= 1.0
    with (out.with_name(out.name + ".run") / LABEL_SOURCES_CSV).open() as f:
        assert list(csv.DictReader(f)) == training["cases"]

    case = a_clot_cohort / "clot-000"
    volume = load_ct(case / "ct.nii.gz")
    territory, _ = read_label_file(case / "arteries.nii.gz")
    truth, _ = read_label_file(case / "emboli.nii.gz")
    mask, prob = predict_segmentation(volume, territory, network, metadata)
    assert mask.shape == truth.shape == volume.hu.shape
    assert dice(mask, truth) > 0.8

    summary = evaluate_cohort(a_clot_cohort, network, metadata, TerritorySource(), limit=1)
    assert summary["cases"] == summary["positive_cases"] == 1
    assert summary["dice_mean"] == pytest.approx(dice(mask, truth))
    found = lesion_detection(mask, truth, volume.geometry.spacing_mm)
    assert (summary["emboli"], summary["emboli_found"], summary["false_components_per_scan"]) == \
        (found.tp + found.fn, found.tp, found.fp) and found.tp >= 1
    # --as-analyzed: what analyze keeps, from the study probability in result.json beside the predicted territory
    pred = tmp_path / "pred"
    write_case_masks(pred, a_clot_cohort, "clot-000", {"arteries.nii.gz": territory})
    for probability, emboli_found in ((0.2, 0), (0.9, found.tp)):
        (pred / "clot-000" / "result.json").write_text(json.dumps({"pe_probability": probability}))
        analyzed = evaluate_cohort(a_clot_cohort, network, metadata, TerritorySource(pred), limit=1, as_analyzed=True)
        assert analyzed["as_analyzed"] and analyzed["emboli_found"] == emboli_found
        assert analyzed["per_case"][0]["predicted_ml"] == (0.0 if probability < 0.5 else
                                                           summary["per_case"][0]["predicted_ml"])
    with pytest.raises(ValueError, match="--as-analyzed needs --territory pred:DIR"):
        evaluate_cohort(a_clot_cohort, network, metadata, TerritorySource(), limit=1, as_analyzed=True)
    weights = (out / "model.pt").read_bytes()
    assert evaluate_main(["--model", str(out), "--cohort", str(a_clot_cohort), "--limit", "1", "--write",
                          "--threads", "1"]) == 0
    recorded = json.loads((out / "metadata.json").read_text())["metrics"][f"heldout:{a_clot_cohort.name}"]
    assert recorded["dice_mean"] == pytest.approx(summary["dice_mean"], abs=1e-4)
    assert (out / "model.pt").read_bytes() == weights
    assert evaluate_main(["--model", str(out), "--cohort", str(a_clot_cohort), "--territory", "nowhere"]) == 2


@pytest.mark.parametrize(("pred", "truth", "expected"), [
    ([1, 1, 0, 0], [1, 0, 0, 0], {"positive": True, "dice": 2 / 3, "precision": 0.5, "recall": 1.0,
                                  "emboli": 1, "emboli_found": 1, "false_components": 0}),
    ([0, 0, 0, 0], [0, 1, 1, 0], {"positive": True, "dice": 0.0, "precision": None, "recall": 0.0,
                                  "emboli": 1, "emboli_found": 0, "false_components": 0}),  # diagonal: one embolus
    ([0, 1, 0, 0], [0, 0, 0, 0], {"positive": False, "dice": None, "precision": 0.0, "recall": None,
                                  "emboli": 0, "emboli_found": 0, "false_components": 1}),
])
def test_case_scores(pred: list[int], truth: list[int], expected: dict) -> None:
    scores = case_scores(np.reshape(pred, (1, 2, 2)), np.reshape(truth, (1, 2, 2)), spacing_mm=(10.0, 10.0, 5.0))
    assert {k: scores[k] for k in expected} == pytest.approx(expected)
    assert scores["predicted_ml"] == 0.5 * sum(pred) and scores["reference_ml"] == 0.5 * sum(truth)


def test_detection_summary_counts_emboli_and_false_components_by_hand() -> None:
    # a row of 7 voxels: emboli {0, 1} and {5}; findings {1} (finds the first), {3} and {6} (false: 6 only
    # borders the second embolus, it does not overlap it)
    first = case_scores(np.array([[[0, 1, 0, 1, 0, 0, 1]]]), np.array([[[1, 1, 0, 0, 0, 1, 0]]]), (1.0, 1.0, 1.0))
    assert (first["emboli"], first["emboli_found"], first["false_components"]) == (2, 1, 2)
    negative = case_scores(np.zeros((1, 1, 7)), np.zeros((1, 1, 7)), (1.0, 1.0, 1.0))
    summary = detection_summary([first, negative])
    assert summary == pytest.approx({"emboli": 2, "emboli_found": 1, "sensitivity": 0.5,
                                     "false_components_per_scan": 1.0, "detection_f1": 2 / (2 + 2 + 1)})
