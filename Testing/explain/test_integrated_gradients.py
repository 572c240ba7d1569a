"""Integrated Gradients: completeness, closed-form cases, baselines, batching, SmoothGrad, heatmaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from PELabelUpLib.explain.ig import IntegratedGradients, integrated_gradients, make_baseline, quadrature
from PELabelUpLib.explain.normalize import normalize_heatmaps


def logit_gap(model, x, baseline) -> torch.Tensor:
    with torch.no_grad():
        return model(x)[:, 0] - model(torch.broadcast_to(baseline, x.shape))[:, 0]


@pytest.mark.parametrize(("method", "n_steps"), [("gausslegendre", 16), ("riemann_trapezoid", 128)])
@pytest.mark.parametrize("baseline_kind", ["zeros", "constant", "blurred"])
def test_completeness_on_a_smooth_cnn(method, n_steps, baseline_kind, a_smooth_cnn, a_batch):
    """sum(IG) = F(x) - F(baseline) within 1 % of the gap, for every sample."""
    x = a_batch[:2]
    baseline = make_baseline(x, baseline_kind, value=0.5, blur_sigma=3.0)
    attributions = integrated_gradients(a_smooth_cnn, x, baseline, None, n_steps, method=method)
    assert attributions.shape == x.shape
    gap = logit_gap(a_smooth_cnn, x, baseline)
    assert (gap.abs() > 0.01).all()  # otherwise the test would prove nothing
    assert torch.allclose(attributions.flatten(1).sum(1), gap, rtol=0.01, atol=1e-5)


@pytest.mark.parametrize("spatial_dims", [2])
def test_coarse_quadrature_misses_on_the_same_network(a_smooth_cnn, a_batch):
    """The completeness test is not vacuous: on this network's curved path, 4 trapezoid steps miss."""
    x = a_batch[:2]
    attributions = integrated_gradients(a_smooth_cnn, x, 0.0, None, 4, method="riemann_trapezoid")
    gap = logit_gap(a_smooth_cnn, x, torch.zeros_like(x))
    assert float(((attributions.flatten(1).sum(1) - gap) / gap).abs().max()) > 0.05


def test_cubic_logit_has_closed_form_attributions(a_cubic_model):
    """F = sum x^3, baseline 0: IG_i = x_i^3 exactly, and two Gauss-Legendre points integrate the
    (quadratic) path gradient exactly."""
    x = torch.linspace(-1.5, 2.0, 2 * 3 * 5 * 4, dtype=torch.float64).reshape(2, 3, 5, 4)
    attributions = integrated_gradients(a_cubic_model, x, 0.0, None, 2)
    assert torch.allclose(attributions, x**3, atol=1e-12)


@pytest.mark.parametrize("internal_batch_size", [1, 5, 64])
def test_internal_batch_size_does_not_change_the_result(internal_batch_size, a_small_cnn, a_batch):
    whole = integrated_gradients(a_small_cnn, a_batch, 0.0, None, 8)
    chunked = integrated_gradients(a_small_cnn, a_batch, 0.0, None, 8,
                                   internal_batch_size=internal_batch_size)
    assert torch.allclose(whole, chunked, atol=1e-6)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_quadrature_points_and_weights(method):
    alphas, weights = quadrature(7, method)
    assert alphas.min() >= 0.0
    assert alphas.max() <= 1.0
    assert weights.sum() == pytest.approx(1.0)
    assert float((weights * alphas).sum()) == pytest.approx(0.5)  # integral of a over [0, 1]


def test_peak_lies_in_the_region_the_logit_averages(a_region_model, a_region_image, a_region):
    heat = IntegratedGradients(n_steps=4)(a_region_model, a_region_image)[0]
    peak = np.unravel_index(int(heat.argmax()), tuple(heat.shape))
    assert all(s.start <= p < s.stop for p, s in zip(peak, a_region, strict=True)), peak
    outside = torch.ones_like(heat, dtype=torch.bool)
    outside[a_region] = False
    assert float(heat[outside].max()) == 0.0  # the logit ignores everything outside the region


def test_heatmap_is_the_positive_part_of_the_channel_sum(a_cubic_model):
    x = torch.tensor([[[[1.0, -2.0], [0.5, 0.0]], [[-1.0, 1.0], [1.0, -3.0]]]])  # (1, 2, 2, 2)
    heat = IntegratedGradients(n_steps=2)(a_cubic_model, x)
    summed = (x**3).sum(dim=1)  # [[0, -7], [1.125, -27]]
    assert torch.allclose(heat, normalize_heatmaps(summed.clamp(min=0)))
    assert heat[0, 1, 0] == 1.0
    assert heat[0, 0, 1] == 0.0


