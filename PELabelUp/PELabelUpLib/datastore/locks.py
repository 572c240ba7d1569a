"""Advisory file locks that the operating system releases when their process dies (even by SIGKILL).

POSIX uses ``fcntl.flock``; Windows uses ``msvcrt.locking`` on the file's first byte. A staging folder of the
datastore is owned by whoever holds its lock file: a lock that can be taken means its owner has ended, and
its folder is a stray left by a crash. These locks do not work across network file systems reliably; neither
does SQLite's WAL mode, so a datastore must live on a local disk.
"""

from __future__ import annotations

import os
from pathlib import Path

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class FileLock:
    """An exclusive lock on ``path``, taken without waiting.

    :meth:`create` makes a new lock file and locks it (the caller owns a fresh name); :meth:`take_over`
    locks an existing one (it fails while the owner lives). The lock is valid only while the file at
    ``path`` is the one locked: :meth:`create` checks that no one removed it between creation and locking.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def create(cls, path: Path) -> FileLock:
        """Create ``path`` (must not exist) and lock it. Raises ``FileExistsError`` or ``RuntimeError``."""
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        os.write(fd, b"\0")
        if not _try_lock(fd) or not _same_file(fd, path):
            os.close(fd)
            raise RuntimeError(f"{path}: lost the new lock file to a concurrent clean-up")
        return cls(path, fd)

    @classmethod
    def take_over(cls, path: Path) -> FileLock | None:
        """Lock an existing ``path``; ``None`` while its owner holds it, or when it is gone."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        if not _try_lock(fd) or not _same_file(fd, path):
            os.close(fd)
            return None
        return cls(path, fd)

    def release(self, *, remove: bool) -> None:
        """Unlock; with ``remove``, delete the lock file first (POSIX) or right after closing (Windows)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if remove and os.name != "nt":
            self.path.unlink(missing_ok=True)
        try:
            _unlock(fd)
        finally:
            os.close(fd)
        if remove and os.name == "nt":  # pragma: no cover
            self.path.unlink(missing_ok=True)


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)
