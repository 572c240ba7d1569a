"""Where the module's resources are: ``Resources/`` beside the module, or one folder up in a source checkout.

A built extension copies ``Resources/`` (icon, ``.ui`` file, bundled models) beside ``PELabelUp.py``; a source
checkout added to Slicer's module paths has it at the repository's top level.
"""

from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]  # the folder of PELabelUp.py


def resourcePath(relative: str) -> str:
    """The path of ``Resources/<relative>``: the first that exists, else the built extension's."""
    for root in (MODULE_DIR, MODULE_DIR.parent):
        candidate = root / "Resources" / relative
        if candidate.exists():
            return str(candidate)
    return str(MODULE_DIR / "Resources" / relative)
