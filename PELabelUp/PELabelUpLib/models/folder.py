"""Model folders: ``metadata.json`` plus a weights file, checked by sha256 when loaded.

``metadata.json`` (after the spirit of a MONAI bundle's metadata):
``name``, ``version``, ``task`` (``artery`` | ``classifier`` | ``segmenter``), ``network`` (spec for
:func:`~PELabelUpLib.models.networks.build_network`), ``preprocessing`` (spacing, window, crop, channels...),
``inputs``/``outputs`` (described in words and shapes), ``training`` (data, seed, epochs...),
``metrics`` (measured), ``intended_use``, ``changelog``, ``weights`` (file name) and ``sha256`` (of the weights).
Weights are a plain state dict saved with ``torch.save`` and loaded with ``weights_only=True``: never a pickle
of arbitrary objects. This module imports torch only inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    from torch import nn

METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.pt"
INTENDED_USE = "research, not for clinical use"
REQUIRED_KEYS = ("name", "version", "task", "network", "preprocessing", "weights", "sha256")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelFolder:
    """A model folder on disk and its metadata (weights not loaded)."""

    path: Path
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def weights_path(self) -> Path:
        return self.path / str(self.metadata["weights"])


def read_model_folder(path: str | Path) -> ModelFolder:
    """Read and check a model folder's metadata (not the weights' hash: :func:`load_model` does that)."""
    folder = Path(path)
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise InputError(folder, f"not a model folder: no {METADATA_FILE}")
    try:
        metadata = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(meta_path, f"unreadable metadata: {exc}") from exc
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise InputError(meta_path, f"metadata lacks {', '.join(missing)}")
    return ModelFolder(folder, metadata)


def verify_weights(folder: ModelFolder) -> None:
    """Raise :class:`InputError` unless the weights file exists and matches the recorded sha256."""
    weights = folder.weights_path
    if not weights.is_file():
        raise InputError(weights, "weights file missing")
    actual = sha256_of(weights)
    if actual != folder.metadata["sha256"]:
        raise InputError(weights, f"sha256 mismatch: the metadata records {folder.metadata['sha256'][:12]}..., "
                                  f"the file has {actual[:12]}... (corrupt or tampered weights)")


def load_model(path: str | Path, *, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network of a model folder, load its checked weights, put it in eval mode on ``device``."""
    import torch

    from .networks import build_network

    folder = read_model_folder(path)
    verify_weights(folder)
    network = build_network(folder.metadata["network"])
    try:
        state = torch.load(folder.weights_path, map_location=device, weights_only=True)
        network.load_state_dict(state)
    except (RuntimeError, ValueError, OSError, pickle.UnpicklingError) as exc:
        raise InputError(folder.weights_path, f"weights do not load into {folder.metadata['network']['name']}: "
                                              f"{' '.join(str(exc).split())[:200]}") from exc
    return network.to(device).eval(), folder.metadata


def save_model_folder(path: str | Path, network: nn.Module, metadata: dict[str, Any]) -> ModelFolder:
    """Write ``network``'s state dict and ``metadata`` (completed with weights name, sha256, intended use).

    The folder is written next to its final place and renamed into it, so readers never see half a model.
    An existing folder is refused: versions are never overwritten.
    """
    import torch

    final = Path(path)
    if final.exists():
        raise FileExistsError(f"{final}: model folder exists already (write a new version instead)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; a model folder is shared read-only
    try:
        state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
        torch.save(state, tmp / WEIGHTS_FILE)
        meta = dict(metadata) | {"weights": WEIGHTS_FILE, "sha256": sha256_of(tmp / WEIGHTS_FILE)}
        meta.setdefault("intended_use", INTENDED_USE)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=_jsonable) + "\n")
        tmp.replace(final)
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return read_model_folder(final)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
