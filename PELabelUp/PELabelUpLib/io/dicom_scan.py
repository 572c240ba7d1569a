"""Find DICOM files, read their headers (no pixels) and choose the CT series among those found.

A file is taken as DICOM when it carries the ``DICM`` marker at byte 128 or ends in ``.dcm``/``.dicom``/
``.ima``/``.dic``; other files (notes, csv, ``DICOMDIR``) are ignored and counted. A file taken as DICOM
that cannot be parsed, lacks Modality or SeriesInstanceUID, or is an image without pixel data is an error
naming it: a damaged slice must never vanish silently from a series (or join another one).

Series choice (:func:`choose_series`): among series with Modality CT that are not localizers/scouts
(ImageType LOCALIZER or SCOUT) and hold at least two slice positions, the one with most slices (ties: the
lowest SeriesNumber). The others are described in ``other_series`` with the reason they were passed over.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom import config as dicom_config
from pydicom.multival import MultiValue
from pydicom.uid import UID

from ..errors import InputError
from .validate import check_modality

log = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima", ".dic")
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
LOCALIZER_IMAGE_TYPES = ("LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW")
HEADER_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "Modality", "SeriesDescription",
    "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "InstanceNumber", "ImagePositionPatient",
    "ImageOrientationPatient", "Rows", "Columns", "PixelSpacing", "NumberOfFrames", "ImageType",
    "RescaleSlope", "RescaleIntercept",
]  # fmt: skip


@dataclass(frozen=True)
class SliceHeader:
    """Header facts of one DICOM file, read without its pixels.

    ``position`` is ImagePositionPatient (LPS mm), ``orientation`` ImageOrientationPatient (row then column
    direction cosines), ``pixel_spacing`` the DICOM pair ``(row spacing = y, column spacing = x)`` in mm;
    ``HU = stored * rescale_slope + rescale_intercept``.
    """

    path: Path
    sop_class_uid: str
    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str
    image_type: tuple[str, ...]
    series_description: str
    series_number: int | None
    instance_number: int | None
    rows: int | None
    columns: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    n_frames: int
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0

    @property
    def is_localizer(self) -> bool:
        return any(t.upper() in LOCALIZER_IMAGE_TYPES for t in self.image_type)


def is_dicom_candidate(path: Path) -> bool:
    """True when ``path`` is a file that claims to be DICOM (suffix, or the ``DICM`` marker)."""
    if path.name.upper() == "DICOMDIR" or not path.is_file():
        return False
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False


def find_dicom_files(folder: Path) -> tuple[list[Path], int]:
    """DICOM candidates under ``folder`` (recursively, sorted) and the number of other files ignored."""
    found: list[Path] = []
    ignored = 0
    for path in sorted(folder.rglob("*")):
        if path.is_dir() or path.name.startswith("."):
            continue
        if is_dicom_candidate(path):
            found.append(path)
        else:
            ignored += 1
    return found, ignored


@contextmanager
def quiet_pydicom(path: Path) -> Iterator[None]:
    """pydicom without value validation, its warnings (about damaged or unusual values) logged at debug level.

    The readers judge the values themselves and refuse with :class:`InputError`; RSPECT ids, for one, are
    valid for us but not DICOM UIDs.
    """
    with dicom_config.disable_value_validation(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        log.debug("%s: pydicom: %s", path, warning.message)


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _number(path: Path, ds: pydicom.Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    """A numeric attribute holding exactly ``count`` values, or ``None`` when absent or empty."""
    if keyword not in ds or ds[keyword].value in (None, ""):
        return None
    raw = ds[keyword].value
    values = list(raw) if isinstance(raw, MultiValue | list | tuple) else [raw]
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(path, f"invalid {keyword} {raw!r}: expected {count} numbers") from None
    if len(numbers) != count:
        raise InputError(path, f"invalid {keyword} {raw!r}: expected {count} numbers, found {len(numbers)}")
    return numbers


def _integer(path: Path, ds: pydicom.Dataset, keyword: str) -> int | None:
    number = _number(path, ds, keyword, 1)
    return None if number is None else int(number[0])


def read_header(path: Path) -> SliceHeader:
    """Parse the header of one DICOM file (pixels skipped).

    Raises:
        InputError: not DICOM, unreadable, or a numeric attribute that does not parse.
    """
    try:
        if path.stat().st_size == 0:
            raise InputError(path, "empty file (0 bytes)")
        with quiet_pydicom(path):
            force = not _has_marker(path)
            # pixel data is deferred (not read), only its presence is noted
            ds = pydicom.dcmread(
                path, defer_size=1024, force=force, specific_tags=[*HEADER_TAGS, "PixelData"]
            )
            has_pixels = "PixelData" in ds
            sop_class = _text(ds, "SOPClassUID") or _text(ds.get("file_meta", {}), "MediaStorageSOPClassUID")
            sop_class_name = UID(sop_class).name
            header = SliceHeader(
                path=path,
                sop_class_uid=sop_class,
                study_uid=_text(ds, "StudyInstanceUID"),
                series_uid=_text(ds, "SeriesInstanceUID"),
                sop_uid=_text(ds, "SOPInstanceUID"),
                modality=_text(ds, "Modality"),
                image_type=tuple(str(v).strip() for v in _as_list(ds.get("ImageType", []))),
                series_description=_text(ds, "SeriesDescription"),
                series_number=_integer(path, ds, "SeriesNumber"),
                instance_number=_integer(path, ds, "InstanceNumber"),
                rows=_integer(path, ds, "Rows"),
                columns=_integer(path, ds, "Columns"),
                position=_number(path, ds, "ImagePositionPatient", 3),  # type: ignore[arg-type]
                orientation=_number(path, ds, "ImageOrientationPatient", 6),
                pixel_spacing=_number(path, ds, "PixelSpacing", 2),  # type: ignore[arg-type]
                n_frames=_integer(path, ds, "NumberOfFrames") or 1,
                rescale_slope=(_number(path, ds, "RescaleSlope", 1) or (1.0,))[0],
                rescale_intercept=(_number(path, ds, "RescaleIntercept", 1) or (0.0,))[0],
            )
    except InputError:
        raise
    except Exception as exc:  # pydicom raises many types on corrupt input; the user needs one line
        raise InputError(
            path, f"corrupt or unreadable DICOM file ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    if not header.modality and not header.sop_class_uid and header.rows is None:
        raise InputError(path, "not a DICOM file (no DICM marker, no SOP class, modality or image size)")
    if header.sop_class_uid != DICOMDIR_SOP_CLASS:
        missing = [
            name
            for name, value in (("Modality", header.modality), ("SeriesInstanceUID", header.series_uid))
            if not value
        ]
        if missing:
            raise InputError(
                path, f"incomplete DICOM file: no {' or '.join(missing)} (truncated or damaged?)"
            )
    if not has_pixels and "Image Storage" in sop_class_name:
        # a file cut inside its header would otherwise join a wrong series (a cut SeriesInstanceUID)
        raise InputError(path, f"no pixel data in a {sop_class_name} file (truncated or damaged?)")
    return header


def _has_marker(path: Path) -> bool:
    with open(path, "rb") as stream:
        stream.seek(128)
        return stream.read(4) == b"DICM"


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes):
        return [value]
    return list(value)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else "")[:200]


@dataclass
class SeriesGroup:
    """The files of one SeriesInstanceUID."""

    series_uid: str
    headers: list[SliceHeader]

    @property
    def modality(self) -> str:
        return self.headers[0].modality

    @property
    def n_positions(self) -> int:
        return len({h.position for h in self.headers if h.position is not None})

    @property
    def is_localizer(self) -> bool:
        return any(h.is_localizer for h in self.headers)

    def describe(self, reason: str = "") -> dict[str, Any]:
        first = self.headers[0]
        info: dict[str, Any] = {
            "series_uid": self.series_uid,
            "modality": self.modality,
            "n_slices": len(self.headers),
            "description": first.series_description,
            "series_number": first.series_number,
            "image_type": "\\".join(first.image_type),
        }
        if reason:
            info["skipped_because"] = reason
        return info


def read_headers(paths: Iterable[Path]) -> list[SliceHeader]:
    """Headers of the given files, DICOMDIR files dropped."""
    return [h for h in (read_header(p) for p in paths) if h.sop_class_uid != DICOMDIR_SOP_CLASS]


def group_series(headers: Sequence[SliceHeader]) -> list[SeriesGroup]:
    """Group by SeriesInstanceUID, in order of first appearance."""
    groups: dict[str, list[SliceHeader]] = {}
    for h in headers:
        groups.setdefault(h.series_uid, []).append(h)
    return [SeriesGroup(uid, hs) for uid, hs in groups.items()]


def _skip_reason(group: SeriesGroup) -> str:
    if group.modality.upper() != "CT":
        return f"modality {group.modality or '(empty)'}"
    if group.is_localizer:
        return "localizer/scout image"
    if group.n_positions < 2:
        return "2-D image (a single slice position)"
    return ""


def choose_series(
    where: Path, groups: Sequence[SeriesGroup], series_uid: str | None = None
) -> tuple[SeriesGroup, list[dict[str, Any]]]:
    """Pick the CT series (module docstring); ``series_uid`` picks one explicitly.

    Returns:
        the chosen group and a description of every other series (with ``skipped_because``).

    Raises:
        InputError: no series at all, the requested series absent, or no usable CT series (naming why:
            modality, localizer only, 2-D).
    """
    if not groups:
        raise InputError(where, "no DICOM files found")
    if series_uid is not None:
        chosen = next((g for g in groups if g.series_uid == series_uid), None)
        if chosen is None:
            present = ", ".join(g.series_uid for g in groups)
            raise InputError(where, f"series {series_uid} not found; series present: {present}")
        check_modality(where, chosen.modality)
        reason = _skip_reason(chosen)
        if reason:
            raise InputError(where, f"series {series_uid} cannot be loaded: {reason}")
    else:
        usable = [g for g in groups if not _skip_reason(g)]
        if not usable:
            raise InputError(where, _no_ct_reason(groups))
        chosen = max(
            usable, key=lambda g: (len(g.headers), g.n_positions, -(g.headers[0].series_number or 0))
        )
    default_reason = (
        "fewer slices than the chosen series" if series_uid is None else "not the requested series"
    )
    others = [g.describe(_skip_reason(g) or default_reason) for g in groups if g is not chosen]
    if others:
        log.info(
            "%s: chose series %s (%d slices); skipped %d other series",
            where,
            chosen.series_uid,
            len(chosen.headers),
            len(others),
        )
    return chosen, others


def _no_ct_reason(groups: Sequence[SeriesGroup]) -> str:
    ct = [g for g in groups if g.modality.upper() == "CT"]
    if not ct:
        found = "; ".join(f"Modality {g.modality or '(empty)'} ({len(g.headers)} files)" for g in groups)
        return f"not CT: no CT series found ({found})"
    if all(g.is_localizer for g in ct):
        return "only localizer/scout CT images found, no CT volume"
    return "2-D image: the CT series hold a single slice position each, expected a 3-D volume"
