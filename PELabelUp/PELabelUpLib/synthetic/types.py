"""Data types shared by the phantom generator, the emboli implanter, hybrid cases and the cohort writers.

Coordinates are LPS millimetres; arrays are ``(Z, Y, X)`` on the case's grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..volume import CTVolume

Level = Literal["central", "lobar", "segmental", "subsegmental"]
Side = Literal["central", "left", "right"]
EmbolusKind = Literal["saddle", "occlusive", "partial"]

LEVELS: tuple[Level, ...] = ("central", "lobar", "segmental", "subsegmental")


@dataclass(frozen=True)
class ArterySite:
    """A place on a pulmonary artery where an embolus may lodge.

    Attributes:
        center_mm: LPS point on the vessel centreline, mm.
        direction: LPS unit vector along the vessel.
        radius_mm: lumen radius at that point, mm.
        level: branch order (trunk and main arteries are ``central``).
        side: patient side of the branch (LPS +x is the patient's left).
        branch_id: identifier of the branch within its tree (``-1`` when unknown, as for mask-derived sites).
        bifurcation: True at the bifurcation of the pulmonary trunk (where a saddle embolus sits).
    """

    center_mm: tuple[float, float, float]
    direction: tuple[float, float, float]
    radius_mm: float
    level: Level
    side: Side
    branch_id: int = -1
    bifurcation: bool = False


@dataclass(frozen=True)
class Embolus:
    """One implanted filling defect.

    Attributes:
        label: its value in the emboli label map (1-based).
        kind: ``saddle`` (straddles the trunk bifurcation), ``occlusive`` (fills the lumen), ``partial``
            (central defect with a rim of contrast around it).
        level, side: from the site it lodged in.
        center_mm: LPS centre, mm.
        length_mm: extent along the vessel, mm.
        hu: mean attenuation of the clot, HU (20-90).
        voxels: voxels in the label map after clipping to the artery lumen.
        volume_mm3: ``voxels`` times the voxel volume.
    """

    label: int
    kind: EmbolusKind
    level: Level
    side: Side
    center_mm: tuple[float, float, float]
    length_mm: float
    hu: float
    voxels: int
    volume_mm3: float


@dataclass
class Case:
    """A generated study with its ground truth, all on one grid.

    Attributes:
        ct: the CT in HU (``int16``).
        emboli: ``uint8 (Z, Y, X)`` label map, 0 = none, k = ``emboli_list[k-1]``.
        arteries: ``uint8 (Z, Y, X)`` mask of the pulmonary arterial tree *including* what fills it.
        lungs: ``uint8 (Z, Y, X)``: 0 none, 1 right lung, 2 left lung.
        emboli_list: the implanted emboli.
        slice_labels: ``bool (Z,)``, True where axial slice k holds an embolus voxel
            (RSPECT's ``pe_present_on_image``).
        study_labels: RSPECT's study-level columns (``negative_exam_for_pe``, ``central_pe``, ...) as 0/1.
        case_id: a stable name for the case.
        params: what the generator drew (seed, sizes, spacing, ...), JSON-serialisable.
    """

    ct: CTVolume
    emboli: np.ndarray
    arteries: np.ndarray
    lungs: np.ndarray
    emboli_list: list[Embolus]
    slice_labels: np.ndarray
    study_labels: dict[str, int]
    case_id: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def positive(self) -> bool:
        return bool(self.slice_labels.any())
