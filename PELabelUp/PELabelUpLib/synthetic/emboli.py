"""Synthetic pulmonary emboli: where they lodge, their shape inside an artery mask, their labels.

Generic on purpose: everything here works from candidate sites (:class:`ArterySite`, LPS mm) and a binary
artery mask on any grid (axis-aligned or oblique), so the same code serves the phantom (sites from its tree)
and real CT with a segmented pulmonary artery (sites from the mask).

Shapes (all clipped to the artery lumen, so every embolus voxel lies inside the mask):

- ``occlusive``: a flat-ended cylinder along the vessel, wider than the lumen, so the clot fills the
  cross-section over ``length_mm``;
- ``partial``: a thinner capsule (rounded ends, whole extent ``length_mm``) around the centreline, slightly
  off-centre, and never closer than ``rim_mm`` (at least a voxel) to the vessel wall (distance transform
  of the mask), leaving a rim of contrast round it (the "polo mint" sign on cross-sections, "railway track"
  along the vessel);
- ``saddle``: the lumen within ``radius_mm`` of the trunk bifurcation on the branch side, inside a rim,
  draped over the bifurcation into both main pulmonary arteries.

The pipeline is :func:`sample_emboli` -> :func:`implant_emboli` (which runs :func:`rasterize_emboli`,
:func:`compact_emboli` and :func:`summarize_emboli`) -> :func:`paint_emboli` before blur and noise; then
:func:`slice_labels` and :func:`study_labels` for the RSPECT labels. Label maps are ``uint8 (Z, Y, X)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..geometry import Geometry
from .tubes import segment_distance, unit
from .types import LEVELS, ArterySite, Embolus, EmbolusKind
from .voxels import index_box, world_coords

log = logging.getLogger(__name__)

CLOT_HU_RANGE = (20.0, 90.0)
LEVEL_WEIGHTS = {"central": 0.22, "lobar": 0.28, "segmental": 0.32, "subsegmental": 0.18}
STUDY_COLUMNS = ("negative_exam_for_pe", "indeterminate", "rv_lv_ratio_gte_1", "rv_lv_ratio_lt_1", "leftsided_pe",
                 "rightsided_pe", "central_pe", "chronic_pe", "acute_and_chronic_pe", "qa_motion", "qa_contrast",
                 "flow_artifact", "true_filling_defect_not_pe")


@dataclass(frozen=True)
class EmbolusPlan:
    """An embolus to implant.

    Attributes:
        kind: ``occlusive``, ``partial`` or ``saddle``.
        site: where it lodges (LPS mm).
        center_mm: LPS centre of the clot (the site centre, shifted off-axis for partial clots).
        length_mm: extent along the vessel (saddle: across the bifurcation).
        radius_mm: clot radius across the vessel (saddle: reach from the bifurcation point).
        hu: clot attenuation, HU (20-90).
        rim_mm: contrast kept between clot and wall (partial, saddle; 0 for occlusive); raised to at least
            the median voxel spacing when rasterised (one voxel in-plane on anisotropic grids).
    """

    kind: EmbolusKind
    site: ArterySite
    center_mm: tuple[float, float, float]
    length_mm: float
    radius_mm: float
    hu: float
    rim_mm: float = 0.0


def _plan_at(site: ArterySite, rng: np.random.Generator) -> EmbolusPlan:
    r = site.radius_mm
    # central clots almost never occlude (that would be fatal); small arteries mostly are occluded
    p_partial = 0.97 if r >= 8 else 0.8 if r >= 4 else 0.55 if r >= 2.4 else 0.3 if r >= 1.8 else 0.0
    hu = float(rng.uniform(*CLOT_HU_RANGE))
    if rng.random() < p_partial:
        d = unit(np.asarray(site.direction))
        off = rng.normal(size=3)
        off -= d * float(off @ d)
        off = unit(off) * float(rng.uniform(0, 0.15)) * r
        center = tuple(float(c) for c in np.asarray(site.center_mm) + off)
        length = float(np.clip(rng.uniform(2.5, 6.0) * r, 6.0, 50.0))
        return EmbolusPlan("partial", site, center, length, float(rng.uniform(0.45, 0.72)) * r, hu, max(0.12 * r, 0.5))
    length = float(np.clip(rng.uniform(2.5, 7.0) * r, 5.0, 35.0))
    return EmbolusPlan("occlusive", site, site.center_mm, length, 1.6 * r, hu, 0.0)


def _saddle_at(site: ArterySite, rng: np.random.Generator) -> EmbolusPlan:
    reach = float(rng.uniform(1.4, 2.0)) * site.radius_mm
    return EmbolusPlan("saddle", site, site.center_mm, 2.0 * reach, reach, float(rng.uniform(*CLOT_HU_RANGE)),
                       float(rng.uniform(1.5, 3.0)))


def sample_emboli(sites: Sequence[ArterySite], n: int, rng: np.random.Generator,
                  saddle_probability: float = 0.05, avoid: Sequence[EmbolusPlan] = ()) -> list[EmbolusPlan]:
    """Draw ``n`` emboli at distinct, well separated sites, mixing levels (central to subsegmental).

    At most one saddle embolus (counting ``avoid``), only where a site has ``bifurcation=True``. Large
    vessels get mostly partial clots, subsegmental ones occlusive clots. Sites near the emboli in ``avoid``
    (already placed) are avoided when others are free.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n and not sites:
        raise ValueError(f"cannot place {n} emboli without candidate sites")
    plans: list[EmbolusPlan] = []
    by_level = {lvl: [s for s in sites if s.level == lvl and not s.bifurcation] for lvl in LEVELS}
    forks = [s for s in sites if s.bifurcation]
    if not any(by_level.values()):  # only bifurcation sites: they also take ordinary clots
        by_level["central"] = list(sites)
    for _ in range(n):
        if forks and not any(p.kind == "saddle" for p in (*avoid, *plans)) and rng.random() < saddle_probability:
            plans.append(_saddle_at(forks[int(rng.integers(len(forks)))], rng))
            continue
        levels = [lvl for lvl in LEVELS if by_level[lvl]]
        weights = np.array([LEVEL_WEIGHTS[lvl] for lvl in levels])
        level = str(rng.choice(levels, p=weights / weights.sum()))
        placed = [*avoid, *plans]
        free = [s for s in by_level[level] if _far_from(s, placed)]
        if not free:
            free = [s for lvl in levels for s in by_level[lvl] if _far_from(s, placed)] or by_level[level]
        plans.append(_plan_at(free[int(rng.integers(len(free)))], rng))
    return plans


