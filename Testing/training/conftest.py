"""Fixtures of the training tests: torch's global switches restored after each test.

(``pyproject.toml`` puts the repository root on ``sys.path`` for pytest, so ``training`` imports.)"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def torch_global_state() -> Iterator[None]:
    """Trainers seed the generators, switch deterministic algorithms on and set the CPU threads (``--threads``);
    undo that for other tests."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    cudnn_deterministic = torch.backends.cudnn.deterministic
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cudnn.deterministic = cudnn_deterministic
    random.setstate(rng[0])
    np.random.set_state(rng[1])
    torch.set_rng_state(rng[2])
    torch.set_num_threads(threads)
