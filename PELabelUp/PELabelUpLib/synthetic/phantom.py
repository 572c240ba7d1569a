"""Synthetic CT pulmonary angiography phantoms with pulmonary emboli and their ground truth.

``generate_phantom(seed, **overrides)`` is deterministic: every random draw comes from
``numpy.random.default_rng(seed)``, split into independent streams (case, anatomy, grid, vessels, emboli,
texture, noise), so the same seed gives bit-identical output and, for instance, ``positive=False`` keeps the
patient and grid of the same seed and only leaves the clots out. ``contrast_phase="mixed"`` draws from an eighth
stream of its own, so it too keeps everything of the seed but the systemic blood pools' HU.

Steps: draw the patient (:mod:`.anatomy`) and the grid (:mod:`.grid`); grow the pulmonary arterial and venous
trees in the lungs (:mod:`.arteries`); rasterise the artery lumen; draw and implant emboli inside it
(:mod:`.emboli`); paint HU in patient space (torso, bones, heart, great vessels, airways, veins, arteries,
clots); blur, add noise and round (:mod:`.imaging`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..geometry import Geometry
from ..volume import CTVolume
from .anatomy import CONTRAST_PHASES, DEFAULT_CONTRAST_PHASE, Anatomy, draw_anatomy, mix_systemic_contrast
from .arteries import (
    central_arteries,
    central_vessels,
    grow_arterial_tree,
    grow_venous_tree,
    sample_lung_points,
    sites_from_tree,
)
from .emboli import (
    EmbolusPlan,
    draw_rv_lv_ratio_gte_1,
    implant_emboli,
    paint_emboli,
    sample_emboli,
    slice_labels,
    study_labels,
)
from .grid import draw_geometry
from .imaging import form_image
from .mediastinum import build_mediastinum
from .paint import paint_phantom
from .types import LEVELS, ArterySite, Case

log = logging.getLogger(__name__)

OVERRIDES = ("size_xy", "n_slices", "spacing_mm", "direction", "origin_mm", "n_emboli", "positive",
             "contrast_phase")
MAX_EMBOLI = 6
FINE_SPACING_MM = 0.9
_N_EMBOLI_WEIGHTS = np.array([0.3, 0.25, 0.17, 0.12, 0.09, 0.07])  # 1..6 emboli in a positive study


def _draw_case(rng: np.random.Generator, n_emboli: int | None, positive: bool | None) -> int:
    """Number of emboli, honouring the overrides (about half the studies positive when neither is given)."""
    draw_positive = bool(rng.random() < 0.5)
    draw_n = int(rng.choice(np.arange(1, MAX_EMBOLI + 1), p=_N_EMBOLI_WEIGHTS))
    if n_emboli is not None:
        if int(n_emboli) != n_emboli or not 0 <= int(n_emboli) <= MAX_EMBOLI:
            raise ValueError(f"n_emboli must be an integer in 0..{MAX_EMBOLI}, got {n_emboli!r}")
        if positive is not None and bool(positive) != (int(n_emboli) > 0):
            raise ValueError(f"positive={positive} contradicts n_emboli={n_emboli}")
        return int(n_emboli)
    if positive is None:
        positive = draw_positive
    return draw_n if positive else 0


def _inside_grid(sites: list[ArterySite], geometry) -> list[ArterySite]:
    """Sites whose centre lies inside the grid, at least a voxel from its faces (index space)."""
    if not sites:
        return []
    ijk = geometry.world_to_index(np.array([s.center_mm for s in sites]))
    size = np.asarray(geometry.size)
    ok = np.all((ijk >= 1.0) & (ijk <= size - 2.0), axis=1)
    return [s for s, keep in zip(sites, ok, strict=True) if keep]


def _implant(sites: list[ArterySite], plans: list[EmbolusPlan], geometry, arteries: np.ndarray,
             rng: np.random.Generator):
    """Rasterise ``plans``; replace the ones that did not fit the lumen (up to 8 rounds) to keep their number."""
    n = len(plans)
    labels, kept, emboli = implant_emboli(plans, geometry, arteries)
    for _ in range(8):
        if len(kept) == n:
            break
        if len(kept) == 0:  # nothing fits: fall back to larger vessels
            sites = [s for s in sites if s.level in LEVELS[:2]] or sites
        extra = sample_emboli(sites, n - len(kept), rng, avoid=kept)
        labels, kept, emboli = implant_emboli([*kept, *extra], geometry, arteries)
    if n and not emboli:
        raise ValueError(f"no embolus fitted the artery lumen on grid {geometry.size} {geometry.spacing_mm}")
    if len(emboli) < n:
        log.warning("only %d of %d emboli fitted the artery lumen on grid %s", len(emboli), n, geometry.size)
    return labels, kept, emboli


def _plan_record(plan: EmbolusPlan) -> dict[str, Any]:
    return {"kind": plan.kind, "level": plan.site.level, "side": plan.site.side, "branch_id": plan.site.branch_id,
            "center_mm": [round(c, 3) for c in plan.center_mm], "length_mm": round(plan.length_mm, 3),
            "radius_mm": round(plan.radius_mm, 3), "hu": round(plan.hu, 2), "rim_mm": round(plan.rim_mm, 3)}


@dataclass(frozen=True)
class PhantomPlan:
    """The cheap draws of a phantom, made before anything is painted (same for the same seed and overrides).

    Attributes:
        seed: the seed.
        n_emboli: emboli to implant (0 for a negative study).
        geometry: the grid (LPS).
        anatomy: the patient, placed relative to the grid.
        noise_sigma_hu: image noise, HU.
        blur_sigma_vox: Gaussian blur along ``(Z, Y, X)``, voxels.
        grid_record: JSON-serialisable record of the grid draws.
    """

    seed: int
    n_emboli: int
    geometry: Geometry
    anatomy: Anatomy
    noise_sigma_hu: float
    blur_sigma_vox: tuple[float, float, float]
    grid_record: dict[str, Any]


def _streams(seed: int) -> list[np.random.Generator]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    # case, anatomy, grid, vessels, emboli, texture, noise
    return np.random.default_rng(int(seed)).spawn(7)


def _phase_stream(seed: int) -> np.random.Generator:
    """The eighth stream (contrast phase): spawned children do not depend on how many are spawned."""
    return np.random.default_rng(int(seed)).spawn(8)[7]


def _contrast_phase(anat: Anatomy, seed: int, phase: Any) -> Anatomy:
    if phase is None or phase == DEFAULT_CONTRAST_PHASE:
        return anat
    if phase == "mixed":
        return replace(anat, contrast=mix_systemic_contrast(anat.contrast, _phase_stream(seed)))
    raise ValueError(f"contrast_phase must be one of {list(CONTRAST_PHASES)}, got {phase!r}")


def recorded_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` as ``case.json`` records them (``params["overrides"]``): plain JSON values, and without a
    ``contrast_phase`` that names the default, so two requests for the same case record the same thing."""
    return {k: v for k, v in _jsonable(overrides).items()
            if not (k == "contrast_phase" and v == DEFAULT_CONTRAST_PHASE)}


