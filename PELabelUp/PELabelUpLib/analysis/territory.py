"""An artery territory given from outside, used instead of the artery model (``pelabelup analyze --arteries``).

The chain stands on its territory: given the true pulmonary-artery mask, it finds nearly every embolus of the
hybrid real-anatomy cases, and the bundled artery model, trained on phantoms, misses the real crop's right and
left pulmonary arteries. So a reader's artery mask, or another tool's pulmonary-artery segmentation (for
example TotalSegmentator's ``pulmonary_artery``, a per-class NIfTI file or one label of a label map), or a segment
of a 3D Slicer segmentation file (the analysis's own ``segmentation.seg.nrrd`` with its "Pulmonary arteries"
corrected), can take its place. The mask should hold the arteries with what fills them, clots included.

The file may lie on another grid than the CT (a coarser segmentation, a crop): it is brought onto the CT's grid
by nearest neighbour in world space. Cavities the mask encloses are filled: a segmentation of the opacified lumen
leaves a hole where a clot sits with contrast around it, and the chain looks for clot inside the territory only.
A clot that fills the whole calibre leaves a gap in such a mask instead, which no rule here closes (on the hybrid
cases, a lumen-only mask holds 63 % of the embolus voxels once filled, none before). Every refusal is one line
naming the file and the reason.
"""

from __future__ import annotations

import logging
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..geometry import Geometry
from ..io.image_files import image_stem, read_label_file
from ..io.seg_nrrd_read import SegmentInfo, is_seg_nrrd, read_seg_nrrd, segment_mask
from ..models.folder import sha256_of
from ..preprocessing import mask_box, resample_like

log = logging.getLogger(__name__)

#: grids closer than this (mm, per origin and spacing component) count as the CT's own
SAME_GRID_TOLERANCE_MM = 1e-3
#: labels listed in a refusal at most
_SHOWN_LABELS = 12
#: without a segment named, a ``.seg.nrrd``'s one segment whose name holds this (any case, ``_`` as space) is taken
ARTERY_SEGMENT_HINT = "pulmonary arter"


@dataclass(frozen=True)
class GivenTerritory:
    """An artery territory read from a file, on the CT's grid.

    Attributes:
        mask: ``uint8 (Z, Y, X)`` 0/1 on the CT's grid.
        record: what ``result.json`` keeps of it (``territory``): the file's name and sha256, the label, whether
            it was resampled, its voxels and volume on the CT's grid.
    """

    mask: np.ndarray
    record: dict[str, Any]


def check_mask_values(values: np.ndarray, path: str | Path) -> None:
    """Refuse values no mask or label map holds (:class:`InputError` naming ``path``): fractional ones (a
    probability map, a CT) or negative ones (an image given as the mask)."""
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or np.any(values != np.rint(values)):
            raise InputError(path, "holds fractional values: expected a mask or label map of whole numbers")
    low = values.min() if values.size else 0
    if low < 0:
        raise InputError(path, f"holds negative values (down to {low:g}): expected a mask or label map, not an image")


def _label_values(values: np.ndarray, path: Path) -> np.ndarray:
    """The nonzero labels of ``values``; refuses values no label map holds (:func:`check_mask_values`)."""
    check_mask_values(values, path)
    labels = np.unique(values)
    return labels[labels != 0]


def _shown(labels: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in labels[:_SHOWN_LABELS])
    return shown + (f" and {labels.size - _SHOWN_LABELS} more" if labels.size > _SHOWN_LABELS else "")


def select_label(values: np.ndarray, path: Path, label: int | None) -> np.ndarray:
    """``bool`` mask of ``label`` in ``values``, or of every nonzero voxel when ``label`` is ``None`` and the
    file holds one label only (a label map of several needs ``label``, else its other organs would count)."""
    labels = _label_values(values, path)
    if labels.size == 0:
        raise InputError(path, "is empty: no nonzero voxel")
    if label is None:
        if labels.size > 1:
            raise InputError(path, f"holds {labels.size} labels ({_shown(labels)}): name the artery label "
                                   "(--arteries-label)")
        return values != 0
    if label not in labels:
        raise InputError(path, f"has no voxel of label {label} (labels present: {_shown(labels)})")
    return values == label


