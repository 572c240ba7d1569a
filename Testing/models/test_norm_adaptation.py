"""Test-time batch-norm adaptation (AdaBN) of the artery model: statistics from the study, network untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from PELabelUpLib.evaluate import dice
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import load_ct
from PELabelUpLib.models.artery import ArteryPreprocessing, predict_artery_territory
from PELabelUpLib.models.folder import load_model
from PELabelUpLib.models.norm_adaptation import adapt_batchnorm, random_patch_starts
from PELabelUpLib.models.registry import bundled_models_dir
from PELabelUpLib.volume import CTVolume


class ScaleThenNorm(nn.Module):
    """x -> BatchNorm(w * x) with w = 1 and 2 in two channels: its statistics are easy to compute by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1, 1))
        self.norm = nn.BatchNorm3d(2)
        self.head = nn.Conv3d(2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.conv(x)))


def test_statistics_are_the_mean_of_the_patches_and_the_network_is_left_alone() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(3.0, 2.0, size=(1, 20, 18, 16)).astype(np.float32)
    network = ScaleThenNorm().eval()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    adapted = adapt_batchnorm(network, image, patches=5, patch=8, seed=4, precision="float32")
    assert adapted is not network and not adapted.training and not adapted.norm.training
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key]), key
    cubes = [image[0, z:z + 8, y:y + 8, x:x + 8] for z, y, x in random_patch_starts((20, 18, 16), 8, 5, 4)]
    means = np.array([c.mean() for c in cubes])
    variances = np.array([c.var(ddof=1) for c in cubes])  # BatchNorm keeps the unbiased variance
    np.testing.assert_allclose(adapted.norm.running_mean.numpy(), [means.mean(), 2 * means.mean()], rtol=1e-5)
    np.testing.assert_allclose(adapted.norm.running_var.numpy(), [variances.mean(), 4 * variances.mean()],
                               rtol=1e-4)
    assert int(adapted.norm.num_batches_tracked) == 5
    # the same seed gives the same statistics: an analysis stays deterministic
    again = adapt_batchnorm(network, image, patches=5, patch=8, seed=4, precision="float32")
    assert torch.equal(again.norm.running_mean, adapted.norm.running_mean)


def test_a_study_smaller_than_the_patch_is_padded_with_zero() -> None:
    image = np.full((1, 4, 6, 5), 2.0, dtype=np.float32)
    assert random_patch_starts((4, 6, 5), 8, 3, 0) == [(0, 0, 0)] * 3
    adapted = adapt_batchnorm(ScaleThenNorm(), image, patches=3, patch=8, precision="float32")
    share = image.size / 8 ** 3
    np.testing.assert_allclose(adapted.norm.running_mean.numpy(), [2.0 * share, 4.0 * share], rtol=1e-5)


def test_nothing_to_adapt_returns_the_network_itself() -> None:
    image = np.zeros((1, 8, 8, 8), dtype=np.float32)
    plain = nn.Sequential(nn.Conv3d(1, 1, 1))
    assert adapt_batchnorm(plain, image, patches=4, patch=4) is plain
    network = ScaleThenNorm()
    assert adapt_batchnorm(network, image, patches=0, patch=4) is network
    with pytest.raises(ValueError, match="C, Z, Y, X"):
        adapt_batchnorm(network, image[0], patches=2, patch=4)


def test_the_setting_travels_in_the_metadata_and_old_metadata_means_off() -> None:
    prep = ArteryPreprocessing(adapt_norm_patches=16, adapt_norm_patch=48)
    assert ArteryPreprocessing.from_metadata({"preprocessing": prep.as_metadata()}) == prep
    assert ArteryPreprocessing.from_metadata({"preprocessing": {}}).adapt_norm_patches == 0


def _shifted_study(shift_hu: float) -> CTVolume:
    """A 48^3 grid at 1.5 mm: a bright tube in soft tissue, every HU raised by ``shift_hu``."""
    hu = np.full((48, 48, 48), 40.0, dtype=np.float32)
    hu[:, 20:28, 20:28] = 400.0
    return CTVolume(hu + shift_hu, Geometry(size=(48, 48, 48), spacing_mm=(1.5, 1.5, 1.5), origin_mm=(0, 0, 0)))


def test_predict_adapts_a_copy_per_study_when_the_metadata_asks() -> None:
    torch.manual_seed(0)
    network = ScaleThenNorm().eval()
    with torch.no_grad():  # training statistics of another domain: the tube's probability saturates
        network.norm.running_mean.fill_(0.0)
        network.norm.running_var.fill_(1e-4)
        network.head.weight.copy_(torch.tensor([1.0, 1.0]).view(1, 2, 1, 1, 1))
    metadata = {"preprocessing": {"window_hu": [100.0, 700.0], "roi_size": [32, 32, 32], "crop_to_body": False,
                                  "min_component_fraction": 0.0}}
    before = {k: v.clone() for k, v in network.state_dict().items()}
    study = _shifted_study(0.0)
    plain, _ = predict_artery_territory(study, network, metadata, precision="float32")
    metadata["preprocessing"] |= {"adapt_norm_patches": 4, "adapt_norm_patch": 32}
    adapted, prob = predict_artery_territory(study, network, metadata, precision="float32")
    again, _ = predict_artery_territory(study, network, metadata, precision="float32")
    assert plain.all()  # every voxel reads above the stale mean
    assert 0 < adapted.sum() < adapted.size  # with the study's own statistics the tube stands out
    assert adapted[:, 22, 22].all() and not adapted[:, 5, 5].any()
    np.testing.assert_array_equal(adapted, again)
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_the_bundled_artery_model_finds_more_of_the_real_crop_s_arteries_with_its_own_statistics(
        real_cta_dir: Path) -> None:
    network, metadata = load_model(bundled_models_dir() / "pelabelup-arteries")
    volume = load_ct(real_cta_dir / "cta_crop.nii.gz")
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(real_cta_dir / "pulmonary_artery.nii.gz"))) > 0
    training_statistics, _ = predict_artery_territory(volume, network, metadata, precision="float32")
    adapting = {**metadata, "preprocessing": {**metadata["preprocessing"], "adapt_norm_patches": 16}}
    adapted, _ = predict_artery_territory(volume, network, adapting, precision="float32")
    assert dice(training_statistics, reference) < 0.25
    assert dice(adapted, reference) > 0.35
    assert (adapted.astype(bool) & reference).sum() > 2 * (training_statistics.astype(bool) & reference).sum()
