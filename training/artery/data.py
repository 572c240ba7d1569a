"""Training data of the artery territory model: NIfTI cohort cases on the working grid, cached, as patches.

A case of a NIfTI-layout cohort (:mod:`PELabelUpLib.synthetic.cohort`: ``<case>/ct.nii.gz`` + ``arteries.nii.gz``)
is brought once onto the model's working grid (:class:`~PELabelUpLib.models.artery.ArteryPreprocessing`,
1.5 mm by default) exactly as :func:`~PELabelUpLib.models.artery.artery_input` does it (linear resampling in
world space; int16 HU stays int16), and cached as ``.npy`` files::

    <cache_dir>/<key>/<case_id>/hu.npy          int16 (Z, Y, X) HU on the working grid
    <cache_dir>/<key>/<case_id>/arteries.npy    uint8 (Z, Y, X) 0/1 artery mask (lumen including clot)
    <cache_dir>/<key>/<case_id>/case.json       working grid (LPS mm) and the source files' size and mtime

``key`` hashes the working spacing, the label coverage (below) and the cache format, so a change of any never
reuses stale arrays.

**Label coverage.** A working voxel is artery when at least ``label_coverage`` of it lies inside the mask
(the mask's linear interpolation onto the working grid, thresholded). At 0.5 a branch thinner than about
two working voxels breaks into pieces or vanishes: on 12 phantoms of today's generator the true mask taken to the
1.5 mm grid and back keeps 0.85 of the artery voxels (0.74 at worst; there, 0.24 of those of branches under 1 mm
in radius). A lower coverage keeps thin branches whole at the cost of a thicker label around the large vessels.
HU (not the windowed image) is cached so that the HU augmentation acts before the window, as a change of
contrast would; windowing the cached HU with ``prep.window_hu`` is exactly ``artery_input``.
Emboli masks are never read here: the artery model learns anatomy labels only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate.predictions import read_cohort
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import read_label_file
from PELabelUpLib.io.image_files import read_image_file
from PELabelUpLib.models.artery import ArteryPreprocessing
from PELabelUpLib.preprocessing import apply_window, resample_like, resample_to_spacing
from training.engine.config import settings_key

from .augment import LIGHT_AUGMENTATION, Augmentation, augment_and_window
from .warp import random_affine, source_size, warp_patch

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
AIR_HU = -1024
#: default label coverage: a working voxel at least half inside the mask is artery
LABEL_COVERAGE = 0.5


@dataclass(frozen=True)
class CohortCase:
    """One case of a NIfTI-layout cohort: where its CT and artery mask are."""

    case_id: str
    ct_path: Path
    arteries_path: Path
    emboli_path: Path | None = None


@dataclass
class WorkingCase:
    """A case on the working grid.

    Attributes:
        hu: ``int16 (Z, Y, X)`` HU (memory-mapped from the cache).
        arteries: ``uint8 (Z, Y, X)`` 0/1.
        geometry: the working grid (LPS mm, spacing ``prep.spacing_mm``).
        artery_voxels: flat indices (into ``arteries.ravel()``) of the artery voxels, for centred sampling.
    """

    case_id: str
    hu: np.ndarray
    arteries: np.ndarray
    geometry: Geometry
    artery_voxels: np.ndarray


def list_cohort_cases(cohort_dir: str | Path) -> list[CohortCase]:
    """The cases of a NIfTI-layout cohort, in ``cohort.csv`` order (or sorted folder order without it).

    Raises:
        InputError: the folder holds no case with ``ct.nii.gz`` and ``arteries.nii.gz``.
    """
    root = Path(cohort_dir)
    if not root.is_dir():
        raise InputError(root, "cohort folder not found")
    if (root / "cohort.csv").is_file():  # read as the evaluation reads it: no value may lead outside the cohort
        folders = [case.truth_dir for case in read_cohort(root)]
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    cases = []
    for folder in folders:
        ct, arteries = folder / "ct.nii.gz", folder / "arteries.nii.gz"
        if not ct.is_file() or not arteries.is_file():
            log.warning("%s: skipped (needs ct.nii.gz and arteries.nii.gz)", folder.name)
            continue
        emboli = folder / "emboli.nii.gz"
        cases.append(CohortCase(folder.name, ct, arteries, emboli if emboli.is_file() else None))
    if not cases:
        raise InputError(root, "no case folder with ct.nii.gz and arteries.nii.gz (is this a NIfTI-layout cohort?)")
    return cases


def cache_key(prep: ArteryPreprocessing, label_coverage: float = LABEL_COVERAGE) -> str:
    """Cache folder name: a hash of the working spacing, the label coverage and the cache format.

    The default coverage is left out of the hash, so caches made before it was a setting stay valid.
    """
    key: dict[str, Any] = {"spacing_mm": [float(s) for s in prep.spacing_mm], "format": CACHE_FORMAT}
    if label_coverage != LABEL_COVERAGE:
        key["label_coverage"] = float(label_coverage)
    return settings_key(key)


def check_label_coverage(label_coverage: float) -> float:
    """``label_coverage`` if it lies in (0, 1], else ``ValueError``."""
    if not 0.0 < label_coverage <= 1.0:
        raise ValueError(f"label coverage must lie in (0, 1], got {label_coverage}")
    return float(label_coverage)


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def to_working_grid(case: CohortCase, prep: ArteryPreprocessing,
                    label_coverage: float = LABEL_COVERAGE) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Resample a case's CT and artery mask onto the working grid.

    Returns:
        ``(hu, arteries, geometry)``: ``int16 (Z, Y, X)`` HU (linear, as :func:`artery_input`), ``uint8 (Z, Y, X)``
        mask (linear interpolation of the 0/1 mask thresholded at ``label_coverage``: smoother than nearest
        neighbour when the input slices are thick), and the working grid.
    """
    label_coverage = check_label_coverage(label_coverage)
    volume = read_image_file(case.ct_path)
    mask, mask_geometry = read_label_file(case.arteries_path)
    if not mask_geometry.same_grid(volume.geometry):
        raise InputError(case.arteries_path, f"artery mask grid {mask_geometry.size} differs from the CT's "
                                             f"{volume.geometry.size}")
    work = resample_to_spacing(volume, prep.spacing_mm, interpolator="linear")
    hu = work.hu if work.hu.dtype == np.int16 else np.clip(np.rint(work.hu), -32768, 32767).astype(np.int16)
    fraction = resample_like((mask > 0).astype(np.float32), volume.geometry, work.geometry, "linear",
                             default_value=0.0)
    return hu, (fraction >= label_coverage).astype(np.uint8), work.geometry


