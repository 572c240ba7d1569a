"""Cohort evaluation against constructions whose figures are known by hand: perfect, empty, one embolus
missed, a far false positive, random scores (AUC by the naive pairs count), bad inputs."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from prediction_helpers import TruthCase, far_blob, read_truth_cases, small_cohort, write_prediction
from scipy import ndimage

from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate import lesion_detection
from PELabelUpLib.evaluate.cohort import evaluate_cohort
from PELabelUpLib.evaluate.predictions import read_cohort, read_study_probability
from PELabelUpLib.evaluate.report import write_report
from PELabelUpLib.evaluate.summary import summarise
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import write_volume
from PELabelUpLib.pseudomask.selection import peaks_by_label


@pytest.fixture(scope="module")
def a_cohort(tmp_path_factory) -> Path:
    return small_cohort(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def truth_cases(a_cohort) -> list[TruthCase]:
    return read_truth_cases(a_cohort)


@pytest.fixture(scope="module")
def perfect_predictions(truth_cases, tmp_path_factory) -> Path:
    """Perfect prediction folders; tests that spoil one file work on a copy."""
    out = tmp_path_factory.mktemp("perfect")
    for case in truth_cases:
        write_prediction(out, case)
    return out


def spoilable(perfect_predictions: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(perfect_predictions, tmp_path / "predictions"))


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components, computed here independently of the code under test."""
    return ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))


def naive_auc(labels, scores) -> float:
    """Probability that a positive outscores a negative, ties one half, over every pair."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    pos, neg = scores[labels][:, None], scores[~labels][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def hand_dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_the_fixture_cohort_has_what_the_constructions_need(truth_cases):
    counts = [components(c.emboli > 0)[1] for c in truth_cases]
    assert [c.positive for c in truth_cases] == [True, True, True, False]
    assert counts[3] == 0
    assert min(counts[:3]) >= 1
    assert max(counts[:3]) >= 2, "the one-embolus-missed construction needs a case with two emboli"


def test_perfect_predictions_score_perfectly(a_cohort, truth_cases, perfect_predictions):
    evaluation = evaluate_cohort(a_cohort, perfect_predictions)
    m = summarise(evaluation)
    n_emboli = sum(components(c.emboli > 0)[1] for c in truth_cases)
    assert m["study"]["auc"] == 1.0
    assert m["slice"]["auc"] == 1.0
    assert m["slice"]["n_positive"] == sum(int(c.slice_labels.sum()) for c in truth_cases)
    assert m["segmentation"]["per_case"] == {c.case_id: 1.0 for c in truth_cases if c.positive}
    assert m["segmentation"]["dice_mean"] == m["segmentation"]["dice_median"] == 1.0
    assert (m["detection"]["tp"], m["detection"]["fn"], m["detection"]["fp"]) == (n_emboli, 0, 0)
    assert m["detection"]["sensitivity"] == m["detection"]["f1"] == 1.0
    assert m["froc"]["sensitivity_at_fp"] == {"0.5": 1.0, "1": 1.0, "2": 1.0, "4": 1.0}
    assert m["pointing"]["slice_accuracy"] == m["pointing"]["study_accuracy"] == 1.0
    assert m["arteries"] is None
    assert any("arteries.nii.gz" in note for note in m["notes"])


def test_empty_masks_find_nothing(a_cohort, truth_cases, tmp_path):
    for case in truth_cases:
        empty = np.zeros(case.emboli.shape, dtype=bool)
        write_prediction(tmp_path, case, mask=empty, heatmap=np.zeros(case.emboli.shape))
    m = summarise(evaluate_cohort(a_cohort, tmp_path))
    n_emboli = sum(components(c.emboli > 0)[1] for c in truth_cases)
    assert m["segmentation"]["dice_mean"] == 0.0
    assert (m["detection"]["tp"], m["detection"]["fn"], m["detection"]["fp"]) == (0, n_emboli, 0)
    assert m["detection"]["sensitivity"] == m["detection"]["f1"] == 0.0
    assert m["froc"]["sensitivity_at_fp"]["4"] == 0.0
    # a flat zero heatmap points at voxel (0, 0) of each slice, in the air far from every clot
    assert m["pointing"]["slice_accuracy"] == 0.0


def test_a_mask_missing_one_embolus_per_case(a_cohort, truth_cases, tmp_path):
    """Each positive case's mask drops exactly one reference component: n - 1 of n found (0.5 with two)."""
    expected_dice, counts = {}, {}
    for case in truth_cases:
        truth = case.emboli > 0
        labels, n = components(truth)
        mask = truth & (labels != 1)
        counts[case.case_id] = n
        expected_dice[case.case_id] = hand_dice(mask, truth) if case.positive else None
        write_prediction(tmp_path, case, mask=mask)
    evaluation = evaluate_cohort(a_cohort, tmp_path)
    for result in evaluation.cases:
        n = counts[result.case_id]
        if result.positive:
            assert (result.tp, result.fn, result.fp) == (n - 1, 1, 0)
            assert result.dice == pytest.approx(expected_dice[result.case_id])
        else:
            assert result.dice is None
    m = summarise(evaluation)
    total, n_positive = sum(counts.values()), sum(c.positive for c in truth_cases)
    assert m["detection"]["sensitivity"] == pytest.approx((total - n_positive) / total)
    if all(counts[c.case_id] == 2 for c in truth_cases if c.positive):
        assert m["detection"]["sensitivity"] == 0.5
    assert m["detection"]["f1"] == pytest.approx(2 * (total - n_positive) / (2 * (total - n_positive) + n_positive))
    # every kept component scores 0.9: the whole FROC is one point, with no false positive
    assert m["froc"]["sensitivity"] == pytest.approx([(total - n_positive) / total])
    assert m["froc"]["mean_fp_per_scan"] == [0.0]


