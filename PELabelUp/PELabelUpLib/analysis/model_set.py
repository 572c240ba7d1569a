"""The models of one analysis run, found through the registry and loaded once (a batch reuses them)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.folder import load_model
from ..models.registry import ModelVersion, find_models

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A network in eval mode on its device, its metadata and where it came from."""

    network: nn.Module
    metadata: dict[str, Any]
    found: ModelVersion

    @property
    def pair(self) -> tuple[nn.Module, dict[str, Any]]:
        return self.network, self.metadata

    def record(self) -> dict[str, Any]:
        """What ``result.json`` says about the model (no absolute paths)."""
        return {"task": self.found.task, "name": self.metadata["name"], "version": str(self.metadata["version"]),
                "sha256": self.metadata["sha256"], "folder": self.found.path.name, "bundled": self.found.bundled}


@dataclass
class AnalysisModels:
    """The artery and classifier models, and the segmenter when there is one."""

    artery: LoadedModel
    classifier: LoadedModel
    segmenter: LoadedModel | None

    def records(self) -> list[dict[str, Any]]:
        return [m.record() for m in (self.artery, self.classifier, self.segmenter) if m is not None]


def load_analysis_models(*, device: torch.device, models_dir: str | Path | None = None,
                         versions: dict[str, str] | None = None) -> AnalysisModels:
    """Find every task's model on the registry's search path and load it (weights checked by sha256).

    Raises:
        InputError: a required model is missing (the message names the folder), a folder's metadata is broken,
            or its weights are missing, corrupt or tampered with.
    """
    found = find_models(models_dir=models_dir, versions=versions)
    loaded: dict[str, LoadedModel | None] = {}
    for task, version in found.items():
        if version is None:
            loaded[task] = None
            continue
        network, metadata = load_model(version.path, device=str(device))
        log.info("%s model %s %s from %s", task, metadata["name"], metadata["version"], version.path)
        loaded[task] = LoadedModel(network, metadata, version)
    artery, classifier = loaded["artery"], loaded["classifier"]
    assert artery is not None and classifier is not None  # required tasks: find_models raised otherwise
    return AnalysisModels(artery=artery, classifier=classifier, segmenter=loaded.get("segmenter"))