def load_working_case(case: CohortCase, prep: ArteryPreprocessing, cache_dir: str | Path,
                      label_coverage: float = LABEL_COVERAGE) -> WorkingCase:
    """A case on the working grid, from the cache (made and stored on first use or when its source changed)."""
    folder = Path(cache_dir) / cache_key(prep, label_coverage) / case.case_id
    record_path = folder / "case.json"
    sources = {"ct": _stamp(case.ct_path), "arteries": _stamp(case.arteries_path)}
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    if record is None or record.get("sources") != sources:
        hu, arteries, geometry = to_working_grid(case, prep, label_coverage)
        _write_cache(folder, hu, arteries, geometry, sources, prep, label_coverage)
        log.debug("cached %s on the %s mm grid %s", case.case_id, prep.spacing_mm, geometry.size)
    else:
        g = record["geometry"]
        geometry = Geometry(size=tuple(g["size"]), spacing_mm=tuple(g["spacing_mm"]),
                            origin_mm=tuple(g["origin_mm"]), direction=tuple(g["direction"]))
    hu = np.load(folder / "hu.npy", mmap_mode="r")
    arteries = np.load(folder / "arteries.npy")
    if hu.shape != geometry.shape_zyx or arteries.shape != geometry.shape_zyx:
        raise InputError(folder, f"cached arrays {hu.shape}/{arteries.shape} do not match the grid "
                                 f"{geometry.shape_zyx}; delete the folder to rebuild it")
    return WorkingCase(case.case_id, hu, arteries, geometry, np.flatnonzero(arteries).astype(np.int64))


