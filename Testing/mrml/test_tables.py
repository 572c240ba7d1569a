"""The emboli table (RAS and LPS positions, patient side, sizes) and the slice probability plot nodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mrml_helpers import AnalysisFolder

from PELabelUpLib.mrml import SlicerLogics, emboli_table, load_analysis, slice_probability_chart
from PELabelUpLib.mrml.tables import EMBOLI_COLUMNS, side_of

slicer = pytest.importorskip("slicer")


def _column(table_node, name: str) -> list:
    table = table_node.GetTable()
    return [table.GetValueByName(row, name).ToString() for row in range(table.GetNumberOfRows())]


def test_emboli_table_rows_largest_first_with_side_and_positions(a_scene: SlicerLogics,
                                                                 an_analysis_folder: AnalysisFolder) -> None:
    review = load_analysis(a_scene, an_analysis_folder.folder)
    table = review.emboli_table
    assert [table.GetTable().GetColumnName(c) for c in range(table.GetNumberOfColumns())] == list(EMBOLI_COLUMNS)
    emboli = sorted(an_analysis_folder.record["emboli"], key=lambda e: -e["volume_mm3"])
    volumes = [float(v) for v in _column(table, "Volume (mm3)")]
    np.testing.assert_allclose(volumes, [e["volume_mm3"] for e in emboli])
    assert volumes == sorted(volumes, reverse=True)
    # the fixture's clots lie right (low i) and left (high i) of the body's midline; LPS +x is the patient's left
    expected_sides = ["left" if e["centroid_ijk"][0] > an_analysis_folder.ct.geometry.size[0] / 2 else "right"
                      for e in emboli]
    assert _column(table, "Side") == expected_sides
    assert set(expected_sides) == {"left", "right"}
    assert _column(table, "LPS (mm)")[0] == ", ".join(f"{v:.1f}" for v in emboli[0]["centroid_lps_mm"])
    assert _column(table, "Slice k") == [str(round(e["centroid_ijk"][2])) for e in emboli]
    assert _column(table, "Source") == ["pseudomask", "pseudomask"]


@pytest.mark.parametrize(("x_mm", "midline", "side"),
                         [(-30.0, 0.0, "right"), (25.0, 5.0, "left"), (8.0, 0.0, "midline"), (3.0, None, "unknown")])
def test_side_is_relative_to_the_midline_in_lps(x_mm: float, midline: float | None, side: str) -> None:
    assert side_of((x_mm, 0.0, 0.0), midline) == side


def test_missing_peak_heat_becomes_nan_and_bad_centroids_are_refused(a_scene: SlicerLogics) -> None:
    emboli = [{"label": 1, "volume_mm3": 12.0, "centroid_lps_mm": [1.0, 2.0, 3.0], "peak_heat": None}]
    table = emboli_table(a_scene.scene, emboli)
    assert math.isnan(table.GetTable().GetValueByName(0, "Peak heat").ToDouble())
    assert _column(table, "Side") == ["unknown"]
    with pytest.raises(ValueError, match="embolus 7: centroid_lps_mm must be 3 finite numbers"):
        emboli_table(a_scene.scene, [{"label": 7, "volume_mm3": 1.0, "centroid_lps_mm": [1.0, float("nan"), 0.0]}])


def test_slice_chart_refuses_probabilities_outside_zero_one(a_scene: SlicerLogics,
                                                            an_analysis_folder: AnalysisFolder) -> None:
    review = load_analysis(a_scene, an_analysis_folder.folder, focus=False)
    n = an_analysis_folder.ct.geometry.size[2]
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got range 0..1.2"):
        slice_probability_chart(a_scene.scene, review.ct, [0.0] * (n - 1) + [1.2])
    chart = review.slice_chart
    assert chart.GetYAxisRange() == (0.0, 1.0)
    assert review.slice_series.GetXColumnName() == "Position (mm)"
    assert review.slice_series.GetYColumnName() == "PE probability"
