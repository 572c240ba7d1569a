"""Bundle a trained model folder as ``Resources/Models/<name>/``: checked, portable, atomic, within a size budget.

The source's weights are checked against their sha256, the metadata is made portable (every absolute path, at any
depth, cut to its last component), the changelog gets a new first line on top of the entries of the model bundled
under that name so far, and the new folder replaces the old one only once it is complete::

    python -m training.bundle --model runs/segmenter-1.1.0/pelabelup-segmenter \\
        --changelog "DynUNet fine-tuned on 12 corrected masks" \\
        --cohort-description "pelabelup synth --n 48 --seed 101 --size-xy 256 256" --dry-run

A version that is bundled already is refused unless its weights are the same (a new model needs a new version),
and so is a bundle that would take the bundled models over ``--budget-mb``; in both cases nothing is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PELabelUpLib.errors import InputError
from PELabelUpLib.models.folder import METADATA_FILE, ModelFolder, read_model_folder, verify_weights

from .engine.cli import USER_ERRORS
from .engine.config import portable_config

log = logging.getLogger("training.bundle")

#: the repository's bundled models, found from this file (never a machine path)
BUNDLED_MODELS = Path(__file__).resolve().parents[1] / "Resources" / "Models"
MB = 1_000_000


@dataclass(frozen=True)
class BundleReport:
    """What a bundle did (or, after a dry run, would do); sizes in bytes."""

    name: str
    path: Path
    old_version: str | None
    new_version: str
    size: int
    total: int
    budget: int
    dry_run: bool

    def summary(self) -> str:
        verb = "would bundle" if self.dry_run else "bundled"
        return (f"{verb} {self.name}: {self.old_version or '(none)'} -> {self.new_version}, "
                f"{self.size / MB:.2f} MB in {self.path}; bundled models {self.total / MB:.2f} MB "
                f"of a {self.budget / MB:g} MB budget" + (" (dry run: nothing written)" if self.dry_run else ""))


def bundled_metadata(source: ModelFolder, old: ModelFolder | None, *, changelog: str,
                     cohort_description: str | None = None) -> dict[str, Any]:
    """The metadata of the bundle: portable, with ``changelog`` first (as ``"<version>: ..."``), then the source's
    entries and the old bundle's, each once, in that order; ``cohort_description`` into ``training.cohort``."""
    metadata = portable_config(source.metadata, absolute_paths=True)
    line = " ".join(changelog.split())
    if not line:
        raise ValueError("--changelog must not be empty")
    if not line.startswith(f"{source.version}:"):
        line = f"{source.version}: {line}"
    earlier = [*_entries(metadata), *(_entries(old.metadata) if old else [])]
    metadata["changelog"] = list(dict.fromkeys([line, *earlier]))
    if cohort_description is not None:
        training = metadata["training"] = dict(metadata.get("training") or {})
        cohort = training.get("cohort")
        cohort = (cohort if isinstance(cohort, dict) else {"names": cohort} if isinstance(cohort, list)
                  else {"name": cohort} if cohort else {})
        training["cohort"] = cohort | {"description": cohort_description}
    return metadata


