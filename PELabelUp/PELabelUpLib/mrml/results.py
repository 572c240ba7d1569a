"""An analysis output folder (the ``pelabelup analyze`` contract) loaded into a scene for review.

The folder holds ``result.json`` (``pe_probability``, ``slice_probabilities`` one per axial slice k, ``emboli``,
``models``, ``timings_s``), ``heatmap.nii.gz`` (float32 in [0, 1]), ``pseudomask.nii.gz``, ``arteries.nii.gz``
and, when a segmenter ran, ``segmentation.nii.gz`` (uint8 0/1), all on the input CT's grid. The NIfTI masks
are the source of truth; a ``segmentation.seg.nrrd`` beside them is not read. When ``result.json``'s
``segmentation_source`` says the segmentation is not a segmenter's output (a copy of the pseudo-mask), the
"PE segmenter" segment is left out.

The CT enters through the Volumes logic (``AddArchetypeVolume``: Slicer turns LPS files into RAS nodes), or
is a volume node the caller has already. Everything else is put exactly on that node's grid.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import slicer
from vtkmodules.vtkCommonCore import vtkStringArray

from ..errors import InputError
from ..io import NIFTI_TOLERANCE_MM, load_ct, read_label_file
from ..io.image_files import image_extension
from ..terminology import PE_PSEUDOMASK, PE_SEGMENTER, PULMONARY_ARTERIES, SegmentSpec
from .app import SlicerLogics
from .colors import PerceptualMap
from .display import set_ct_window, style_heatmap
from .grid import (
    add_volume_from_array,
    add_volume_on_grid,
    geometry_of,
    volume_array,
)
from .hierarchy import ensure_study, place_under
from .segments import add_segmentation
from .tables import body_midline_lps_x, emboli_table, embolus_ras, slice_probability_chart
from .views import fit_views, jump_slices_to, show_layers, slice_position_ras

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
HEATMAP_FILE = "heatmap.nii.gz"
MASK_FILES: dict[SegmentSpec, str] = {
    PULMONARY_ARTERIES: "arteries.nii.gz",
    PE_PSEUDOMASK: "pseudomask.nii.gz",
    PE_SEGMENTER: "segmentation.nii.gz",
}
REQUIRED_FILES = (RESULT_FILE, HEATMAP_FILE, "pseudomask.nii.gz", "arteries.nii.gz")
ATTRIBUTE_PREFIX = "PELabelUp."
HEAT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class AnalysisRecord:
    """``result.json`` of an analysis folder, checked.

    Attributes:
        folder: the analysis folder.
        pe_probability: the study's PE probability, [0, 1].
        slice_probabilities: one per index slice k of the input, [0, 1].
        emboli: the contract's embolus dicts (``label``, ``voxels``, ``volume_mm3``, ``centroid_lps_mm``,
            ``centroid_ijk``, ``peak_heat``, ``source``).
        raw: the whole JSON object (``models``, ``timings_s``, ``input``...).
    """

    folder: Path
    pe_probability: float
    slice_probabilities: tuple[float, ...]
    emboli: tuple[dict[str, Any], ...]
    raw: dict[str, Any] = field(repr=False)


def _probability(path: Path, what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise InputError(path, f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def read_analysis_record(folder: str | Path) -> AnalysisRecord:
    """Read and check ``result.json`` of an analysis folder.

    Raises:
        InputError: missing folder or files, unreadable JSON, missing keys, probabilities outside [0, 1].
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "analysis folder not found")
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise InputError(folder, f"not an analysis folder: {name} is missing")
    path = folder / RESULT_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InputError(path, f"expected a JSON object, got {type(raw).__name__}")
    missing = [key for key in ("pe_probability", "slice_probabilities", "emboli") if key not in raw]
    if missing:
        raise InputError(path, f"missing keys: {', '.join(missing)}")
    slices = raw["slice_probabilities"]
    if not isinstance(slices, list):
        raise InputError(path, f"slice_probabilities must be a list, got {type(slices).__name__}")
    emboli = raw["emboli"]
    if not isinstance(emboli, list) or not all(isinstance(e, dict) for e in emboli):
        raise InputError(path, "emboli must be a list of objects")
    for n, embolus in enumerate(emboli):
        lacking = [key for key in ("label", "volume_mm3", "centroid_lps_mm") if key not in embolus]
        if lacking:
            raise InputError(path, f"embolus {n} lacks {', '.join(lacking)}")
    return AnalysisRecord(
        folder=folder,
        pe_probability=_probability(path, "pe_probability", raw["pe_probability"]),
        slice_probabilities=tuple(_probability(path, f"slice_probabilities[{k}]", p) for k, p in enumerate(slices)),
        emboli=tuple(emboli),
        raw=raw,
    )