@pytest.mark.parametrize(
    ("kind", "kwargs"), [("blurred", {"blur_sigma": 2.0}), ("constant", {"value": 0.25})]
)
def test_baseline_equal_to_the_input_gives_no_evidence(kind, kwargs, a_small_cnn, spatial_dims):
    flat = torch.full((2, 3, *(9,) * spatial_dims), 0.25)  # blurring a constant image leaves it unchanged
    assert torch.allclose(make_baseline(flat, kind, **kwargs), flat)
    explainer = IntegratedGradients(n_steps=4, baseline=kind, baseline_value=0.25, blur_sigma=2.0)
    # (blurring leaves float rounding, ~1e-8, which the min-max heatmap would blow up: test attributions)
    assert float(explainer.attributions(a_small_cnn, flat).abs().max()) < 1e-6


def test_heatmaps_cover_the_input_grid_in_unit_range(a_small_cnn, a_batch):
    heat = IntegratedGradients(n_steps=8, smooth_sigma=1.0)(a_small_cnn, a_batch)
    assert heat.shape == (a_batch.shape[0], *a_batch.shape[2:])
    assert torch.isfinite(heat).all()
    assert heat.min() >= 0.0
    assert heat.max() <= 1.0


def test_smoothgrad_noise_is_seeded_and_averages(a_small_cnn, a_batch):
    noisy = IntegratedGradients(n_steps=8, noise_samples=3, noise_std=0.2, seed=11)
    first = noisy.attributions(a_small_cnn, a_batch)
    assert torch.equal(first, noisy.attributions(a_small_cnn, a_batch))
    plain = IntegratedGradients(n_steps=8).attributions(a_small_cnn, a_batch)
    assert not torch.allclose(first, plain)
    other_seed = IntegratedGradients(n_steps=8, noise_samples=3, noise_std=0.2, seed=12)
    assert not torch.allclose(first, other_seed.attributions(a_small_cnn, a_batch))


def test_multi_logit_target_none_is_each_samples_argmax(a_two_logit_cnn, a_batch):
    together = IntegratedGradients(n_steps=8).attributions(a_two_logit_cnn, a_batch)
    with torch.no_grad():
        classes = a_two_logit_cnn(a_batch).argmax(dim=1).tolist()
    for i, c in enumerate(classes):
        alone = integrated_gradients(a_two_logit_cnn, a_batch[i : i + 1], 0.0, c, 8)
        assert torch.allclose(together[i], alone[0], atol=1e-6)
    other = integrated_gradients(a_two_logit_cnn, a_batch[:1], 0.0, 1 - classes[0], 8)
    assert not torch.allclose(together[0], other[0])


def test_model_is_left_as_found(a_small_cnn, a_batch):
    a_small_cnn.train()
    IntegratedGradients(n_steps=4)(a_small_cnn, a_batch)
    assert a_small_cnn.training
    assert all(p.grad is None for p in a_small_cnn.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_steps": 1, "method": "riemann_trapezoid"}, "n_steps must be >= 2"),
        ({"n_steps": 0}, "n_steps must be >= 1"),
        ({"method": "simpson"},
         "unknown quadrature 'simpson'; choose one of: gausslegendre, riemann_trapezoid"),
        ({"baseline": "noise"}, "unknown baseline 'noise'; choose one of: zeros, constant, blurred"),
        ({"internal_batch_size": 0}, "internal_batch_size must be >= 1 or None, got 0"),
        ({"noise_samples": -1}, "noise_samples must be >= 0, got -1"),
        ({"noise_std": float("nan")}, "noise_std must be >= 0, got nan"),
        ({"smooth_sigma": -1.0}, "smooth_sigma must be >= 0 voxels, got -1.0"),
    ],
)
def test_bad_settings_fail_fast(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        IntegratedGradients(**kwargs)


def test_baseline_that_does_not_broadcast_is_refused(a_cubic_model):
    with pytest.raises(ValueError, match=r"baseline shape \(1, 2, 3, 3\) does not broadcast"):
        integrated_gradients(a_cubic_model, torch.rand(1, 3, 4, 4), torch.zeros(1, 2, 3, 3), None, 2)