def bundle_model(model: str | Path, *, dest: str | Path = BUNDLED_MODELS, changelog: str,
                 cohort_description: str | None = None, budget_mb: float = 25.0,
                 dry_run: bool = False) -> BundleReport:
    """Copy the model folder ``model`` into ``dest/<name>/``, replacing the bundle of that name if there is one.

    Raises:
        InputError: ``model`` is not a model folder, its weights do not match their sha256, or its version is
            bundled already with other weights.
        ValueError: the bundled models (weights + metadata) would total more than ``budget_mb`` (10^6 bytes).
    Nothing in ``dest`` changes when it raises, nor on a dry run (except that a real run first puts right a
    bundle of the same name that an interrupted run left between its two renames).
    """
    source = read_model_folder(model)
    verify_weights(source)
    for key in ("name", "weights"):
        value = str(source.metadata[key])
        if not value or value != Path(value).name or value.startswith("."):
            raise InputError(source.path, f"metadata {key} {value!r} is not a plain file name")
    dest = Path(dest)
    if not dry_run:
        _recover(dest, source.name)
    final = dest / source.name
    old = read_model_folder(final) if final.exists() else None
    if old is not None and old.version == source.version and old.metadata["sha256"] != source.metadata["sha256"]:
        raise InputError(source.path, f"version {source.version} of {source.name} is bundled already with other "
                                      f"weights (sha256 {old.metadata['sha256'][:12]}..., this one "
                                      f"{source.metadata['sha256'][:12]}...): a new model needs a new version")
    text = json.dumps(bundled_metadata(source, old, changelog=changelog, cohort_description=cohort_description),
                      indent=2) + "\n"
    size = source.weights_path.stat().st_size + len(text.encode())
    others = sum(_folder_size(d) for d in (dest.iterdir() if dest.is_dir() else ())
                 if d.is_dir() and not d.name.startswith(".") and d.name != source.name)
    report = BundleReport(source.name, final, old.version if old else None, source.version, size, others + size,
                          round(budget_mb * MB), dry_run)
    if report.total > report.budget:
        raise ValueError(f"{dest}: bundling {source.name} ({size / MB:.2f} MB) would take the bundled models to "
                         f"{report.total / MB:.2f} MB, over the budget of {budget_mb:g} MB; nothing changed")
    if not dry_run:
        _replace(final, source, text)
    return report


def _entries(metadata: dict[str, Any]) -> list[str]:
    """A metadata's changelog as a list of strings (a lone string is one entry)."""
    changelog = metadata.get("changelog") or []
    return [changelog] if isinstance(changelog, str) else [str(entry) for entry in changelog]


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _aside(final: Path) -> Path:
    """Where the old bundle waits while the new one takes its place."""
    return final.with_name(f".{final.name}.previous")


def _recover(dest: Path, name: str) -> None:
    """Finish an earlier bundle that stopped between its two renames: the old bundle goes back if no new one is
    in place, otherwise the old one left aside is removed."""
    final, aside = dest / name, _aside(dest / name)
    if aside.is_dir():
        if final.exists():
            shutil.rmtree(aside)
        else:
            log.warning("%s: putting back the bundle left aside by an interrupted run", final)
            aside.replace(final)


def _replace(final: Path, source: ModelFolder, metadata_text: str) -> None:
    """Write the bundle into a temporary sibling of ``final``, check it, then swap it in (two folder renames)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; a bundled model is shared read-only
    try:
        shutil.copyfile(source.weights_path, tmp / source.weights_path.name)
        (tmp / METADATA_FILE).write_text(metadata_text)
        verify_weights(read_model_folder(tmp))  # the copy, not only the source
        if final.exists():
            final.replace(_aside(final))  # kept until the new bundle is in place
        tmp.replace(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.exists() and _aside(final).exists():
                _aside(final).replace(final)
    shutil.rmtree(_aside(final), ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.bundle", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="trained model folder (as the trainers write it)")
    p.add_argument("--dest", type=Path, default=BUNDLED_MODELS,
                   help="folder of the bundled models (default: this repository's Resources/Models)")
    p.add_argument("--changelog", required=True,
                   help="new first changelog line ('<version>: ' is put in front unless it is there)")
    p.add_argument("--cohort-description", help="sets metadata training.cohort.description")
    p.add_argument("--budget-mb", type=float, default=25.0,
                   help="most MB (10^6 bytes) all bundled models may take together (default: 25)")
    p.add_argument("--dry-run", action="store_true", help="check and print what would happen, write nothing")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        report = bundle_model(args.model, dest=args.dest, changelog=args.changelog,
                              cohort_description=args.cohort_description, budget_mb=args.budget_mb,
                              dry_run=args.dry_run)
    except USER_ERRORS as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("%s", " ".join(str(exc).split()))
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
