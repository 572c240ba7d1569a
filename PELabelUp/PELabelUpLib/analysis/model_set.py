"""The models of one analysis run, found through the registry and loaded once (a batch reuses them)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.folder import load_model
from ..models.registry import MODEL_TASKS, ModelVersion, find_models

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
    """The classifier, the artery model (``None`` where every study brings its artery mask) and the segmenter
    when there is one."""

    artery: LoadedModel | None
    classifier: LoadedModel
    segmenter: LoadedModel | None

    def records(self, *, artery: bool = True) -> list[dict[str, Any]]:
        """What ``result.json`` lists under ``models``: the models a study ran through (``artery=False``: its
        territory was given, so the artery model did not run)."""
        return [m.record() for m in (self.artery if artery else None, self.classifier, self.segmenter)
                if m is not None]


def load_analysis_models(*, device: torch.device, models_dir: str | Path | None = None,
                         versions: dict[str, str] | None = None, artery: bool = True) -> AnalysisModels:
    """Find every task's model on the registry's search path and load it (weights checked by sha256).

    ``artery=False`` leaves the artery model out (neither looked for nor loaded): for runs whose every study
    brings its own artery mask.

    Raises:
        InputError: a required model is missing (the message names the folder), a folder's metadata is broken,
            or its weights are missing, corrupt or tampered with.
    """
    tasks = [task for task in MODEL_TASKS if artery or task != "artery"]
    found = find_models(models_dir=models_dir, versions=versions, tasks=tasks)
    loaded: dict[str, LoadedModel | None] = {}
    for task, version in found.items():
        if version is None:
            loaded[task] = None
            continue
        network, metadata = load_model(version.path, device=str(device))
        log.info("%s model %s %s from %s", task, metadata["name"], metadata["version"], version.path)
        loaded[task] = LoadedModel(network, metadata, version)
    classifier = loaded["classifier"]
    assert classifier is not None and (not artery or loaded["artery"] is not None)  # required: find_models raised
    return AnalysisModels(artery=loaded.get("artery"), classifier=classifier, segmenter=loaded.get("segmenter"))
