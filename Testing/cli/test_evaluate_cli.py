"""``pelabelup evaluate`` as a user runs it: a real subprocess on a real RSPECT-layout cohort.

Until ``cli/main.py`` lists the ``evaluate`` module, the subprocess registers it itself, the way ``main``
will (``SUBCOMMANDS`` plus ``evaluate``), and then runs the real ``main()`` with its error handling.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import write_volume
from PELabelUpLib.synthetic.cohort import CaseRequest, generate_cohort

LAUNCHER = (
    "import sys; from PELabelUpLib.cli import evaluate, main; "
    "main.SUBCOMMANDS = main.SUBCOMMANDS if evaluate in main.SUBCOMMANDS else (*main.SUBCOMMANDS, evaluate); "
    "sys.exit(main.main())"
)
SMALL = {"size_xy": (96, 96), "n_slices": 40, "spacing_mm": (1.4, 1.4, 2.5)}


def pelabelup(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LAUNCHER, *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def an_rspect_cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rspect")
    requests = [CaseRequest(i, seed, "phantom", tuple(sorted(dict(SMALL, positive=positive,
                                                                   n_emboli=2 if positive else 0).items())))
                for i, (seed, positive) in enumerate([(21, True), (22, False)])]
    generate_cohort(out, requests, layout="rspect", workers=2)
    return out


@pytest.fixture(scope="module")
def perfect_predictions(an_rspect_cohort, tmp_path_factory) -> Path:
    """One folder per study, named after its StudyInstanceUID, with a perfect prediction."""
    out = tmp_path_factory.mktemp("predictions")
    with (an_rspect_cohort / "cohort.csv").open() as f:
        for row in csv.DictReader(f):
            truth_dir = an_rspect_cohort / row["path"]
            image = sitk.ReadImage(str(truth_dir / "emboli.nii.gz"))
            emboli = sitk.GetArrayFromImage(image) > 0
            geometry = Geometry.from_sitk(image)
            labels = json.loads((truth_dir / "case.json").read_text())["slice_labels"]
            folder = out / row["study_uid"]
            folder.mkdir()
            (folder / "result.json").write_text(json.dumps({
                "pe_probability": float(emboli.any()), "slice_probabilities": [float(v) for v in labels],
                "emboli": []}))
            write_volume(np.where(emboli, 0.8, 0.0).astype(np.float32), folder / "heatmap.nii.gz", geometry)
            write_volume(emboli.astype(np.uint8), folder / "pseudomask.nii.gz", geometry)
    return out


def test_help():
    result = pelabelup("evaluate", "--help")
    assert result.returncode == 0
    assert "usage: pelabelup evaluate" in result.stdout
    assert "--allow-missing" in result.stdout


def test_evaluate_writes_the_report(an_rspect_cohort, perfect_predictions, tmp_path):
    out = tmp_path / "report"
    result = pelabelup("evaluate", "--cohort", an_rspect_cohort, "--predictions", perfect_predictions,
                       "--out", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "2 of 2 cases evaluated" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["study"]["auc"] == metrics["slice"]["auc"] == 1.0
    assert metrics["segmentation"]["dice_mean"] == 1.0
    assert metrics["detection"]["sensitivity"] == 1.0
    assert metrics["detection"]["fp"] == 0
    assert {row["study_uid"] for row in metrics["cases"]} == {p.name for p in perfect_predictions.iterdir()}
    assert (out / "report.md").is_file()
    assert (out / "roc.png").is_file()
    assert (out / "froc.png").is_file()
    positive_id = next(row["case_id"] for row in metrics["cases"] if row["positive"])
    assert (out / "cases" / f"{positive_id}.png").is_file()  # CT read from the study's DICOM series
    assert str(tmp_path) not in (out / "report.md").read_text(encoding="utf-8")


def test_a_missing_case_is_one_line_naming_it(an_rspect_cohort, perfect_predictions, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    kept, dropped = sorted(perfect_predictions.iterdir())
    (partial / kept.name).symlink_to(kept)
    with (an_rspect_cohort / "cohort.csv").open() as f:
        dropped_id = next(r["case_id"] for r in csv.DictReader(f) if r["study_uid"] == dropped.name)
    result = pelabelup("evaluate", "--cohort", an_rspect_cohort, "--predictions", partial, "--out",
                       tmp_path / "out", "--no-progress")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert dropped_id in lines[0]
    assert str(partial) in lines[0]
    assert lines[0].endswith("(--allow-missing skips them)")
    assert "Traceback" not in result.stderr
    skipped = pelabelup("evaluate", "--cohort", an_rspect_cohort, "--predictions", partial, "--out",
                        tmp_path / "out", "--no-progress", "--allow-missing", "--panels", "0")
    assert skipped.returncode == 0, skipped.stderr
    assert "1 of 2 cases evaluated (1 without prediction skipped)" in skipped.stdout


def test_a_heatmap_on_another_grid_is_one_line_naming_it(an_rspect_cohort, perfect_predictions, tmp_path):
    predictions = Path(shutil.copytree(perfect_predictions, tmp_path / "predictions"))
    folder = sorted(predictions.iterdir())[0]
    heatmap = folder / "heatmap.nii.gz"
    image = sitk.ReadImage(str(heatmap))
    image.SetSpacing(tuple(s * 1.1 for s in image.GetSpacing()))
    sitk.WriteImage(image, str(heatmap))
    result = pelabelup("evaluate", "--cohort", an_rspect_cohort, "--predictions", predictions, "--out",
                       tmp_path / "out", "--no-progress")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(heatmap) in lines[0]
    assert "spacing" in lines[0]


def test_a_case_id_leading_outside_the_predictions_is_refused(an_rspect_cohort, perfect_predictions, tmp_path):
    """A case_id of ``../...`` would have evaluate read a prediction outside --predictions: refused, naming
    cohort.csv, its line and the value."""
    cohort = Path(shutil.copytree(an_rspect_cohort, tmp_path / "cohort"))
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    with (cohort / "cohort.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["case_id"] = os.path.relpath(perfect_predictions / row["study_uid"], predictions)
    with (cohort / "cohort.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = pelabelup("evaluate", "--cohort", cohort, "--predictions", predictions, "--out", tmp_path / "out",
                       "--no-progress", "--panels", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pelabelup evaluate: error: {cohort / 'cohort.csv'}: line 2: case_id {rows[0]['case_id']!r}: contains a "
        "path separator ('/' or '\\')"]
    assert not (tmp_path / "out").exists()


def test_a_ct_given_as_the_pseudomask_is_one_line_naming_it(an_rspect_cohort, perfect_predictions, tmp_path):
    predictions = Path(shutil.copytree(perfect_predictions, tmp_path / "predictions"))
    pseudomask = sorted(predictions.glob("*/pseudomask.nii.gz"))[0]
    image = sitk.ReadImage(str(pseudomask))
    ct = np.random.default_rng(3).integers(-1024, 858, sitk.GetArrayFromImage(image).shape).astype(np.int16)
    write_volume(ct, pseudomask, Geometry.from_sitk(image))
    result = pelabelup("evaluate", "--cohort", an_rspect_cohort, "--predictions", predictions, "--out",
                       tmp_path / "out", "--no-progress")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pelabelup evaluate: error: {pseudomask}: holds negative values (down to -1024): expected a mask or label "
        "map, not an image"]
