"""The report folder: metrics.json (strict JSON, every figure, relative paths), report.md with working links,
PNG plots, and the choice of the worst and best Dice cases for the slice panels."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from prediction_helpers import TruthCase, far_blob, read_truth_cases, small_cohort, write_prediction
from scipy import ndimage

from PELabelUpLib import __version__
from PELabelUpLib.evaluate.cohort import CohortEvaluation, evaluate_cohort
from PELabelUpLib.evaluate.plots import largest_component, panel_layout, plot_case_panel, plot_froc, plot_roc
from PELabelUpLib.evaluate.report import write_report

TOP_KEYS = {"schema", "created_utc", "pelabelup_version", "inputs", "settings", "study", "slice", "segmentation",
            "detection", "froc", "pointing", "arteries", "notes", "cases", "plots", "case_panels"}


def strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def hand_dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def assert_png_picture(path: Path) -> None:
    pixels = imread(path)
    assert pixels.ndim == 3
    assert min(pixels.shape[:2]) >= 300
    assert pixels[..., :3].std() > 0.05, f"{path.name} is almost uniform"


@pytest.fixture(scope="module")
def a_cohort(tmp_path_factory) -> Path:
    return small_cohort(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def truth_cases(a_cohort) -> list[TruthCase]:
    return read_truth_cases(a_cohort)


@pytest.fixture(scope="module")
def mixed_predictions(truth_cases, tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """Perfect, dilated, one-embolus-missing + far blob, and a negative with a far blob; random scores.
    Returns the folder and the Dice of each positive case, computed here."""
    out = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(9)
    dices = {}
    for n, case in enumerate(truth_cases):
        truth = case.emboli > 0
        mask = [truth, ndimage.binary_dilation(truth, iterations=2),
                truth & (ndimage.label(truth, np.ones((3, 3, 3)))[0] != 1), truth][n]
        if n >= 2:
            mask = mask | far_blob(case)
        if case.positive:
            dices[case.case_id] = hand_dice(mask, truth)
        heat = ndimage.gaussian_filter(mask.astype(np.float32), 1.5)
        write_prediction(out, case, mask=mask, heatmap=heat / heat.max(), pe_probability=rng.uniform(),
                         slice_probabilities=rng.uniform(size=case.slice_labels.size),
                         arteries=case.arteries if n == 0 else None)
    return out, dices


@pytest.fixture(scope="module")
def an_evaluation(a_cohort, mixed_predictions) -> CohortEvaluation:
    return evaluate_cohort(a_cohort, mixed_predictions[0])


@pytest.fixture(scope="module")
def a_report(an_evaluation, tmp_path_factory):
    return write_report(an_evaluation, tmp_path_factory.mktemp("report") / "out", n_worst=1, n_best=1)


def test_metrics_json_is_strict_and_complete(a_report, an_evaluation, truth_cases):
    metrics = strict_json(a_report.metrics_json)
    assert TOP_KEYS <= set(metrics)
    assert metrics["schema"].startswith("pelabelup-evaluation/")
    assert metrics["pelabelup_version"] == __version__
    assert datetime.fromisoformat(metrics["created_utc"]).tzinfo is not None
    assert [row["case_id"] for row in metrics["cases"]] == [c.case_id for c in truth_cases]
    for key in ("tp", "fn", "fp"):
        assert metrics["detection"][key] == sum(row[key] for row in metrics["cases"])
    inputs = metrics["inputs"]
    assert (inputs["n_cohort_cases"], inputs["n_evaluated"], inputs["n_missing"]) == (4, 4, 0)
    assert inputs["n_slices"] == sum(c.slice_labels.size for c in truth_cases)
    assert inputs["n_positive_slices"] == sum(int(c.slice_labels.sum()) for c in truth_cases)
    assert set(metrics["froc"]["sensitivity_at_fp"]) == {"0.5", "1", "2", "4"}
    assert metrics["arteries"]["per_case"] == {truth_cases[0].case_id: 1.0}
    assert metrics["study"]["roc"]["thresholds"][0] is None  # +inf, written as null
    assert metrics == json.loads(json.dumps(a_report.metrics))


def test_paths_are_relative_to_the_report(a_report, a_cohort, mixed_predictions):
    metrics = strict_json(a_report.metrics_json)
    assert metrics["inputs"]["cohort"] == Path(os.path.relpath(a_cohort.resolve(), a_report.folder.resolve())).as_posix()
    assert (a_report.folder / metrics["inputs"]["predictions"]).resolve() == mixed_predictions[0].resolve()
    base = str(a_cohort.parent.resolve())
    for text in (a_report.metrics_json.read_text(encoding="utf-8"), a_report.report_md.read_text(encoding="utf-8")):
        assert base not in text
        assert str(a_cohort) not in text


def test_pngs_are_pictures_and_the_markdown_links_resolve(a_report):
    markdown = a_report.report_md.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)]+)\)", markdown)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert {"roc.png", "froc.png"} <= set(images)
    assert len(images) == 4  # ROC, FROC, one worst and one best case
    for link in links:
        assert (a_report.folder / link).is_file(), link
    for name in images:
        assert_png_picture(a_report.folder / name)


def test_the_markdown_shows_the_figures_and_every_case(a_report, truth_cases):
    markdown = a_report.report_md.read_text(encoding="utf-8")
    metrics = a_report.metrics
    assert f"| Study AUC (pe_probability) | {metrics['study']['auc']:.3f} |" in markdown
    assert f"{metrics['detection']['tp']} of {metrics['detection']['n_emboli']} emboli detected" in markdown
    per_case = markdown.split("## Per case")[1].split("## Definitions")[0]
    rows = [line for line in per_case.splitlines() if line.startswith("| `")]
    assert [re.search(r"`([^`]+)`", row).group(1) for row in rows] == [c.case_id for c in truth_cases]


def test_panels_show_the_worst_and_best_dice(a_report, mixed_predictions):
    dices = mixed_predictions[1]
    worst, best = min(dices, key=dices.get), max(dices, key=dices.get)
    panels = a_report.metrics["case_panels"]
    assert [(p["role"], p["case_id"]) for p in panels] == [("worst Dice", worst), ("best Dice", best)]
    assert panels[0]["dice"] == pytest.approx(dices[worst])
    assert (a_report.folder / "cases" / f"{worst}.png").is_file()


def test_undefined_figures_are_null_with_a_reason(a_cohort, truth_cases, mixed_predictions, tmp_path):
    only_positive = tmp_path / "predictions"
    for case in truth_cases:
        if case.positive:
            (only_positive / case.case_id).parent.mkdir(parents=True, exist_ok=True)
            (only_positive / case.case_id).symlink_to(mixed_predictions[0] / case.case_id)
    report = write_report(evaluate_cohort(a_cohort, only_positive, allow_missing=True), tmp_path / "out",
                          n_worst=0, n_best=0)
    metrics = strict_json(report.metrics_json)
    assert metrics["study"]["auc"] is None
    assert metrics["study"]["roc"] is None
    assert metrics["inputs"]["missing"] == [truth_cases[3].case_id]
    study_notes = [note for note in metrics["notes"] if note.startswith("study AUC undefined")]
    assert len(study_notes) == 1 and study_notes[0].endswith(" 0 negative studies (both classes are needed)")
    assert "| Study AUC (pe_probability) | n/a |" in report.report_md.read_text(encoding="utf-8")
    assert_png_picture(report.folder / "roc.png")
    assert metrics["case_panels"] == []


def test_the_panel_follows_the_largest_embolus(tmp_path):
    truth = np.zeros((20, 40, 40), dtype=np.uint8)
    truth[3:5, 5:8, 5:8] = 1  # small
    truth[8:15, 20:26, 22:30] = 2  # large: slices 8..14
    largest = largest_component(truth)
    assert largest.sum() == 7 * 6 * 8
    assert not largest[3:5].any()
    slices, centre, (y0, y1, x0, x1) = panel_layout(largest, (0.5, 0.5, 1.0), n_slices=5, margin_mm=2.0)
    assert slices[0] == 8
    assert slices[-1] == 14
    assert len(slices) == 5
    assert 8 <= centre <= 14
    assert (y0, y1, x0, x1) == (20 - 4, 26 + 4, 22 - 4, 30 + 4)  # 2 mm = 4 voxels of 0.5 mm
    heat = ndimage.gaussian_filter(largest.astype(np.float32), 1.0)
    path = plot_case_panel(None, truth, heat / heat.max(), largest, (0.5, 0.5, 1.0), tmp_path / "panel.png", "test")
    assert_png_picture(path)
    with pytest.raises(ValueError, match="positive case"):
        plot_case_panel(None, np.zeros_like(truth), heat, largest, (0.5, 0.5, 1.0), tmp_path / "no.png", "x")


def test_plots_of_undefined_curves_say_so(tmp_path):
    assert_png_picture(plot_froc(None, {}, tmp_path / "froc.png", n_scans=3, n_emboli=0))
    assert_png_picture(plot_roc([("study", None, None, 3, 0)], tmp_path / "roc.png"))
