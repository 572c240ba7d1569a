"""The emboli table and the per-slice PE probability plot, as MRML table, plot series and plot chart nodes.

Emboli rows carry the centroid in RAS mm (three numeric columns, what the views jump to) and LPS mm (text, the
analysis files' system), the patient side, volume (mm3), peak heat and the source mask. The slice plot's table
has one row per index slice k: its position along the volume's k axis (mm) and its PE probability, so a picked
point's row is the slice to show (:func:`~.views.jump_to_slice`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import slicer
import vtk

from .grid import geometry_of, lps_to_ras
from .views import jump_slices_to, slice_positions_mm

Side = Literal["right", "left", "midline", "unknown"]
MIDLINE_HALF_WIDTH_MM = 10.0
BODY_MIN_HU = -500.0

EMBOLI_COLUMNS = ("Embolus", "Source", "Volume (mm3)", "Peak heat", "Side", "Slice k",
                  "R (mm)", "A (mm)", "S (mm)", "LPS (mm)")
SLICE_COLUMNS = ("Slice k", "Position (mm)", "PE probability")


def body_midline_lps_x(ct_hu: np.ndarray, volume_node: slicer.vtkMRMLVolumeNode, step: int = 4) -> float | None:
    """LPS x (mm) of the body's centre: mean x of voxels above -500 HU (every ``step``-th voxel per axis).

    ``None`` when no voxel is that dense. The patient's midline, for a centred patient; a heuristic.
    """
    geometry = geometry_of(volume_node)
    sub = np.asarray(ct_hu)[::step, ::step, ::step]
    zyx = np.argwhere(sub > BODY_MIN_HU) * step
    if len(zyx) == 0:
        return None
    return float(geometry.index_to_world(zyx[:, ::-1].astype(float))[:, 0].mean())


def side_of(centroid_lps_mm: Sequence[float], midline_lps_x: float | None,
            half_width_mm: float = MIDLINE_HALF_WIDTH_MM) -> Side:
    """Patient side of a point: LPS +x is the patient's left; within ``half_width_mm`` of the midline: midline."""
    if midline_lps_x is None:
        return "unknown"
    dx = float(centroid_lps_mm[0]) - midline_lps_x
    if abs(dx) <= half_width_mm:
        return "midline"
    return "left" if dx > 0 else "right"


def _column(table: vtk.vtkTable, name: str, kind: str) -> vtk.vtkAbstractArray:
    array = {"int": vtk.vtkIntArray, "double": vtk.vtkDoubleArray, "string": vtk.vtkStringArray}[kind]()
    array.SetName(name)
    table.AddColumn(array)
    return array


def emboli_table(scene: slicer.vtkMRMLScene, emboli: Sequence[Mapping[str, Any]], *, name: str = "PE emboli",
                 midline_lps_x: float | None = None) -> slicer.vtkMRMLTableNode:
    """A table node with one row per embolus of the analysis contract (``label``, ``volume_mm3``,
    ``centroid_lps_mm``, ``centroid_ijk``, ``peak_heat``, ``source``), largest first.

    ``midline_lps_x`` (LPS mm, e.g. from :func:`body_midline_lps_x`) gives the side column; without it the
    side is "unknown".
    """
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    node.SetLocked(True)  # the user reads it; corrections go into the segments
    table = node.GetTable()
    kinds = ("int", "string", "double", "double", "string", "int", "double", "double", "double", "string")
    columns = {col: _column(table, col, kind) for col, kind in zip(EMBOLI_COLUMNS, kinds, strict=True)}
    ordered = sorted(emboli, key=lambda e: -float(e.get("volume_mm3") or 0.0))
    for embolus in ordered:
        lps = np.asarray(embolus["centroid_lps_mm"], dtype=float)
        if lps.shape != (3,) or not np.all(np.isfinite(lps)):
            raise ValueError(f"embolus {embolus.get('label')}: centroid_lps_mm must be 3 finite numbers, got "
                             f"{embolus['centroid_lps_mm']!r}")
        ras = lps_to_ras(lps)
        peak = embolus.get("peak_heat")
        ijk = embolus.get("centroid_ijk")
        columns["Embolus"].InsertNextValue(int(embolus["label"]))
        columns["Source"].InsertNextValue(str(embolus.get("source", "")))
        columns["Volume (mm3)"].InsertNextValue(float(embolus["volume_mm3"]))
        columns["Peak heat"].InsertNextValue(math.nan if peak is None else float(peak))
        columns["Side"].InsertNextValue(side_of(lps, midline_lps_x))
        columns["Slice k"].InsertNextValue(-1 if ijk is None else round(float(ijk[2])))
        for axis, value in zip(("R (mm)", "A (mm)", "S (mm)"), ras, strict=True):
            columns[axis].InsertNextValue(float(value))
        columns["LPS (mm)"].InsertNextValue(", ".join(f"{v:.1f}" for v in lps))
    for col, unit in (("Volume (mm3)", "mm3"), ("R (mm)", "mm"), ("A (mm)", "mm"), ("S (mm)", "mm")):
        node.SetColumnUnitLabel(col, unit)
    node.SetColumnDescription("Peak heat", "highest explanation heat inside the embolus, 0..1")
    node.SetColumnDescription("Side", "patient side relative to the body's midline (heuristic)")
    node.Modified()
    return node