def _plan(seed: int, streams: list[np.random.Generator], overrides: dict[str, Any]) -> PhantomPlan:
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown}; allowed: {list(OVERRIDES)}")
    r_case, r_anat, r_grid = streams[:3]
    n_emboli = _draw_case(r_case, overrides.get("n_emboli"), overrides.get("positive"))
    noise_sigma = float(r_case.uniform(15, 35))
    z_blur, xy_blur = float(r_case.uniform(0.45, 0.75)), float(r_case.uniform(0.4, 0.7))
    grid_keys = ("size_xy", "n_slices", "spacing_mm", "direction", "origin_mm")
    anat = _contrast_phase(draw_anatomy(r_anat), seed, overrides.get("contrast_phase"))
    geometry, anat, record = draw_geometry(r_grid, anat, **{k: overrides.get(k) for k in grid_keys})
    return PhantomPlan(int(seed), n_emboli, geometry, anat, noise_sigma, (z_blur, xy_blur, xy_blur), record)


def plan_phantom(seed: int, **overrides: Any) -> PhantomPlan:
    """The grid, patient and number of emboli :func:`generate_phantom` would use, in milliseconds."""
    return _plan(seed, _streams(seed), overrides)


def generate_phantom(seed: int, **overrides: Any) -> Case:
    """A synthetic CTPA study with its ground truth, deterministic by ``seed``.

    Args:
        seed: non-negative integer; the same seed gives bit-identical output.
        **overrides: any of ``size_xy`` (int or (x, y) voxels), ``n_slices``, ``spacing_mm`` (x, y, z),
            ``direction`` (9 floats, row-major, orthonormal), ``origin_mm`` (LPS; the patient is placed in
            the field of view whatever the origin), ``n_emboli`` (0-6), ``positive`` (bool), ``contrast_phase``
            (``"pulmonary"``, the default, or ``"mixed"``: :func:`~.anatomy.mix_systemic_contrast`).

    Returns:
        A :class:`Case`: ``ct.hu`` int16 ``(Z, Y, X)`` HU on the drawn grid (LPS), emboli label map, artery
        mask (lumen including clot), lung labels (1 right, 2 left), emboli list, slice labels (axial slice =
        the grid's third index), RSPECT study labels, ``case_id`` ``phantom-<seed>`` and the draws in
        ``params``.

    Raises:
        ValueError: unknown or invalid overrides, or a positive study whose grid holds no pulmonary artery.
    """
    started = time.perf_counter()
    streams = _streams(seed)
    plan = _plan(seed, streams, overrides)
    _, _, _, r_tree, r_emb, r_tex, r_noise = streams
    geometry, anat = plan.geometry, plan.anatomy
    # vessels grow around the largest heart the study may get
    central = central_arteries(anat, r_tree)
    lung_pts = sample_lung_points(anat, build_mediastinum(replace(anat, rv_enlarged=True)), r_tree,
                                  extra=central_vessels(central))
    twigs = 3 if min(geometry.spacing_mm) < FINE_SPACING_MM else 2  # the smallest vessels show on fine grids
    arterial = grow_arterial_tree(anat, central, lung_pts, r_tree, twigs)
    venous = grow_venous_tree(anat, lung_pts, r_tree, twigs)
    sites = _inside_grid(sites_from_tree(arterial), geometry)
    if plan.n_emboli and not sites:
        raise ValueError(f"no pulmonary artery of the phantom lies inside the grid {geometry.size}; cannot make "
                         "a positive case (give a larger field of view or more slices)")
    plans = sample_emboli(sites, plan.n_emboli, r_emb)
    rv_strain = draw_rv_lv_ratio_gte_1(plans, r_emb)
    anat = replace(anat, rv_enlarged=rv_strain)
    hu, lungs, arteries = paint_phantom(geometry, anat, build_mediastinum(anat), central, arterial, venous, r_tex)
    labels, plans, emboli = _implant(sites, plans, geometry, arteries, r_emb)
    paint_emboli(hu, labels, plans)
    ct_hu = form_image(hu, geometry, r_noise, plan.noise_sigma_hu, plan.blur_sigma_vox)
    del hu
    params = {
        "seed": int(seed), "generator": "PELabelUp phantom v1", "overrides": recorded_overrides(overrides),
        **plan.grid_record, "noise_sigma_hu": plan.noise_sigma_hu, "blur_sigma_vox_zyx": list(plan.blur_sigma_vox),
        "n_emboli_requested": plan.n_emboli, "emboli_plans": [_plan_record(p) for p in plans],
        "n_artery_branches": len(arterial.branches), "n_vein_branches": len(venous.branches),
        "n_artery_twigs": len(arterial.twigs), "n_sites_in_grid": len(sites), "anatomy": _jsonable(anat.params()),
    }
    ct = CTVolume(hu=ct_hu, geometry=geometry, source=f"synthetic CTPA phantom, seed {seed}",
                  meta={"format": "synthetic", "modality": "CT"})
    log.info("phantom %d: grid %s, %d emboli, %.2f s", seed, geometry.size, len(emboli),
             time.perf_counter() - started)
    return Case(ct=ct, emboli=labels, arteries=arteries, lungs=lungs, emboli_list=emboli,
                slice_labels=slice_labels(labels), study_labels=study_labels(emboli, rv_strain),
                case_id=f"phantom-{int(seed):06d}", params=params)


def _jsonable(value: Any) -> Any:
    """Numpy scalars and arrays (nested in dicts, lists, tuples) -> plain Python for JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value