def _far_from(site: ArterySite, plans: Sequence[EmbolusPlan]) -> bool:
    c = np.asarray(site.center_mm)
    return all(np.linalg.norm(c - np.asarray(p.center_mm)) > 0.5 * p.length_mm + 2 * site.radius_mm + 5.0 for p in plans)


def _shape_box(plan: EmbolusPlan, geometry: Geometry, rim_mm: float):
    """Voxel box around ``plan`` and the boolean clot shape (before clipping) inside it."""
    c = np.asarray(plan.center_mm, dtype=float)
    d = unit(np.asarray(plan.site.direction))
    pad = 2.0 * max(geometry.spacing_mm) + rim_mm
    if plan.kind == "saddle":
        grow = plan.radius_mm + pad
        box = index_box(geometry, c - grow, c + grow, pad_vox=2)
        if box is None:
            return None
        x, y, z = world_coords(geometry, box)
        dx, dy, dz = x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2])
        along = dx * np.float32(d[0]) + dy * np.float32(d[1]) + dz * np.float32(d[2])
        shape = (dx * dx + dy * dy + dz * dz < np.float32(plan.radius_mm**2)) & (
            along > np.float32(-0.35 * plan.site.radius_mm))
        return box, shape
    half = plan.length_mm / 2
    a, b = c - d * half, c + d * half
    grow = max(plan.radius_mm, plan.site.radius_mm) + pad
    box = index_box(geometry, np.minimum(a, b) - grow, np.maximum(a, b) + grow, pad_vox=2)
    if box is None:
        return None
    x, y, z = world_coords(geometry, box)
    if plan.kind == "occlusive":  # a cylinder with flat ends, wider than the lumen: fills the cross-section
        dx, dy, dz = x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2])
        along = dx * np.float32(d[0]) + dy * np.float32(d[1]) + dz * np.float32(d[2])
        radial2 = dx * dx + dy * dy + dz * dz - along * along
        return box, (np.abs(along) <= np.float32(half)) & (radial2 < np.float32(plan.radius_mm**2))
    # partial: a capsule (rounded ends) whose whole extent is length_mm
    core = max(half - plan.radius_mm, 0.0)
    return box, segment_distance(x, y, z, c - d * core, c + d * core, plan.radius_mm, plan.radius_mm) < 0


