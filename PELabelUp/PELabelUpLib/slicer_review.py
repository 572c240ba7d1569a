"""One reviewer's session in a scene: the open case, its analysis, corrections exported, the next case.

The Slicer module's Logic keeps one :class:`ReviewSession` and adds only what needs Qt (the child process's
timer). The session needs nothing but a scene and its module logics (:class:`~.mrml.SlicerLogics`), so it runs
inside Slicer and on the ``slicer-core`` wheel alike. Everything heavy is the core's: loading an analysis
(:func:`~.mrml.load_analysis`), the datastore export (:func:`~.mrml.export.export_review`), the worklist order
(:meth:`~.datastore.Worklist.next_unreviewed`).

A case is a CT volume node with, when it came from a worklist, its study id, its file (or DICOM folder) and the
worklist's analysis folder. An analysis reads the case's file when the node still holds what was loaded from it
(same voxels and grid), else a copy of the node's voxels written beside the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer

from .datastore import Datastore, ExportRecord, Worklist, WorklistStudy
from .geometry import Geometry
from .io import load_ct, write_volume
from .mrml import (
    PE_PSEUDOMASK,
    PE_SEGMENTER,
    ReviewNodes,
    SlicerLogics,
    center_views_on,
    corrected_mask,
    jump_to_slice,
    load_analysis,
    load_ct_node,
    set_heatmap_opacity,
    set_heatmap_threshold,
)
from .mrml.export import ct_volume_of, export_review
from .mrml.grid import geometry_of
from .mrml.results import remove_with_helpers
from .slicer_process import label_decision

log = logging.getLogger(__name__)

#: the segments a reviewer corrects and exports, in the order offered (the first is the default)
CORRECTABLE_SEGMENTS = (PE_PSEUDOMASK, PE_SEGMENTER)
INPUT_FILE = "input.nrrd"
#: the artery mask an analysis is given instead of the artery model's territory (:meth:`ReviewSession.artery_input`)
ARTERIES_FILE = "arteries-given.nrrd"


@dataclass
class OpenCase:
    """The case on screen.

    Attributes:
        ct: its CT volume node.
        case_id: its worklist study id (``None``: a volume the user loaded).
        source: the file or DICOM folder ``ct`` was loaded from (``None``: unknown).
        analysis_dir: where its analyses go (the worklist's ``analysis`` folder), or ``None``.
        loaded_here: the session loaded ``ct`` (and removes it when the case is closed).
        loaded_grid, loaded_mtime: ``ct``'s grid and voxel modification time when loaded, to tell whether the
            node still holds the file's content.
    """

    ct: slicer.vtkMRMLScalarVolumeNode
    case_id: str | None = None
    source: Path | None = None
    analysis_dir: Path | None = None
    loaded_here: bool = False
    loaded_grid: Geometry | None = None
    loaded_mtime: int = 0

    def holds_source(self) -> bool:
        """Whether ``ct`` still holds exactly what was loaded from ``source``."""
        image = self.ct.GetImageData()
        return (self.source is not None and image is not None and image.GetMTime() == self.loaded_mtime
                and self.loaded_grid is not None and geometry_of(self.ct).same_grid(self.loaded_grid, tol=0.0))


def _folder(path: str | Path | None, what: str) -> Path:
    """A folder setting, refusing the unset value (``""`` or ``"."``, what an empty path field holds)."""
    if path is None or str(path).strip() in ("", "."):
        raise ValueError(f"choose a {what} first (got {str(path)!r})")
    return Path(path)


class ReviewSession:
    """The open case and its review in one scene (see the module docstring).

    Args:
        logics: the scene and its module logics (``SlicerLogics.from_application_logic`` inside Slicer).

    Attributes:
        case: the open case, or ``None``.
        review: what :func:`~.mrml.load_analysis` put in the scene for it, or ``None``.
        exported: the current review was exported since it was loaded.
        passed_over: worklist studies opened and left without export in this session (``Next case`` skips them).
    """

    def __init__(self, logics: SlicerLogics) -> None:
        self.logics = logics
        self.case: OpenCase | None = None
        self.review: ReviewNodes | None = None
        self.exported = False
        self.passed_over: list[str] = []

    # -- cases -------------------------------------------------------------------------------------------------
    def use_volume(self, ct: slicer.vtkMRMLScalarVolumeNode) -> OpenCase:
        """Make ``ct`` the open case (kept when it already is; else a volume the user loaded, no study id)."""
        if ct is None or ct.GetImageData() is None:
            raise ValueError(f"the input volume has no image data: {ct.GetName() if ct is not None else None!r}")
        if self.case is None or self.case.ct is not ct:
            self.close_case(remove_nodes=False)
            self.case = OpenCase(ct=ct)
        return self.case

    def open_study(self, study: WorklistStudy, analysis_dir: Path) -> OpenCase:
        """Close the open case and load a worklist study's CT (and its analysis, when it has one)."""
        self.close_case()
        ct = load_ct_node(self.logics, study.path, name=study.study_id)
        self.case = OpenCase(ct=ct, case_id=study.study_id, source=study.path, analysis_dir=analysis_dir,
                             loaded_here=True, loaded_grid=geometry_of(ct), loaded_mtime=ct.GetImageData().GetMTime())
        if study.result_path is not None:
            self.load_results(study.result_path.parent, ct)
        return self.case

    def next_case(self, worklist_folder: str | Path, datastore_folder: str | Path) -> WorklistStudy | None:
        """Open the worklist's next study (:meth:`~.datastore.Worklist.next_unreviewed`): not in the datastore, not
        passed over in this session; the open study, left without export, is passed over, and so is a study that
        cannot be opened (its error is raised; the next call goes on to the study after it). ``None``: none left."""
        worklist = Worklist(_folder(worklist_folder, "worklist folder"))
        datastore = Datastore(_folder(datastore_folder, "datastore folder"))
        if self.case is not None and self.case.case_id and not self.exported \
                and self.case.case_id not in self.passed_over:
            self.passed_over.append(self.case.case_id)
        study = worklist.next_unreviewed(datastore, skip=self.passed_over)
        if study is not None:
            try:
                self.open_study(study, worklist.analysis_dir)
            except Exception:
                if study.study_id not in self.passed_over:  # never opened: it would come first again
                    self.passed_over.append(study.study_id)
                raise
            log.info("next case %s (PE probability %s)", study.study_id, study.pe_probability)
        return study

    def close_case(self, *, remove_nodes: bool = True) -> None:
        """Forget the open case; with ``remove_nodes`` remove its review nodes and, if the session loaded it, its CT."""
        if remove_nodes:
            self._remove_review()
            if self.case is not None and self.case.loaded_here:
                remove_with_helpers(self.logics.scene, self.case.ct)
        self.case, self.review, self.exported = None, None, False

    def _remove_review(self) -> None:
        review, self.review = self.review, None
        if review is None:
            return
        for node in (review.heatmap, review.segmentation, review.emboli_table, review.slice_chart,
                     review.slice_series, review.slice_table):
            if node.GetScene() is self.logics.scene:
                remove_with_helpers(self.logics.scene, node)

    # -- analysis ----------------------------------------------------------------------------------------------
    def analysis_input(self, ct: slicer.vtkMRMLScalarVolumeNode, work_dir: str | Path) -> Path:
        """What the analysis of ``ct`` reads: the case's file when ``ct`` still holds it, else ``ct``'s voxels and
        grid written to ``work_dir/input.nrrd`` (uncompressed NRRD: exact grid, quick to write)."""
        case = self.use_volume(ct)
        if case.holds_source():
            return case.source
        return write_volume(ct_volume_of(ct), Path(work_dir) / INPUT_FILE, compress=False)

    def artery_input(self, segmentation: slicer.vtkMRMLSegmentationNode, segment_id: str,
                     ct: slicer.vtkMRMLScalarVolumeNode, work_dir: str | Path) -> Path:
        """A segment (the review's corrected "Pulmonary arteries", another tool's pulmonary artery) written on
        ``ct``'s grid as ``work_dir/arteries-given.nrrd``, for an analysis that uses it as the artery territory
        instead of the artery model's (``pelabelup analyze --arteries``).

        Raises:
            ValueError: the segment is not in ``segmentation``, or it is empty on ``ct``'s grid.
        """
        mask = corrected_mask(segmentation, segment_id, ct)
        if not mask.any():
            name = segmentation.GetSegmentation().GetSegment(segment_id).GetName()
            raise ValueError(f"the artery segment {name!r} of {segmentation.GetName()!r} is empty on the grid of "
                             f"{ct.GetName()!r}")
        return write_volume(mask.astype(np.uint8), Path(work_dir) / ARTERIES_FILE, geometry_of(ct), compress=False)

    def output_folder(self, ct: slicer.vtkMRMLScalarVolumeNode, work_dir: str | Path) -> Path:
        """Where the analysis of ``ct`` goes: ``<worklist>/analysis/<study>`` for a worklist study without one
        there yet (the worklist then ranks it), else ``work_dir/analysis``."""
        case = self.use_volume(ct)
        if case.analysis_dir is not None and case.case_id:
            candidate = case.analysis_dir / case.case_id
            if not candidate.exists():
                return candidate
        return Path(work_dir) / "analysis"

    def load_results(self, folder: str | Path, ct: slicer.vtkMRMLScalarVolumeNode) -> ReviewNodes:
        """Put an analysis folder of ``ct`` into the scene, replacing the previous review's nodes."""
        self.use_volume(ct)
        self._remove_review()
        self.review = load_analysis(self.logics, folder, ct_node=ct)
        self.exported = False
        return self.review

    # -- review ------------------------------------------------------------------------------------------------
    def _require_review(self) -> ReviewNodes:
        if self.review is None:
            raise ValueError("no analysis is loaded: analyse the CT or open a case first")
        return self.review

    def set_heatmap_display(self, threshold: float, opacity: float) -> None:
        """Heat below ``threshold`` hidden, heatmap layer at ``opacity`` (both in [0, 1]); a heatmap the reader
        deleted from the scene is left alone."""
        heatmap = self._require_review().heatmap
        if heatmap.GetScene() is not None:
            set_heatmap_threshold(heatmap, float(threshold))
        set_heatmap_opacity(self.logics.scene, float(opacity))

    def center_on_embolus(self, row: int) -> np.ndarray:
        """Centre the slice views on the embolus in ``row`` of the emboli table; returns its RAS mm."""
        review = self._require_review()
        return center_views_on(self.logics.scene, review.emboli_table, int(row))

    def jump_to_slice(self, k: int) -> np.ndarray:
        """Show index slice ``k`` of the CT in every slice view; returns its centre in RAS mm."""
        review = self._require_review()
        return jump_to_slice(self.logics.scene, review.ct, int(k))

    def correctable_segments(self) -> list[tuple[str, str]]:
        """``(segment ID, name)`` of the review's segments a reviewer may export, the default first."""
        ids = set(self._require_review().segment_ids.values())
        return [(spec.segment_id, spec.name) for spec in CORRECTABLE_SEGMENTS if spec.segment_id in ids]

    def _analysed_own_file(self, review: ReviewNodes) -> bool:
        """Whether the review's analysis read the open case's file, and the CT node still holds that file."""
        case, analysed = self.case, review.record.raw.get("input")
        if case is None or case.source is None or not analysed or not case.holds_source():
            return False
        return Path(analysed).resolve() == case.source.resolve()

    def export(self, datastore_folder: str | Path, case_id: str, reviewer: str, study_label: bool, *,
               segment_id: str | None = None) -> ExportRecord:
        """Export the corrected segment (default: the pseudo-mask) as ``case_id``'s next datastore version.

        The label decision is ``confirmed`` when ``study_label`` equals the model's call. When the analysis read
        the case's own file, the image is exported as the core loads that file (the datastore then identifies
        it as a command-line export of the same study would).

        Raises:
            ValueError: no review, unset folder, empty case ID, a segment not in the review.
            InputError: what the datastore refuses (bad case ID or reviewer...).
        """
        review = self._require_review()
        folder = _folder(datastore_folder, "datastore folder")
        case_id = str(case_id or "").strip()
        if not case_id:
            raise ValueError(f"the case ID is empty (got {case_id!r})")
        segment_id = segment_id or CORRECTABLE_SEGMENTS[0].segment_id
        if segment_id not in review.segment_ids.values():
            raise ValueError(f"segment {segment_id!r} is not one of the review's {sorted(review.segment_ids.values())}")
        image = load_ct(self.case.source) if self._analysed_own_file(review) else None
        record = export_review(Datastore(folder), review, case_id, reviewer=reviewer, study_label=bool(study_label),
                               label_decision=label_decision(review.record.pe_probability, bool(study_label)),
                               segment_id=segment_id, image=image)
        self.exported = True
        if case_id in self.passed_over:
            self.passed_over.remove(case_id)
        log.info("exported %s version %d (%s)", case_id, record.version, record.label_decision)
        return record