def test_a_hot_false_positive_far_away_costs_one_per_scan(a_cohort, truth_cases, tmp_path):
    for case in truth_cases:
        truth = case.emboli > 0
        blob = far_blob(case)
        heat = np.where(truth, 0.9, 0.0)
        heat[blob] = 0.95  # hotter than every embolus: kept first on the FROC
        write_prediction(tmp_path, case, mask=truth | blob, heatmap=heat)
    evaluation = evaluate_cohort(a_cohort, tmp_path)
    assert [r.fp for r in evaluation.cases] == [1, 1, 1, 1]
    m = summarise(evaluation)
    n_emboli = sum(components(c.emboli > 0)[1] for c in truth_cases)
    assert m["detection"]["fp_per_scan"] == 1.0
    assert m["detection"]["sensitivity"] == 1.0
    assert m["detection"]["f1"] == pytest.approx(2 * n_emboli / (2 * n_emboli + 4))
    # threshold 0.95: blobs only (1 FP/scan, nothing found); 0.9: everything (1 FP/scan, all found)
    assert m["froc"]["thresholds"] == pytest.approx([0.95, 0.9])
    assert m["froc"]["sensitivity_at_fp"] == {"0.5": 0.0, "1": 1.0, "2": 1.0, "4": 1.0}
    # the blob is the global maximum: the 3-D pointing game misses every positive study
    assert m["pointing"]["study_accuracy"] == 0.0


def test_pointing_counts_the_slices_whose_peak_is_on_the_clot(a_cohort, truth_cases, tmp_path):
    hits = total = 0
    for case in truth_cases:
        truth = case.emboli > 0
        blob = far_blob(case)
        heat = np.where(truth, 0.9, 0.0)
        positive_slices = np.flatnonzero(truth.any(axis=(1, 2)))
        decoys = positive_slices[::2]  # on these slices a hotter voxel far from any clot wins
        far_zyx = np.argwhere(blob)[0]
        for k in decoys:
            heat[k, far_zyx[1], far_zyx[2]] = 1.0
        assert not truth[decoys, far_zyx[1], far_zyx[2]].any()
        hits += positive_slices.size - decoys.size
        total += positive_slices.size
        write_prediction(tmp_path, case, heatmap=heat)
    m = summarise(evaluate_cohort(a_cohort, tmp_path, tolerance_mm=0.0))
    assert (m["pointing"]["slice_hits"], m["pointing"]["n_positive_slices"]) == (hits, total)
    assert m["pointing"]["slice_accuracy"] == pytest.approx(hits / total)


def test_random_scores_give_the_naive_pairs_auc(a_cohort, truth_cases, tmp_path):
    rng = np.random.default_rng(5)
    study = np.round(rng.uniform(size=len(truth_cases)), 1)
    slices = [np.round(rng.uniform(size=c.slice_labels.size), 1) for c in truth_cases]  # many ties
    for case, p, s in zip(truth_cases, study, slices, strict=True):
        write_prediction(tmp_path, case, pe_probability=p, slice_probabilities=s)
    m = summarise(evaluate_cohort(a_cohort, tmp_path))
    assert m["study"]["auc"] == pytest.approx(naive_auc([c.positive for c in truth_cases], study))
    pooled = np.concatenate([c.slice_labels for c in truth_cases])
    assert m["slice"]["auc"] == pytest.approx(naive_auc(pooled, np.concatenate(slices)))


