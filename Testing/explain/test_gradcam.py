"""Grad-CAM and Grad-CAM++ on tiny real CNNs, 2-D and 3-D."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from monai.visualize import GradCAM as MonaiGradCAM
from monai.visualize.visualizer import default_upsampler
from torch import nn

from PELabelUpLib.explain.gradcam import GradCAM, GradCAMPlusPlus
from PELabelUpLib.explain.normalize import normalize_heatmaps

CAMS = [GradCAM, GradCAMPlusPlus]


def peak_index(heat: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(heat.argmax()), tuple(heat.shape)))


@pytest.mark.parametrize("cam_class", CAMS)
@pytest.mark.parametrize("layers", [None, "features.4", ("features.2", "features.6")])
def test_heatmaps_cover_the_input_grid_in_unit_range(cam_class, layers, a_small_cnn, a_batch):
    heat = cam_class(layers)(a_small_cnn, a_batch)
    assert heat.shape == (a_batch.shape[0], *a_batch.shape[2:])
    assert heat.dtype == torch.float32
    assert torch.isfinite(heat).all()
    assert heat.min() >= 0.0
    assert heat.max() <= 1.0
    assert heat.flatten(1).amax(dim=1).eq(1.0).all()  # every sample has evidence somewhere


@pytest.mark.parametrize("cam_class", CAMS)
def test_peak_lies_in_the_region_the_logit_averages(cam_class, a_region_model, a_region_image, a_region):
    heat = cam_class("features.1")(a_region_model, a_region_image)[0]
    peak = peak_index(heat)
    assert all(s.start <= p < s.stop for p, s in zip(peak, a_region, strict=True)), peak
    # the dark box outside the region pushes the logit down: Grad-CAM must not light it up
    assert float(heat[tuple(slice(n - 6, n - 1) for n in heat.shape)].max()) < 0.1


def test_gradcam_agrees_with_monai_given_our_normaliser(spatial_dims, a_small_cnn, a_batch):
    ours = GradCAM("features.4")(a_small_cnn, a_batch)
    reference_model = copy.deepcopy(a_small_cnn)  # MONAI leaves hooks on the model it wraps
    reference = MonaiGradCAM(reference_model, target_layers="features.4", postprocessing=normalize_heatmaps)
    theirs = reference(a_batch, class_idx=0)[:, 0]
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_gradcampp_matches_the_papers_weights_on_a_linear_head():
    """Target layer = 1x1 conv (A_c = k_c x), head = sum(v * A): gradients are v, known by hand."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, size=(4, 5)).astype(np.float32)
    v = rng.normal(size=(2, 4, 5)).astype(np.float32)
    k = np.array([1.0, 2.0], dtype=np.float32)

    class LinearHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Conv2d(1, 2, 1, bias=False)
            with torch.no_grad():
                self.features.weight.view(2)[:] = torch.from_numpy(k)
            self.register_buffer("v", torch.from_numpy(v))

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return (self.features(inputs) * self.v).flatten(1).sum(1, keepdim=True)

    acts = k[:, None, None] * x
    alpha = v**2 / np.array([2 * v[c] ** 2 + acts[c].sum() * v[c] ** 3 for c in range(2)])
    weights_pp = (alpha * np.maximum(v, 0)).sum(axis=(1, 2))
    weights_plain = v.mean(axis=(1, 2))

    def expected(weights: np.ndarray) -> np.ndarray:
        cam = np.maximum((weights[:, None, None] * acts).sum(0), 0)
        return (cam - cam.min()) / (cam.max() - cam.min())

    inputs = torch.from_numpy(x)[None, None]
    for cam_class, weights in ((GradCAMPlusPlus, weights_pp), (GradCAM, weights_plain)):
        got = cam_class("features")(LinearHead(), inputs)[0].numpy()
        np.testing.assert_allclose(got, expected(weights), atol=1e-5)


