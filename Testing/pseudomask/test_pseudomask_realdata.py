"""The blocks together on the real CTA crop with an implanted clot: a coarse heatmap is a poor mask but a
good selector of the HU candidates (the premise of the method)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from PELabelUpLib.evaluate import dice, lesion_detection
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.pseudomask import (
    candidate_clot_voxels,
    components,
    describe_emboli,
    hysteresis,
    select_components,
)

pytestmark = pytest.mark.realdata


def test_coarse_heat_selects_the_implanted_clot(real_cta_dir):
    image = sitk.ReadImage(str(real_cta_dir / "cta_crop.nii.gz"))
    geometry = Geometry.from_sitk(image)
    hu = sitk.GetArrayFromImage(image).astype(np.int16)
    territory = sitk.GetArrayFromImage(sitk.ReadImage(str(real_cta_dir / "pulmonary_artery.nii.gz"))) > 0
    centre = np.array(np.unravel_index(np.argmax(ndimage.distance_transform_edt(territory)), hu.shape))
    grid = np.indices(hu.shape)
    clot = (sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= 2**2) & territory
    hu[clot] = 45  # a ~33-voxel acute clot, 45 HU, deep in the artery
    # Grad-CAM-like heat: a broad bump (sigma 6 voxels = 9 mm) centred 3 voxels off the clot
    off_centre = centre + np.array([0, 3, 0])
    heat = np.exp(-sum((g - c) ** 2 for g, c in zip(grid, off_centre, strict=True)) / (2 * 6.0**2))

    assert dice(hysteresis(heat, 0.3, 0.8), clot) < 0.1  # the heatmap itself is a poor mask

    candidates = components(candidate_clot_voxels(hu, territory, spacing_mm=geometry.spacing_mm),
                            geometry.spacing_mm, min_volume_mm3=10.0)
    selection = select_components(candidates, heat, 0.3, 0.8)
    assert len(selection.kept_ids) == 1
    assert dice(selection.mask, clot) > 0.9
    detection = lesion_detection(selection.mask, clot, geometry.spacing_mm)
    assert (detection.tp, detection.fn, detection.fp) == (1, 0, 0)
    (embolus,) = describe_emboli(selection.mask, heat, geometry)
    implanted_lps = geometry.index_to_world(centre[::-1].astype(float))
    assert np.linalg.norm(np.subtract(embolus["centroid_lps_mm"], implanted_lps)) < 1.5  # mm
