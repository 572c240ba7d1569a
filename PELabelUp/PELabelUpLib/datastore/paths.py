"""Case ids and the datastore's folder layout.

A case id becomes a folder name (``cases/<case_id>/v<version>/``), so it must be a plain, portable file name
that cannot leave the datastore. :func:`check_case_id` accepts ASCII letters, digits, ``.``, ``_`` and ``-``,
starting with a letter or digit and not ending with ``.``, at most :data:`MAX_CASE_ID_LENGTH` characters, and
not a Windows device name (``CON``, ``NUL``, ``COM1``...). That rules out ``..``, absolute paths, path
separators, empty names, NUL and other control characters, and names that Windows or macOS would alias
(trailing dots). DICOM StudyInstanceUIDs (digits and dots) and RSPECT ids (hex) pass unchanged. Two ids that
differ only in letter case are refused at export (see :mod:`.store`), since case-insensitive disks would
give them one folder.

Layout of a datastore root::

    datastore.sqlite           the index (SQLite, WAL mode: -wal and -shm files beside it)
    images/<hh>/<hash>.nii.gz  each image once, named by its content hash (hh = first two hex digits)
    cases/<case_id>/v<n>/      one folder per export: final.nii.gz (+ final.seg.nrrd), the model's
                               original masks (pseudomask.nii.gz, segmentation.nii.gz, arteries.nii.gz)
                               and export.json (a copy of the index row)
    .staging/                  exports being written (a folder and a .lock file each); strays are removed

Every path stored in the index is relative to the root, with ``/`` separators.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from ..errors import InputError

MAX_CASE_ID_LENGTH = 128
CASE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
WINDOWS_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(10)] + [f"LPT{i}" for i in range(10)]
)

INDEX_FILE = "datastore.sqlite"
IMAGES_DIR = "images"
CASES_DIR = "cases"
STAGING_DIR = ".staging"
IMAGE_SUFFIX = ".nii.gz"
FINAL_MASK_FILE = "final.nii.gz"
FINAL_SEG_NRRD_FILE = "final.seg.nrrd"
EXPORT_JSON_FILE = "export.json"
VERSION_FOLDER = re.compile(r"v([1-9][0-9]*)")


def check_case_id(case_id: object, root: str | Path | None = None) -> str:
    """Return ``case_id`` when it is a safe folder name (rules in the module doc); else raise.

    Args:
        case_id: the proposed id.
        root: the datastore root; when given, ``<root>/cases/<case_id>`` must also resolve (symbolic links
            followed) to a folder directly inside ``<root>/cases``.

    Raises:
        InputError: one line, ``"case id '<repr>': <reason>"``.
    """
    shown = repr(case_id) if not isinstance(case_id, str) or len(case_id) <= 80 else repr(case_id[:80] + "...")
    where = f"case id {shown}"
    if not isinstance(case_id, str):
        raise InputError(where, f"must be a string, got {type(case_id).__name__}")
    if not case_id:
        raise InputError(where, "empty")
    if "\x00" in case_id:
        raise InputError(where, "contains a NUL character")
    if len(case_id) > MAX_CASE_ID_LENGTH:
        raise InputError(where, f"too long ({len(case_id)} characters, at most {MAX_CASE_ID_LENGTH})")
    if "/" in case_id or "\\" in case_id:
        raise InputError(where, "contains a path separator ('/' or '\\')")
    if case_id in {".", ".."}:
        raise InputError(where, "is a relative folder reference")
    if not CASE_ID_PATTERN.fullmatch(case_id):
        bad = sorted({c for c in case_id if not (c.isascii() and (c.isalnum() or c in "._-"))})
        if bad:
            raise InputError(where, f"characters {''.join(bad)!r} not allowed (use letters, digits, '.', '_', '-')")
        raise InputError(where, "must start with a letter or digit")
    if case_id.endswith("."):
        raise InputError(where, "must not end with '.'")
    if case_id.split(".")[0].upper() in WINDOWS_DEVICE_NAMES:
        raise InputError(where, "is a reserved device name on Windows")
    if root is not None:
        cases = (Path(root) / CASES_DIR).resolve()
        resolved = (Path(root) / CASES_DIR / case_id).resolve()
        if resolved.parent != cases or resolved.name != case_id:
            raise InputError(where, "resolves outside the datastore's cases folder (a link?)")
    return case_id


def version_folder(case_id: str, version: int) -> str:
    """Root-relative folder of one export: ``cases/<case_id>/v<version>``."""
    if version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    return f"{CASES_DIR}/{case_id}/v{version}"


def image_relpath(image_hash: str) -> str:
    """Root-relative path of a stored image: ``images/<hh>/<hash>.nii.gz``."""
    if not re.fullmatch(r"[0-9a-f]{64}", image_hash):
        raise ValueError(f"image hash must be 64 lower-case hex digits, got {image_hash!r}")
    return f"{IMAGES_DIR}/{image_hash[:2]}/{image_hash}{IMAGE_SUFFIX}"


def to_path(root: Path, relpath: str) -> Path:
    """Absolute path of a root-relative path read from the index (refuses one that would leave the root)."""
    rel = PurePosixPath(relpath)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"index path {relpath!r} is not a plain path inside the datastore")
    return root.joinpath(*rel.parts)