def _write_cache(folder: Path, hu: np.ndarray, arteries: np.ndarray, geometry: Geometry,
                 sources: dict[str, list[int]], prep: ArteryPreprocessing, label_coverage: float) -> None:
    """Write the arrays, then ``case.json`` last (its presence marks a complete entry)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "case.json").unlink(missing_ok=True)
    for name, array in (("hu", hu), ("arteries", arteries)):
        tmp = folder / f".{name}.tmp.npy"
        np.save(tmp, array)
        tmp.replace(folder / f"{name}.npy")
    record = {"geometry": {"size": list(geometry.size), "spacing_mm": list(geometry.spacing_mm),
                           "origin_mm": list(geometry.origin_mm), "direction": list(geometry.direction)},
              "sources": sources, "working_spacing_mm": list(prep.spacing_mm),
              "label_coverage": label_coverage, "format": CACHE_FORMAT}
    tmp = folder / ".case.json.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(folder / "case.json")


def load_working_cases(cases: Sequence[CohortCase], prep: ArteryPreprocessing, cache_dir: str | Path, *,
                       label_coverage: float = LABEL_COVERAGE,
                       on_case: Callable[[str], None] | None = None) -> list[WorkingCase]:
    """:func:`load_working_case` for every case (cases without artery voxels are dropped with a warning)."""
    loaded = []
    for case in cases:
        work = load_working_case(case, prep, cache_dir, label_coverage)
        if work.artery_voxels.size == 0:
            log.warning("%s: no artery voxel on the working grid; skipped", case.case_id)
        else:
            loaded.append(work)
        if on_case:
            on_case(case.case_id)
    return loaded


def crop_patch(array: np.ndarray, start_zyx: Sequence[int], size_zyx: Sequence[int], fill: float) -> np.ndarray:
    """``array[start : start + size]`` (Z, Y, X), padded with ``fill`` where the box leaves the array."""
    out = np.full(tuple(size_zyx), fill, dtype=array.dtype)
    src, dst = [], []
    for start, size, extent in zip(start_zyx, size_zyx, array.shape, strict=True):
        lo, hi = max(start, 0), min(start + size, extent)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = array[tuple(src)]
    return out


def sample_patch(case: WorkingCase, patch_zyx: Sequence[int], rng: np.random.Generator, *,
                 on_artery: bool, jitter_vox: int = 8,
                 matrix: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One patch ``(hu, arteries uint8)``, both ``patch_zyx`` (Z, Y, X).

    ``on_artery``: centred on a random artery voxel, moved by up to ``jitter_vox`` voxels (and at most a
    quarter of the patch) per axis, so that voxel stays inside the patch; else centred anywhere in the volume.
    Parts outside the volume are air (-1024 HU) and background. HU is ``int16`` as cached, or ``float32``
    when ``matrix`` (output-to-source, :func:`.warp.random_affine`) resamples the patch from a larger crop
    round the same centre (the label linearly, then from 0.5).
    """
    shape = np.asarray(case.hu.shape)
    size = np.asarray(patch_zyx)
    if on_artery:
        centre = np.asarray(np.unravel_index(int(rng.choice(case.artery_voxels)), case.hu.shape))
        jitter = np.minimum(jitter_vox, size // 4)
        centre = centre + rng.integers(-jitter, jitter + 1)
    else:
        centre = np.asarray([int(rng.integers(0, s)) for s in shape])
    if matrix is None:
        start = [int(c) for c in centre - size // 2]
        return crop_patch(case.hu, start, size, AIR_HU), crop_patch(case.arteries, start, size, 0)
    crop = np.asarray(source_size(matrix, patch_zyx))
    start = [int(c) for c in centre - crop // 2]
    hu = warp_patch(crop_patch(case.hu, start, crop, AIR_HU), matrix, patch_zyx, order=1, fill=AIR_HU)
    label = warp_patch(crop_patch(case.arteries, start, crop, 0), matrix, patch_zyx, order=1, fill=0.0)
    return hu, (label >= 0.5).astype(np.uint8)


class RandomPatchDataset(Dataset):
    """Random training patches: ``len`` = patches per epoch; item ``i`` comes from case ``i % n_cases``.

    Each item draws its randomness from torch's global generator (seeded by the trainer, restored on resume,
    reseeded per loader worker), so epochs differ and runs are reproducible. Subclasses build the item from the
    case and the item's generator in :meth:`make_item`; ``centre_fraction`` is the share of patches centred on
    the structure the subclass names (arteries, emboli).
    """

    def __init__(self, cases: Sequence, *, patches_per_epoch: int, patch_zyx: Sequence[int],
                 centre_fraction: float, fraction_name: str) -> None:
        if not cases:
            raise ValueError("no training case")
        if patches_per_epoch < 1:
            raise ValueError(f"patches_per_epoch must be at least 1, got {patches_per_epoch}")
        if not 0.0 <= centre_fraction <= 1.0:
            raise ValueError(f"{fraction_name} must lie in [0, 1], got {centre_fraction}")
        if len(patch_zyx) != 3 or any(int(p) < 8 for p in patch_zyx):
            raise ValueError(f"patch_zyx must be three sizes >= 8 (Z, Y, X), got {tuple(patch_zyx)}")
        self.cases = list(cases)
        self.patches_per_epoch = int(patches_per_epoch)
        self.patch_zyx = tuple(int(p) for p in patch_zyx)
        self.centre_fraction = float(centre_fraction)

    def __len__(self) -> int:
        return self.patches_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        rng = np.random.default_rng([seed, int(index)])
        return self.make_item(self.cases[int(index) % len(self.cases)], rng)

    def make_item(self, case: Any, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class ArteryPatchDataset(RandomPatchDataset):
    """Artery training patches (see :class:`RandomPatchDataset`); ``artery_fraction`` of them centred on artery.

    Items: ``{"image": float32 (1, Z, Y, X) in [0, 1], "label": float32 (1, Z, Y, X) 0/1}``.
    """

    def __init__(self, cases: Sequence[WorkingCase], prep: ArteryPreprocessing, *, patches_per_epoch: int,
                 patch_zyx: Sequence[int] = (64, 64, 64), artery_fraction: float = 0.5,
                 augmentation: Augmentation = LIGHT_AUGMENTATION) -> None:
        super().__init__(cases, patches_per_epoch=patches_per_epoch, patch_zyx=patch_zyx,
                         centre_fraction=artery_fraction, fraction_name="artery_fraction")
        self.prep = prep
        self.augmentation = augmentation

    def make_item(self, case: WorkingCase, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        aug = self.augmentation
        matrix = None
        if aug.spatial_p > 0 and rng.random() < aug.spatial_p:
            matrix = random_affine(rng, rotate_deg=aug.rotate_deg, scale=aug.scale, stretch=aug.stretch)
        hu, label = sample_patch(case, self.patch_zyx, rng, on_artery=bool(rng.random() < self.centre_fraction),
                                 matrix=matrix)
        image, label = augment_and_window(hu, label, self.prep.window_hu, self.augmentation, rng)
        return {"image": torch.from_numpy(image)[None], "label": torch.from_numpy(label.astype(np.float32))[None]}


def fixed_patches(cases: Sequence[WorkingCase], prep: ArteryPreprocessing, *, patches_per_case: int,
                  patch_zyx: Sequence[int], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validation patches, the same every epoch: ``(image float32 (Z, Y, X), label uint8 (Z, Y, X))``.

    Half of each case's patches are centred on artery voxels, the rest anywhere; no augmentation.
    """
    rng = np.random.default_rng(seed)
    out = []
    for case in cases:
        for i in range(patches_per_case):
            hu, label = sample_patch(case, patch_zyx, rng, on_artery=i % 2 == 0)
            out.append((apply_window(hu, tuple(prep.window_hu)), label))
    return out
