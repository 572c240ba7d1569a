"""The segmenter without the artery prior: lung-box territories, the cache filled in parallel, and the evaluation's
operating points, volume rule and emboli by level."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from clot_cohort import write_case_masks, write_clot_cohort
from torch import nn

from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate.detection import lesion_detection
from PELabelUpLib.io import load_ct, read_label_file
from PELabelUpLib.models.segmenter import SegmenterPreprocessing, predict_segmentation
from PELabelUpLib.pseudomask import components
from training.segmenter.data import load_working_case, load_working_cases
from training.segmenter.evaluate import emboli_levels, evaluate_cohort
from training.segmenter.lung_box import lung_box, write_lung_boxes
from training.segmenter.lung_box import main as lung_box_main
from training.segmenter.sources import LabelSource, TerritorySource, resolve_cases

SMALL_PREP = SegmenterPreprocessing(roi_size=(16, 16, 16))


@pytest.fixture(scope="module")
def clots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clot_cohort(tmp_path_factory.mktemp("clots"), 3, seed=4)


def test_the_lung_box_is_the_lungs_bounding_box_grown_in_mm_per_axis() -> None:
    lungs = np.zeros((10, 8, 12), np.uint8)
    lungs[4:6, 3, 5:7] = 1
    lungs[5, 4, 6] = 1
    # spacing (x, y, z) = (1, 2, 0.5) mm, grown 1 mm: 1 voxel in x, 1 in y, 2 in z
    box = lung_box(lungs, (1.0, 2.0, 0.5), 1.0)
    expected = np.zeros_like(lungs)
    expected[2:8, 2:6, 4:8] = 1
    np.testing.assert_array_equal(box, expected)
    assert box.dtype == np.uint8
    np.testing.assert_array_equal(lung_box(lungs, (1.0, 1.0, 1.0), 50.0), np.ones_like(lungs))  # clipped
    with pytest.raises(ValueError, match="empty"):
        lung_box(np.zeros_like(lungs), (1.0, 1.0, 1.0), 5.0)
    with pytest.raises(ValueError, match="grow_mm"):
        lung_box(lungs, (1.0, 1.0, 1.0), -1.0)


def test_lung_boxes_are_written_on_each_ct_grid_and_kept(clots: Path, tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    shutil.copytree(clots, cohort)
    for case_id in ("clot-000", "clot-002"):  # clot-001 has no lung mask
        arteries, geometry = read_label_file(cohort / case_id / "arteries.nii.gz")
        lungs = np.zeros_like(arteries)
        lungs[6:10, 10:30, 12:20] = 1
        write_case_masks(cohort, cohort, case_id, {"lungs.nii.gz": lungs})
    out = tmp_path / "boxes"
    files = write_lung_boxes(cohort, out, grow_mm=2.0)
    assert [f.parent.name for f in files] == ["clot-000", "clot-002"]
    box, box_geometry = read_label_file(out / "clot-000" / "arteries.nii.gz")
    assert box_geometry.same_grid(load_ct(cohort / "clot-000" / "ct.nii.gz").geometry)
    # 0.8 x 0.8 x 2 mm voxels: 2 mm is 3 voxels in x and y, 1 in z
    expected = np.zeros_like(box)
    expected[5:11, 7:33, 9:23] = 1
    np.testing.assert_array_equal(box, expected)
    written = files[0].stat().st_mtime_ns
    assert write_lung_boxes(cohort, out, grow_mm=9.0) == files and files[0].stat().st_mtime_ns == written
    # the boxes serve as a territory source: every case with a box resolves
    cases = resolve_cases(cohort, [LabelSource("gt")], TerritorySource(out))
    assert [c.case_id for c in cases] == ["clot-000", "clot-002"]

    empty = tmp_path / "empty"
    shutil.copytree(clots, empty)
    assert lung_box_main(["--cohort", str(empty), "--out", str(tmp_path / "none")]) == 2  # no lung mask at all
    arteries, _ = read_label_file(empty / "clot-000" / "arteries.nii.gz")
    write_case_masks(empty, empty, "clot-000", {"lungs.nii.gz": np.zeros_like(arteries)})
    with pytest.raises(InputError, match=r"clot-000.*lungs\.nii\.gz.*empty"):
        write_lung_boxes(empty, tmp_path / "none")


def test_the_cache_filled_in_worker_processes_equals_the_one_made_in_line(clots: Path, tmp_path: Path) -> None:
    cases = resolve_cases(clots, [LabelSource("gt")], TerritorySource())
    parallel = load_working_cases(cases, SMALL_PREP, tmp_path / "parallel", workers=2)
    assert len(list((tmp_path / "parallel" / "segmenter").glob("*/case.json"))) == 3
    for case, work in zip(cases, parallel, strict=True):
        inline = load_working_case(case, SMALL_PREP, tmp_path / "inline")
        assert inline is not None and work.case_id == case.case_id
        assert work.geometry.same_grid(inline.geometry)
        for name in ("hu", "territory", "label"):
            np.testing.assert_array_equal(getattr(work, name), getattr(inline, name))


def test_emboli_levels_come_from_the_phantoms_case_json(tmp_path: Path) -> None:
    (tmp_path / "case.json").write_text(json.dumps({"emboli": [{"label": 1, "level": "lobar"},
                                                               {"label": 2, "level": "subsegmental"}]}))
    assert emboli_levels(tmp_path) == {1: "lobar", 2: "subsegmental"}
    assert emboli_levels(tmp_path / "elsewhere") == {}
    (tmp_path / "case.json").write_text(json.dumps({"positive": False}))
    assert emboli_levels(tmp_path) == {}


class DarkInTerritory(nn.Module):
    """A real segmenter-shaped network with fixed weights: logit = 10 * territory - 40 * windowed CT, so a dark
    voxel inside the territory is embolus (probability rising as it darkens)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([-40.0, 10.0]).view(1, 2, 1, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_operating_points_and_the_volume_rule_count_what_the_thresholded_masks_find(clots: Path) -> None:
    network = DarkInTerritory().eval()
    metadata = {"preprocessing": SMALL_PREP.as_metadata()}
    thresholds = (0.3, 0.9, 0.99)
    min_volume = 40.0
    summary = evaluate_cohort(clots, network, metadata, TerritorySource(), min_volume_mm3=min_volume,
                              operating_points=thresholds)
    expected = {t: [0, 0, 0] for t in thresholds}
    for case_id in ("clot-000", "clot-001", "clot-002"):
        volume = load_ct(clots / case_id / "ct.nii.gz")
        territory, _ = read_label_file(clots / case_id / "arteries.nii.gz")
        truth, _ = read_label_file(clots / case_id / "emboli.nii.gz")
        _, prob = predict_segmentation(volume, territory, network, metadata)
        for t in thresholds:
            kept = components(prob >= t, volume.geometry.spacing_mm, min_volume) > 0
            found = lesion_detection(kept, truth, volume.geometry.spacing_mm)
            expected[t] = [a + b for a, b in zip(expected[t], (found.tp + found.fn, found.tp, found.fp), strict=True)]
    points = summary["operating_points"]
    assert [p["threshold"] for p in points] == list(thresholds)
    for point in points:
        emboli, found, false = expected[point["threshold"]]
        assert (point["emboli"], point["emboli_found"], point["false_components_per_scan"]) == \
            (emboli, found, pytest.approx(false / 3))
    assert summary["min_volume_mm3"] == min_volume and summary["found_by_level"] == {}  # no levels in case.json
    assert points[0]["emboli_found"] >= points[-1]["emboli_found"]
    with pytest.raises(ValueError, match="operating points"):
        evaluate_cohort(clots, network, metadata, TerritorySource(), operating_points=(0.0,))
