"""Hybrid real-anatomy cases: synthetic emboli implanted into the pulmonary arteries of a real CTA.

The real chest CTA crop (a negative study) and its pulmonary-artery mask give the anatomy; emboli are
planned at lodging sites derived from the mask (:func:`sites_from_mask`), rasterised inside the mask by
:mod:`.emboli`, and painted with clot HU plus noise matched to the real image (:mod:`.hybrid_implant`).
Every voxel outside the emboli keeps its original HU exactly. Arrays are ``(Z, Y, X)`` on the crop's grid;
coordinates LPS mm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import Geometry
from ..io.image_files import read_image_file, read_label_file
from ..volume import CTVolume
from .emboli import EmbolusPlan, implant_emboli, sample_emboli, slice_labels, study_labels
from .hybrid_implant import NoiseModel, estimate_noise, implant_clot, lungs_from_hu
from .hybrid_sites import sites_from_mask
from .types import ArterySite, Case, Embolus

log = logging.getLogger(__name__)

__all__ = ["MAX_EMBOLI", "RealAnatomy", "load_real_anatomy", "make_hybrid_case", "sites_from_mask"]

#: Number of emboli drawn when the caller does not say: uniform in [1, MAX_EMBOLI].
MAX_EMBOLI = 3
#: Draws of emboli plans before settling for fewer emboli than requested (some plans do not fit the lumen).
MAX_DRAWS = 8


@dataclass(frozen=True)
class RealAnatomy:
    """What a hybrid case takes from the real crop (computed once per file pair, then cached; read-only).

    Attributes:
        ct: the real CT (``int16`` HU, ``(Z, Y, X)``).
        artery_mask: ``uint8 (Z, Y, X)`` pulmonary-artery lumen (1 inside).
        sites: lodging sites from the mask.
        noise: noise measured in the lumen.
        lungs: ``uint8 (Z, Y, X)`` lungs from HU (1 right, 2 left), 0 inside the artery mask.
    """

    ct: CTVolume
    artery_mask: np.ndarray
    sites: tuple[ArterySite, ...]
    noise: NoiseModel
    lungs: np.ndarray


@lru_cache(maxsize=2)
def _load_cached(ct_path: str, mask_path: str, _stamp: tuple[int, ...]) -> RealAnatomy:
    ct = read_image_file(ct_path)
    mask, mask_geometry = read_label_file(mask_path)
    if not mask_geometry.same_grid(ct.geometry):
        raise InputError(mask_path, f"artery mask grid {mask_geometry.size} at {mask_geometry.spacing_mm} mm "
                                    f"does not match the CT's {ct.geometry.size} at {ct.geometry.spacing_mm} mm")
    artery = (mask != 0).astype(np.uint8)
    if not artery.any():
        raise InputError(mask_path, "artery mask is empty")
    hu = ct.hu if ct.hu.dtype == np.int16 else np.clip(np.rint(ct.hu), -32768, 32767).astype(np.int16)
    ct = CTVolume(hu=hu, geometry=ct.geometry, source=ct.source, meta=ct.meta)
    sites = tuple(sites_from_mask(artery, ct.geometry))
    if not sites:
        raise InputError(mask_path, "no embolus lodging sites found in the artery mask")
    lungs = lungs_from_hu(ct.hu, ct.geometry)
    lungs[artery > 0] = 0
    for array in (ct.hu, artery, lungs):
        array.flags.writeable = False  # shared by every case made from this crop
    return RealAnatomy(ct=ct, artery_mask=artery, sites=sites, noise=estimate_noise(ct.hu, artery), lungs=lungs)


def load_real_anatomy(ct_path: str | Path, artery_mask_path: str | Path) -> RealAnatomy:
    """Read the real crop and its artery mask and derive sites, noise and lungs (cached per file version).

    Raises:
        InputError: a file is missing or unreadable, the grids differ, or the mask is empty.
    """
    stamps: list[int] = []
    for path in (ct_path, artery_mask_path):
        p = Path(path)
        if not p.is_file():
            raise InputError(p, "file not found")
        st = p.stat()
        stamps += [st.st_mtime_ns, st.st_size]
    return _load_cached(str(ct_path), str(artery_mask_path), tuple(stamps))


def _plan_and_rasterize(anatomy: RealAnatomy, n_emboli: int, rng: np.random.Generator
                        ) -> tuple[np.ndarray, list[EmbolusPlan], list[Embolus]]:
    """Emboli by :mod:`.emboli`: ``(label map inside the mask, kept plans, emboli)``.

    Plans whose clot does not fit the lumen are dropped by the rasteriser; the draw is repeated (up to
    :data:`MAX_DRAWS` times) until all ``n_emboli`` fit, else the draw with most emboli is kept.
    """
    geometry: Geometry = anatomy.ct.geometry
    best: tuple[np.ndarray, list[EmbolusPlan], list[Embolus]] | None = None
    for _ in range(MAX_DRAWS):
        labels, kept, emboli = implant_emboli(sample_emboli(list(anatomy.sites), n_emboli, rng), geometry,
                                              anatomy.artery_mask)
        if best is None or len(emboli) > len(best[2]):
            best = (labels, list(kept), list(emboli))
        if len(emboli) == n_emboli:
            break
    assert best is not None
    if len(best[2]) < n_emboli:
        log.warning("hybrid case: only %d of %d emboli fit the artery lumen", len(best[2]), n_emboli)
    return best


def _plan_record(plan: EmbolusPlan) -> dict[str, Any]:
    return {"kind": plan.kind, "level": plan.site.level, "side": plan.site.side,
            "center_mm": [round(v, 3) for v in plan.center_mm], "length_mm": round(plan.length_mm, 3),
            "radius_mm": round(plan.radius_mm, 3), "hu": round(plan.hu, 2), "rim_mm": round(plan.rim_mm, 3),
            "site_radius_mm": round(plan.site.radius_mm, 3)}


def make_hybrid_case(ct_path: str | Path, artery_mask_path: str | Path, seed: int, *,
                     n_emboli: int | None = None) -> Case:
    """A hybrid case: the real crop with ``n_emboli`` synthetic emboli implanted in its pulmonary arteries.

    Args:
        ct_path: the real CTA (``cta_crop.nii.gz``: int16 HU).
        artery_mask_path: its pulmonary-artery mask on the same grid.
        seed: the case's random seed (everything drawn follows from it); the case is ``hybrid-<seed>``.
        n_emboli: emboli to implant; ``None`` draws 1..3; ``0`` gives the negative case, the crop itself.
            If some planned clots do not fit the lumen after :data:`MAX_DRAWS` draws, fewer are implanted
            (logged; ``params["n_emboli_requested"]`` keeps the request).

    Returns:
        a :class:`Case`: ``ct`` int16 HU (changed only on embolus voxels), ``emboli`` uint8 label map (every
        voxel inside the artery mask), ``arteries`` the given mask, ``lungs`` from HU (1 right, 2 left;
        see :func:`lungs_from_hu`), slice labels, RSPECT study labels as the phantoms make them
        (:func:`.emboli.study_labels`; ``rv_lv_ratio_lt_1`` on positives, since the real heart is unchanged
        and the source study is negative), and ``params`` (seed, noise estimate, emboli plans).

    Raises:
        InputError: unreadable or mismatched inputs. ValueError: ``n_emboli`` negative.
    """
    if n_emboli is not None and n_emboli < 0:
        raise ValueError(f"n_emboli must be >= 0, got {n_emboli}")
    anatomy = load_real_anatomy(ct_path, artery_mask_path)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, MAX_EMBOLI + 1)) if n_emboli is None else int(n_emboli)
    geometry = anatomy.ct.geometry
    plans: list[EmbolusPlan] = []
    emboli: list[Embolus] = []
    if n == 0:
        label_map = np.zeros(geometry.shape_zyx, dtype=np.uint8)
        hu = anatomy.ct.hu.copy()
    else:
        label_map, plans, emboli = _plan_and_rasterize(anatomy, n, rng)
        clot_hu = {k: plan.hu for k, plan in enumerate(plans, start=1)}
        hu = implant_clot(anatomy.ct.hu, anatomy.artery_mask, label_map, clot_hu, anatomy.noise, rng)
    noise = anatomy.noise
    params = {
        "generator": "hybrid", "seed": int(seed), "n_emboli_requested": n,
        "source_ct": Path(ct_path).name, "source_artery_mask": Path(artery_mask_path).name,
        "size": list(geometry.size), "spacing_mm": list(geometry.spacing_mm),
        "noise_sigma_hu": round(noise.sigma_hu, 3),
        "noise_lag1_correlation_zyx": [round(v, 4) for v in noise.lag1_correlation_zyx],
        "n_sites": len(anatomy.sites), "emboli_plans": [_plan_record(p) for p in plans],
    }
    ct = CTVolume(hu=hu, geometry=geometry, source=f"hybrid-{seed:06d}",
                  meta={"kind": "hybrid", "real_ct": Path(ct_path).name})
    return Case(
        ct=ct,
        emboli=label_map,
        arteries=anatomy.artery_mask.copy(),
        lungs=anatomy.lungs.copy(),
        emboli_list=emboli,
        slice_labels=slice_labels(label_map),
        # the real heart is unchanged by the implant and the source study is negative: RV/LV taken as < 1
        study_labels=study_labels(emboli, rv_lv_ratio_gte_1=False),
        case_id=f"hybrid-{seed:06d}",
        params=params,
    )
