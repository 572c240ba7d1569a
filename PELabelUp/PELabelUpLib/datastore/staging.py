"""Staging folders: an export is written under ``<root>/.staging/`` first, then renamed into place.

Each staging folder ``.staging/<token>/`` has a lock file ``.staging/<token>.lock`` beside it, held by the
writing process for the folder's whole life (:mod:`.locks`). :func:`remove_strays` removes the folders whose
lock can be taken, i.e. whose writer has died; folders of live writers in other processes are left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from .locks import FileLock

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (new names, renames) to the disk; a no-op where folders cannot be opened."""
    if os.name == "nt":  # pragma: no cover - Windows cannot fsync a folder
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, then the folders themselves (deepest first)."""
    folders = [folder]
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            folders.append(path)
        else:
            fsync_file(path)
    for sub in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(sub)


class StagingFolder:
    """A fresh, locked folder under ``staging_dir``; use as a context manager.

    On exit the folder (whatever is left of it: its contents may have been renamed away) is removed and the
    lock released, whether the export succeeded or failed.
    """

    def __init__(self, staging_dir: Path) -> None:
        staging_dir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            token = f"{os.getpid()}-{uuid.uuid4().hex}"
            try:
                self.lock = FileLock.create(staging_dir / f"{token}{LOCK_SUFFIX}")
            except RuntimeError as exc:  # a concurrent clean-up took the brand-new lock file: try another name
                log.debug("%s", exc)
                continue
            self.path = staging_dir / token
            self.path.mkdir()
            return
        raise RuntimeError(f"{staging_dir}: could not create a staging folder")

    def __enter__(self) -> StagingFolder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.lock.release(remove=True)


def remove_strays(staging_dir: Path) -> list[str]:
    """Remove staging folders (and lock files) whose writer has ended. Returns the tokens removed.

    A writer creates its lock file before its folder and removes the folder before the lock file, so a
    folder whose lock file can be taken, or is missing, has no live writer.
    """
    if not staging_dir.is_dir():
        return []
    removed = []
    names = {p.name for p in staging_dir.iterdir()}
    tokens = {n[: -len(LOCK_SUFFIX)] if n.endswith(LOCK_SUFFIX) else n for n in names}
    for token in sorted(tokens):
        folder, lock_path = staging_dir / token, staging_dir / f"{token}{LOCK_SUFFIX}"
        lock = FileLock.take_over(lock_path)
        if lock is None and lock_path.exists():
            continue  # a live writer holds it
        try:
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
            elif folder.exists():
                folder.unlink(missing_ok=True)
            elif lock is None:
                continue  # both gone: a writer finished meanwhile
            if folder.exists():
                log.warning("could not remove the stray staging folder %s", folder)
            else:
                removed.append(token)
        finally:
            if lock is not None:
                lock.release(remove=True)
    if removed:
        log.warning("removed %d unfinished export(s) left by ended processes in %s", len(removed), staging_dir)
    return removed
