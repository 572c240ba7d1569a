"""The training datastore: radiologists' corrected masks, written atomically and indexed in SQLite.

"Export to training" (:meth:`Datastore.export`) stores, for one case:

- the image once, content-addressed (:func:`~.content.image_hash`): a second export of the same image
  reuses the stored file;
- the model's original masks as given (pseudo-mask, segmenter mask, artery territory);
- the corrected final mask (uint8 label map, NIfTI; also ``.seg.nrrd`` when :mod:`.seg_export` can), on the
  image's grid -- a mask of another shape or grid is refused, naming the file or the case;
- an index row: case id, image hash, model versions (JSON), reviewer, UTC time, study label and whether it
  was confirmed or changed, version, root-relative paths.

Atomicity. Files are written into a locked staging folder inside the datastore and flushed (fsync); then,
inside one ``BEGIN IMMEDIATE`` transaction, the next version is allocated, the staged folder is renamed to
``cases/<case_id>/v<version>`` (and a new image into ``images/``) and the row inserted; the commit makes the
export visible. A crash before the commit leaves no row; what it left on disk (a staging folder, or a
renamed folder without a row) is removed by :meth:`Datastore.clean`, which runs when a datastore is opened
and never touches the staging folder of a live process. Rows are only inserted after their files are in
place and are never deleted, so a row never points at missing files. Earlier versions are never overwritten.

Concurrency. Several processes may export into one datastore at once: files are staged in parallel, the short
rename-and-insert step is serialised by SQLite's write lock (WAL mode, busy timeout), and
``UNIQUE (case_id, version)`` backs up the version allocation. The datastore must live on a local disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import write_volume
from ..io.validate import as_hu_array
from ..volume import CTVolume
from . import maintenance
from .content import (
    MaskInput,
    as_label_map,
    as_stored_mask,
    check_original_kinds,
    image_hash,
    mask_on_grid,
)
from .paths import (
    EXPORT_JSON_FILE,
    FINAL_MASK_FILE,
    FINAL_SEG_NRRD_FILE,
    INDEX_FILE,
    STAGING_DIR,
    check_case_id,
    image_relpath,
    version_folder,
)
from .records import (
    LABEL_DECISIONS,
    LATEST_FILTER,
    RECORD_QUERY,
    ExportRecord,
    FinalLabel,
    LabelDecision,
    geometry_to_json,
    record_from_row,
)
from .schema import DEFAULT_BUSY_TIMEOUT_S, SCHEMA_VERSION, connect, create_schema, schema_version
from .seg_export import write_final_seg_nrrd
from .staging import StagingFolder, fsync_dir, fsync_file, fsync_tree

log = logging.getLogger(__name__)

MAX_REVIEWER_LENGTH = 200
StageHook = Callable[[str], None]
"""Called with ``"staged"``, ``"locked"``, ``"renamed"``, ``"inserted"`` as an export passes each step."""


class Datastore:
    """A training datastore folder (layout in :mod:`.paths`).

    Args:
        root: the datastore folder.
        create: create the folder and index when missing; with ``False`` a missing index is an
            :class:`InputError` (reading for fine-tuning should not invent an empty datastore).
        busy_timeout_s: how long to wait for another process's write lock before failing.
        clean_on_open: remove what crashed exports left behind (:meth:`clean`) right away.
        on_stage: optional instrumentation hook, see :data:`StageHook` (tests pause an export with it).
    """

    def __init__(self, root: str | Path, *, create: bool = True, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
                 clean_on_open: bool = True, on_stage: StageHook | None = None) -> None:
        self.root = Path(root).absolute()
        self.index_path = self.root / INDEX_FILE
        self.busy_timeout_s = float(busy_timeout_s)
        self._on_stage = on_stage
        if self.root.exists() and not self.root.is_dir():
            raise InputError(self.root, "is a file, expected a datastore folder")
        if not self.index_path.is_file():
            if not create:
                raise InputError(self.root, f"not a PELabelUp datastore (no {INDEX_FILE})")
            self.root.mkdir(parents=True, exist_ok=True)
        try:
            with self._connection() as connection:
                version = schema_version(connection)
                if version is None:
                    create_schema(connection)
                elif version != SCHEMA_VERSION:
                    raise InputError(self.index_path, f"index schema version {version} is not supported "
                                                      f"(expected {SCHEMA_VERSION})")
        except sqlite3.DatabaseError as exc:
            raise InputError(self.index_path, f"not a readable datastore index: {exc}") from None
        if clean_on_open:
            self.clean()

    def __repr__(self) -> str:
        return f"Datastore({str(self.root)!r})"

    # ---- export -------------------------------------------------------------------------------------

    def export(
        self,
        case_id: str,
        image: CTVolume,
        final_mask: MaskInput,
        *,
        reviewer: str,
        study_label: bool,
        label_decision: LabelDecision,
        model_versions: Mapping[str, Any],
        original_masks: Mapping[str, MaskInput] | None = None,
        exported_at: datetime | None = None,
    ) -> ExportRecord:
        """Store one reviewed case as its next version (rules and guarantees in the module doc).

        Args:
            case_id: a safe folder name (:func:`~.paths.check_case_id`).
            image: the CT (HU ``(Z, Y, X)``, geometry LPS mm) the masks were drawn on.
            final_mask: the corrected label map (``(Z, Y, X)``, bool or whole numbers 0..255, 0 = background):
                an array on the image's grid, an ``(array, geometry)`` pair or a label file.
            reviewer: who reviewed (one line).
            study_label: the reviewer's study label, True for "PE present".
            label_decision: ``"confirmed"`` when it equals the model's label, ``"changed"`` otherwise.
            model_versions: the models behind the original masks (JSON-serialisable mapping).
            original_masks: the model's masks by kind (``pseudomask``, ``segmentation``, ``arteries``),
                stored as given (bool as uint8); each must lie on the image's grid.
            exported_at: the export time (timezone-aware); now by default.

        Returns:
            the new :class:`ExportRecord` (version 1 for a new case, else the previous version + 1).

        Raises:
            InputError: bad case id, a mask off the image's grid or not a label map, a case id differing
                from a stored one only in letter case, a bad reviewer.
            ValueError: bad label decision, model versions or original mask kind.
        """
        check_case_id(case_id, self.root)
        reviewer = _check_reviewer(reviewer, case_id)
        if label_decision not in LABEL_DECISIONS:
            raise ValueError(f"label_decision must be one of {LABEL_DECISIONS}, got {label_decision!r}")
        if not isinstance(study_label, bool):
            raise ValueError(f"study_label must be True (PE present) or False, got {study_label!r}")
        versions_json = _models_json(model_versions)
        when = _utc_iso(exported_at)
        originals = dict(original_masks or {})
        check_original_kinds(originals)
        g = image.geometry
        final = as_label_map(mask_on_grid(final_mask, g, case_id=case_id, what="final mask"),
                             where=f"case {case_id} final mask")
        stored = {kind: as_stored_mask(mask_on_grid(m, g, case_id=case_id, what=kind))
                  for kind, m in sorted(originals.items())}
        image = CTVolume(hu=as_hu_array(image.hu), geometry=g, source=image.source, meta=image.meta)  # int16 if whole
        digest = image_hash(image)

        with StagingFolder(self.root / STAGING_DIR) as staging:
            case_dir = staging.path / "case"
            write_volume(final, case_dir / FINAL_MASK_FILE, g)
            seg_nrrd = write_final_seg_nrrd(final, g, case_dir / FINAL_SEG_NRRD_FILE)
            for kind, mask in stored.items():
                write_volume(mask, case_dir / f"{kind}.nii.gz", g)
            staged_image = None if self._has_image(digest) else write_volume(image, staging.path / "image.nii.gz")
            fsync_tree(staging.path)
            self._stage("staged")
            with self._write_transaction() as connection:
                version = self._next_version(connection, case_id)
                self._stage("locked")
                self._store_image(connection, digest, image, staged_image or staging.path / "image.nii.gz", when)
                folder = version_folder(case_id, version)
                row = {
                    "case_id": case_id, "version": version, "image_hash": digest, "folder": folder,
                    "final_mask_path": f"{folder}/{FINAL_MASK_FILE}",
                    "final_seg_nrrd_path": f"{folder}/{FINAL_SEG_NRRD_FILE}" if seg_nrrd else None,
                    "original_masks_json": json.dumps({k: f"{folder}/{k}.nii.gz" for k in stored}),
                    "model_versions_json": versions_json, "reviewer": reviewer, "exported_utc": when,
                    "study_label": int(study_label), "label_decision": label_decision,
                }
                sidecar = case_dir / EXPORT_JSON_FILE
                sidecar.write_text(json.dumps(row, indent=1) + "\n")
                fsync_file(sidecar)
                target = self._place_folder(case_dir, folder)
                try:
                    self._stage("renamed")
                    columns = ", ".join(row)
                    marks = ", ".join(f":{k}" for k in row)
                    connection.execute(f"INSERT INTO exports ({columns}) VALUES ({marks})", row)
                    self._stage("inserted")
                except BaseException:
                    shutil.rmtree(target, ignore_errors=True)  # the transaction rolls back: no row, no folder
                    raise
        log.info("exported case %s version %d (image %s...) by %s", case_id, version, digest[:12], reviewer)
        return self._records(f"{RECORD_QUERY} WHERE e.case_id = ? AND e.version = ?", (case_id, version))[0]

    def _stage(self, name: str) -> None:
        if self._on_stage is not None:
            self._on_stage(name)

    def _has_image(self, digest: str) -> bool:
        with self._connection() as connection:
            row = connection.execute("SELECT path FROM images WHERE image_hash = ?", (digest,)).fetchone()
        return row is not None and (self.root / row["path"]).is_file()

    def _next_version(self, connection: sqlite3.Connection, case_id: str) -> int:
        rows = connection.execute(
            "SELECT case_id, MAX(version) AS last FROM exports WHERE case_id = ? COLLATE NOCASE GROUP BY case_id",
            (case_id,),
        ).fetchall()
        others = sorted(r["case_id"] for r in rows if r["case_id"] != case_id)
        if others:
            raise InputError(f"case id {case_id!r}", f"differs only in letter case from the stored case {others[0]!r} "
                                                     "(their folders would collide on case-insensitive disks)")
        return 1 + max((int(r["last"]) for r in rows), default=0)

    def _store_image(self, connection: sqlite3.Connection, digest: str, image: CTVolume, staged: Path,
                     when: str) -> None:
        """Index the image (inside the write transaction), moving the staged file into ``images/`` if new.

        ``staged`` is the image written into the staging folder, or where to write it when the image was
        indexed when the export began but its file has gone since (then it is written under the lock).
        """
        relpath = image_relpath(digest)
        row = connection.execute("SELECT path FROM images WHERE image_hash = ?", (digest,)).fetchone()
        if row is not None and (self.root / row["path"]).is_file():
            return
        if not staged.is_file():
            write_volume(image, staged)
            fsync_file(staged)
        target = self.root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.replace(target)
        fsync_dir(target.parent)
        if row is None:
            connection.execute(
                "INSERT INTO images (image_hash, path, dtype, geometry_json, stored_utc) VALUES (?, ?, ?, ?, ?)",
                (digest, relpath, str(image.hu.dtype), geometry_to_json(image.geometry), when),
            )

    def _place_folder(self, staged: Path, folder: str) -> Path:
        """Rename the staged case folder to ``folder`` (called with the write lock held)."""
        target = self.root / folder
        if target.exists():  # renamed by an export that crashed before its commit: it has no row
            log.warning("removing %s: left without an index row by an interrupted export", target)
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.rename(target)
        fsync_dir(target.parent)
        return target

    # ---- reading ------------------------------------------------------------------------------------

    def cases(self) -> list[ExportRecord]:
        """The latest export of every case, sorted by case id."""
        return self._records(f"{RECORD_QUERY} {LATEST_FILTER} ORDER BY e.case_id")

    def final_labels(self) -> list[FinalLabel]:
        """For fine-tuning: every case's image, its latest final mask and the original masks, by case id."""
        return [FinalLabel(case_id=r.case_id, version=r.version, image_path=r.image_path,
                           mask_path=r.final_mask_path, original_masks=r.original_masks, study_label=r.study_label)
                for r in self.cases()]

    def history(self, case_id: str) -> list[ExportRecord]:
        """Every export of ``case_id``, oldest (v1) first; empty for an unknown case."""
        check_case_id(case_id)
        return self._records(f"{RECORD_QUERY} WHERE e.case_id = ? ORDER BY e.version", (case_id,))

    def latest(self, case_id: str) -> ExportRecord | None:
        """The current export of ``case_id`` (highest version), or ``None``."""
        history = self.history(case_id)
        return history[-1] if history else None

    def case_ids(self) -> set[str]:
        """The ids of every case exported at least once."""
        with self._connection() as connection:
            return {r[0] for r in connection.execute("SELECT DISTINCT case_id FROM exports")}

    def _records(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[ExportRecord]:
        with self._connection() as connection:
            rows = connection.execute(sql, parameters).fetchall()
        return [record_from_row(self.root, row) for row in rows]

    # ---- upkeep -------------------------------------------------------------------------------------

    def clean(self) -> maintenance.CleanReport:
        """Remove what interrupted exports left: stray staging folders, folders and images without a row."""
        with self._write_transaction() as connection:
            return maintenance.clean(self.root, connection)

    def verify(self) -> list[str]:
        """Problems found (empty: consistent): rows whose files are missing, files without rows."""
        with self._connection() as connection:
            return maintenance.verify(self.root, connection)

    # ---- connections --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        connection = connect(self.index_path, busy_timeout_s=self.busy_timeout_s)
        try:
            yield connection
        finally:
            connection.close()

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error): holds the datastore's write lock."""
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")


def _check_reviewer(reviewer: object, case_id: str) -> str:
    where = f"case {case_id} reviewer"
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise InputError(where, f"must be a non-empty name, got {reviewer!r}")
    if any(c in reviewer for c in "\r\n\x00") or len(reviewer) > MAX_REVIEWER_LENGTH:
        raise InputError(where, f"must be one line of at most {MAX_REVIEWER_LENGTH} characters, got {reviewer!r}")
    return reviewer.strip()


def _models_json(model_versions: Mapping[str, Any]) -> str:
    if not isinstance(model_versions, Mapping):
        raise ValueError(f"model_versions must be a mapping (model -> version), got {type(model_versions).__name__}")
    try:
        return json.dumps(dict(model_versions), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model_versions must be JSON-serialisable: {exc}") from None


def _utc_iso(when: datetime | None) -> str:
    if when is None:
        when = datetime.now(timezone.utc)
    elif when.tzinfo is None:
        raise ValueError(f"exported_at must carry a timezone, got {when.isoformat()}")
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