def _normalised(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def select_segment(infos: list[SegmentInfo], path: Path, segment: str | None) -> SegmentInfo:
    """The segment named ``segment`` (its ID or name; a name in any case), or, when ``None``, the file's only
    segment or its only one named like a pulmonary artery (:data:`ARTERY_SEGMENT_HINT`)."""
    names = ", ".join(repr(i.name) for i in infos[:_SHOWN_LABELS]) + (" ..." if len(infos) > _SHOWN_LABELS else "")
    if segment is not None:
        for match in (lambda i: segment in (i.segment_id, i.name),
                      lambda i: _normalised(i.name) == _normalised(segment)):
            found = [i for i in infos if match(i)]
            if found:
                return found[0]
        raise InputError(path, f"has no segment {segment!r} (segments: {names})")
    if len(infos) == 1:
        return infos[0]
    arteries = [i for i in infos if ARTERY_SEGMENT_HINT in _normalised(i.name)]
    if len(arteries) == 1:
        return arteries[0]
    raise InputError(path, f"holds {len(infos)} segments ({names}): name the artery segment (--arteries-label NAME)")


def _selected_voxels(p: Path, label: int | str | None) -> tuple[np.ndarray, Geometry, int | str | None]:
    """The chosen mask on the file's own grid, the grid, and what was chosen (a label value or segment name)."""
    if is_seg_nrrd(p):
        layers, file_geometry, infos = read_seg_nrrd(p)
        info = select_segment(infos, p, None if label is None else str(label))
        selected = segment_mask(layers, info)
        if not selected.any():
            raise InputError(p, f"segment {info.name!r} is empty")
        return selected, file_geometry, info.name
    if isinstance(label, str):
        if not label.strip().isdigit():
            raise InputError(p, f"is a label map: its artery label is a number, not {label!r} (segment names are "
                                "for .seg.nrrd files)")
        label = int(label)
    values, file_geometry = read_label_file(p)
    return select_label(values, p, label), file_geometry, label


#: the placeholders of an artery-mask pattern (``--arteries`` with ``--batch``), filled from each input's path
PATTERN_FIELDS = ("input_dir", "input_stem")


def _pattern_fields(pattern: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
    except ValueError as exc:
        raise ValueError(f"artery mask pattern {pattern!r}: {exc}") from None


def is_pattern(text: str) -> bool:
    """Whether ``text`` names a placeholder (``{...}``): a pattern rather than one mask's path."""
    return bool(_pattern_fields(text))


def check_pattern(pattern: str) -> str:
    """``pattern`` when it names at least one of :data:`PATTERN_FIELDS` and nothing else, else ``ValueError``."""
    fields = _pattern_fields(pattern)
    unknown = fields - set(PATTERN_FIELDS)
    if unknown or not fields:
        raise ValueError(f"artery mask pattern {pattern!r} must name {{input_dir}} and/or {{input_stem}}"
                         + (f", not {{{sorted(unknown)[0]}}}" if unknown else "") + " (one mask per input)")
    return pattern


def mask_for_input(pattern: str, input_path: str | Path) -> Path:
    """The artery mask of one input: ``pattern`` with ``{input_dir}`` (the input's folder; a DICOM folder's own
    parent) and ``{input_stem}`` (its name without the image extension) filled in, e.g.
    ``{input_dir}/arteries.nii.gz`` beside each CT, or ``masks/{input_stem}/pulmonary_artery.nii.gz``."""
    p = Path(input_path)
    return Path(check_pattern(pattern).format(input_dir=str(p.parent), input_stem=image_stem(p.name)))


def fill_enclosed(mask: np.ndarray) -> int:
    """Fill, in place, the cavities ``mask`` encloses in 3-D (6-connected background not reaching the mask's box
    edge); returns how many voxels were added."""
    box = mask_box(mask, margin_voxels=1)
    if box is None:
        return 0
    inside = mask[box.slices].astype(bool)
    holes = ndimage.binary_fill_holes(inside) & ~inside
    mask[box.slices][holes] = 1
    return int(np.count_nonzero(holes))


def read_territory(path: str | Path, geometry: Geometry, *, label: int | str | None = None) -> GivenTerritory:
    """Read an artery mask, label map or Slicer segmentation and put it on ``geometry`` (the CT's grid).

    Args:
        path: a mask or label map SimpleITK reads (NIfTI, NRRD, MHA), or a ``.seg.nrrd``.
        geometry: the CT's grid.
        label: the artery label of a label map (a number), or the segment of a ``.seg.nrrd`` (its ID or name);
            ``None``: every nonzero voxel of a single-label mask, or the ``.seg.nrrd``'s only segment or its
            only pulmonary-artery one (:func:`select_segment`).

    Raises:
        InputError: unreadable, not 3-D, fractional values, empty, without ``label``, several labels or segments
            and no ``label``, or lying outside the CT.
    """
    p = Path(path)
    selected, file_geometry, label = _selected_voxels(p, label)
    same = file_geometry.same_grid(geometry, tol=SAME_GRID_TOLERANCE_MM)
    if same:
        mask = selected.astype(np.uint8)
    else:
        mask = resample_like(selected.astype(np.uint8), file_geometry, geometry, "nearest", default_value=0)
        if not mask.any():
            raise InputError(p, f"lies outside the CT: no voxel of it falls on the CT's grid "
                                f"({'x'.join(map(str, geometry.size))} voxels)")
    filled = fill_enclosed(mask)
    voxels = int(np.count_nonzero(mask))
    volume_ml = voxels * float(np.prod(geometry.spacing_mm)) / 1000.0
    log.info("artery territory from %s%s: %d voxels (%.1f ml)%s", p.name,
             "" if label is None else f" (label {label})", voxels, volume_ml, "" if same else ", resampled")
    record = {"source": "file", "file": p.name, "sha256": sha256_of(p), "label": label, "resampled": not same,
              "voxels": voxels, "volume_ml": round(volume_ml, 3), "holes_filled_voxels": filled}
    return GivenTerritory(mask=mask, record=record)
