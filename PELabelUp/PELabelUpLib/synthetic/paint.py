"""Paint the whole phantom in HU, in patient space, clots excluded.

Order (later wins): torso (skin, fat, muscle, lungs, mediastinal fat, upper abdomen) and ribs slab by slab,
sternum, spine, heart, systemic vessels and airways, pulmonary veins, pulmonary arteries. Thick vessels are
rasterised piece by piece (:mod:`.tubes`), the thousands of small lung vessels in bulk (:mod:`.splat`) and
clipped to the lungs. The artery lumen mask is written while the arteries are painted.
"""

from __future__ import annotations

import numpy as np

from ..geometry import Geometry
from .anatomy import Anatomy, paint_torso
from .arteries import VascularTree, central_vessels
from .mediastinum import Mediastinum, mark_mediastinum, paint_heart, paint_vessels
from .skeleton import paint_ribs, paint_spine, paint_sternum
from .splat import blend_coverage, splat_coverage
from .texture import NoiseField
from .tubes import paint_tube
from .voxels import slabs

TEXTURE_GRAIN_MM = 7.0


def artery_hu(branch_level: str, side: str, pa_hu: float, side_gain: dict[str, float]) -> float:
    """Mild variation of the pulmonary-arterial enhancement: per side, slightly less in small branches."""
    depth = {"central": 0, "lobar": 1, "segmental": 2, "subsegmental": 3}.get(branch_level, 4)
    return pa_hu * side_gain.get(side, 1.0) - 6.0 * depth


def paint_phantom(geometry: Geometry, anat: Anatomy, med: Mediastinum, central: list, arterial: VascularTree,
                  venous: VascularTree, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU (float32), lung labels (uint8, 1 right, 2 left) and artery lumen mask (uint8), all ``(Z, Y, X)``."""
    shape = geometry.shape_zyx
    hu = np.empty(shape, dtype=np.float32)
    lungs = np.zeros(shape, dtype=np.uint8)
    mediastinum = np.zeros(shape, dtype=bool)
    mark_mediastinum(mediastinum, geometry, med, extra=central_vessels(central))
    noise = NoiseField.on_grid(geometry, TEXTURE_GRAIN_MM, rng)
    for box in slabs(geometry):
        paint_torso(hu, lungs, box, geometry, anat, noise, mediastinum)
        paint_ribs(hu, box, geometry, anat)
    del mediastinum
    paint_sternum(hu, geometry, anat)
    paint_spine(hu, geometry, anat, rng)
    paint_heart(hu, geometry, med)
    paint_vessels(hu, geometry, med)
    for b in venous.thick():
        paint_tube(hu, b.tube, geometry, anat.contrast.vein_hu)
    coverage = np.zeros(shape, dtype=np.uint8)
    splat_coverage(venous.thin_segments(), geometry, coverage)
    blend_coverage(hu, coverage, anat.contrast.vein_hu, within=lungs)
    arteries = np.zeros(shape, dtype=np.uint8)
    gain = {"left": float(rng.uniform(0.97, 1.03)), "right": float(rng.uniform(0.97, 1.03))}
    for b in arterial.thick():
        paint_tube(hu, b.tube, geometry, artery_hu(b.level, b.side, anat.contrast.pa_hu, gain), mask=arteries)
    coverage[:] = 0
    splat_coverage(arterial.thin_segments(), geometry, coverage)
    blend_coverage(hu, coverage, artery_hu("distal", "", anat.contrast.pa_hu, gain), within=lungs, mask=arteries)
    return hu, lungs, arteries
