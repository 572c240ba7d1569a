"""Integrity checks of image files, run before ITK reads their voxels.

ITK's readers miss some damage: a truncated NIfTI file is read with the missing voxels zero-filled, a gzip
NRRD cut inside its trailer passes, and the MetaImage reader can corrupt the process memory (observed: heap
corruption, then abort) when the ``ElementDataFile`` line of a ``.mha`` header is damaged. These checks
refuse such files with :class:`InputError` first. They read at most the header and, only when a gzip
trailer disagrees with the header, decompress the stream once.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import InputError

METAIMAGE_ELEMENT_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}  # fmt: skip
METAIMAGE_GRID_KEYS = (
    "DimSize", "ElementSpacing", "ElementSize", "Offset", "Position", "Origin", "TransformMatrix", "Rotation",
    "Orientation", "CenterOfRotation",
)  # fmt: skip
HEADER_LIMIT_BYTES = 1 << 16


#: NIfTI ``datatype`` codes of floating-point voxels, which may hold NaN or infinity
NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}


def _nifti_layout(path: Path, header: bytes) -> tuple[int, str, int]:
    """``(vox_offset, byte order, datatype)`` of a NIfTI-1 or NIfTI-2 header (either byte order);
    ``(0, "<", 0)`` when the header is unrecognised (ITK then refuses the file itself)."""
    if len(header) < 4:
        return 0, "<", 0
    for order in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(order + "i", header[:4])
        if sizeof_hdr == 348 and len(header) >= 112:
            offset: float = struct.unpack(order + "f", header[108:112])[0]
            (datatype,) = struct.unpack(order + "h", header[70:72])
        elif sizeof_hdr == 540 and len(header) >= 176:
            offset = struct.unpack(order + "q", header[168:176])[0]
            (datatype,) = struct.unpack(order + "h", header[12:14])
        else:
            continue
        if not np.isfinite(offset) or not 0 <= offset < 2**40:
            raise InputError(path, f"corrupt NIfTI header: vox_offset {offset}")
        return int(offset), order, int(datatype)
    return 0, "<", 0


def _open_nifti(path: Path) -> BinaryIO:
    """The file's (decompressed, for ``.nii.gz``) byte stream."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _read_nifti_header(path: Path) -> bytes:
    try:
        with _open_nifti(path) as stream:
            return stream.read(544)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(path, f"cannot read NIfTI header: {exc}") from None


def check_nifti_finite(path: Path, n_values: int) -> None:
    """Refuse a floating-point NIfTI file holding NaN or infinity: ITK reads those voxels as 0 without a word.

    Integer files are not read again; a float file's voxels are read in chunks from its (decompressed) stream.
    """
    offset, order, datatype = _nifti_layout(path, _read_nifti_header(path))
    if datatype not in NIFTI_FLOAT_TYPES:
        return
    dtype = np.dtype(order + NIFTI_FLOAT_TYPES[datatype])
    chunk_values = 1 << 22
    with _open_nifti(path) as stream:
        stream.seek(offset)
        left = n_values
        while left > 0:
            data = stream.read(min(left, chunk_values) * dtype.itemsize)
            if not data:
                return  # a short file is refused by check_nifti_length
            values = np.frombuffer(data[: len(data) - len(data) % dtype.itemsize], dtype=dtype)
            if not np.isfinite(values).all():
                raise InputError(path, "values include NaN or infinity (the file's floating-point voxels)")
            left -= values.size


def check_gzip_stream(path: Path, offset: int, expected: int, what: str) -> None:
    """The gzip stream starting at byte ``offset`` of ``path`` holds at least ``expected`` bytes, complete.

    Fast path: the gzip trailer (last 4 bytes, the uncompressed size mod 2**32) matches. Otherwise the stream
    is decompressed to tell a truncated file from a multi-member one.
    """
    with open(path, "rb") as raw:
        raw.seek(-4, os.SEEK_END)
        (isize,) = struct.unpack("<I", raw.read(4))
    if isize == expected % 2**32:
        return
    total = 0
    complete = False  # a whole gzip member has been read
    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        with open(path, "rb") as raw:
            raw.seek(offset)
            while chunk := raw.read(1 << 22):
                while chunk:
                    total += len(decompressor.decompress(chunk))
                    chunk = b""
                    if decompressor.eof:
                        complete = True
                        chunk = decompressor.unused_data
                        if chunk:  # another gzip member follows
                            decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
                            complete = False
    except zlib.error as exc:
        if not (complete and total >= expected):  # trailing bytes after a complete stream are harmless
            raise InputError(path, f"corrupt gzip stream in {what} file: {exc}") from None
    if decompressor.eof:
        complete = True
    if not complete or total < expected:
        raise InputError(
            path, f"truncated {what} file: {total} bytes of voxel data, the header declares {expected}"
        )