def embolus_ras(table_node: slicer.vtkMRMLTableNode, row: int) -> np.ndarray:
    """RAS mm of the embolus in ``row`` of an :func:`emboli_table`."""
    table = table_node.GetTable()
    if not 0 <= row < table.GetNumberOfRows():
        raise ValueError(f"row {row} outside 0..{table.GetNumberOfRows() - 1} of {table_node.GetName()!r}")
    return np.array([table.GetValueByName(row, axis).ToDouble() for axis in ("R (mm)", "A (mm)", "S (mm)")])


def center_views_on(scene: slicer.vtkMRMLScene, table_node: slicer.vtkMRMLTableNode, row: int) -> np.ndarray:
    """Centre every slice view on the embolus of ``row`` (its plane through the centroid); returns the RAS point."""
    ras = embolus_ras(table_node, row)
    jump_slices_to(scene, ras, centered=True)
    return ras


def slice_probability_chart(
    scene: slicer.vtkMRMLScene, volume_node: slicer.vtkMRMLVolumeNode, slice_probabilities: Sequence[float],
    *, name: str = "PE probability per slice",
) -> tuple[slicer.vtkMRMLTableNode, slicer.vtkMRMLPlotSeriesNode, slicer.vtkMRMLPlotChartNode]:
    """Table (slice k, position mm, probability), a line series over it and a chart showing the series.

    Raises:
        ValueError: not one probability per index slice of the volume, or values outside [0, 1].
    """
    probabilities = np.asarray(slice_probabilities, dtype=float)
    positions = slice_positions_mm(volume_node)
    if probabilities.shape != positions.shape:
        raise ValueError(f"{probabilities.size} slice probabilities for a volume of {positions.size} slices "
                         f"({volume_node.GetName()!r})")
    if probabilities.size and not (np.all(np.isfinite(probabilities)) and probabilities.min() >= 0
                                   and probabilities.max() <= 1):
        raise ValueError(f"slice probabilities must be in [0, 1], got range "
                         f"{np.nanmin(probabilities):.3g}..{np.nanmax(probabilities):.3g}")
    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} table")
    table_node.SetLocked(True)
    table = table_node.GetTable()
    columns = [_column(table, col, kind) for col, kind in zip(SLICE_COLUMNS, ("int", "double", "double"), strict=True)]
    for k, (position, probability) in enumerate(zip(positions, probabilities, strict=True)):
        columns[0].InsertNextValue(k)
        columns[1].InsertNextValue(float(position))
        columns[2].InsertNextValue(float(probability))
    table_node.SetColumnUnitLabel("Position (mm)", "mm")
    table_node.Modified()

    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName("Position (mm)")
    series.SetYColumnName("PE probability")
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
    series.SetMarkerSize(4)
    series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
    series.SetColor(0.9, 0.35, 0.1)

    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} chart")
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(name)
    chart.SetXAxisTitle("position along the volume's slice axis (mm)")
    chart.SetYAxisTitle("PE probability")
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(0.0, 1.0)
    chart.SetLegendVisibility(False)
    return table_node, series, chart
