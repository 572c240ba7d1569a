"""Training data of the segmenter: cases on the working grid (cached) and patches centred on emboli/territory.

A case (:class:`~training.segmenter.sources.SegmenterCase`) is brought onto the working grid exactly as inference
does it (:func:`~PELabelUpLib.models.segmenter.prepare_segmenter_input`: the box around the grown territory,
resampled to ``prep.spacing_mm``); its label goes along (linear interpolation of 0/1, >= 0.5). Cached as::

    <cache_dir>/segmenter/<key>/hu.npy          int16 (Z, Y, X) HU on the working grid
    <cache_dir>/segmenter/<key>/territory.npy   uint8 (Z, Y, X) 0/1
    <cache_dir>/segmenter/<key>/label.npy       uint8 (Z, Y, X) 0/1 emboli label
    <cache_dir>/segmenter/<key>/case.json       working grid (LPS mm), the source files' size and mtime

``key`` hashes the cache format, the preprocessing fields that shape the grid, and the three source paths, so
two runs on other label sources never share (or fight over) an entry; a changed source file is re-read.
Patches reuse the artery trainer's cropping and augmentation (:mod:`training.artery.data`): augmentation acts
on HU before the window; the territory and the label are flipped with the image.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from PELabelUpLib.errors import InputError
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import load_ct, read_label_file
from PELabelUpLib.models.segmenter import SegmenterPreprocessing, prepare_segmenter_input, segmenter_channels
from PELabelUpLib.preprocessing import resample_like
from training.artery.augment import Augmentation, augment_image
from training.artery.data import AIR_HU, RandomPatchDataset, crop_patch

from .sources import SegmenterCase

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
GRID_TOLERANCE_MM = 1e-3  # NIfTI stores grids as float32; DICOM and NIfTI of one image agree to this


@dataclass
class WorkingCase:
    """A case on the working grid.

    Attributes:
        hu: ``int16 (Z, Y, X)`` HU (memory-mapped from the cache).
        territory: ``uint8 (Z, Y, X)`` 0/1 artery territory.
        label: ``uint8 (Z, Y, X)`` 0/1 emboli label.
        geometry: the working grid (LPS mm).
        label_voxels / territory_voxels: flat indices of the label / territory voxels (patch centres).
    """

    case_id: str
    hu: np.ndarray
    territory: np.ndarray
    label: np.ndarray
    geometry: Geometry
    label_voxels: np.ndarray
    territory_voxels: np.ndarray


def cache_key(case: SegmenterCase, prep: SegmenterPreprocessing) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, "spacing_mm": [float(s) for s in prep.spacing_mm],
                       "territory_dilation_mm": prep.territory_dilation_mm, "context_mm": prep.context_mm,
                       "sources": [str(p.resolve()) for p in (case.ct_path, case.territory_path, case.label_path)]},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _stamp(path: Path) -> list[int]:
    """Size and modification time of a file, or file count, total size and latest mtime of a DICOM folder."""
    if path.is_dir():
        stats = [p.stat() for p in sorted(path.rglob("*")) if p.is_file()]
        return [len(stats), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def read_label_on(path: Path, geometry: Geometry) -> np.ndarray:
    """A mask or label map as it is stored, ``(Z, Y, X)``, checked to lie on ``geometry`` (raises InputError)."""
    values, mask_geometry = read_label_file(path)
    if not mask_geometry.same_grid(geometry, tol=GRID_TOLERANCE_MM):
        raise InputError(path, f"grid {mask_geometry.size} / {mask_geometry.spacing_mm} mm differs from the CT's "
                               f"{geometry.size} / {geometry.spacing_mm} mm")
    return values


def read_mask_on(path: Path, geometry: Geometry) -> np.ndarray:
    """A mask or label map as ``bool (Z, Y, X)`` (nonzero), checked to lie on ``geometry`` (raises InputError)."""
    return read_label_on(path, geometry) != 0


def to_working_grid(case: SegmenterCase,
                    prep: SegmenterPreprocessing) -> tuple[np.ndarray, np.ndarray, np.ndarray, Geometry] | None:
    """``(hu int16, territory uint8, label uint8, working grid)`` of a case; ``None`` for an empty territory."""
    volume = load_ct(case.ct_path)
    territory = read_mask_on(case.territory_path, volume.geometry)
    label = read_mask_on(case.label_path, volume.geometry)
    prepared = prepare_segmenter_input(volume, territory, prep)
    if prepared is None:
        return None
    fraction = resample_like(label[prepared.box.slices].astype(np.float32), prepared.box_geometry,
                             prepared.geometry, "linear", default_value=0.0)
    hu = prepared.hu
    if hu.dtype != np.int16:
        hu = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    return hu, prepared.territory, (fraction >= 0.5).astype(np.uint8), prepared.geometry


def load_working_case(case: SegmenterCase, prep: SegmenterPreprocessing, cache_dir: str | Path) -> WorkingCase | None:
    """A case on the working grid, from the cache (made on first use or when a source changed); ``None`` when its
    territory is empty."""
    folder = Path(cache_dir) / "segmenter" / cache_key(case, prep)
    record_path = folder / "case.json"
    sources = {"ct": _stamp(case.ct_path), "territory": _stamp(case.territory_path), "label": _stamp(case.label_path)}
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    if record is None or record.get("sources") != sources:
        made = to_working_grid(case, prep)
        if made is None:
            return None
        hu, territory, label, geometry = made
        _write_cache(folder, {"hu": hu, "territory": territory, "label": label}, geometry, sources, case)
    else:
        g = record["geometry"]
        geometry = Geometry(size=tuple(g["size"]), spacing_mm=tuple(g["spacing_mm"]),
                            origin_mm=tuple(g["origin_mm"]), direction=tuple(g["direction"]))
    hu = np.load(folder / "hu.npy", mmap_mode="r")
    territory, label = np.load(folder / "territory.npy"), np.load(folder / "label.npy")
    if not hu.shape == territory.shape == label.shape == geometry.shape_zyx:
        raise InputError(folder, f"cached arrays {hu.shape}/{territory.shape}/{label.shape} do not match the grid "
                                 f"{geometry.shape_zyx}; delete the folder to rebuild it")
    return WorkingCase(case.case_id, hu, territory, label, geometry, np.flatnonzero(label).astype(np.int64),
                       np.flatnonzero(territory).astype(np.int64))


def _write_cache(folder: Path, arrays: dict[str, np.ndarray], geometry: Geometry, sources: dict[str, list[int]],
                 case: SegmenterCase) -> None:
    """Write the arrays, then ``case.json`` last (its presence marks a complete entry)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "case.json").unlink(missing_ok=True)
    for name, array in arrays.items():
        tmp = folder / f".{name}.tmp.npy"
        np.save(tmp, array)
        tmp.replace(folder / f"{name}.npy")
    record = {"case_id": case.case_id, "label_kind": case.label_kind, "sources": sources, "format": CACHE_FORMAT,
              "geometry": {"size": list(geometry.size), "spacing_mm": list(geometry.spacing_mm),
                           "origin_mm": list(geometry.origin_mm), "direction": list(geometry.direction)}}
    tmp = folder / ".case.json.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(folder / "case.json")


