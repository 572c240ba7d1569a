"""Seeding and random-number-generator state (python, numpy, torch CPU and CUDA).

RNG states are captured as plain lists, ints and tensors so that checkpoints load with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

SEED_MAX = 2**32 - 1


def rank_seed(seed: int, rank: int = 0) -> int:
    """The seed of one rank: ``seed + rank`` (kept in numpy's 32-bit range)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return (seed + rank) % (SEED_MAX + 1)


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed ``random``, numpy's global generator and torch (CPU and every CUDA device) with ``seed + rank``.

    Ranks get different streams (dropout, augmentation differ per rank, as they should); their initial
    weights differ too, but DistributedDataParallel broadcasts rank 0's weights when it wraps the model, so
    a DDP run starts from the weights of the single-process run with the same seed. Data order does not use
    these generators: the samplers derive it from the seed and the epoch. Returns the seed used.
    """
    used = rank_seed(seed, rank)
    random.seed(used)
    np.random.seed(used)
    torch.manual_seed(used)  # also seeds every CUDA device
    return used


def configure_determinism(device: torch.device, *, deterministic: bool | None = None) -> bool:
    """Ask torch for deterministic algorithms; returns whether they are on.

    ``None`` (default): on for CPU (bit-reproducible runs and resumes), off for CUDA, where cuDNN's
    autotuner (``benchmark=True``) is much faster. True on CUDA also sets ``CUBLAS_WORKSPACE_CONFIG``
    (needed by cuBLAS before its first call) and turns the autotuner off.
    """
    if deterministic is None:
        deterministic = device.type == "cpu"
    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic and device.type == "cuda"
    return deterministic


def capture_rng_state() -> dict[str, Any]:
    """This process's generator states as weights-only-loadable values."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {"name": np_name, "keys": np_keys.tolist(), "pos": int(np_pos), "has_gauss": int(np_has_gauss),
                  "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured (CUDA states only when as many devices are visible)."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["internal"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((str(npy["name"]), np.asarray(npy["keys"], dtype=np.uint32), int(npy["pos"]),
                         int(npy["has_gauss"]), float(npy["cached_gaussian"])))
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda_states):
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
        else:
            log.warning("checkpoint has %d CUDA RNG states, this process sees %d devices: not restored",
                        len(cuda_states), torch.cuda.device_count() if torch.cuda.is_available() else 0)