def rasterize_emboli(plans: Sequence[EmbolusPlan], geometry: Geometry, artery_mask: np.ndarray,
                     min_voxels: int = 6) -> np.ndarray:
    """Label map ``uint8 (Z, Y, X)`` of ``plans`` clipped to ``artery_mask`` (nonzero = lumen).

    Label ``k`` marks ``plans[k-1]``. A clot keeps only its largest 26-connected piece, never takes voxels of
    an earlier clot (overlaps go to the first), and is dropped (its label absent) when fewer than
    ``min_voxels`` voxels remain. Use :func:`compact_emboli` to renumber, or :func:`implant_emboli`.
    """
    if artery_mask.shape != geometry.shape_zyx:
        raise ValueError(f"artery_mask shape {artery_mask.shape} does not match grid {geometry.shape_zyx}")
    if len(plans) > 255:
        raise ValueError(f"at most 255 emboli fit a uint8 label map, got {len(plans)}")
    labels = np.zeros(geometry.shape_zyx, dtype=np.uint8)
    sampling = (geometry.spacing_mm[2], geometry.spacing_mm[1], geometry.spacing_mm[0])
    for k, plan in enumerate(plans, start=1):
        # at least one voxel of contrast round a partial clot (in-plane on anisotropic grids)
        rim = max(plan.rim_mm, float(np.median(geometry.spacing_mm))) if plan.rim_mm > 0 else 0.0
        found = _shape_box(plan, geometry, rim)
        if found is None:
            log.info("embolus %d (%s) lies outside the grid; dropped", k, plan.kind)
            continue
        box, shape = found
        lumen = artery_mask[box] > 0
        clot = shape & lumen & (labels[box] == 0)
        if rim > 0 and clot.any():
            depth = ndimage.distance_transform_edt(np.pad(lumen, 1), sampling=sampling)[1:-1, 1:-1, 1:-1]
            clot &= depth > rim
        pieces, n_pieces = ndimage.label(clot, structure=np.ones((3, 3, 3), dtype=bool))
        if n_pieces > 1:
            sizes = np.bincount(pieces.ravel())[1:]
            clot = pieces == (int(np.argmax(sizes)) + 1)
        if int(clot.sum()) < min_voxels:
            log.info("embolus %d (%s, %s) has %d voxels in the lumen; dropped", k, plan.kind, plan.site.level,
                     int(clot.sum()))
            continue
        labels[box][clot] = k
    return labels


def compact_emboli(label_map: np.ndarray, plans: Sequence[EmbolusPlan]) -> tuple[np.ndarray, list[EmbolusPlan]]:
    """Renumber the labels present in ``label_map`` to 1..K and keep their plans, in order."""
    present = [k for k, box in enumerate(ndimage.find_objects(label_map), start=1) if box is not None]
    if present and present[-1] > len(plans):
        raise ValueError(f"label {present[-1]} in the map but only {len(plans)} plans")
    kept = [plans[k - 1] for k in present]
    if present == list(range(1, len(present) + 1)):
        return label_map, kept  # already 1..K
    lut = np.zeros(256, dtype=np.uint8)
    for new, old in enumerate(present, start=1):
        lut[old] = new
    return lut[label_map], kept