def _fill_cache(case: SegmenterCase, prep: SegmenterPreprocessing, cache_dir: str) -> None:
    load_working_case(case, prep, cache_dir)


def fill_cache(cases: Sequence[SegmenterCase], prep: SegmenterPreprocessing, cache_dir: str | Path,
               workers: int) -> None:
    """Make the cache entries of ``cases`` in ``workers`` processes (spawned); entries already made are kept.

    Bringing a case onto the working grid is CPU work in numpy and SimpleITK (seconds a case); on a machine with
    a GPU and many cores this is most of a training run's start.
    """
    if workers <= 1 or len(cases) <= 1:
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(cases)), mp_context=get_context("spawn")) as pool:
        for future in [pool.submit(_fill_cache, case, prep, str(cache_dir)) for case in cases]:
            future.result()


def load_working_cases(cases: Sequence[SegmenterCase], prep: SegmenterPreprocessing, cache_dir: str | Path, *,
                       on_case: Callable[[str], None] | None = None, workers: int = 1) -> list[WorkingCase]:
    """:func:`load_working_case` for every case (cases with an empty territory are dropped with a warning); with
    ``workers`` > 1 the missing cache entries are made first in that many processes (:func:`fill_cache`)."""
    fill_cache(cases, prep, cache_dir, workers)
    loaded = []
    for case in cases:
        work = load_working_case(case, prep, cache_dir)
        if work is None or work.territory_voxels.size == 0:
            log.warning("%s: no territory voxel on the working grid; skipped", case.case_id)
        else:
            loaded.append(work)
        if on_case:
            on_case(case.case_id)
    return loaded


