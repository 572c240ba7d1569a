"""NIfTI, NRRD and MetaImage files: read (with validation) and write, through SimpleITK.

Geometry precision of a write-then-read round trip (measured by ``Testing/io/test_image_files.py``):

- NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) store spacing, origin and direction as
  decimal text with full double precision: the round trip is exact to ~1e-15.
- NIfTI (``.nii``, ``.nii.gz``) stores them as float32 (pixdim, qform quaternion, sform rows): spacing and
  origin come back with a relative error below 2**-23 (about 6e-5 mm for a coordinate of 500 mm) and the
  direction within 1e-6. Readers and tests use :data:`NIFTI_TOLERANCE_MM` / :data:`NIFTI_TOLERANCE_DIRECTION`.

ITK misses some damaged files (a truncated NIfTI is zero-filled silently) and its MetaImage reader can corrupt
memory on a damaged header, so :mod:`.file_integrity` checks files before ITK reads their voxels.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import Geometry
from ..volume import CTVolume
from .file_integrity import check_metaimage_header, check_nifti_finite, check_nifti_length, check_nrrd_length
from .seg_nrrd_read import is_seg_nrrd
from .validate import as_hu_array, check_exists, check_grid, check_hu

log = logging.getLogger(__name__)

NIFTI_TOLERANCE_MM = 1e-4
NIFTI_TOLERANCE_DIRECTION = 1e-6

# extension (lower case) -> (format name, ITK ImageIO)
IMAGE_EXTENSIONS: dict[str, tuple[str, str]] = {
    ".nii.gz": ("NIfTI", "NiftiImageIO"),
    ".nii": ("NIfTI", "NiftiImageIO"),
    ".nrrd": ("NRRD", "NrrdImageIO"),
    ".nhdr": ("NRRD", "NrrdImageIO"),
    ".mha": ("MetaImage", "MetaImageIO"),
    ".mhd": ("MetaImage", "MetaImageIO"),
}
DETACHED_HEADER_EXTENSIONS = (".nhdr", ".mhd")  # pixel data lives in a second file
MAX_DEFLATE_RATIO = 1100  # deflate cannot compress more than ~1032:1


def image_extension(path: str | Path) -> str | None:
    """The recognised image extension of ``path`` (``".nii.gz"``, ``".nrrd"``...), or ``None``."""
    name = Path(path).name.lower()
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return None


def image_stem(name: str) -> str:
    """``name`` without its image extension (:func:`image_extension`, or ``.dcm``): ``scan.nii.gz`` -> ``scan``."""
    ext = image_extension(name) or (".dcm" if name.lower().endswith(".dcm") else None)
    return name[: -len(ext)] if ext else name


def _itk_reason(exc: Exception, path: Path) -> str:
    """The useful part of an ITK exception message, without source locations or object addresses.

    The file's full path is shortened to its name (the message names the file already); of a teem/NRRD
    error chain only the specific links are kept, not the generic 'trouble' ones.
    """
    text = " ".join(str(exc).split()).replace(str(path), path.name)
    text = re.split(r"(?:ITK ERROR|itk::ERROR)\s*:", text)[-1]
    text = re.sub(r"^\s*\w+\(0x[0-9a-fA-F]+\):\s*", "", text)
    text = re.sub(r"\S+\.(?:cxx|hxx|cpp|h):\d+:?", "", text).strip()
    links = [re.sub(r"^_?\w+:\s*", "", link.strip()) for link in re.split(r"\[nrrd\]", text)[1:]]
    specific = [link for link in links if link and not re.fullmatch(r"trouble( reading .*)?", link)]
    if specific:
        text = "; ".join(specific)
    text = text.replace("Reason: Success", "(truncated or unreadable data)")  # errno 0 from MetaIO
    return text[:300] or type(exc).__name__


def _data_bytes(reader: sitk.ImageFileReader) -> int:
    """Bytes of voxel data that the header declares."""
    itemsize = (
        sitk.Image([1, 1], reader.GetPixelID()).GetSizeOfPixelComponent() * reader.GetNumberOfComponents()
    )
    return int(np.prod([int(s) for s in reader.GetSize()], dtype=np.int64)) * itemsize


def _open_checked(path: str | Path) -> tuple[sitk.ImageFileReader, Path, str, str]:
    """Reader with the header read and checked: shape, spacing, direction, data length."""
    p = check_exists(path)
    if p.is_dir():
        raise InputError(p, "is a folder, expected an image file")
    ext = image_extension(p)
    if ext is None:
        raise InputError(p, "unknown image format (expected .nii, .nii.gz, .nrrd, .nhdr, .mha or .mhd)")
    fmt, io_name = IMAGE_EXTENSIONS[ext]
    if fmt == "MetaImage":
        check_metaimage_header(p)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    reader.SetImageIO(io_name)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(p, f"cannot read {fmt} file: {_itk_reason(exc, p)}") from None
    check_grid(p, reader.GetSize(), reader.GetSpacing(), dimension=reader.GetDimension(),
               components=reader.GetNumberOfComponents())
    direction = np.asarray(reader.GetDirection(), dtype=float)
    dim = reader.GetDimension()
    matrix = direction.reshape(dim, dim)[:3, :3]
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-6:
        raise InputError(p, f"invalid direction matrix {matrix.ravel().round(6).tolist()}")
    if not np.all(np.isfinite(reader.GetOrigin())):
        raise InputError(p, f"invalid origin {reader.GetOrigin()}")
    data_bytes = _data_bytes(reader)
    if ext not in DETACHED_HEADER_EXTENSIONS and data_bytes > MAX_DEFLATE_RATIO * p.stat().st_size:
        raise InputError(
            p,
            f"header declares {data_bytes} bytes of voxels, far more than the file can hold ({p.stat().st_size} bytes)",
        )
    if fmt == "NIfTI":
        check_nifti_length(p, data_bytes)
    elif ext == ".nrrd":
        check_nrrd_length(p, data_bytes)
    return reader, p, fmt, ext


def _execute(reader: sitk.ImageFileReader, path: Path, fmt: str) -> sitk.Image:
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(path, f"cannot read {fmt} voxel data: {_itk_reason(exc, path)}") from None
    if fmt == "NIfTI" and image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        check_nifti_finite(path, image.GetNumberOfPixels())  # ITK reads NaN and infinity there as 0
    if image.GetDimension() > 3:  # a 4-D file whose extra axes have length 1
        size = list(image.GetSize())
        image = sitk.Extract(image, size[:3] + [0] * (len(size) - 3), [0] * len(size))
    return image


def read_image_file(path: str | Path) -> CTVolume:
    """Read a CT from a NIfTI/NRRD/MetaImage file, validated (see :mod:`.validate`).

    Returns:
        :class:`CTVolume` with ``hu`` ``(Z, Y, X)`` in HU (int16 when integral and in range, else float32),
        the file's geometry (LPS mm) and ``meta`` with ``format``, ``stored_pixel_type`` and
        ``hu_warnings``.

    Raises:
        InputError: unreadable, truncated, not 3-D, multi-component, absurd spacing, values not HU.
    """
    if is_seg_nrrd(path):
        raise InputError(path, "is a 3D Slicer segmentation (.seg.nrrd), not a CT: give the CT it was drawn on")
    reader, p, fmt, _ = _open_checked(path)
    image = _execute(reader, p, fmt)
    values = sitk.GetArrayFromImage(image)
    hu_warnings = check_hu(p, values, pixel_type=values.dtype.name)
    return CTVolume(
        hu=as_hu_array(values),
        geometry=Geometry.from_sitk(image),
        source=str(p),
        meta={"format": fmt, "stored_pixel_type": values.dtype.name, "hu_warnings": hu_warnings},
    )


def read_label_file(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """Read a mask or label map (no HU checks): ``((Z, Y, X) array in the stored type, geometry)``.

    The same file checks as :func:`read_image_file` apply (format, 3-D, one component, spacing, length).
    """
    reader, p, fmt, _ = _open_checked(path)
    image = _execute(reader, p, fmt)
    return sitk.GetArrayFromImage(image), Geometry.from_sitk(image)


def write_volume(
    volume: CTVolume | np.ndarray,
    path: str | Path,
    geometry: Geometry | None = None,
    *,
    compress: bool = True,
) -> Path:
    """Write a volume or mask as NIfTI/NRRD/MetaImage, chosen by the extension of ``path``.

    Args:
        volume: a :class:`CTVolume` (its own geometry is used), or a ``(Z, Y, X)`` numpy array (e.g. a
            uint8 mask; ``bool`` is written as uint8) together with ``geometry``.
        path: ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd``; parent folders are created.
        geometry: the grid (LPS mm) of an array; must be ``None`` for a CTVolume.
        compress: gzip/zlib-compress the voxel data where the format allows it.

    Returns:
        the path written. Single-file formats are written to a temporary name and renamed, so a reader
        never sees half a file.
    """
    if isinstance(volume, CTVolume):
        if geometry is not None:
            raise ValueError("geometry must be None when writing a CTVolume (it carries its own)")
        image = volume.to_sitk()
    else:
        if geometry is None:
            raise ValueError(f"writing a numpy array of shape {np.shape(volume)} needs its geometry")
        array = np.asarray(volume)
        image = geometry.array_to_sitk(array.astype(np.uint8) if array.dtype == np.bool_ else array)
    out = Path(path)
    ext = image_extension(out)
    if ext is None:
        raise ValueError(
            f"unsupported output extension for {out.name!r}: use one of {', '.join(IMAGE_EXTENSIONS)}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    if ext in DETACHED_HEADER_EXTENSIONS:
        sitk.WriteImage(image, str(out), useCompression=compress)
        return out
    tmp = out.with_name(f".{out.name[: -len(ext)]}.tmp{os.getpid()}{ext}")
    try:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    log.debug("wrote %s (%s voxels)", out, "x".join(map(str, image.GetSize())))
    return out
