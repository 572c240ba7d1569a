"""Explainers by name: the single list that feeds the CLI choices and the Slicer combo box.

Importing this module does not import torch (the Slicer GUI process never loads torch); the explainer
class is imported only when :func:`get_explainer` builds one.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Explainer


@dataclass(frozen=True)
class ExplainerSpec:
    """What a front end needs to offer an explainer without importing torch.

    Attributes:
        name: registry key (CLI value, parameter-node value).
        label: short human-readable name (combo-box text).
        description: one sentence (tooltip, ``--help``).
        target: ``"module:Class"`` relative to this package, imported lazily by :meth:`load`.
        layered: the explainer takes ``target_layers`` (the Grad-CAM family), which a classifier's metadata
            may name (:func:`explainer_for_model`).
    """

    name: str
    label: str
    description: str
    target: str
    layered: bool = False

    def load(self) -> type[Explainer]:
        """Import and return the explainer class (this imports torch)."""
        module_name, class_name = self.target.split(":")
        module = importlib.import_module(module_name, package=__package__)
        return getattr(module, class_name)


EXPLAINERS: MappingProxyType[str, ExplainerSpec] = MappingProxyType(
    {
        "gradcam": ExplainerSpec(
            "gradcam", "Grad-CAM", "Gradient-weighted class activation map of one or more layers.",
            ".gradcam:GradCAM", layered=True,
        ),
        "gradcampp": ExplainerSpec(
            "gradcampp", "Grad-CAM++", "Grad-CAM with pixel-wise weighting of positive gradients.",
            ".gradcam:GradCAMPlusPlus", layered=True,
        ),
        "ig": ExplainerSpec(
            "ig", "Integrated Gradients",
            "Path-integrated input gradients from a baseline (zeros, constant or blurred input).",
            ".ig:IntegratedGradients",
        ),
    }
)


#: the explainer's choice left to the classifier (:func:`resolve_explainer`)
AUTO_EXPLAINER = "auto"
#: what the chain explains with unless told otherwise: :data:`AUTO_EXPLAINER`. Grad-CAM++ selected the same
#: emboli as Grad-CAM with fewer false components on both validation cohorts (seeds 303 and 606: 91 of 147
#: emboli at 40 false components against 45; docs/findings.md), but only at a post-activation layer that the
#: classifier's metadata names for it: its weights assume non-negative activations, and the default layer (the
#: last convolution, before its norm and ReLU) is signed, where it lights the wrong pixels (slice pointing 0.01).
DEFAULT_EXPLAINER = AUTO_EXPLAINER
#: the explainer of a classifier whose metadata names no Grad-CAM++ layer
FALLBACK_EXPLAINER = "gradcam"


def explainer_names() -> tuple[str, ...]:
    """Registry keys in display order."""
    return tuple(EXPLAINERS)


def explainer_choices() -> tuple[str, ...]:
    """What a user may ask for: :data:`AUTO_EXPLAINER`, then the registry keys."""
    return (AUTO_EXPLAINER, *EXPLAINERS)


def check_explainer(name: str) -> str:
    """``name`` when it is one of :func:`explainer_choices`, else ``ValueError`` listing them."""
    if name not in explainer_choices():
        raise ValueError(f"unknown explainer {name!r}; choose one of: {', '.join(explainer_choices())}")
    return name


def resolve_explainer(name: str, metadata: Mapping[str, Any]) -> str:
    """The registry key ``name`` stands for with this classifier: itself, or for :data:`AUTO_EXPLAINER`
    Grad-CAM++ where the metadata names a layer for it (``explanation.gradcampp.target_layers``, chosen on the
    classifier's validation data), else :data:`FALLBACK_EXPLAINER`."""
    if name != AUTO_EXPLAINER:
        return name
    explanation = metadata.get("explanation") or {}
    return "gradcampp" if isinstance(explanation, Mapping) and _own_layers(explanation, "gradcampp") \
        else FALLBACK_EXPLAINER


def _own_layers(explanation: Mapping[str, Any], explainer: str | None) -> Any:
    """``explanation.<explainer>.target_layers`` as the metadata has it, or ``None``."""
    own = explanation.get(explainer) if explainer else None
    return own.get("target_layers") if isinstance(own, Mapping) else None


def get_explainer(name: str, **kwargs: Any) -> Explainer:
    """Build the explainer registered as ``name`` with ``kwargs`` passed to its constructor.

    Raises:
        ValueError: ``name`` is not registered; the message lists the choices.
    """
    spec = EXPLAINERS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown explainer {name!r}; choose one of: {', '.join(EXPLAINERS)}")
    return spec.load()(**kwargs)


def model_target_layers(metadata: Mapping[str, Any], explainer: str | None = None) -> tuple[str, ...] | None:
    """The layers a classifier's metadata names for the Grad-CAM family, or ``None`` when it names none (the
    explainer's default: the last convolution).

    ``explanation.<explainer>.target_layers`` (e.g. ``explanation.gradcampp``) where ``explainer`` is given and
    the metadata has it, else ``explanation.target_layers`` (every layered explainer).

    Raises:
        ValueError: the layers named are not a non-empty list of layer names.
    """
    explanation = metadata.get("explanation") or {}
    if not isinstance(explanation, Mapping):
        return None
    layers = _own_layers(explanation, explainer)
    if layers is None:
        layers = explanation.get("target_layers")
    if layers is None:
        return None
    if (isinstance(layers, str) or not isinstance(layers, Sequence) or not layers
            or not all(isinstance(n, str) and n for n in layers)):
        raise ValueError(f"metadata explanation.target_layers must be a list of layer names, got {layers!r}")
    return tuple(layers)


def explainer_for_model(name: str, metadata: Mapping[str, Any]) -> Explainer:
    """:func:`get_explainer` for a classifier (``name`` may be :data:`AUTO_EXPLAINER`: :func:`resolve_explainer`):
    a layered explainer explains the layers that the classifier's metadata names for it
    (:func:`model_target_layers`), chosen for that network; the others are built as they are."""
    name = resolve_explainer(name, metadata)
    spec = EXPLAINERS.get(name) if isinstance(name, str) else None
    layers = model_target_layers(metadata, name) if spec is not None and spec.layered else None
    return get_explainer(name) if layers is None else get_explainer(name, target_layers=layers)
