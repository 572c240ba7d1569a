"""The module's choices: the device and explainer enums, and the selectors the parameter node cannot bind.

``Device`` and ``Explainer`` are parameter-node field types; Slicer binds them to their combo boxes and shows
each member's ``label()``. The segmenter versions and the segments to export change at run time, and Slicer's
``connectGui`` has no connector for a segment selector (a segmentation node and one of its segments), so
:class:`ChoiceBoxes` keeps those three in step with the parameter node instead (each combo-box item carries its
field value as item data). Being parameter-node fields, they are saved with the scene like the others.
"""

import enum

from slicer.i18n import tr as _

from PELabelUpLib.explain.registry import AUTO_EXPLAINER, EXPLAINERS, explainer_choices
from PELabelUpLib.models.registry import list_model_versions


class Device(enum.Enum):
    """Where the analysis runs its networks (``pelabelup analyze --device``)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"

    def label(self) -> str:
        return {"auto": _("Automatic (GPU when available)"), "cpu": _("CPU"), "cuda": _("GPU (CUDA)")}[self.value]


class _RegisteredExplainer(enum.Enum):
    def label(self) -> str:
        if self.value == AUTO_EXPLAINER:
            return _("Automatic (the classifier's choice)")
        return EXPLAINERS[self.value].label


#: the explainer choices of PELabelUpLib.explain.registry (automatic first), as the parameter node's choices
Explainer = _RegisteredExplainer("Explainer", [(name, name) for name in explainer_choices()])


def selectData(comboBox, value: str) -> None:
    """Make the item whose data is ``value`` current (nothing happens when none has it)."""
    index = comboBox.findData(value)
    if index >= 0 and index != comboBox.currentIndex:
        comboBox.currentIndex = index


def fillSegments(comboBox, segments: list[tuple[str, str]]) -> None:
    """List ``(segment ID, name)`` pairs: the name shown, the ID as item data (this signals as usual)."""
    comboBox.clear()
    for segment_id, name in segments:
        comboBox.addItem(name, segment_id)


class ChoiceBoxes:
    """The segmenter-version and corrected-segment combo boxes and the artery segment selector, in step with the
    parameter node.

    Args:
        ui: the module's widgets (``slicer.util.childWidgetVariables`` of ``PELabelUp.ui``).
        parameterNode: returns the Widget's parameter node (``None`` while it has none).
    """

    def __init__(self, ui, parameterNode) -> None:
        self.ui, self.parameterNode = ui, parameterNode
        ui.modelVersionComboBox.connect("currentIndexChanged(int)", self.onModelVersionChosen)
        ui.correctedSegmentComboBox.connect("currentIndexChanged(int)", self.onCorrectedSegmentChosen)
        ui.arterySegmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onArterySegmentationChosen)
        ui.arterySegmentSelector.connect("currentSegmentChanged(QString)", self.onArterySegmentChosen)

    def fillModelVersions(self) -> None:
        """The segmenter versions on the models search path (the model registry's), bundled first.

        Item data: ``""`` (bundled), ``"latest"`` or an exact version. The box does not signal while it is
        refilled; the parameter node's version is selected afterwards.
        """
        combo = self.ui.modelVersionComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        versions = list_model_versions("segmenter")
        bundled = [v.version for v in versions if v.bundled]
        combo.addItem(_("Bundled ({version})").format(version=bundled[0] if bundled else _("none")), "")
        combo.addItem(_("Newest installed"), "latest")
        for version in versions:
            combo.addItem(version.version, version.version)
        combo.blockSignals(wasBlocked)
        if self.parameterNode() is not None:
            selectData(combo, self.parameterNode().segmenterVersion)

    def showParameterNode(self, p) -> None:
        """Select the parameter node's ``segmenterVersion``, ``correctedSegmentId``, ``arterySegmentation`` and
        ``arterySegmentId`` (a segment ID the segmentation no longer has leaves the selector's own choice)."""
        selectData(self.ui.modelVersionComboBox, p.segmenterVersion)
        selectData(self.ui.correctedSegmentComboBox, p.correctedSegmentId)
        selector, node, segmentId = self.ui.arterySegmentSelector, p.arterySegmentation, p.arterySegmentId
        if selector.currentNode() != node:
            selector.setCurrentNode(node)  # may pick the node's first segment and signal it: the saved ID is restored
        if node is not None and segmentId and selector.currentSegmentID() != segmentId \
                and node.GetSegmentation().GetSegment(segmentId) is not None:
            selector.setCurrentSegmentID(segmentId)

    def onModelVersionChosen(self, index: int) -> None:
        p = self.parameterNode()
        if p is not None and index >= 0:
            p.segmenterVersion = self.ui.modelVersionComboBox.itemData(index) or ""

    def onCorrectedSegmentChosen(self, index: int) -> None:
        p = self.parameterNode()
        if p is not None and index >= 0:
            p.correctedSegmentId = self.ui.correctedSegmentComboBox.itemData(index) or ""

    def onArterySegmentationChosen(self, node) -> None:
        p = self.parameterNode()
        if p is not None and p.arterySegmentation != node:
            p.arterySegmentation = node

    def onArterySegmentChosen(self, segmentId: str) -> None:
        p = self.parameterNode()
        if p is not None and p.arterySegmentId != (segmentId or ""):
            p.arterySegmentId = segmentId or ""
