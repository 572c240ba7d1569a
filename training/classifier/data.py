"""Cached 2.5-D slice stacks of training studies and the slice dataset built on them.

Each study is prepared once (CT -> territory -> :func:`~PELabelUpLib.models.slices.build_slice_stack`) and
stored as ``<cache>/<key>/<case_id>.npz`` (uint8 planes: about 25 KB a slice), where ``key`` hashes the slice
spec and the territory source, so a change of either never reuses stale planes.

The artery model's territories are cached on their own, bit-packed on the study's own grid, as
``<cache>/territories/<model key>/<case_id>.npz`` (:func:`territory_folder`): runs that change only the slice
spec (pixel size, territory dilation, context) share one artery-model pass per study.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from PELabelUpLib.models.artery import predict_artery_territory
from PELabelUpLib.models.slices import SliceFrame, SliceSpec, SliceStack, build_slice_stack
from PELabelUpLib.volume import CTVolume
from training.engine.config import settings_key

from .cohort import TrainingStudy

log = logging.getLogger(__name__)

TerritorySource = str  # "gt" or an artery model's key (:func:`territory_folder`)


@dataclass
class CachedStudy:
    case_id: str
    stack: SliceStack
    slice_labels: np.ndarray
    positive: bool
    slice_spacing_mm: float


def cache_key(spec: SliceSpec, territory_source: TerritorySource) -> str:
    return settings_key({"spec": spec.as_metadata(), "territory": territory_source})


def _write_npz(path: Path, *, compressed: bool = False, **arrays: Any) -> None:
    """Write ``arrays`` to ``path`` whole or not at all (a hidden temporary file, then a rename)."""
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
    tmp.replace(path)


def _save(path: Path, study: CachedStudy) -> None:
    f = study.stack.frame
    _write_npz(path, image=study.stack.image, territory=study.stack.territory, slice_labels=study.slice_labels,
               positive=study.positive, slice_spacing_mm=study.slice_spacing_mm,
               frame=np.array([*f.shape_zyx, *f.resampled_yx, *f.top_left_yx, f.size_px]))


def _load(path: Path, case_id: str) -> CachedStudy:
    with np.load(path) as z:
        fr = [int(v) for v in z["frame"]]
        frame = SliceFrame(shape_zyx=tuple(fr[0:3]), resampled_yx=tuple(fr[3:5]), top_left_yx=tuple(fr[5:7]),
                           size_px=fr[7])
        return CachedStudy(case_id, SliceStack(z["image"], z["territory"], frame), z["slice_labels"].astype(bool),
                           bool(z["positive"]), float(z["slice_spacing_mm"]))


TERRITORY_DIR = "territories"


def territory_folder(cache_dir: str | Path, artery_metadata: dict) -> Path:
    """Where the territories of one artery model are cached: a hash of its weights' sha256 and its preprocessing
    (threshold, grid, component filter), so an edited metadata file never reuses stale territories."""
    key = settings_key({"sha256": artery_metadata.get("sha256", "unknown"),
                        "preprocessing": artery_metadata.get("preprocessing", {})})
    return Path(cache_dir) / TERRITORY_DIR / key


def _model_territory(study: TrainingStudy, volume: CTVolume, artery: tuple[torch.nn.Module, dict], device: str,
                     folder: Path | None) -> np.ndarray:
    """The artery model's territory of ``volume``, from ``folder`` when it holds one of the right shape."""
    path = folder / f"{study.case_id}.npz" if folder is not None else None
    shape = tuple(volume.hu.shape)
    if path is not None and path.is_file():
        with np.load(path) as z:
            if tuple(int(v) for v in z["shape"]) == shape:
                return np.unpackbits(z["bits"], count=int(np.prod(shape))).reshape(shape)
        log.info("%s: cached territory has another shape; predicting it again", study.case_id)
    territory, _ = predict_artery_territory(volume, artery[0], artery[1], device=device)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_npz(path, compressed=True, bits=np.packbits(np.asarray(territory) > 0), shape=np.array(shape))
    return territory


