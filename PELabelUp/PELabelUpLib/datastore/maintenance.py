"""Upkeep of a datastore: remove what interrupted exports left, and check that index and files agree.

Both functions take the datastore root and an open index connection; :func:`clean` must be called inside a
``BEGIN IMMEDIATE`` transaction (the write lock), so that no export is between its rename and its commit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from .paths import CASES_DIR, IMAGE_SUFFIX, IMAGES_DIR, STAGING_DIR, VERSION_FOLDER, to_path
from .staging import remove_strays

log = logging.getLogger(__name__)


@dataclass
class CleanReport:
    """What :func:`clean` removed (root-relative paths; staging tokens)."""

    staging: list[str] = field(default_factory=list)
    unindexed_folders: list[str] = field(default_factory=list)
    unindexed_images: list[str] = field(default_factory=list)

    @property
    def removed_anything(self) -> bool:
        return bool(self.staging or self.unindexed_folders or self.unindexed_images)


def _indexed(connection: sqlite3.Connection) -> tuple[set[str], set[str]]:
    folders = {r[0] for r in connection.execute("SELECT folder FROM exports")}
    images = {r[0] for r in connection.execute("SELECT path FROM images")}
    return folders, images


def _version_folders(root: Path) -> list[str]:
    """``cases/<case>/<entry>`` for every entry of every case folder; a link in place of a case folder is
    listed as ``cases/<case>`` (never followed)."""
    cases = root / CASES_DIR
    if not cases.is_dir():
        return []
    out = []
    for case in cases.iterdir():
        if case.is_symlink() or not case.is_dir():
            out.append(f"{CASES_DIR}/{case.name}")
        else:
            out += [f"{CASES_DIR}/{case.name}/{entry.name}" for entry in case.iterdir()]
    return sorted(out)


def _image_files(root: Path) -> list[str]:
    """Root-relative paths of the files under ``images/`` (links are listed, never followed)."""
    images = root / IMAGES_DIR
    out = []
    for folder, subfolders, files in os.walk(images):
        here = Path(folder)
        out += [(here / name).relative_to(root).as_posix() for name in files]
        out += [(here / name).relative_to(root).as_posix() for name in subfolders if (here / name).is_symlink()]
    return sorted(out)


def _remove(path: Path) -> None:
    """Remove a file, a link (not its target) or a folder tree."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def clean(root: Path, connection: sqlite3.Connection) -> CleanReport:
    """Remove stray staging folders, case folders without a row and image files without a row."""
    if not connection.in_transaction:
        raise RuntimeError("clean() must run inside a BEGIN IMMEDIATE transaction")
    report = CleanReport(staging=remove_strays(root / STAGING_DIR))
    folders, images = _indexed(connection)
    for rel in _version_folders(root):
        if rel.count("/") == 1:  # a file or link in place of a case folder: not ours to remove
            log.warning("%s is not a plain folder: left alone (exports to that case are refused)", rel)
        elif rel not in folders:
            log.warning("removing %s: a case folder without an index row (interrupted export)", rel)
            _remove(to_path(root, rel))
            report.unindexed_folders.append(rel)
    for rel in _image_files(root):
        if rel not in images:
            log.warning("removing %s: an image without an index row (interrupted export)", rel)
            _remove(to_path(root, rel))
            report.unindexed_images.append(rel)
    cases = root / CASES_DIR
    if cases.is_dir():
        for case in cases.iterdir():
            if not case.is_symlink() and case.is_dir() and not any(case.iterdir()):
                case.rmdir()
    return report


def verify(root: Path, connection: sqlite3.Connection) -> list[str]:
    """Every disagreement between the index and the files, one line each (empty: consistent)."""
    problems = []
    folders, images = _indexed(connection)
    for rel in sorted(images):
        if not to_path(root, rel).is_file():
            problems.append(f"{rel}: indexed image missing")
    for row in connection.execute("SELECT * FROM exports ORDER BY case_id, version"):
        name = f"case {row['case_id']} v{row['version']}"
        paths = [row["final_mask_path"], *json.loads(row["original_masks_json"]).values()]
        paths += [row["final_seg_nrrd_path"]] if row["final_seg_nrrd_path"] else []
        problems += [f"{rel}: file of {name} missing" for rel in paths if not to_path(root, rel).is_file()]
        if row["folder"] != f"{CASES_DIR}/{row['case_id']}/v{row['version']}":
            problems.append(f"{row['folder']}: folder of {name} does not follow the layout")
    for rel in _version_folders(root):
        if rel.count("/") == 1:
            problems.append(f"{rel}: not a plain folder (a link or a file)")
        elif rel not in folders:
            problems.append(f"{rel}: case folder without an index row")
        elif not VERSION_FOLDER.fullmatch(rel.rsplit("/", 1)[1]):
            problems.append(f"{rel}: not a version folder name")
    for rel in _image_files(root):
        if rel not in images:
            problems.append(f"{rel}: image without an index row")
        elif not rel.endswith(IMAGE_SUFFIX):
            problems.append(f"{rel}: not a NIfTI image")
    staging = root / STAGING_DIR
    if staging.is_dir():
        problems += [f"{STAGING_DIR}/{p.name}: export in progress or left by a crash" for p in staging.iterdir()]
    return problems