@dataclass
class ReviewNodes:
    """What :func:`load_analysis` put in the scene.

    Attributes:
        ct: the input CT (scalar volume node).
        heatmap: the heatmap (scalar volume node on the CT's grid), the views' foreground.
        segmentation: segments by :class:`SegmentSpec` name, reference geometry = ``ct``.
        segment_ids: segment name -> segment ID in ``segmentation``.
        emboli_table, slice_table, slice_series, slice_chart: the emboli table and the per-slice plot.
        study_item: the subject hierarchy study holding all of them.
        record: the analysis record.
    """

    ct: slicer.vtkMRMLScalarVolumeNode
    heatmap: slicer.vtkMRMLScalarVolumeNode
    segmentation: slicer.vtkMRMLSegmentationNode
    segment_ids: dict[str, str]
    emboli_table: slicer.vtkMRMLTableNode
    slice_table: slicer.vtkMRMLTableNode
    slice_series: slicer.vtkMRMLPlotSeriesNode
    slice_chart: slicer.vtkMRMLPlotChartNode
    study_item: int
    record: AnalysisRecord


def load_ct_node(logics: SlicerLogics, path: str | Path, name: str | None = None) -> slicer.vtkMRMLScalarVolumeNode:
    """Load a CT into the scene: image files through the Volumes logic (``AddArchetypeVolume``), a DICOM
    folder through the core's loader (its series checks), put on a node with the same LPS->RAS grid.

    Raises:
        InputError: missing or unreadable input.
    """
    path = Path(path)
    name = name or (path.name[: -len(image_extension(path) or "")] if image_extension(path) else path.name)
    if path.is_file() and image_extension(path):
        node = logics.volumes.AddArchetypeVolume(str(path), name, 0, vtkStringArray())
        if node is None or node.GetImageData() is None:
            raise InputError(path, "the Volumes logic could not read this image")
        return node
    volume = load_ct(path)
    return add_volume_on_grid(logics.scene, volume.hu, volume.geometry, name)


def _segmenter_ran(record: AnalysisRecord) -> bool:
    """Whether ``segmentation.nii.gz`` is a segmenter's output (``analyze`` copies the pseudo-mask there when
    no segmenter model exists, and says so in ``segmentation_source``; a record without it predates that)."""
    source = record.raw.get("segmentation_source", "segmenter")
    if source != "segmenter":
        log.info("%s: segmentation.nii.gz is not a segmenter's output (%s); no PE segmenter segment",
                 record.folder.name, source)
    return source == "segmenter"


def remove_with_helpers(scene: slicer.vtkMRMLScene, node: slicer.vtkMRMLNode) -> None:
    """Remove a displayable/storable node with its display and storage nodes."""
    helpers = [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())] \
        if hasattr(node, "GetNumberOfDisplayNodes") else []
    if hasattr(node, "GetStorageNode") and node.GetStorageNode() is not None:
        helpers.append(node.GetStorageNode())
    for helper in [*helpers, node]:
        if helper is not None:
            scene.RemoveNode(helper)


