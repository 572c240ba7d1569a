"""Test-time re-estimation of a network's batch-norm statistics on the study it analyses (AdaBN).

The artery model learned from phantoms only, and its batch-norm layers hold the phantoms' feature statistics. On
real chest CT those statistics are off, and the network's features with them. With statistics re-estimated on
16 patches of the real CTA crop itself, the artery model 1.1.0 reaches Dice 0.44 there instead of 0.19 (recall
0.54, precision 0.37), while held-out phantoms keep theirs (0.800 against 0.799). This is AdaBN (Li et al.,
"Revisiting Batch Normalization For Practical Domain Adaptation", 2016), per study: the statistics of one study
never reach another, since the network is copied. A model's metadata asks for it
(``preprocessing.adapt_norm_patches``); the bundled one does not, since the classifier and segmenter downstream
learned on territories made with the training statistics (docs/findings.md).

The patches are cubes at random positions of the network's input (the working grid), drawn with a fixed seed, so
an analysis stays deterministic; each patch is one batch, and the new running statistics are the mean of the
patches' statistics (``momentum=None``).
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from torch import nn

from .inference import inference_autocast

log = logging.getLogger(__name__)


def batchnorm_layers(network: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The network's batch-norm layers (any dimension), in module order."""
    return [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def random_patch_starts(shape: tuple[int, ...], patch: int, count: int, seed: int) -> list[tuple[int, ...]]:
    """``count`` corners of ``patch``-sided cubes inside ``shape`` (at 0 along an axis shorter than the cube)."""
    rng = np.random.default_rng(seed)
    return [tuple(int(rng.integers(0, max(1, s - patch + 1))) for s in shape) for _ in range(count)]


def adapt_batchnorm(network: nn.Module, image: np.ndarray, *, patches: int, patch: int, seed: int = 0,
                    device: str | torch.device = "cpu", precision: str = "auto") -> nn.Module:
    """A copy of ``network`` whose batch-norm statistics are re-estimated on ``image`` (``(C, Z, Y, X)``).

    ``patches`` cubes of side ``patch`` (padded with 0 where the image is smaller) run through the copy, one per
    batch, with only its batch-norm layers in training mode and no gradients, under the inference precision
    (:func:`~PELabelUpLib.models.inference.inference_autocast`). Returns ``network`` itself when it has no
    batch-norm layer or ``patches`` is 0; the copy is returned in eval mode.
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (C, Z, Y, X), got shape {image.shape}")
    if patches <= 0 or not batchnorm_layers(network):
        return network
    adapted = copy.deepcopy(network).eval()
    for layer in batchnorm_layers(adapted):
        layer.reset_running_stats()
        layer.momentum = None  # cumulative mean over the patches
        layer.train()
    with torch.no_grad(), inference_autocast(device, precision):
        for start in random_patch_starts(image.shape[1:], patch, patches, seed):
            cube = image[(slice(None),) + tuple(slice(s, s + patch) for s in start)]
            cube = np.pad(cube, [(0, 0)] + [(0, patch - n) for n in cube.shape[1:]])
            adapted(torch.from_numpy(np.ascontiguousarray(cube, dtype=np.float32))[None].to(device))
    log.debug("batch-norm statistics re-estimated on %d patches of %d^3", patches, patch)
    return adapted.eval()
