"""The SQLite index of a datastore: schema and connections.

Connections run in WAL mode (readers never block the one writer), ``synchronous=FULL`` (a commit is on the
disk when it returns), with foreign keys on and a busy timeout: a process that finds the index locked waits
up to ``busy_timeout_s`` instead of failing. Writers open ``BEGIN IMMEDIATE`` transactions, so two exports
never allocate the same version (``UNIQUE (case_id, version)`` backs this up).

Tables (paths are relative to the datastore root, ``/``-separated; times are UTC ISO 8601):

- ``meta(key, value)``: ``schema_version``.
- ``images(image_hash, path, dtype, geometry_json, stored_utc)``: each image once; ``geometry_json`` holds
  the exact grid as given (size ``(x, y, z)``, spacing_mm, origin_mm LPS, direction row-major).
- ``exports(id, case_id, version, image_hash, folder, final_mask_path, final_seg_nrrd_path,
  original_masks_json, model_versions_json, reviewer, exported_utc, study_label, label_decision)``: one row
  per "Export to training"; ``original_masks_json`` maps a mask kind to its path; ``study_label`` is 1 for
  PE present, 0 for absent; ``label_decision`` says whether the reviewer ``confirmed`` or ``changed`` the
  model's study label.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_BUSY_TIMEOUT_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    image_hash    TEXT PRIMARY KEY CHECK (length(image_hash) = 64),
    path          TEXT NOT NULL UNIQUE,
    dtype         TEXT NOT NULL,
    geometry_json TEXT NOT NULL,
    stored_utc    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS exports (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id             TEXT NOT NULL,
    version             INTEGER NOT NULL CHECK (version >= 1),
    image_hash          TEXT NOT NULL REFERENCES images (image_hash),
    folder              TEXT NOT NULL UNIQUE,
    final_mask_path     TEXT NOT NULL UNIQUE,
    final_seg_nrrd_path TEXT UNIQUE,
    original_masks_json TEXT NOT NULL,
    model_versions_json TEXT NOT NULL,
    reviewer            TEXT NOT NULL,
    exported_utc        TEXT NOT NULL,
    study_label         INTEGER NOT NULL CHECK (study_label IN (0, 1)),
    label_decision      TEXT NOT NULL CHECK (label_decision IN ('confirmed', 'changed')),
    UNIQUE (case_id, version)
);
CREATE INDEX IF NOT EXISTS exports_case_nocase ON exports (case_id COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS exports_image ON exports (image_hash);
"""


def connect(index_path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, FULL sync, foreign keys on."""
    connection = sqlite3.connect(index_path, timeout=busy_timeout_s, isolation_level=None)
    connection.row_factory = sqlite3.Row
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    _set_wal(connection, busy_timeout_s)
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


def _set_wal(connection: sqlite3.Connection, busy_timeout_s: float) -> None:
    # Switching to WAL needs a moment without other writers; the busy handler does not cover every case,
    # so retry briefly. A database already in WAL mode answers at once.
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch the index to WAL mode (got {mode!r})")
        return


def create_schema(connection: sqlite3.Connection) -> None:
    """Create the tables when missing (idempotent; safe when several processes open a new datastore)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in filter(str.strip, SCHEMA.split(";")):
            connection.execute(statement)
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            connection.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise ValueError(f"index schema version {row[0]} is not supported (expected {SCHEMA_VERSION})")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def schema_version(connection: sqlite3.Connection) -> int | None:
    """The stored schema version, or ``None`` for a file without the ``meta`` table."""
    try:
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:
        return None
    return int(row[0]) if row else None