@pytest.mark.parametrize("cam_class", CAMS)
def test_each_sample_is_explained_independently_of_the_batch(cam_class, a_small_cnn, a_batch):
    together = cam_class("features.4")(a_small_cnn, a_batch)
    for i in range(a_batch.shape[0]):
        alone = cam_class("features.4")(a_small_cnn, a_batch[i : i + 1])
        assert torch.allclose(together[i], alone[0], atol=1e-5)


def test_default_layer_is_the_last_convolution_run(a_small_cnn, a_batch):
    assert torch.equal(GradCAM()(a_small_cnn, a_batch), GradCAM("features.5")(a_small_cnn, a_batch))


def test_several_layers_are_averaged_after_upsampling(a_small_cnn, a_batch):
    layers = ("features.2", "features.6")
    cam = GradCAM(layers)
    raw = cam.layer_maps(a_small_cnn, a_batch)
    assert raw["features.2"].shape[2:] == a_batch.shape[2:]  # stride 1
    assert raw["features.6"].shape[2] < a_batch.shape[2]  # stride 4
    upsample = default_upsampler(tuple(a_batch.shape[2:]))
    per_layer = [normalize_heatmaps(upsample(raw[n]).squeeze(1)) for n in layers]
    expected = normalize_heatmaps((per_layer[0] + per_layer[1]) / 2)
    assert torch.allclose(cam(a_small_cnn, a_batch), expected, atol=1e-6)


@pytest.mark.parametrize("cam_class", CAMS)
def test_model_is_left_as_found(cam_class, a_small_cnn, a_batch):
    a_small_cnn.train()
    running_mean = a_small_cnn.features[1].running_mean.clone()
    cam_class("features.4")(a_small_cnn, a_batch)
    assert a_small_cnn.training
    assert torch.equal(a_small_cnn.features[1].running_mean, running_mean)  # ran in eval mode
    assert all(not m._forward_hooks and not m._backward_hooks for m in a_small_cnn.modules())
    assert all(p.grad is None for p in a_small_cnn.parameters())


def test_target_none_is_the_pe_logit_of_a_single_logit_model(a_small_cnn, a_batch):
    cam = GradCAM("features.4")
    assert torch.equal(cam(a_small_cnn, a_batch), cam(a_small_cnn, a_batch, target=0))


def test_target_none_is_each_samples_argmax_on_a_multi_logit_model(a_two_logit_cnn, a_batch):
    cam = GradCAM("features.4")
    heat = cam(a_two_logit_cnn, a_batch)
    with torch.no_grad():
        classes = a_two_logit_cnn(a_batch).argmax(dim=1).tolist()
    for i, c in enumerate(classes):
        assert torch.allclose(heat[i], cam(a_two_logit_cnn, a_batch[i : i + 1], target=c)[0], atol=1e-5)
    with pytest.raises(ValueError, match="target must be a class index in \\[0, 1\\].*got 2"):
        cam(a_two_logit_cnn, a_batch, target=2)


def test_unknown_layer_is_named_with_the_models_layers(a_small_cnn, a_batch):
    with pytest.raises(ValueError, match=r"\['features\.9'\] not found.*features\.0, features\.1"):
        GradCAM("features.9")(a_small_cnn, a_batch)


def test_layer_that_does_not_feed_the_logit_is_refused():
    class SideBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Conv2d(1, 2, 3)
            self.unused = nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.unused(x)
            return self.used(x).mean(dim=(2, 3))[:, :1]

    with pytest.raises(ValueError, match="does not depend on target layer 'unused'"):
        GradCAM("unused")(SideBranch(), torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (torch.rand(2, 3, 16), "got shape \\(2, 3, 16\\)"),
        (torch.ones(1, 3, 8, 8, dtype=torch.int64), "floating"),
    ],
)
def test_bad_inputs_fail_fast(inputs, message):
    with pytest.raises(ValueError, match=message):
        GradCAM()(nn.Conv2d(3, 1, 3), inputs)


def test_empty_layer_list_is_refused():
    with pytest.raises(ValueError, match="target_layers must be layer names"):
        GradCAM([])
