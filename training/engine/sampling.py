"""Samplers that give every rank its shard of one global, seeded order, and can start mid-epoch.

The global order of epoch ``e`` depends only on the run seed and ``e`` (a permutation, or weighted draws with
replacement for class balancing); rank ``r`` of ``W`` keeps positions ``r, r + W, r + 2W, ...``. So batch ``i``
of all ranks together holds the same samples as batch ``i`` of a single process with a ``W`` times larger
batch. Skipping the first ``k`` samples of the shard resumes an epoch part-way through.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, Sampler


class ResumableDistributedSampler(DistributedSampler):
    """torch's :class:`DistributedSampler` (same permutation, padding and sharding) plus a mid-epoch start.

    The rank and world size are always given explicitly, so it also works without a process group
    (``num_replicas=1, rank=0`` is the single-process case).
    """

    def __init__(self, dataset: Sequence | torch.utils.data.Dataset, *, num_replicas: int, rank: int,
                 shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self.skip_samples = 0

    def set_epoch(self, epoch: int, skip_samples: int = 0) -> None:
        """Select epoch ``epoch``'s order and skip the first ``skip_samples`` of this rank's shard."""
        if skip_samples < 0 or skip_samples > self.num_samples:
            raise ValueError(f"skip_samples must lie in [0, {self.num_samples}], got {skip_samples}")
        super().set_epoch(epoch)
        self.skip_samples = skip_samples

    def global_order(self) -> list[int]:
        """The order of all ranks together for the current epoch, before padding (what one process sees)."""
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            return torch.randperm(len(self.dataset), generator=generator).tolist()
        return list(range(len(self.dataset)))

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()
        if not order:
            return iter([])
        padding = self.total_size - len(order)
        order = order + (order * math.ceil(padding / len(order)))[:padding]
        shard = order[self.rank:self.total_size:self.num_replicas]
        return iter(shard[self.skip_samples:])

    def __len__(self) -> int:
        return self.num_samples - self.skip_samples


class WeightedDistributedSampler(ResumableDistributedSampler):
    """Class balancing under DDP: ``num_samples`` draws with replacement, proportional to ``weights``.

    Every rank draws the same indices from a generator seeded with ``seed + epoch`` and keeps its shard, so
    the ranks together see exactly the draws of the single-process run.
    """

    def __init__(self, weights: Sequence[float] | Tensor, *, num_samples: int | None = None, num_replicas: int,
                 rank: int, seed: int = 0) -> None:
        weights_t = torch.as_tensor(weights, dtype=torch.double).flatten()
        if weights_t.numel() == 0:
            raise ValueError("weights must not be empty")
        if not torch.isfinite(weights_t).all() or (weights_t < 0).any() or weights_t.sum() <= 0:
            raise ValueError(f"weights must be finite, non-negative and not all zero, got min "
                             f"{weights_t.min().item()}, sum {weights_t.sum().item()}")
        draws = int(weights_t.numel() if num_samples is None else num_samples)
        if draws < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        super().__init__(range(draws), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.weights = weights_t

    def global_order(self) -> list[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return torch.multinomial(self.weights, len(self.dataset), replacement=True, generator=generator).tolist()


class ShardSampler(Sampler[int]):
    """Evaluation shard without padding: rank ``r`` keeps ``r, r + W, ...`` of the dataset order.

    Shards may differ in length by one; reduce sums and counts (not per-rank means) to get exact metrics.
    """

    def __init__(self, dataset_len: int, *, num_replicas: int, rank: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must lie in [0, {num_replicas}), got {rank}")
        self.dataset_len = dataset_len
        self.num_replicas = num_replicas
        self.rank = rank

    def set_epoch(self, epoch: int, skip_samples: int = 0) -> None:
        if skip_samples:
            raise ValueError(f"an evaluation shard does not resume mid-way, got skip_samples={skip_samples}")

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_len, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.dataset_len, self.num_replicas))


def loader_generator_seed(seed: int, rank: int, epoch: int) -> int:
    """Seed of a loader's generator (which seeds its workers) for one rank and epoch: differs across both."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def seed_loader_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed numpy and ``random`` in a loader worker from torch's per-worker seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def set_loader_epoch(loader: DataLoader, epoch: int, *, seed: int, rank: int, skip_batches: int = 0) -> None:
    """Prepare ``loader`` (from :func:`~training.engine.distributed.make_loader`) for epoch ``epoch``.

    Sets the sampler's epoch, skips the first ``skip_batches`` batches of this rank (mid-epoch resume), and
    reseeds the generator that seeds the workers, so augmentation in workers is reproducible per epoch.
    """
    sampler = loader.sampler
    if not hasattr(sampler, "set_epoch"):
        raise TypeError(f"the loader's sampler {type(sampler).__name__} has no set_epoch; build it with make_loader")
    if skip_batches < 0:
        raise ValueError(f"skip_batches must be >= 0, got {skip_batches}")
    batch_size = loader.batch_size or 1
    sampler.set_epoch(epoch)  # resets any earlier skip, so len(sampler) is the full shard again
    sampler.set_epoch(epoch, skip_samples=min(skip_batches * batch_size, len(sampler)))
    if loader.generator is not None:
        loader.generator.manual_seed(loader_generator_seed(seed, rank, epoch))
