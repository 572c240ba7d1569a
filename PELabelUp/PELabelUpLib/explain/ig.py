"""Integrated Gradients (Sundararajan et al., ICML 2017), batched, with SmoothGrad-style noise averaging.

``IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x')) / dx_i da`` for the explained logit ``F`` and a
baseline ``x'``. The integral is a quadrature over ``n_steps`` points: Gauss-Legendre (default; exact for
polynomials of degree ``2 n_steps - 1`` along the path) or the trapezoid rule. Completeness:
``sum_i IG_i(x) ~= F(x) - F(x')``, up to the quadrature error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from ._common import as_logits, check_inputs, evaluation_mode, resolve_targets, select_scores
from .base import Explainer
from .normalize import normalize_heatmaps
from .smoothing import gaussian_blur

log = logging.getLogger(__name__)

Quadrature = Literal["gausslegendre", "riemann_trapezoid"]
BaselineKind = Literal["zeros", "constant", "blurred"]
QUADRATURES: tuple[Quadrature, ...] = ("gausslegendre", "riemann_trapezoid")
BASELINES: tuple[BaselineKind, ...] = ("zeros", "constant", "blurred")


def quadrature(n_steps: int, method: Quadrature = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Points ``alphas`` in ``[0, 1]`` and weights (summing to 1) of the path integral, ``(n_steps,)``
    each."""
    if method == "gausslegendre":
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1 for gausslegendre, got {n_steps}")
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if method == "riemann_trapezoid":
        if n_steps < 2:
            raise ValueError(f"n_steps must be >= 2 for riemann_trapezoid, got {n_steps}")
        weights = np.full(n_steps, 1.0 / (n_steps - 1))
        weights[[0, -1]] *= 0.5
        return np.linspace(0.0, 1.0, n_steps), weights
    raise ValueError(f"unknown quadrature {method!r}; choose one of: {', '.join(QUADRATURES)}")


def integrated_gradients(
    model: nn.Module,
    x: Tensor,
    baseline: Tensor | float = 0.0,
    target: int | None = None,
    n_steps: int = 50,
    *,
    method: Quadrature = "gausslegendre",
    internal_batch_size: int | None = None,
) -> Tensor:
    """Raw Integrated-Gradients attributions, same shape as ``x``.

    Args:
        model: classifier returning ``(N, K)`` (or ``(N,)``) logits; run in eval mode.
        x: ``(N, C, *spatial)`` inputs (2-D or 3-D spatial).
        baseline: a tensor broadcastable to ``x`` (e.g. ``(1, C, *spatial)``) or a number.
        target: logit to explain (see :mod:`PELabelUpLib.explain.base`); with ``None`` on a multi-logit
            model the class is the arg-max at ``x`` and stays fixed along the path.
        n_steps: quadrature points along the straight path from ``baseline`` to ``x``.
        method: ``"gausslegendre"`` or ``"riemann_trapezoid"``.
        internal_batch_size: at most this many path points go through the model at once (``None``: all
            ``N * n_steps`` at once). The result does not depend on it.

    Returns:
        ``(x - baseline) * mean path gradient``, a detached tensor like ``x``. Its sum over a sample is
        ``~= F(x) - F(baseline)`` for that sample's explained logit ``F``.
    """
    check_inputs(x)
    quadrature(n_steps, method)  # validate before running the model
    if internal_batch_size is not None and internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be >= 1 or None, got {internal_batch_size}")
    x = x.detach()
    with evaluation_mode(model), torch.no_grad():
        targets = resolve_targets(as_logits(model(x), x.shape[0]), target)
    return _path_integral(model, x, baseline, targets, n_steps, method, internal_batch_size)


def _path_integral(
    model: nn.Module,
    x: Tensor,
    baseline: Tensor | float,
    targets: Tensor,
    n_steps: int,
    method: Quadrature,
    internal_batch_size: int | None,
) -> Tensor:
    """IG of ``x`` ``(N, C, *spatial)`` for per-sample class indices ``targets`` ``(N,)``."""
    if internal_batch_size is not None and internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be >= 1 or None, got {internal_batch_size}")
    alphas_np, weights_np = quadrature(n_steps, method)
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).detach()
    try:
        base = torch.broadcast_to(base, x.shape)
    except RuntimeError as error:
        raise ValueError(
            f"baseline shape {tuple(base.shape)} does not broadcast to x {tuple(x.shape)}"
        ) from error
    delta = x - base
    n = x.shape[0]
    alphas = torch.as_tensor(alphas_np, dtype=x.dtype, device=x.device)
    weights = torch.as_tensor(weights_np, dtype=x.dtype, device=x.device)
    spatial_ones = [1] * (x.ndim - 1)
    total = n * n_steps
    chunk = total if internal_batch_size is None else internal_batch_size
    path_grads = torch.zeros_like(x)
    with evaluation_mode(model):
        for start in range(0, total, chunk):
            flat = torch.arange(start, min(start + chunk, total), device=x.device)
            step, sample = flat // n, flat % n
            points = base[sample] + alphas[step].view(-1, *spatial_ones) * delta[sample]
            points.requires_grad_(True)
            logits = as_logits(model(points), points.shape[0])
            scores = select_scores(logits, targets[sample])
            (grads,) = torch.autograd.grad(scores.sum(), points)
            path_grads.index_add_(0, sample, grads * weights[step].view(-1, *spatial_ones))
    return (delta * path_grads).detach()


