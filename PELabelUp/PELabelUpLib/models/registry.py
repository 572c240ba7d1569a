"""The models PELabelUp uses, by task, and where their folders live: the one list every front end reads.

Importing this module does not import torch (the Slicer GUI process lists models without loading them).

Tasks and names (:data:`MODEL_TASKS`): ``artery`` -> ``pelabelup-arteries`` (required), ``classifier`` ->
``pelabelup-classifier`` (required), ``segmenter`` -> ``pelabelup-segmenter`` (optional: without it the
analysis copies the pseudo-mask).

Where models live. A *models folder* holds model folders (``metadata.json`` + weights, see
:mod:`~PELabelUpLib.models.folder`). The search path is, in order:

1. ``models_dir`` when a caller passes one (``pelabelup analyze --models-dir DIR``): then it is the only folder
   searched, so a run is reproducible whatever else is installed;
2. otherwise the *bundled* folder: ``$PELABELUP_MODELS_DIR`` when set, else the first ``Resources/Models``
   found walking up from this package (the source checkout's ``Resources/Models``; in an installed Slicer
   extension, the module's ``Resources/Models`` beside ``PELabelUpLib``);
3. and after it the *user* folder: ``$PELABELUP_USER_MODELS_DIR`` when set, else
   ``$XDG_DATA_HOME/pelabelup/models`` (``~/.local/share/pelabelup/models``), when it exists.

Versions. The bundled version of a model is the folder named exactly after it (``pelabelup-segmenter/``).
Later versions (fine-tuned segmenters, retrained classifiers) live beside it or in the user folder, by
convention as ``<name>@<version>/`` (``pelabelup-segmenter@1.1.0/``); any sub-folder whose ``metadata.json``
names the task's model and task counts, whatever the folder is called, because a model folder is identified
by its metadata. :func:`list_model_versions` lists them, oldest first; :func:`find_model` picks one:
``version=None`` is the bundled folder when there is one (else the newest version), ``"latest"`` the newest
version anywhere on the search path, any other string that exact version.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..errors import InputError
from .folder import METADATA_FILE, ModelFolder, read_model_folder

log = logging.getLogger(__name__)

MODELS_DIR_ENV = "PELABELUP_MODELS_DIR"
USER_MODELS_DIR_ENV = "PELABELUP_USER_MODELS_DIR"
BUNDLED_RELATIVE = Path("Resources") / "Models"
LATEST = "latest"


class ModelNotFoundError(InputError):
    """No model folder for a task (or for the version asked for) on the search path."""


@dataclass(frozen=True)
class ModelTask:
    """A task the analysis needs a model for.

    Attributes:
        task: registry key, also ``metadata["task"]`` of its model folders.
        name: model name (``metadata["name"]`` and the bundled folder's name).
        label: short human-readable name (combo-box text).
        description: one sentence (tooltip, ``--help``).
        required: whether an analysis can run without it.
    """

    task: str
    name: str
    label: str
    description: str
    required: bool = True


MODEL_TASKS: MappingProxyType[str, ModelTask] = MappingProxyType({
    "artery": ModelTask("artery", "pelabelup-arteries", "Pulmonary artery territory",
                        "3-D U-Net: the pulmonary arterial tree including what fills it (contrast or clot)."),
    "classifier": ModelTask("classifier", "pelabelup-classifier", "PE slice classifier",
                            "2.5-D CNN: probability of an embolus on every axial slice; the explainers read it."),
    "segmenter": ModelTask("segmenter", "pelabelup-segmenter", "Emboli segmenter",
                           "3-D U-Net trained on pseudo-masks: a voxel mask of emboli.", required=False),
})


@dataclass(frozen=True)
class ModelVersion:
    """One model folder found on the search path.

    Attributes:
        task, name, version: from its metadata.
        path: the folder.
        bundled: it is the folder named exactly after the model in the first folder of the search path.
    """

    task: str
    name: str
    version: str
    path: Path
    bundled: bool

    def read(self) -> ModelFolder:
        return read_model_folder(self.path)


def model_task(task: str) -> ModelTask:
    """The registered task ``task``.

    Raises:
        ValueError: unknown task (the message lists the known ones).
    """
    spec = MODEL_TASKS.get(task) if isinstance(task, str) else None
    if spec is None:
        raise ValueError(f"unknown model task {task!r}; known: {', '.join(MODEL_TASKS)}")
    return spec


def bundled_models_dir() -> Path | None:
    """``$PELABELUP_MODELS_DIR``, else the first ``Resources/Models`` above this package; ``None`` if neither."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / BUNDLED_RELATIVE
        if candidate.is_dir():
            return candidate
    return None


def user_models_dir() -> Path:
    """``$PELABELUP_USER_MODELS_DIR``, else ``$XDG_DATA_HOME/pelabelup/models`` (may not exist)."""
    override = os.environ.get(USER_MODELS_DIR_ENV)
    if override:
        return Path(override)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "pelabelup" / "models"


def models_search_path(models_dir: str | Path | None = None) -> list[Path]:
    """The models folders searched, in order (see the module docstring); a ``models_dir`` given must be a folder
    (:class:`InputError` naming it otherwise: a mistyped ``--models-dir`` is not reported as a missing model)."""
    if models_dir is not None:
        if not Path(models_dir).is_dir():
            raise InputError(models_dir, "models folder not found" if not Path(models_dir).exists()
                             else "is not a folder: expected a folder of model folders")
        return [Path(models_dir)]
    path = [p for p in (bundled_models_dir(), user_models_dir()) if p is not None]
    return list(dict.fromkeys(path))  # the same folder twice is searched once


def version_key(version: str) -> tuple:
    """Sort key of a version string: numeric parts numerically (``1.10.0`` after ``1.9.2``)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+_]", str(version)))


def list_model_versions(task: str, *, models_dir: str | Path | None = None) -> list[ModelVersion]:
    """Every folder on the search path holding a model of ``task``, oldest version first.

    A folder counts when its ``metadata.json`` reads and names this task and the task's model name.
    Unreadable metadata is skipped with a warning (:func:`find_model` reports it when it matters).
    Equal versions keep search-path order (bundled before user).
    """
    spec = model_task(task)
    found: list[ModelVersion] = []
    for rank, root in enumerate(models_search_path(models_dir)):
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (folder / METADATA_FILE).is_file():
                continue
            try:
                meta = read_model_folder(folder).metadata
            except InputError as exc:
                log.warning("skipping model folder: %s", exc)
                continue
            if meta.get("task") != spec.task or meta.get("name") != spec.name:
                continue
            found.append(ModelVersion(task=spec.task, name=spec.name, version=str(meta["version"]), path=folder,
                                      bundled=rank == 0 and folder.name == spec.name))
    return sorted(found, key=lambda v: version_key(v.version))  # stable: search order within a version


def _not_found(spec: ModelTask, roots: Sequence[Path], version: str | None) -> ModelNotFoundError:
    where = roots[0] / spec.name if roots else BUNDLED_RELATIVE / spec.name
    searched = ", ".join(str(r) for r in roots) or f"no {BUNDLED_RELATIVE} above the package"
    which = f" version {version}" if version not in (None, LATEST) else ""
    return ModelNotFoundError(where, f"{spec.label} model '{spec.name}'{which} not found (searched: {searched}; "
                                     f"point --models-dir or ${MODELS_DIR_ENV} at a folder holding it)")


def find_model(task: str, *, models_dir: str | Path | None = None, version: str | None = None) -> ModelVersion:
    """The model folder to use for ``task`` (``version``: ``None``, ``"latest"`` or an exact version).

    Raises:
        ModelNotFoundError: no such model on the search path (an :class:`InputError` whose one-line message names
            the folder expected and the folders searched).
        InputError: the bundled folder's metadata is broken or names another model.
    """
    spec = model_task(task)
    roots = models_search_path(models_dir)
    if version is None and roots and (roots[0] / spec.name).is_dir():
        folder = read_model_folder(roots[0] / spec.name)  # a broken bundled model is an error, not a skip
        meta = folder.metadata
        if meta.get("task") != spec.task or meta.get("name") != spec.name:
            raise InputError(folder.path, f"holds model {meta.get('name')!r} for task {meta.get('task')!r}, "
                                          f"expected {spec.name!r} for task {spec.task!r}")
        return ModelVersion(spec.task, spec.name, folder.version, folder.path, bundled=True)
    versions = list_model_versions(task, models_dir=models_dir)
    if version not in (None, LATEST):
        versions = [v for v in versions if v.version == version]
        if not versions:
            raise _not_found(spec, roots, version)
        return versions[0]
    if not versions:
        raise _not_found(spec, roots, version)
    return versions[-1]


def find_models(*, models_dir: str | Path | None = None, versions: dict[str, str] | None = None,
                tasks: Sequence[str] | None = None) -> dict[str, ModelVersion | None]:
    """The model of every task (``None`` for an optional task with no model); ``versions`` maps task -> version.

    Raises:
        ModelNotFoundError: a required model (or a version asked for) is missing.
        InputError: a model folder's metadata is broken.
        ValueError: ``versions`` names an unknown task.
    """
    versions = dict(versions or {})
    for task in versions:
        model_task(task)
    chosen: dict[str, ModelVersion | None] = {}
    for task in tasks or tuple(MODEL_TASKS):
        spec = model_task(task)
        try:
            chosen[task] = find_model(task, models_dir=models_dir, version=versions.get(task))
        except ModelNotFoundError:
            if spec.required or task in versions:
                raise
            log.info("no %s model on the search path: it is skipped", spec.name)
            chosen[task] = None
    return chosen
