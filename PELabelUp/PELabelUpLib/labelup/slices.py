"""Run the slice classifier and an explainer over a :class:`~PELabelUpLib.models.slices.SliceStack`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..explain.base import Explainer
from ..models.inference import inference_autocast
from ..models.slices import SliceSpec, SliceStack


@torch.no_grad()
def classify_slices(stack: SliceStack, network: nn.Module, spec: SliceSpec, *, device: str | torch.device = "cpu",
                    precision: str = "auto", batch_size: int = 32) -> np.ndarray:
    """PE probability of every axial slice, ``float32 (Z,)`` (``precision``: float16 autocast on CUDA under
    ``auto``, float32 on CPU; :mod:`~PELabelUpLib.models.inference`)."""
    network.eval()
    z = stack.image.shape[0]
    out = np.zeros(z, dtype=np.float32)
    for start in range(0, z, batch_size):
        ks = np.arange(start, min(z, start + batch_size))
        x = torch.from_numpy(stack.batch(ks, spec.context)).to(device)
        with inference_autocast(device, precision, cpu=False):
            logits = network(x)
        out[ks] = torch.sigmoid(logits.float().reshape(len(ks), -1)[:, 0]).cpu().numpy()
    return out


def explain_slices(stack: SliceStack, network: nn.Module, spec: SliceSpec, explainer: Explainer,
                   ks: Sequence[int], *, device: str | torch.device = "cpu", batch_size: int = 16) -> np.ndarray:
    """Heatmaps of the slices ``ks`` on the classifier's square, ``float32 (Z, size, size)``; zero elsewhere.

    Each explained slice's map is in [0, 1] (the explainer normalises per slice).
    """
    z, s = stack.image.shape[0], spec.size_px
    maps = np.zeros((z, s, s), dtype=np.float32)
    ks = [int(k) for k in ks]
    for start in range(0, len(ks), batch_size):
        chunk = ks[start:start + batch_size]
        x = torch.from_numpy(stack.batch(chunk, spec.context)).to(device)
        maps[chunk] = explainer(network, x).detach().float().cpu().numpy()
    return maps


def slice_heat(stack: SliceStack, network: nn.Module, spec: SliceSpec, explainer: Explainer, probs: np.ndarray,
               min_probability: float, *, device: str | torch.device = "cpu") -> np.ndarray | None:
    """The heat of one explanation round, ``float32 (Z, Y, X)`` on the input grid: every slice whose PE
    probability (``probs``) reaches ``min_probability`` explained, its map times that probability; 0 elsewhere.
    ``None`` when no slice reaches it (nothing to explain)."""
    ks = np.flatnonzero(probs >= min_probability)
    if ks.size == 0:
        return None
    maps = explain_slices(stack, network, spec, explainer, ks, device=device)
    maps *= probs[:, None, None]
    return stack.frame.to_volume(maps)
