"""Model versions: the base model a fine-tuning starts from, version numbers, and the ``parent`` record.

A fine-tuned model is a new model folder: same ``name``, a higher ``version``, ``parent`` = the base's name,
version and weights sha256 (so the exact starting point can be found and checked), and a ``changelog`` whose
first entry says what changed, followed by the base's entries. The base folder is only read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from PELabelUpLib.errors import InputError
from PELabelUpLib.models.folder import load_model

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class BaseModel:
    """A loaded base model: its folder, metadata and weights (CPU state dict)."""

    path: Path
    metadata: dict[str, Any]
    state_dict: dict[str, torch.Tensor]

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])


def load_base_model(path: str | Path, *, task: str = "segmenter") -> BaseModel:
    """Load a model folder (sha256 checked) as the start of a fine-tuning.

    Raises:
        InputError: not a model folder, bad weights, or a model of another ``task``.
    """
    network, metadata = load_model(path, device="cpu")
    if metadata.get("task") != task:
        raise InputError(path, f"base model is a {metadata.get('task')!r} model, fine-tuning needs a {task!r} one")
    state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    return BaseModel(Path(path), metadata, state)


def parse_version(version: str) -> tuple[int, int, int]:
    """``"MAJOR.MINOR.PATCH"`` -> integers (raises ``ValueError`` naming the text otherwise)."""
    match = _VERSION.match(str(version).strip())
    if match is None:
        raise ValueError(f"version must read MAJOR.MINOR.PATCH (e.g. 1.1.0), got {version!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def next_version(version: str) -> str:
    """The default version of a fine-tuned model: the base's minor version plus one (``1.0.3`` -> ``1.1.0``)."""
    major, minor, _ = parse_version(version)
    return f"{major}.{minor + 1}.0"


def check_new_version(base_version: str, version: str) -> str:
    """``version`` when it is higher than ``base_version``; ``ValueError`` otherwise."""
    if parse_version(version) <= parse_version(base_version):
        raise ValueError(f"the new version must be higher than the base's {base_version}, got {version}")
    return version


def lineage(base: BaseModel, version: str, entry: str) -> dict[str, Any]:
    """Metadata fields of a model derived from ``base``: ``name``, ``version``, ``parent``, ``changelog``."""
    changelog = [f"{version}: {entry}", *list(base.metadata.get("changelog") or [])]
    parent = {"name": base.name, "version": base.version, "sha256": base.metadata["sha256"],
              "folder": base.path.name}
    return {"name": base.name, "version": check_new_version(base.version, version), "parent": parent,
            "changelog": changelog}