def summarize_emboli(label_map: np.ndarray, plans: Sequence[EmbolusPlan], geometry: Geometry) -> list[Embolus]:
    """One :class:`Embolus` per label present in ``label_map`` (label ``k`` is ``plans[k-1]``).

    ``center_mm`` is the LPS centroid of the clot's voxels; ``volume_mm3`` its voxel count times the voxel
    volume.
    """
    voxel_mm3 = float(np.prod(geometry.spacing_mm))
    out = []
    for k, box in enumerate(ndimage.find_objects(label_map), start=1):
        if box is None:
            continue
        if k > len(plans):
            raise ValueError(f"label {k} in the map but only {len(plans)} plans")
        zyx = np.argwhere(label_map[box] == k) + [s.start for s in box]
        center = geometry.index_to_world(zyx.mean(axis=0)[::-1])
        plan = plans[k - 1]
        out.append(Embolus(label=k, kind=plan.kind, level=plan.site.level, side=plan.site.side,
                           center_mm=tuple(float(c) for c in center), length_mm=float(plan.length_mm),
                           hu=float(plan.hu), voxels=len(zyx), volume_mm3=len(zyx) * voxel_mm3))
    return out


def implant_emboli(plans: Sequence[EmbolusPlan], geometry: Geometry, artery_mask: np.ndarray,
                   min_voxels: int = 6) -> tuple[np.ndarray, list[EmbolusPlan], list[Embolus]]:
    """Rasterise, drop the ones that did not fit, renumber 1..K: ``(label_map, kept plans, emboli)``."""
    labels, kept = compact_emboli(rasterize_emboli(plans, geometry, artery_mask, min_voxels), plans)
    return labels, kept, summarize_emboli(labels, kept, geometry)


def paint_emboli(hu: np.ndarray, label_map: np.ndarray, plans: Sequence[EmbolusPlan]) -> None:
    """Set each clot's voxels of ``hu`` (``(Z, Y, X)``, before blur and noise) to its plan's HU."""
    lut = np.zeros(256, dtype=np.float32)
    for k, plan in enumerate(plans, start=1):
        lut[k] = plan.hu
    inside = label_map > 0
    hu[inside] = lut[label_map[inside]]


def slice_labels(label_map: np.ndarray) -> np.ndarray:
    """``bool (Z,)``: True where axial slice k (the grid's third index) holds an embolus voxel."""
    return label_map.reshape(label_map.shape[0], -1).any(axis=1)


def draw_rv_lv_ratio_gte_1(plans: Sequence[EmbolusPlan], rng: np.random.Generator) -> bool:
    """Right-ventricular strain, more likely with central clot and more clots (False without emboli)."""
    if not plans:
        return False
    central = any(p.site.level == "central" for p in plans)
    return bool(rng.random() < min(0.9, 0.12 + 0.4 * central + 0.06 * len(plans)))


def study_labels(emboli: Sequence[Embolus], rv_lv_ratio_gte_1: bool) -> dict[str, int]:
    """RSPECT study-level columns from the implanted emboli.

    Sides come from each embolus's side (a saddle embolus counts for both lungs), ``central_pe`` from the
    central level; the RV/LV pair is 0/0 for negative studies and one-hot for positive ones; chronic,
    indeterminate, quality and mimic columns are 0 (these phantoms model none of them).
    """
    positive = bool(emboli)
    out = dict.fromkeys(STUDY_COLUMNS, 0)
    out["negative_exam_for_pe"] = int(not positive)
    if positive:
        out["rv_lv_ratio_gte_1"] = int(rv_lv_ratio_gte_1)
        out["rv_lv_ratio_lt_1"] = int(not rv_lv_ratio_gte_1)
        out["leftsided_pe"] = int(any(e.side == "left" or e.kind == "saddle" for e in emboli))
        out["rightsided_pe"] = int(any(e.side == "right" or e.kind == "saddle" for e in emboli))
        out["central_pe"] = int(any(e.level == "central" for e in emboli))
    return out
