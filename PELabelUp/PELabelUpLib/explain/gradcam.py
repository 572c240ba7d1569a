"""Grad-CAM and Grad-CAM++ for 2-D and 3-D classifiers, one or several target layers.

Why not ``monai.visualize.GradCAM`` itself: its ``ModelWithHooks`` registers hooks on the model each time
an instance is built and never removes them, flips ``inplace`` flags of the model's modules, and its
Grad-CAM++ breaks for batches of more than one sample (the class score is broadcast against the last
spatial axis); our interface takes the model per call, so each call here hooks the target layers for one
forward pass and removes the hooks, and takes gradients with ``torch.autograd.grad`` (parameters'
``.grad`` stay untouched). MONAI's upsampler is used as is; its normaliser (which inverts maps) is not.

References: Selvaraju et al., Grad-CAM, ICCV 2017; Chattopadhyay et al., Grad-CAM++, WACV 2018.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.visualize.visualizer import default_upsampler
from torch import Tensor, nn

from ._common import as_logits, check_inputs, evaluation_mode, resolve_targets, select_scores
from .base import Explainer
from .normalize import normalize_heatmaps

log = logging.getLogger(__name__)

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _find_layers(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        known = [n for n in modules if n]
        shown = ", ".join(known[:40]) + (", ..." if len(known) > 40 else "")
        raise ValueError(f"target layer(s) {missing} not found in the model; its layers are: {shown}")
    return {n: modules[n] for n in names}


class GradCAM(Explainer):
    """Grad-CAM: ``relu(sum_c w_c A_c)`` with ``w_c`` the spatial mean of ``d score / d A_c``.

    Args:
        target_layers: module name(s) as listed by ``model.named_modules()`` (e.g. ``"features.3"``).
            Several layers: each layer's map is upsampled to the input grid, scaled to ``[0, 1]`` per
            sample, and the maps are averaged (finer layers sharpen a coarse last-layer map). ``None``:
            the last convolution executed in the forward pass.

    Calling it returns ``(N, *spatial)`` heatmaps in ``[0, 1]`` on the input grid (see
    :mod:`PELabelUpLib.explain.base`). The model runs in eval mode; its training flag is restored.
    """

    name = "gradcam"

    def __init__(self, target_layers: str | Sequence[str] | None = None) -> None:
        if isinstance(target_layers, str):
            target_layers = (target_layers,)
        if target_layers is not None:
            target_layers = tuple(target_layers)
            if not target_layers or not all(isinstance(n, str) and n for n in target_layers):
                raise ValueError(f"target_layers must be layer names, got {target_layers!r}")
        self.target_layers: tuple[str, ...] | None = target_layers

    def layer_maps(self, model: nn.Module, inputs: Tensor, target: int | None = None) -> dict[str, Tensor]:
        """Raw (non-negative, not normalised) maps ``(N, 1, *feature_spatial)`` of each target layer."""
        check_inputs(inputs)
        activations: dict[str, Tensor] = {}
        order: list[str] = []

        def keep(name: str):
            def hook(_module: nn.Module, _args: object, output: object) -> None:
                if isinstance(output, Tensor):
                    activations[name] = output
                    order.append(name)

            return hook

        if self.target_layers is None:
            hooked = {n: m for n, m in model.named_modules() if isinstance(m, _CONV_TYPES)}
            if not hooked:
                raise ValueError("the model has no convolution layer; name target_layers explicitly")
        else:
            hooked = _find_layers(model, self.target_layers)
        with evaluation_mode(model):
            handles = [module.register_forward_hook(keep(name)) for name, module in hooked.items()]
            try:
                logits = as_logits(model(inputs.detach().requires_grad_(True)), inputs.shape[0])
            finally:
                for handle in handles:
                    handle.remove()
            names = [order[-1]] if self.target_layers is None and order else list(hooked)
            not_run = [n for n in names if n not in activations]
            if not_run:
                raise ValueError(f"target layer(s) {not_run} produced no tensor in the forward pass")
            for n in names:
                if activations[n].ndim != inputs.ndim:
                    raise ValueError(
                        f"target layer {n!r} outputs shape {tuple(activations[n].shape)}; expected "
                        f"(N, C, *spatial) with {inputs.ndim - 2} spatial axes like the input"
                    )
            scores = select_scores(logits, resolve_targets(logits, target))
            acts = [activations[n] for n in names]
            grads = torch.autograd.grad(scores.sum(), acts, allow_unused=True)
        maps = {}
        for n, a, g in zip(names, acts, grads, strict=True):
            if g is None:
                raise ValueError(f"the explained logit does not depend on target layer {n!r}")
            maps[n] = self._combine(a.detach(), g.detach())
        log.debug("%s maps of layers %s", self.name, {n: tuple(m.shape) for n, m in maps.items()})
        return maps

    @staticmethod
    def _combine(acts: Tensor, grads: Tensor) -> Tensor:
        weights = grads.flatten(2).mean(dim=2)
        weights = weights.view(*weights.shape, *([1] * (acts.ndim - 2)))
        return F.relu((weights * acts).sum(dim=1, keepdim=True))

    def __call__(self, model: nn.Module, inputs: Tensor, target: int | None = None) -> Tensor:
        maps = self.layer_maps(model, inputs, target)
        upsample = default_upsampler(tuple(inputs.shape[2:]))
        scaled = [normalize_heatmaps(upsample(m.float()).squeeze(1)) for m in maps.values()]
        heat = scaled[0] if len(scaled) == 1 else normalize_heatmaps(torch.stack(scaled).mean(dim=0))
        return heat.to(inputs.device)


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++: channel weights ``w_c = sum_ij alpha_ij relu(g_ij)`` with the paper's (eq. 19)
    ``alpha_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab g_ij^3)`` (``g = d score / d A_c``).

    The paper explains ``exp(score)``; that multiplies every weight of a sample by the same positive
    factor, which the per-sample normalisation removes, so the logit is used directly (no overflow).
    Same arguments and output as :class:`GradCAM`.
    """

    name = "gradcampp"

    @staticmethod
    def _combine(acts: Tensor, grads: Tensor) -> Tensor:
        spatial_ones = [1] * (acts.ndim - 2)
        acts_sum = acts.flatten(2).sum(dim=2).view(*acts.shape[:2], *spatial_ones)
        g2 = grads.pow(2)
        denominator = 2 * g2 + acts_sum * grads.pow(3)
        denominator = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        alpha = g2 / denominator
        weights = (alpha * F.relu(grads)).flatten(2).sum(dim=2).view(*acts.shape[:2], *spatial_ones)
        return F.relu((weights * acts).sum(dim=1, keepdim=True))
