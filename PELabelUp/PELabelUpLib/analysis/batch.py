"""Many inputs: one output sub-folder each, resumable, optionally spread over ``torchrun`` processes.

Inputs come from a folder (each image file and each sub-folder -- a DICOM series -- is one input) or a list
file (one path per line; ``#`` starts a comment; relative paths are relative to the list file's folder).
Each input's output folder is ``OUT/<name>/`` (:func:`output_names`). A batch run again over the same OUT skips
inputs whose folder is complete (outputs appear whole, see :mod:`.outputs`) and redoes the rest, after
removing partial folders that killed runs left. An input that fails (unreadable, not CT) is reported and the
batch goes on; missing or tampered models stop it before the first input. SIGTERM stops it (the input in
progress leaves nothing).

With ``arteries`` (``--arteries`` with ``--batch``), a pattern names each input's artery mask
(:func:`~.territory.mask_for_input`: ``{input_dir}``, ``{input_stem}``), which replaces the artery model's
territory for that input; an input whose mask is missing or unusable fails like an unreadable one.

Under ``torchrun --nproc_per_node=W``, process ``RANK = r`` takes the inputs ``r::W`` of the sorted list; on
CUDA it uses GPU ``LOCAL_RANK``. The processes need no communication, so no process group is started.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError
from ..explain.registry import DEFAULT_EXPLAINER
from ..io.dicom_scan import is_dicom_candidate
from ..io.image_files import image_extension, image_stem
from ..labelup.pipeline import LabelUpSettings
from .device import resolve_device
from .outputs import is_complete, remove_partial_folders
from .progress import Progress, ScaledProgress
from .run import INPUT_ERRORS, analyze_volume, chain_settings, load_models_timed, read_input
from .territory import check_pattern, mask_for_input

log = logging.getLogger(__name__)

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class BatchItem:
    """What happened to one input of this process's share."""

    input: Path
    name: str
    out_dir: Path
    status: Status
    error: str | None = None
    seconds: float = 0.0


def read_input_list(list_file: str | Path) -> list[Path]:
    """Paths listed one per line (``#`` comments and blank lines skipped; relative to the file's folder)."""
    path = Path(list_file)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(path, "is not a text list of inputs (one path a line); run one image without --batch") from None
    paths = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            p = Path(line)
            paths.append(p if p.is_absolute() else path.parent / p)
    if not paths:
        raise InputError(path, "the input list names no input")
    return paths


def list_inputs(source: str | Path) -> list[Path]:
    """The inputs of a batch: the entries of a folder or the lines of a list file, sorted.

    In a folder, image files (NIfTI, NRRD, MetaImage) and sub-folders are inputs; hidden entries and other
    files are ignored.

    Raises:
        InputError: ``source`` is missing, empty, or itself one image or DICOM series (run it without
            ``--batch``).
    """
    src = Path(source)
    if src.is_file():
        if image_extension(src) is not None or is_dicom_candidate(src):
            raise InputError(src, "is one image, not a folder of inputs or a list file: run it without --batch")
        return read_input_list(src)
    if not src.is_dir():
        raise InputError(src, "batch input not found: expected a folder of inputs or a list file")
    entries = [p for p in sorted(src.iterdir()) if not p.name.startswith(".")]
    if any(p.is_file() and is_dicom_candidate(p) for p in entries):
        raise InputError(src, "holds DICOM files: a DICOM folder is one input (run without --batch), a batch "
                              "folder holds one sub-folder per series")
    inputs = [p for p in entries if p.is_dir() or (p.is_file() and image_extension(p) is not None)]
    if not inputs:
        raise InputError(src, "no inputs: expected image files (.nii.gz, .nrrd, .mha ...) or DICOM sub-folders")
    return inputs


def output_names(inputs: Sequence[Path]) -> list[str]:
    """One output folder name per input: its path below the inputs' common folder, extension dropped,
    ``/`` written as ``__`` (``cohort/case_7/ct.nii.gz`` in a list of cohort cases -> ``case_7__ct``).

    Raises:
        ValueError: two inputs would share a name (e.g. ``a.nii`` and ``a.nii.gz``).
    """
    resolved = [Path(p).absolute() for p in inputs]
    common = Path(os.path.commonpath([p.parent for p in resolved])) if resolved else Path()
    names = ["__".join((*p.parent.relative_to(common).parts, image_stem(p.name))) for p in resolved]
    seen: dict[str, Path] = {}
    for name, p in zip(names, inputs, strict=True):
        if name in seen:
            raise ValueError(f"inputs {seen[name]} and {p} would share the output folder {name!r}")
        seen[name] = p
    return names


