"""The one interface every explainer implements (torch-free at import time).

An explainer turns a classifier and a batch of inputs into one heatmap per sample:

``explainer(model, inputs, target=None) -> heatmaps``

* ``inputs``: ``(N, C, H, W)`` 2-D slices (2.5-D stacks put neighbouring slices in ``C``) or
  ``(N, C, D, H, W)`` volumes; spatial axes in the model's order (for arrays from SimpleITK that is
  ``(Z, Y, X)``, i.e. ``D, H, W = Z, Y, X``).
* ``target``: the logit to explain. ``None`` means the PE logit for a single-logit binary classifier
  (output ``(N, 1)`` or ``(N,)``) and the per-sample arg-max class for a multi-logit classifier.
* result: ``(N, *spatial)`` float tensor on the input's device and grid, every sample min-max scaled to
  ``[0, 1]`` by :func:`PELabelUpLib.explain.normalize.normalize_heatmaps` (0 everywhere when the raw map is
  constant, i.e. carries no evidence).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # torch is imported only by the modules that compute
    from torch import Tensor, nn


class Explainer(ABC):
    """Base class of the heatmap explainers listed in :data:`PELabelUpLib.explain.registry.EXPLAINERS`."""

    name: ClassVar[str]

    @abstractmethod
    def __call__(self, model: nn.Module, inputs: Tensor, target: int | None = None) -> Tensor:
        """Heatmaps ``(N, *spatial)`` in ``[0, 1]`` for ``inputs`` ``(N, C, *spatial)`` (see module doc)."""