def prepare_study(study: TrainingStudy, spec: SliceSpec, artery: tuple[torch.nn.Module, dict] | None,
                  device: str = "cpu", territory_dir: Path | None = None) -> CachedStudy:
    """CT -> territory (the artery model's, or the cohort's mask when ``artery`` is None) -> slice stack.

    ``territory_dir``: where the artery model's territories are cached (:func:`territory_folder`); ``None``: not.
    """
    volume = study.load()
    if volume.hu.shape[0] != study.slice_labels.shape[0]:
        raise ValueError(f"{study.case_id}: {volume.hu.shape[0]} slices but {study.slice_labels.shape[0]} labels")
    if artery is None:
        territory = study.load_arteries()
    else:
        territory = _model_territory(study, volume, artery, device, territory_dir)
    stack = build_slice_stack(volume.hu, territory, volume.geometry.spacing_mm, spec)
    return CachedStudy(study.case_id, stack, study.slice_labels, study.positive, float(volume.geometry.spacing_mm[2]))


def cached_studies(studies: Sequence[TrainingStudy], cache_dir: str | Path, spec: SliceSpec,
                   artery: tuple[torch.nn.Module, dict] | None, *, device: str = "cpu",
                   on_study: Callable[[str], None] | None = None) -> list[CachedStudy]:
    """Prepare (or reuse from the cache) every study's slice stack."""
    territories = None if artery is None else territory_folder(cache_dir, artery[1])
    source = "gt" if territories is None else territories.name
    folder = Path(cache_dir) / cache_key(spec, source)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for study in studies:
        path = folder / f"{study.case_id}.npz"
        if path.is_file():
            out.append(_load(path, study.case_id))
        else:
            prepared = prepare_study(study, spec, artery, device, territories)
            _save(path, prepared)
            out.append(prepared)
        if on_study:
            on_study(study.case_id)
    return out


class SliceDataset(Dataset):
    """Every axial slice of the cached studies as ``(x float32 (C, S, S), y float32 ())``.

    Args:
        studies: cached stacks.
        spec: the slice spec (its ``context`` sets the channels).
        augment: random in-plane flip (left-right), shift (up to ``max_shift_px``) and contrast jitter.
        seed: of the augmentation generator (per worker: seed + worker id).
    """

    def __init__(self, studies: Sequence[CachedStudy], spec: SliceSpec, *, augment: bool = False,
                 max_shift_px: int = 8, seed: int = 0) -> None:
        self.studies = list(studies)
        self.spec = spec
        self.augment = augment
        self.max_shift_px = max_shift_px
        self.index = np.array([(i, k) for i, s in enumerate(self.studies) for k in range(len(s.slice_labels))],
                              dtype=np.int64).reshape(-1, 2)
        self.labels = np.array([self.studies[i].slice_labels[k] for i, k in self.index], dtype=np.float32)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        i, k = self.index[item]
        x = self.studies[i].stack.sample(int(k), self.spec.context)
        if self.augment:
            if self.rng.random() < 0.5:
                x = x[:, :, ::-1]
            dy, dx = self.rng.integers(-self.max_shift_px, self.max_shift_px + 1, size=2)
            x = np.roll(x, (int(dy), int(dx)), axis=(1, 2))
            gain = self.rng.uniform(0.9, 1.1)
            x = np.concatenate([np.clip(x[:-1] * gain, 0.0, 1.0), x[-1:]], axis=0)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.tensor(self.labels[item])


def balanced_weights(labels: np.ndarray, positive_fraction: float = 0.35) -> np.ndarray:
    """Sampling weights giving positives ``positive_fraction`` of the draws (class imbalance)."""
    labels = np.asarray(labels) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(labels.shape, 1.0 / max(1, labels.size))
    w = np.where(labels, positive_fraction / n_pos, (1.0 - positive_fraction) / n_neg)
    return w / w.sum()
