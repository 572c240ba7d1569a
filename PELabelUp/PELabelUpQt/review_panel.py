"""What the module shows: the status line, and a loaded review (PE probability, emboli, slice plot, segments).

Slicer's own widgets draw the review's nodes (``PELabelUpLib.mrml.ReviewNodes``): a ``qMRMLTableView`` the
emboli table, a ``qMRMLPlotWidget`` the per-slice probability chart, the Segment Editor the segmentation (and the
3-D views its closed surfaces: emboli inside see-through arteries).
A click on a table row centres the slice views on that embolus; a picked point of the plot jumps the slice
views to its slice (the plot's x is the axial slice index k).
"""

import slicer
from slicer.i18n import tr as _

from PELabelUpLib.slicer_process import STUDY_THRESHOLD

from .choices import fillSegments

SINGLETON_TAG = "PELabelUp"


def singletonNode(className: str):
    """The module's node of ``className`` in Slicer's scene (singleton tag ``PELabelUp``), added when missing."""
    node = slicer.mrmlScene.GetSingletonNode(SINGLETON_TAG, className)
    if node is None:
        node = slicer.mrmlScene.CreateNodeByClass(className)
        node.UnRegister(None)
        node.SetSingletonTag(SINGLETON_TAG)
        node = slicer.mrmlScene.AddNode(node)
    return node


def plotViewNode():
    """The slice plot's view node, set so that a click picks a point (which :meth:`ReviewPanel.onSlicePicked` gets)."""
    node = singletonNode("vtkMRMLPlotViewNode")
    node.SetInteractionMode(slicer.vtkMRMLPlotViewNode.InteractionModeSelectPoints)
    return node


def pickedRow(selections) -> int | None:
    """The point a plot selection picked: the middle row of the selected points (a box selects several)."""
    picked = [selections.GetItemAsObject(n) for n in range(selections.GetNumberOfItems())]
    rows = sorted(int(a.GetValue(i)) for a in picked for i in range(a.GetNumberOfValues()))
    return rows[len(rows) // 2] if rows else None


class ReviewPanel:
    """Shows the status and a review in the module's widgets, and turns clicks on the results into view changes.

    Args:
        ui: the module's widgets (``slicer.util.childWidgetVariables`` of ``PELabelUp.ui``).
        logic: the module's Logic: its review session centres and scrolls the slice views.
    """

    def __init__(self, ui, logic) -> None:
        self.ui, self.logic = ui, logic
        ui.emboliTableView.connect("clicked(QModelIndex)", self.onEmbolusClicked)
        ui.slicePlotWidget.plotView().connect("dataSelected(vtkStringArray*,vtkCollection*)", self.onSlicePicked)

    def useSceneNodes(self) -> None:
        """Give the Segment Editor and the slice plot their view nodes in the current scene."""
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(singletonNode("vtkMRMLSegmentEditorNode"))
        self.ui.slicePlotWidget.setMRMLPlotViewNode(plotViewNode())

    def show(self, review, p) -> None:
        """Show ``review`` (``ReviewNodes``) and start the parameter node's review fields from the model's call.

        ``p`` (the parameter node) gets the model's study label, the first correctable segment and the case ID.
        """
        probability = review.record.pe_probability
        call = _("PE present") if probability >= STUDY_THRESHOLD else _("no PE")
        self.ui.peProbabilityLabel.text = _("{probability:.1%} (model: {call})").format(probability=probability,
                                                                                         call=call)
        self.ui.emboliTableView.setMRMLTableNode(review.emboli_table)
        plotViewNode().SetPlotChartNodeID(review.slice_chart.GetID())
        self.ui.segmentEditorWidget.setSegmentationNode(review.segmentation)
        self.ui.segmentEditorWidget.setSourceVolumeNode(review.ct)
        slicer.util.resetThreeDViews()  # the segments' surfaces in view
        segments = self.logic.session.correctable_segments()
        fillSegments(self.ui.correctedSegmentComboBox, segments)
        with slicer.util.NodeModify(p):
            p.studyLabelPositive = probability >= STUDY_THRESHOLD
            p.correctedSegmentId = segments[0][0] if segments else ""
            p.caseId = self.logic.case_id or review.ct.GetName()
        self.showStatus(_("{n} emboli; correct the segment, then export.").format(
            n=review.emboli_table.GetNumberOfRows()), progress=1000)

    def showStatus(self, text: str, progress: int | None = None) -> None:
        """Say ``text`` below the progress bar; ``progress`` (0..1000) moves the bar first."""
        if progress is not None:
            self.ui.progressBar.value = progress
        self.ui.statusLabel.text = text

    def showProgress(self, event) -> None:
        """Show a progress event of the analysis child (``PELabelUpLib.analysis.progress.ProgressEvent``)."""
        self.showStatus(f"{event.stage}: {event.message}", progress=int(round(1000 * event.fraction)))

    def enter(self) -> None:
        """The module is shown: the Segment Editor's keyboard shortcuts work."""
        self.ui.segmentEditorWidget.installKeyboardShortcuts()

    def exit(self) -> None:
        """The module is hidden: no effect stays active, no shortcut or view observation stays installed."""
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.ui.segmentEditorWidget.removeViewObservations()

    def forgetSegmentation(self) -> None:
        """The scene is closing: the Segment Editor lets go of the segmentation."""
        self.ui.segmentEditorWidget.setSegmentationNode(None)
        self.ui.segmentEditorWidget.removeViewObservations()

    def clear(self) -> None:
        """Show no review (a case opened that has no analysis yet, or the scene closed)."""
        self.ui.peProbabilityLabel.text = "-"
        self.ui.emboliTableView.setMRMLTableNode(None)
        self.ui.correctedSegmentComboBox.clear()

    def onEmbolusClicked(self, index) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to show the embolus."), waitCursor=True):
            view = self.ui.emboliTableView
            self.logic.center_on_embolus(view.tableModel().mrmlTableRowIndex(view.sortFilterProxyModel().mapToSource(index)))

    def onSlicePicked(self, seriesIds, selections) -> None:
        """A picked point of the slice plot: its row is the slice index k (the middle one of a box selection)."""
        row = pickedRow(selections)
        if row is not None:
            with slicer.util.tryWithErrorDisplay(_("Failed to show the slice."), waitCursor=True):
                self.logic.jump_to_slice(row)
