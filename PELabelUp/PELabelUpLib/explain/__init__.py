"""Model explainability: heatmaps from a slice- or volume-level PE classifier.

Importing this package does not import torch: :data:`EXPLAINERS`, :func:`get_explainer` and the
:class:`Explainer` interface are torch-free; the computing classes and functions below are imported on
first use (``from PELabelUpLib.explain import GradCAM`` imports torch then).
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Explainer
from .registry import EXPLAINERS, ExplainerSpec, explainer_for_model, explainer_names, get_explainer

_LAZY = {
    "GradCAM": ".gradcam",
    "GradCAMPlusPlus": ".gradcam",
    "IntegratedGradients": ".ig",
    "integrated_gradients": ".ig",
    "make_baseline": ".ig",
    "normalize_heatmaps": ".normalize",
    "gaussian_blur": ".smoothing",
}

__all__ = ["EXPLAINERS", "Explainer", "ExplainerSpec", "explainer_for_model", "explainer_names", "get_explainer",
           *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