def _read_on_grid(path: Path, ct: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    array, geometry = read_label_file(path)
    reference = geometry_of(ct)
    if not geometry.same_grid(reference, tol=NIFTI_TOLERANCE_MM):
        raise InputError(path, f"not on the CT's grid: {geometry} vs {reference}")
    return array


def _read_heatmap(path: Path, ct: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    heat = _read_on_grid(path, ct).astype(np.float32)
    if np.isnan(heat).any():
        log.warning("%s: %d NaN heat values shown as 0", path.name, int(np.isnan(heat).sum()))
        heat = np.nan_to_num(heat, nan=0.0)
    if heat.size and (heat.min() < -HEAT_TOLERANCE or heat.max() > 1.0 + HEAT_TOLERANCE):
        raise InputError(path, f"heat must lie in [0, 1], got {heat.min():.4g}..{heat.max():.4g}")
    return np.clip(heat, 0.0, 1.0)


def load_analysis(
    logics: SlicerLogics,
    folder: str | Path,
    *,
    ct_path: str | Path | None = None,
    ct_node: slicer.vtkMRMLScalarVolumeNode | None = None,
    colormap: PerceptualMap = "inferno",
    heat_threshold: float = 0.2,
    heat_opacity: float = 0.5,
    focus: bool = True,
    surfaces: bool = True,
) -> ReviewNodes:
    """Put an analysis folder into the scene: CT, heatmap layer, segments, emboli table, slice plot.

    Args:
        logics: the scene and its module logics.
        folder: the analysis output folder.
        ct_path: the input CT (image file or DICOM folder); default: ``result.json``'s ``input``.
        ct_node: an already loaded CT volume node to use instead of loading one.
        colormap, heat_threshold, heat_opacity: heatmap display (see :mod:`.display`).
        focus: fit the slice views and centre them on the largest embolus (or the most probable slice).
        surfaces: give the segments closed surfaces for the 3-D views (emboli opaque inside see-through
            arteries).

    Returns:
        :class:`ReviewNodes`. The study's PE probability is the ``PELabelUp.PEProbability`` attribute of the
        CT, heatmap and segmentation nodes.

    Raises:
        InputError: bad folder, CT or files, or a file off the CT's grid.
        ValueError: slice probabilities not one per CT slice.
    """
    record = read_analysis_record(folder)
    folder = record.folder
    scene = logics.scene
    loaded_here = ct_node is None
    if ct_node is None:
        source = ct_path if ct_path is not None else record.raw.get("input")
        if not source:
            raise InputError(folder, "no CT given and result.json names no input")
        ct_node = load_ct_node(logics, source)
    try:  # every file is read and checked before the scene gets anything more
        heat = _read_heatmap(folder / HEATMAP_FILE, ct_node)
        masks = {spec: _read_on_grid(folder / name, ct_node) for spec, name in MASK_FILES.items()
                 if (folder / name).is_file() and (spec is not PE_SEGMENTER or _segmenter_ran(record))}
        n_slices = geometry_of(ct_node).size[2]
        if len(record.slice_probabilities) != n_slices:
            raise ValueError(f"{len(record.slice_probabilities)} slice probabilities for a volume of {n_slices} "
                             f"slices ({ct_node.GetName()!r})")
    except Exception:
        if loaded_here:
            remove_with_helpers(scene, ct_node)
        raise
    ct_name = ct_node.GetName()
    heatmap = add_volume_from_array(scene, heat, ct_node, f"{ct_name} PE heatmap")
    segmentation = add_segmentation(scene, ct_node, masks, f"{ct_name} PE segmentation", surfaces=surfaces)
    table = emboli_table(scene, record.emboli, name=f"{ct_name} PE emboli",
                         midline_lps_x=body_midline_lps_x(volume_array(ct_node), ct_node))
    slice_table, series, chart = slice_probability_chart(scene, ct_node, record.slice_probabilities,
                                                         name=f"{ct_name} PE probability per slice")

    for node in (ct_node, heatmap, segmentation):
        node.SetAttribute(f"{ATTRIBUTE_PREFIX}PEProbability", f"{record.pe_probability:.6f}")
        node.SetAttribute(f"{ATTRIBUTE_PREFIX}AnalysisFolder", str(folder))
    heatmap.SetAttribute(f"{ATTRIBUTE_PREFIX}Role", "heatmap")
    segmentation.SetAttribute(f"{ATTRIBUTE_PREFIX}Role", "segmentation")

    study = ensure_study(ct_node)
    place_under(study, [heatmap, segmentation, table, slice_table, series, chart])

    set_ct_window(ct_node)
    style_heatmap(heatmap, colormap, heat_threshold)
    show_layers(scene, ct_node, heatmap, heat_opacity)
    if focus:
        fit_views(logics)
        _focus(scene, ct_node, table, record)
    segment_ids = {spec.name: spec.segment_id for spec in masks}
    log.info("loaded analysis %s: PE probability %.3f, %d emboli, segments %s", folder.name,
             record.pe_probability, len(record.emboli), ", ".join(segment_ids))
    return ReviewNodes(ct=ct_node, heatmap=heatmap, segmentation=segmentation, segment_ids=segment_ids,
                       emboli_table=table, slice_table=slice_table, slice_series=series, slice_chart=chart,
                       study_item=study, record=record)


def _focus(scene: slicer.vtkMRMLScene, ct: slicer.vtkMRMLVolumeNode, table: slicer.vtkMRMLTableNode,
           record: AnalysisRecord) -> None:
    """Centre the views on the largest embolus (row 0), else on the most probable slice."""
    if table.GetTable().GetNumberOfRows() > 0:
        jump_slices_to(scene, embolus_ras(table, 0), centered=True)
    elif record.slice_probabilities and not math.isnan(max(record.slice_probabilities)):
        k = int(np.argmax(record.slice_probabilities))
        jump_slices_to(scene, slice_position_ras(ct, k), centered=False)