def sample_patch(case: WorkingCase, patch_zyx: Sequence[int], rng: np.random.Generator, *, on_label: bool,
                 jitter_vox: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One patch ``(hu int16, territory uint8, label uint8)``, each ``patch_zyx`` (Z, Y, X).

    Centred on a random label voxel when ``on_label`` and the case has one, else on a random territory voxel;
    moved by up to ``jitter_vox`` voxels (and a quarter of the patch) per axis so the centre voxel stays inside.
    Outside the working box: air (-1024 HU), no territory, no label.
    """
    size = np.asarray(patch_zyx)
    pool = case.label_voxels if on_label and case.label_voxels.size else case.territory_voxels
    centre = np.asarray(np.unravel_index(int(rng.choice(pool)), case.hu.shape))
    jitter = np.minimum(jitter_vox, size // 4)
    start = [int(c) for c in centre + rng.integers(-jitter, jitter + 1) - size // 2]
    return (crop_patch(case.hu, start, size, AIR_HU), crop_patch(case.territory, start, size, 0),
            crop_patch(case.label, start, size, 0))


class SegmenterPatchDataset(RandomPatchDataset):
    """Segmenter training patches (see :class:`training.artery.data.RandomPatchDataset`); ``label_fraction``
    of them centred on the label, the rest on the territory.

    Items: ``{"image": float32 (2, Z, Y, X)`` (PE-windowed CT, territory), ``"label": float32 (1, Z, Y, X)}``.
    """

    def __init__(self, cases: Sequence[WorkingCase], prep: SegmenterPreprocessing, *, patches_per_epoch: int,
                 patch_zyx: Sequence[int] = (64, 64, 64), label_fraction: float = 0.6,
                 augmentation: Augmentation | None = None) -> None:
        super().__init__(cases, patches_per_epoch=patches_per_epoch, patch_zyx=patch_zyx,
                         centre_fraction=label_fraction, fraction_name="label_fraction")
        self.prep = prep
        self.augmentation = augmentation if augmentation is not None else Augmentation()

    def make_item(self, case: WorkingCase, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        hu, territory, label = sample_patch(case, self.patch_zyx, rng,
                                            on_label=bool(rng.random() < self.centre_fraction))
        window, flipped = augment_image(hu, self.prep.window_hu, self.augmentation, rng)
        if flipped:
            territory, label = territory[:, :, ::-1], label[:, :, ::-1]
        image = np.stack([window, territory.astype(np.float32)])
        return {"image": torch.from_numpy(image),
                "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.float32))[None]}


def fixed_patches(cases: Sequence[WorkingCase], prep: SegmenterPreprocessing, *, patches_per_case: int,
                  patch_zyx: Sequence[int], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validation patches, the same every epoch: ``(image float32 (2, Z, Y, X), label uint8 (Z, Y, X))``.

    Every other patch of a case is centred on its label (when it has one), the rest on its territory.
    """
    rng = np.random.default_rng(seed)
    out = []
    for case in cases:
        for i in range(patches_per_case):
            hu, territory, label = sample_patch(case, patch_zyx, rng, on_label=i % 2 == 0)
            out.append((segmenter_channels(hu, territory, prep.window_hu), label))
    return out