def make_baseline(
    inputs: Tensor,
    kind: BaselineKind = "zeros",
    *,
    value: float = 0.0,
    blur_sigma: float | Sequence[float] = 8.0,
) -> Tensor:
    """Baseline tensor like ``inputs`` ``(N, C, *spatial)``.

    ``zeros``: all 0. ``constant``: all ``value`` -- e.g. air (-1000 HU) after the model's windowing, which
    is 0 for a window scaled to [0, 1] whose lower bound is above -1000 HU. ``blurred``: each channel
    Gaussian-blurred over the spatial axes with ``blur_sigma`` voxels (large enough to erase a clot).
    """
    if kind == "zeros":
        return torch.zeros_like(inputs)
    if kind == "constant":
        if not np.isfinite(value):
            raise ValueError(f"constant baseline value must be finite, got {value}")
        return torch.full_like(inputs, float(value))
    if kind == "blurred":
        return gaussian_blur(inputs.detach(), blur_sigma)
    raise ValueError(f"unknown baseline {kind!r}; choose one of: {', '.join(BASELINES)}")


class IntegratedGradients(Explainer):
    """Integrated-Gradients heatmaps: positive part of the attributions summed over channels.

    Args:
        n_steps, method, internal_batch_size: see :func:`integrated_gradients`.
        baseline, baseline_value, blur_sigma: see :func:`make_baseline`.
        noise_samples: 0 for plain IG; ``k > 0`` averages the attributions of ``k`` copies of the input
            with Gaussian noise added (SmoothGrad), the baseline staying that of the clean input.
        noise_std: noise standard deviation as a fraction of each sample's input range (max - min).
        smooth_sigma: Gaussian smoothing of the heatmap, voxels (0: none).
        seed: seed of the noise generator (the maps are reproducible).

    The heatmap is ``relu(sum_c attributions)`` -- a pixel location's net evidence *for* the explained
    logit over all its channels (2.5-D neighbour slices, windows) -- smoothed, then min-max scaled.
    """

    name = "ig"

    def __init__(
        self,
        *,
        n_steps: int = 32,
        method: Quadrature = "gausslegendre",
        internal_batch_size: int | None = 32,
        baseline: BaselineKind = "zeros",
        baseline_value: float = 0.0,
        blur_sigma: float | Sequence[float] = 8.0,
        noise_samples: int = 0,
        noise_std: float = 0.1,
        smooth_sigma: float = 0.0,
        seed: int = 0,
    ) -> None:
        quadrature(n_steps, method)  # validates both
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; choose one of: {', '.join(BASELINES)}")
        if internal_batch_size is not None and internal_batch_size < 1:
            raise ValueError(f"internal_batch_size must be >= 1 or None, got {internal_batch_size}")
        if noise_samples < 0:
            raise ValueError(f"noise_samples must be >= 0, got {noise_samples}")
        if not np.isfinite(noise_std) or noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if not np.isfinite(smooth_sigma) or smooth_sigma < 0:
            raise ValueError(f"smooth_sigma must be >= 0 voxels, got {smooth_sigma}")
        self.n_steps = n_steps
        self.method: Quadrature = method
        self.internal_batch_size = internal_batch_size
        self.baseline: BaselineKind = baseline
        self.baseline_value = baseline_value
        self.blur_sigma = blur_sigma
        self.noise_samples = noise_samples
        self.noise_std = noise_std
        self.smooth_sigma = smooth_sigma
        self.seed = seed

    def attributions(self, model: nn.Module, inputs: Tensor, target: int | None = None) -> Tensor:
        """Raw attributions like ``inputs`` (averaged over the noisy copies when ``noise_samples > 0``)."""
        check_inputs(inputs)
        inputs = inputs.detach()
        base = make_baseline(inputs, self.baseline, value=self.baseline_value, blur_sigma=self.blur_sigma)

        with evaluation_mode(model), torch.no_grad():  # the class is fixed on the clean input
            targets = resolve_targets(as_logits(model(inputs), inputs.shape[0]), target)

        def run(x: Tensor) -> Tensor:
            return _path_integral(
                model, x, base, targets, self.n_steps, self.method, self.internal_batch_size
            )

        if self.noise_samples == 0:
            return run(inputs)
        generator = torch.Generator(device=inputs.device).manual_seed(self.seed)
        flat = inputs.flatten(1)
        scale = (flat.amax(dim=1) - flat.amin(dim=1)).view(-1, *([1] * (inputs.ndim - 1))) * self.noise_std
        total = torch.zeros_like(inputs)
        for _ in range(self.noise_samples):
            noise = torch.randn(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
            total += run(inputs + noise * scale)
        return total / self.noise_samples

    def __call__(self, model: nn.Module, inputs: Tensor, target: int | None = None) -> Tensor:
        attributions = self.attributions(model, inputs, target)
        heat = attributions.sum(dim=1, keepdim=True).clamp(min=0)
        if self.smooth_sigma > 0:
            heat = gaussian_blur(heat, self.smooth_sigma)
        return normalize_heatmaps(heat.squeeze(1))
