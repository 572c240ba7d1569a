"""Validation of the slice classifier: slice AUC and study AUC on held-out cached studies."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from PELabelUpLib.evaluate import roc_auc
from PELabelUpLib.models.slices import SliceSpec, study_probability
from training.engine import DistContext, all_gather_objects

from .data import CachedStudy


@torch.no_grad()
def study_slice_probabilities(model: nn.Module, study: CachedStudy, spec: SliceSpec, device: torch.device,
                              chunk: int = 64) -> np.ndarray:
    z = study.stack.image.shape[0]
    out = []
    for s in range(0, z, chunk):
        x = torch.from_numpy(study.stack.batch(range(s, min(z, s + chunk)), spec.context)).to(device)
        out.append(torch.sigmoid(model(x).reshape(-1).float()).cpu().numpy())
    return np.concatenate(out)


def validate_studies(model: nn.Module, studies: Sequence[CachedStudy], spec: SliceSpec, ctx: DistContext, *,
                     top_mm: float = 10.0) -> dict[str, float]:
    """Each rank scores its share of the studies; AUCs are computed on the gathered scores (same on all ranks)."""
    mine = []
    for i in range(ctx.rank, len(studies), ctx.world_size):
        probs = study_slice_probabilities(model, studies[i], spec, ctx.device)
        mine.append((studies[i].slice_labels.astype(int).tolist(), probs.tolist(),
                     int(studies[i].positive), study_probability(probs, studies[i].slice_spacing_mm, top_mm=top_mm)))
    gathered = [item for part in all_gather_objects(mine) for item in part]
    slice_labels = np.concatenate([np.asarray(g[0]) for g in gathered])
    slice_probs = np.concatenate([np.asarray(g[1]) for g in gathered])
    study_labels = np.asarray([g[2] for g in gathered])
    study_probs = np.asarray([g[3] for g in gathered])
    metrics = {"val_slice_auc": float("nan"), "val_study_auc": float("nan")}
    if 0 < slice_labels.sum() < slice_labels.size:
        metrics["val_slice_auc"] = roc_auc(slice_labels, slice_probs)
    if 0 < study_labels.sum() < study_labels.size:
        metrics["val_study_auc"] = roc_auc(study_labels, study_probs)
    return metrics