def test_segmentation_and_artery_predictions(a_cohort, truth_cases, tmp_path):
    expected_artery = {}
    for n, case in enumerate(truth_cases):
        arteries = case.arteries > 0
        if n % 2:
            arteries = ndimage.binary_erosion(arteries)
        if n < 3:
            expected_artery[case.case_id] = hand_dice(arteries, case.arteries > 0)
        empty = np.zeros(case.emboli.shape, dtype=bool)
        write_prediction(tmp_path, case, mask=empty, segmentation=case.emboli > 0,
                         arteries=arteries if n < 3 else None)
    by_pseudomask = summarise(evaluate_cohort(a_cohort, tmp_path))
    by_segmentation = summarise(evaluate_cohort(a_cohort, tmp_path, mask="segmentation"))
    assert by_pseudomask["segmentation"]["dice_mean"] == 0.0
    assert by_segmentation["segmentation"]["dice_mean"] == 1.0
    assert by_segmentation["segmentation"]["mask"] == "segmentation"
    assert by_segmentation["arteries"]["per_case"] == pytest.approx(expected_artery)
    assert by_segmentation["arteries"]["n_cases"] == 3
    (tmp_path / truth_cases[0].case_id / "segmentation.nii.gz").unlink()
    with pytest.raises(InputError, match="segmentation.nii.gz"):
        evaluate_cohort(a_cohort, tmp_path, mask="segmentation")


def test_missed_emboli_outside_the_territory_are_counted(a_cohort, truth_cases, tmp_path):
    """Nothing predicted; the territory covers one voxel of the first embolus only: every other embolus of a
    positive case is a miss outside the territory, and cases without arteries.nii.gz are not counted."""
    expected = {}
    for n, case in enumerate(truth_cases):
        labels, count = components(case.emboli > 0)
        territory = np.zeros(case.emboli.shape, dtype=bool)
        if count:
            territory[tuple(np.argwhere(labels == 1)[0])] = True
        with_arteries = n != 1
        if with_arteries:
            expected[case.case_id] = max(count - 1, 0)
        write_prediction(tmp_path, case, mask=np.zeros(case.emboli.shape, dtype=bool),
                         arteries=territory if with_arteries else None)
    evaluation = evaluate_cohort(a_cohort, tmp_path)
    got = {c.case_id: c.fn_outside_territory for c in evaluation.cases}
    assert sum(expected.values()) > 0, "the fixture has cases with more than one embolus"
    assert got == expected | {truth_cases[1].case_id: None}
    m = summarise(evaluation)
    assert m["detection"]["missed_outside_territory"] == sum(expected.values())
    report = write_report(evaluation, tmp_path / "report")
    saved = json.loads(report.metrics_json.read_text(encoding="utf-8"))
    assert {r["case_id"]: r["fn_outside_territory"] for r in saved["cases"]} == got
    assert saved["detection"]["missed_outside_territory"] == sum(expected.values())
    assert "Missed emboli outside the predicted territory" in report.report_md.read_text(encoding="utf-8")


def test_missing_predictions_are_listed_or_skipped(a_cohort, truth_cases, perfect_predictions, tmp_path):
    predictions = spoilable(perfect_predictions, tmp_path)
    shutil.rmtree(predictions / truth_cases[0].case_id)
    with pytest.raises(InputError) as error:
        evaluate_cohort(a_cohort, predictions)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(str(predictions))
    assert truth_cases[0].case_id in message
    assert "1 of 4" in message
    evaluation = evaluate_cohort(a_cohort, predictions, allow_missing=True)
    assert evaluation.missing == (truth_cases[0].case_id,)
    assert [r.case_id for r in evaluation.cases] == [c.case_id for c in truth_cases[1:]]


def _shifted(geometry: Geometry, by_mm: float) -> Geometry:
    return replace(geometry, origin_mm=tuple(o + by_mm for o in geometry.origin_mm))


@pytest.mark.parametrize("bad_file", ["heatmap.nii.gz", "pseudomask.nii.gz"])
def test_a_prediction_on_another_grid_names_the_file(a_cohort, truth_cases, perfect_predictions, tmp_path,
                                                     bad_file):
    predictions = spoilable(perfect_predictions, tmp_path)
    case = truth_cases[1]
    values = np.where(case.emboli > 0, 0.9, 0.0).astype(np.float32)
    write_volume(values, predictions / case.case_id / bad_file, _shifted(case.geometry, 2.0))
    with pytest.raises(InputError) as error:
        evaluate_cohort(a_cohort, predictions)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(str(predictions / case.case_id / bad_file))
    assert "origin" in message
    assert "grid differs" in message


