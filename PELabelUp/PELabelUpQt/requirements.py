"""Installing what the analysis child needs, after the user agreed (torch through the PyTorch extension)."""

import slicer
from slicer.i18n import tr as _

from PELabelUpLib.slicer_process import missing_requirements


def ensureRequirements() -> None:
    """Install the missing Python packages of the analysis, asking first; returns when none is missing.

    Raises:
        ValueError: the user declined, the PyTorch extension is missing, or torch was not installed.
    """
    missing = missing_requirements()
    if not missing:
        return
    names = ", ".join(r.pip for r in missing)
    if not slicer.util.confirmOkCancelDisplay(
            _("PELabelUp needs Python packages that are not installed. Installing them needs a network "
              "connection and may take several minutes. Install now?"),
            _("Install Python packages"), detailedText=names):
        raise ValueError(_("Python packages missing: {names}").format(names=names))
    for requirement in missing:
        if requirement.installer == "pytorch-extension":
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                raise ValueError(_("Install the PyTorch extension from the Extensions Manager first.")) from None
            version = requirement.pip[len(requirement.module):]
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                             torchVersionRequirement=version) is None:
                raise ValueError(_("PyTorch was not installed."))
        else:
            slicer.util.pip_install(requirement.pip)