def check_nifti_length(path: Path, data_bytes: int) -> None:
    """Refuse a truncated NIfTI file (ITK would read it silently, zero-filling the missing voxels)."""
    gz = path.name.lower().endswith(".gz")
    expected = _nifti_layout(path, _read_nifti_header(path))[0] + data_bytes
    if gz:
        check_gzip_stream(path, 0, expected, "NIfTI")
        return
    actual = path.stat().st_size
    if actual < expected:
        raise InputError(path, f"truncated NIfTI file: {actual} bytes, the header declares {expected}")


def check_nrrd_length(path: Path, data_bytes: int) -> None:
    """Refuse an attached gzip NRRD whose stream is cut (ITK misses a cut in the gzip trailer)."""
    with open(path, "rb") as stream:
        head = stream.read(1 << 16)
    end = head.find(b"\n\n")
    if end < 0:
        return
    fields = dict(
        line.split(":", 1)
        for line in head[:end].decode("latin-1").splitlines()
        if ":" in line and "=" not in line
    )
    encoding = fields.get("encoding", "").strip().lower()
    if "data file" in fields or "datafile" in fields or encoding not in ("gzip", "gz"):
        return
    check_gzip_stream(path, end + 2, data_bytes, "NRRD")


def check_metaimage_header(path: Path) -> None:
    """A MetaImage header that ITK can parse safely: printable lines ``Key = Value`` (keys may be any text,
    e.g. DICOM tags ``0008|0060`` that SimpleITK copies from a DICOM source) ending with
    ``ElementDataFile``, ``NDims`` (1..4) before the grid keys, ``DimSize`` of NDims positive integers, a known
    ``ElementType``, and, for ``LOCAL`` data, as many data bytes as the header announces."""
    with open(path, "rb") as stream:
        head = stream.read(HEADER_LIMIT_BYTES)
    match = re.search(rb"(?m)^\s*ElementDataFile\s*=[^\n]*\n", head)
    if match is None:
        raise InputError(path, "corrupt MetaImage header: no complete ElementDataFile line")
    text = head[: match.end()].decode("latin-1")  # never fails; control characters are caught below
    fields: dict[str, str] = {}
    for number, raw_line in enumerate(text.split("\n")[:-1], start=1):
        line = raw_line.rstrip("\r")
        key, sep, value = line.partition("=")
        if not line.strip():
            continue
        if not sep or not key.strip() or not line.isprintable():
            raise InputError(
                path, f"corrupt MetaImage header: line {number} is not printable 'Key = Value' text"
            )
        key = key.strip()
        if key in METAIMAGE_GRID_KEYS and "NDims" not in fields:
            raise InputError(path, f"corrupt MetaImage header: {key} before NDims")
        fields[key] = value.strip()
    ndims = _int_field(path, fields, "NDims")
    if not 1 <= ndims <= 4:
        raise InputError(path, f"corrupt MetaImage header: NDims = {ndims}")
    dims = [_positive_int(path, "DimSize", v) for v in fields.get("DimSize", "").split()]
    if len(dims) != ndims:
        raise InputError(
            path, f"corrupt MetaImage header: DimSize {fields.get('DimSize', '')!r} for NDims = {ndims}"
        )
    element = fields.get("ElementType", "")
    if element not in METAIMAGE_ELEMENT_BYTES:
        raise InputError(path, f"corrupt MetaImage header: unknown ElementType {element!r}")
    channels = _positive_int(path, "ElementNumberOfChannels", fields.get("ElementNumberOfChannels", "1"))
    compressed = fields.get("CompressedData", "False")
    if compressed not in ("True", "False"):
        raise InputError(path, f"corrupt MetaImage header: CompressedData = {compressed!r}")
    if fields["ElementDataFile"] != "LOCAL":
        return
    data_bytes = path.stat().st_size - match.end()
    if compressed == "True":
        announced = _positive_int(
            path, "CompressedDataSize", fields.get("CompressedDataSize", str(data_bytes or 1))
        )
        if announced > data_bytes:
            raise InputError(
                path,
                f"truncated MetaImage file: {data_bytes} bytes of compressed data, the header announces {announced}",
            )
        return
    expected = int(np.prod(dims, dtype=np.int64)) * METAIMAGE_ELEMENT_BYTES[element] * channels
    if data_bytes < expected:
        raise InputError(
            path,
            f"truncated MetaImage file: {data_bytes} bytes of voxel data, the header declares {expected}",
        )


def _int_field(path: Path, fields: dict[str, str], key: str) -> int:
    if key not in fields:
        raise InputError(path, f"corrupt MetaImage header: no {key}")
    return _positive_int(path, key, fields[key])


def _positive_int(path: Path, key: str, value: str) -> int:
    if not re.fullmatch(r"\d{1,12}", value.strip()) or int(value) < 1:
        raise InputError(path, f"corrupt MetaImage header: {key} = {value!r} is not a positive integer")
    return int(value)