def test_a_prediction_of_another_size_is_refused(a_cohort, truth_cases, perfect_predictions, tmp_path):
    predictions = spoilable(perfect_predictions, tmp_path)
    case = truth_cases[0]
    g = case.geometry
    smaller = replace(g, size=(g.size[0], g.size[1], g.size[2] - 4))
    write_prediction(predictions, case, mask=(case.emboli > 0)[:-4], geometry=smaller)
    with pytest.raises(InputError, match=r"size \(x, y, z\)") as error:
        evaluate_cohort(a_cohort, predictions)
    assert str(error.value).startswith(str(predictions / case.case_id / "heatmap.nii.gz"))


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("pe_probability", 1.5, "must lie in"),
    ("pe_probability", "high", "finite number"),
    ("slice_probabilities", [0.5] * 3, "one per axial slice"),
    ("territory", {"source": "atlas"}, r"territory must be an object whose source is one of \('model', 'file'\)"),
    ("territory", "file", "territory must be an object"),
])
def test_a_malformed_result_json_names_it(a_cohort, truth_cases, perfect_predictions, tmp_path, field, value,
                                         reason):
    predictions = spoilable(perfect_predictions, tmp_path)
    path = predictions / truth_cases[2].case_id / "result.json"
    result = json.loads(path.read_text())
    result[field] = value
    path.write_text(json.dumps(result))
    with pytest.raises(InputError, match=reason) as error:
        evaluate_cohort(a_cohort, predictions)
    assert str(error.value).startswith(str(path))


def test_read_study_probability_reads_what_evaluate_reads_and_names_a_bad_file(truth_cases, perfect_predictions,
                                                                               tmp_path):
    folder = perfect_predictions / truth_cases[2].case_id
    assert read_study_probability(folder) == json.loads((folder / "result.json").read_text())["pe_probability"]
    for text, reason in (("{", "not valid JSON"), ('{"pe_probability": 1.5}', "must lie in"),
                         ('{"slice_probabilities": []}', "finite number")):
        (tmp_path / "result.json").write_text(text)
        with pytest.raises(InputError, match=reason) as error:
            read_study_probability(tmp_path)
        assert str(error.value).startswith(str(tmp_path / "result.json"))
    with pytest.raises(InputError, match="file not found"):
        read_study_probability(tmp_path / "nowhere")


def test_counts_agree_with_lesion_detection_and_two_workers_with_one(a_cohort, truth_cases, tmp_path):
    rng = np.random.default_rng(2)
    masks = {}
    for case in truth_cases:
        mask = ndimage.binary_dilation(case.emboli > 0) & (rng.uniform(size=case.emboli.shape) < 0.6)
        masks[case.case_id] = mask | far_blob(case)
        write_prediction(tmp_path, case, mask=masks[case.case_id], heatmap=rng.uniform(size=mask.shape),
                         pe_probability=rng.uniform())
    evaluation = evaluate_cohort(a_cohort, tmp_path)
    for case, result in zip(truth_cases, evaluation.cases, strict=True):
        reference = lesion_detection(masks[case.case_id], case.emboli > 0)
        assert (result.tp, result.fn, result.fp) == (reference.tp, reference.fn, reference.fp)
        assert result.n_findings == len(reference.findings)
    assert summarise(evaluation) == summarise(evaluate_cohort(a_cohort, tmp_path, workers=2))


def test_peaks_by_label_match_scipy():
    rng = np.random.default_rng(4)
    labels, n = components(rng.uniform(size=(6, 20, 20)) < 0.2)
    heat = rng.uniform(size=labels.shape)
    expected = ndimage.maximum(heat, labels=labels, index=np.arange(1, n + 1))
    np.testing.assert_array_equal(peaks_by_label(labels, n, heat), expected)


def test_an_unknown_cohort_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="cohort.csv"):
        evaluate_cohort(tmp_path / "nowhere", tmp_path)


def test_emboli_are_counted_by_the_level_case_json_names(a_cohort, truth_cases, tmp_path):
    levels = {c.case_id: {e["label"]: e["level"] for e in json.loads((c.folder / "case.json").read_text())["emboli"]}
              for c in truth_cases}
    expected_total: dict[str, int] = {}
    for case in truth_cases:
        for value in np.unique(case.emboli[case.emboli > 0]):
            expected_total[levels[case.case_id][int(value)]] = expected_total.get(levels[case.case_id][int(value)],
                                                                                  0) + 1
    assert sum(expected_total.values()) >= 6
    dropped: dict[str, int] = {}
    for case in truth_cases:  # each positive case's mask leaves out its embolus of value 1
        if case.positive:
            level = levels[case.case_id][1]
            dropped[level] = dropped.get(level, 0) + 1
        write_prediction(tmp_path, case, mask=(case.emboli > 0) & (case.emboli != 1))
    evaluation = evaluate_cohort(a_cohort, tmp_path)
    by_level = summarise(evaluation)["detection"]["by_level"]
    assert by_level == {k: [n - dropped.get(k, 0), n] for k, n in sorted(expected_total.items(),
                        key=lambda kv: ["central", "lobar", "segmental", "subsegmental"].index(kv[0]))}
    negative = next(r for r in evaluation.cases if not r.positive)
    assert negative.found_by_level == {}
    written = write_report(evaluation, tmp_path / "report")
    assert "Emboli detected by level" in written.report_md.read_text(encoding="utf-8")


