"""Helpers shared by the explainers: input checks, logit selection, evaluation mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def check_inputs(inputs: Tensor) -> None:
    """Fail fast unless ``inputs`` is a floating ``(N, C, H, W)`` or ``(N, C, D, H, W)`` tensor."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.ndim not in (4, 5):
        raise ValueError(f"inputs must be (N, C, H, W) or (N, C, D, H, W), got shape {tuple(inputs.shape)}")
    if not inputs.is_floating_point():
        raise ValueError(f"inputs must be a floating tensor, got {inputs.dtype}")
    if inputs.shape[0] < 1:
        raise ValueError(f"inputs hold no sample, shape {tuple(inputs.shape)}")


def as_logits(output: object, n_samples: int) -> Tensor:
    """The model output as ``(N, K)`` logits (``(N,)`` is read as ``(N, 1)``)."""
    if not isinstance(output, Tensor):
        raise TypeError(f"the model must return a tensor of logits, got {type(output).__name__}")
    logits = output.unsqueeze(1) if output.ndim == 1 else output
    if logits.ndim != 2 or logits.shape[0] != n_samples:
        raise ValueError(f"the model must return (N, K) logits with N={n_samples}, got {tuple(output.shape)}")
    return logits


def resolve_targets(logits: Tensor, target: int | None) -> Tensor:
    """Per-sample class index ``(N,)`` to explain.

    ``None``: 0 (the PE logit) for a single-logit model, else the arg-max class of each sample.
    """
    n, k = logits.shape
    if target is None:
        if k == 1:
            return torch.zeros(n, dtype=torch.long, device=logits.device)
        return logits.detach().argmax(dim=1)
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < k:
        raise ValueError(f"target must be a class index in [0, {k - 1}] or None, got {target!r}")
    return torch.full((n,), target, dtype=torch.long, device=logits.device)


def select_scores(logits: Tensor, targets: Tensor) -> Tensor:
    """``logits[i, targets[i]]`` for every sample: ``(N,)``."""
    return logits.gather(1, targets.view(-1, 1)).squeeze(1)


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode with autograd on; restore its training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            yield model
    finally:
        model.train(was_training)
