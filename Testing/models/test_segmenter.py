"""Segmenter inference: masks land on the exact (oblique, anisotropic) input grid, inside the grown territory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from torch import nn

from PELabelUpLib.evaluate import dice
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.models.folder import load_model, save_model_folder
from PELabelUpLib.models.networks import build_network
from PELabelUpLib.models.segmenter import (
    SegmenterPreprocessing,
    dilate_mm,
    predict_segmentation,
    prepare_segmenter_input,
    working_geometry,
)
from PELabelUpLib.synthetic.grid import rotation
from PELabelUpLib.volume import CTVolume

SMALL_ROI = (16, 16, 16)


class ClotNet(nn.Module):
    """Fixed 1x1x1 convolution: embolus where the territory channel is on and the windowed CT is dark.

    logit = 40 * (territory - ct) - 12: lumen (ct ~ 0.93) -9, clot at 50 HU (ct ~ 0.43) +11, outside -12 or less.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([-40.0, 40.0]).reshape(1, 2, 1, 1, 1))
            self.conv.bias.fill_(-12.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class EverythingNet(nn.Module):
    """Says "embolus" everywhere (logit +10): what survives is the restriction to the grown territory."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x[:, :1], 10.0)


def oblique_grid() -> Geometry:
    direction = rotation(np.array([0.3, 1.0, 0.2]), 17.0)
    return Geometry(size=(50, 36, 14), spacing_mm=(0.8, 1.1, 3.0), origin_mm=(-30.0, 12.0, 50.0),
                    direction=tuple(direction.ravel()))


def distance_to(geometry: Geometry, ijk_centre: tuple[float, float, float]) -> np.ndarray:
    """``(Z, Y, X)`` distance (mm) of every voxel centre to the world point at continuous index ``ijk_centre``."""
    centre = geometry.index_to_world(np.asarray([ijk_centre], dtype=float))[0]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.size], indexing="ij"), axis=-1).reshape(-1, 3)
    return np.linalg.norm(geometry.index_to_world(ijk) - centre, axis=1).reshape(geometry.size).transpose(2, 1, 0)


def grown_by_brute_force(mask: np.ndarray, spacing_mm: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """Voxels within ``radius_mm`` of the mask: a Euclidean distance transform over the whole array."""
    sampling = (spacing_mm[2], spacing_mm[1], spacing_mm[0])
    return ndimage.distance_transform_edt(mask == 0, sampling=sampling) <= radius_mm


def test_clot_comes_back_on_the_exact_oblique_anisotropic_input_grid() -> None:
    geometry = oblique_grid()
    distance = distance_to(geometry, (30.0, 12.0, 7.0))  # off-centre: a flip or a transposition would show
    clot = distance <= 8.0
    territory = (distance <= 15.0).astype(np.uint8)
    volume = CTVolume(np.where(clot, 50, 400).astype(np.int16), geometry, source="oblique clot")
    metadata = {"preprocessing": SegmenterPreprocessing(roi_size=SMALL_ROI).as_metadata()}

    mask, prob = predict_segmentation(volume, territory, ClotNet().eval(), metadata)
    assert mask.shape == prob.shape == volume.hu.shape == geometry.shape_zyx
    assert mask.dtype == np.uint8 and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    assert set(np.unique(mask)) <= {0, 1}
    assert dice(mask, clot) > 0.85


def test_nothing_outside_the_grown_territory_even_where_it_meets_the_volume_edge() -> None:
    geometry = oblique_grid()
    territory = (distance_to(geometry, (44.0, 30.0, 11.0)) <= 9.0).astype(np.uint8)  # reaches three faces
    assert territory[-1].any() and territory[:, -1].any() and territory[:, :, -1].any()
    volume = CTVolume(np.full(geometry.shape_zyx, 300, np.int16), geometry)
    prep = SegmenterPreprocessing(roi_size=SMALL_ROI, territory_dilation_mm=3.0)

    mask, prob = predict_segmentation(volume, territory, EverythingNet(), {"preprocessing": prep.as_metadata()})
    allowed = grown_by_brute_force(territory, geometry.spacing_mm, 3.0)
    np.testing.assert_array_equal(mask.astype(bool), allowed)
    assert prob[~allowed].max() == 0.0 and prob[allowed].min() > 0.99


def test_empty_territory_gives_empty_outputs_and_a_wrong_shape_is_refused() -> None:
    geometry = oblique_grid()
    volume = CTVolume(np.zeros(geometry.shape_zyx, np.int16), geometry)
    metadata = {"preprocessing": SegmenterPreprocessing(roi_size=SMALL_ROI).as_metadata()}
    mask, prob = predict_segmentation(volume, np.zeros(geometry.shape_zyx, np.uint8), ClotNet(), metadata)
    assert mask.shape == prob.shape == geometry.shape_zyx and not mask.any() and not prob.any()
    with pytest.raises(ValueError, match="territory shape"):
        predict_segmentation(volume, np.ones((3, 4, 5), np.uint8), ClotNet(), metadata)


def test_a_dynunet_model_folder_predicts_on_a_box_smaller_than_its_window(tmp_path: Path) -> None:
    """The real network through a real model folder; the working box (about 12 mm) is padded to the window."""
    spec = {"name": "DynUNet", "kwargs": {"in_channels": 2, "out_channels": 1, "kernel_size": [3, 3, 3],
                                          "strides": [1, 2, 2], "upsample_kernel_size": [2, 2], "filters": [4, 8, 8]}}
    prep = SegmenterPreprocessing(roi_size=SMALL_ROI, context_mm=2.0)
    torch.manual_seed(0)
    save_model_folder(tmp_path / "seg", build_network(spec), {
        "name": "pelabelup-segmenter", "version": "0.0.1", "task": "segmenter", "network": spec,
        "preprocessing": prep.as_metadata()})
    network, metadata = load_model(tmp_path / "seg")
    geometry = oblique_grid()
    territory = (distance_to(geometry, (20.0, 20.0, 5.0)) <= 4.0).astype(np.uint8)
    volume = CTVolume(np.random.default_rng(0).integers(-900, 500, geometry.shape_zyx).astype(np.int16), geometry)
    mask, prob = predict_segmentation(volume, territory, network, metadata)
    assert mask.shape == prob.shape == geometry.shape_zyx
    assert np.isfinite(prob).all() and 0.0 <= prob.min() and prob.max() <= 1.0
    assert not (mask.astype(bool) & ~grown_by_brute_force(territory, geometry.spacing_mm, 3.0)).any()


def test_working_grid_reaches_every_input_voxel_and_keeps_the_territory() -> None:
    geometry = oblique_grid()
    territory = (distance_to(geometry, (25.0, 18.0, 7.0)) <= 10.0).astype(np.uint8)
    prepared = prepare_segmenter_input(CTVolume(np.zeros(geometry.shape_zyx, np.int16), geometry), territory,
                                       SegmenterPreprocessing())
    assert prepared is not None and prepared.geometry.spacing_mm == (1.0, 1.0, 1.0)
    assert prepared.hu.shape == prepared.territory.shape == prepared.geometry.shape_zyx
    box = prepared.box_geometry
    far_corner = box.index_to_world(np.asarray([[n - 1 for n in box.size]], dtype=float))
    reached = prepared.geometry.world_to_index(far_corner)[0]
    assert np.all(reached <= np.asarray(prepared.geometry.size) - 1 + 1e-6)
    volume_mm3 = territory.sum() * np.prod(geometry.spacing_mm)
    assert prepared.territory.sum() == pytest.approx(volume_mm3, rel=0.1)  # 1 mm^3 working voxels


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 12)] * 3), spacing=st.tuples(*[st.sampled_from([0.5, 0.8, 1.0, 2.5])] * 3),
       radius=st.sampled_from([0.0, 0.7, 1.0, 2.6, 4.0]), seed=st.integers(0, 2**16))
def test_dilation_on_the_bounding_box_equals_the_whole_array_transform(
        shape: tuple[int, int, int], spacing: tuple[float, float, float], radius: float, seed: int) -> None:
    mask = np.random.default_rng(seed).random(shape) < 0.05
    expected = grown_by_brute_force(mask, spacing, radius) if mask.any() else mask
    np.testing.assert_array_equal(dilate_mm(mask, spacing, radius), expected)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("spacing_mm", (1.0, 0.0, 1.0), "spacing_mm"),
    ("roi_size", (16, 16), "roi_size"),
    ("threshold", 1.0, "threshold"),
    ("territory_dilation_mm", -1.0, "territory_dilation_mm"),
    ("context_mm", float("nan"), "context_mm"),
])
def test_preprocessing_refuses_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmenterPreprocessing(**{field: value})


def test_preprocessing_survives_the_metadata_round_trip() -> None:
    prep = SegmenterPreprocessing(spacing_mm=(1.5, 1.5, 2.0), roi_size=(32, 48, 48), threshold=0.4,
                                  territory_dilation_mm=2.0, context_mm=8.0)
    assert SegmenterPreprocessing.from_metadata({"preprocessing": prep.as_metadata()}) == prep
    assert SegmenterPreprocessing.from_metadata({}) == SegmenterPreprocessing()


@pytest.mark.parametrize("spacing_mm", [(1.0, 1.0, 1.0), (1.5, 0.7, 2.0), (0.8, 1.1, 3.0)])
def test_working_grid_is_the_smallest_that_reaches_the_last_input_voxel(spacing_mm: tuple[float, ...]) -> None:
    geometry = oblique_grid()
    work = working_geometry(geometry, spacing_mm)
    assert work.origin_mm == geometry.origin_mm and work.direction == geometry.direction
    for n, s, m, w in zip(geometry.size, geometry.spacing_mm, work.size, spacing_mm, strict=True):
        assert (m - 1) * w >= (n - 1) * s - 1e-9 > (m - 2) * w