def test_given_territories_are_counted_and_named_in_the_report(a_cohort, truth_cases, perfect_predictions, tmp_path):
    """result.json's territory.source: ``file`` (an artery mask given to the analysis) or ``model`` (also when
    absent, as in analyses made before it was recorded)."""
    predictions = spoilable(perfect_predictions, tmp_path)
    for case in truth_cases[:2]:
        path = predictions / case.case_id / "result.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"territory": {"source": "file", "file": "pa.nrrd"}}))
    path = predictions / truth_cases[2].case_id / "result.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"territory": {"source": "model"}}))
    evaluation = evaluate_cohort(a_cohort, predictions)
    assert [c.territory_source for c in evaluation.cases] == ["file", "file"] + ["model"] * (len(truth_cases) - 2)
    report = write_report(evaluation, tmp_path / "report", n_worst=0, n_best=0)
    metrics = json.loads(report.metrics_json.read_text(encoding="utf-8"))
    assert metrics["inputs"]["territory_sources"] == {"model": len(truth_cases) - 2, "file": 2}
    assert (f"| artery territory | the artery model's in {len(truth_cases) - 2} cases, given to the analysis "
            "(--arteries) in 2 |") in report.report_md.read_text(encoding="utf-8")


def _write_cohort_csv(folder: Path, **row: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fields = {"case_id": "phantom-000001", "study_uid": "", "path": "phantom-000001"} | row
    (folder / "cohort.csv").write_text(",".join(fields) + "\n" + ",".join(fields.values()) + "\n")
    return folder / "cohort.csv"


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("path", "../elsewhere/phantom-000001", "leads outside the cohort folder"),
    ("path", "/tmp/elsewhere/phantom-000001", "leads outside the cohort folder"),
    ("path", "masks/../../elsewhere", "leads outside the cohort folder"),
    ("case_id", "../x", "contains a path separator"),
    ("case_id", "..", "relative folder reference"),
    ("study_uid", "../../7f3a", "contains a path separator"),
])
def test_cohort_csv_values_that_lead_outside_its_folders_are_refused(tmp_path, column, value, reason):
    """``path`` is read below the cohort, ``case_id`` and ``study_uid`` name folders below --predictions and
    ``train/``: the reader (evaluate's and finetune's) refuses a value that leaves them, naming cohort.csv."""
    plain = _write_cohort_csv(tmp_path / "plain")
    assert [c.truth_dir for c in read_cohort(plain.parent)] == [plain.parent / "phantom-000001"]
    index = _write_cohort_csv(tmp_path / "cohort", **{column: value})
    with pytest.raises(InputError, match=reason) as error:
        read_cohort(index.parent)
    message = str(error.value)
    assert message.startswith(f"{index}: line 2: {column} ") and repr(value) in message
    assert "\n" not in message


@pytest.mark.parametrize(("bad_file", "reason"), [
    ("pseudomask.nii.gz", "negative values \\(down to -1024\\)"),
    ("arteries.nii.gz", "fractional values"),
])
def test_an_image_given_as_a_predicted_mask_is_refused(a_cohort, truth_cases, perfect_predictions, tmp_path,
                                                       bad_file, reason):
    """A CT (int16 HU) as the pseudo-mask, a heatmap as the territory: not one giant component, a refusal."""
    predictions = spoilable(perfect_predictions, tmp_path)
    case = truth_cases[0]
    rng = np.random.default_rng(5)
    images = {"pseudomask.nii.gz": rng.integers(-1024, 858, case.emboli.shape).astype(np.int16),
              "arteries.nii.gz": rng.uniform(size=case.emboli.shape).astype(np.float32)}
    write_volume(images[bad_file], predictions / case.case_id / bad_file, case.geometry)
    with pytest.raises(InputError, match=reason) as error:
        evaluate_cohort(a_cohort, predictions)
    assert str(error.value).startswith(f"{predictions / case.case_id / bad_file}: holds ")