def torchrun_rank() -> tuple[int, int, int | None]:
    """``(rank, world_size, local_rank)`` from torchrun's environment, or ``(0, 1, None)`` outside torchrun.

    Raises:
        ValueError: malformed or inconsistent torchrun variables.
    """
    if not all(name in os.environ for name in TORCHRUN_VARIABLES):
        return 0, 1, None
    try:
        rank, world, local = (int(os.environ[name]) for name in TORCHRUN_VARIABLES)
    except ValueError as exc:
        shown = {name: os.environ[name] for name in TORCHRUN_VARIABLES}
        raise ValueError(f"torchrun variables must be integers, got {shown}") from exc
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"RANK must lie in [0, WORLD_SIZE) and LOCAL_RANK >= 0, got RANK={rank}, "
                         f"WORLD_SIZE={world}, LOCAL_RANK={local}")
    return rank, world, local


def rank_share(count: int, rank: int, world_size: int) -> list[int]:
    """Indices of the inputs rank ``rank`` of ``world_size`` takes: ``rank::world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
    return list(range(rank, count, world_size))


def analyze_batch(inputs: Sequence[str | Path], out_dir: str | Path, *, device: str = "auto",
                  explainer: str = DEFAULT_EXPLAINER, precision: str = "auto", models_dir: str | Path | None = None,
                  progress: Progress | None = None, model_versions: dict[str, str] | None = None,
                  settings: LabelUpSettings | None = None, rank: int | None = None,
                  world_size: int | None = None, arteries: str | None = None) -> list[BatchItem]:
    """Analyse this process's share of ``inputs`` into ``out_dir/<name>/``, skipping finished ones.

    Args:
        inputs: input paths (see :func:`list_inputs`); their order is sorted for the rank split.
        out_dir: parent of the per-input folders (created).
        device, explainer, precision, models_dir, model_versions, settings: as for :func:`~.run.analyze`.
        progress: ``progress(stage, fraction, message)`` over the whole share; an object with a
            ``context`` dict attribute (:class:`~.progress.JsonLinesProgress`) also gets ``input``, ``index``
            and ``total`` of the input in progress (and ``rank`` under torchrun).
        rank, world_size: this process's place; ``None``: from torchrun's environment (or 0 of 1).
        arteries: a pattern naming each input's artery mask (:func:`~.territory.mask_for_input`), used as its
            territory instead of the artery model's; an input whose mask is missing or unusable fails.

    Returns:
        one :class:`BatchItem` per input of the share, in order.

    Raises:
        InputError: missing or tampered models (before any input is read).
        ValueError: colliding output names, unknown explainer, precision or device, a pattern without a
            placeholder.
    """
    if arteries is not None:
        check_pattern(arteries)
    env_rank, env_world, local_rank = torchrun_rank()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    ordered = sorted(Path(p) for p in inputs)
    names = output_names(ordered)
    share = rank_share(len(ordered), rank, world_size)
    settings = chain_settings(settings, explainer, precision)
    torch_device = resolve_device(device, local_rank=local_rank)
    sink = progress or (lambda stage, fraction, message: None)
    context = getattr(progress, "context", None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    todo = [i for i in share if not is_complete(out / names[i])]
    models = None
    if todo:
        models, model_seconds = load_models_timed(torch_device, sink, models_dir=models_dir,
                                                  model_versions=model_versions, artery=arteries is None)
    items: list[BatchItem] = []
    for position, index in enumerate(share):
        path, name, target = ordered[index], names[index], out / names[index]
        if isinstance(context, dict):
            context.update(input=name, index=position, total=len(share), **({"rank": rank} if world_size > 1 else {}))
        scaled = ScaledProgress(sink, position / len(share), (position + 1) / len(share))
        if index not in todo:
            scaled("skipped", 1.0, f"{name}: finished earlier")
            items.append(BatchItem(path, name, target, "skipped"))
            continue
        remove_partial_folders(target)
        t0 = time.perf_counter()
        try:
            volume, load_seconds = read_input(path, scaled, arteries=None if arteries is None
                                              else mask_for_input(arteries, path))
            timings = {"models": model_seconds if position == share.index(todo[0]) else 0.0, "load": load_seconds}
            analyze_volume(volume.ct, target, models=models, device=torch_device, settings=settings, progress=scaled,
                           timings_s=timings, extra={"batch": {"rank": rank, "world_size": world_size,
                                                              "name": name}}, territory=volume.territory)
        except INPUT_ERRORS as exc:  # this input fails, the batch goes on
            reason = " ".join(str(exc).split())
            log.error("%s: %s", name, reason)
            scaled("failed", 1.0, f"{name}: {reason}")
            items.append(BatchItem(path, name, target, "failed", reason, time.perf_counter() - t0))
            continue
        items.append(BatchItem(path, name, target, "done", None, time.perf_counter() - t0))
    if isinstance(context, dict):
        context.clear()
        if world_size > 1:
            context["rank"] = rank
    done = sum(item.status == "done" for item in items)
    skipped = sum(item.status == "skipped" for item in items)
    failed = len(items) - done - skipped
    sink("done", 1.0, f"rank {rank}/{world_size}: {done} analysed, {skipped} skipped (finished earlier), "
                      f"{failed} failed, into {out}")
    return items
