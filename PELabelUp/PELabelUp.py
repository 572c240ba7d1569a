"""PELabelUp: the 3D Slicer module (descriptor, parameter node, Widget, Logic, Test; Slicer's template order).

The GUI process never imports torch: Analyze runs ``pelabelup analyze`` in a child Python
(``PELabelUpLib.slicer_process``); everything else calls ``PELabelUpLib.mrml`` and ``PELabelUpLib.datastore``,
imported when first needed so that the module loads before its Python requirements are installed.
No ``from __future__ import annotations`` here: Slicer's parameter node wrapper reads the annotations at run time.
The Test keeps the ``unittest`` assertions of Slicer's template (Slicer's runner reports them).
"""
# ruff: noqa: PT009

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from PELabelUpLib.explain.registry import DEFAULT_EXPLAINER
from PELabelUpLib.slicer_process import missing_requirements
from PELabelUpQt.analysis_runner import AnalysisRunner
from PELabelUpQt.choices import ChoiceBoxes, Device, Explainer
from PELabelUpQt.requirements import ensureRequirements
from PELabelUpQt.resources import resourcePath
from PELabelUpQt.review_panel import ReviewPanel


class PELabelUp(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("PE Label Up")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["PELabelUp developers"]
        self.parent.helpText = _("""
Finds pulmonary emboli in CT pulmonary angiography: a study probability, a per-slice probability plot, an
explanation heatmap and emboli masks (pseudo-mask from the heatmap, and a segmenter's mask) that you correct with
the Segment Editor and export to a training datastore. "Next case" opens the most uncertain study of a worklist.
"Artery territory" optionally names a pulmonary-artery segment (the corrected "Pulmonary arteries", or another
tool's) that replaces the artery model's territory in the next analysis.
<b>Research software, not for clinical use.</b>
""")
        self.parent.acknowledgementText = _("""
After "Label up: Learning Pulmonary Embolism Segmentation from Image Level Annotation through Model
Explainability" (Condrea, Rapaka, Leordeanu). Built on 3D Slicer, PyTorch and MONAI.
""")
        icon = Path(resourcePath("Icons/PELabelUp.png"))
        if icon.is_file():
            self.parent.icon = qt.QIcon(str(icon))


@parameterNodeWrapper
class PELabelUpParameterNode:
    """The module's settings, saved with the scene.

    inputVolume - the CT to analyse. device, explainer - how the analysis runs.
    arterySegmentation, arterySegmentId - an artery segment replacing the artery model's territory (none: the model's).
    segmenterVersion - "" (bundled), "latest" or an exact version of the emboli segmenter.
    heatmapThreshold - heat below it is transparent (0..1). heatmapOpacity - the heatmap layer's opacity (0..1).
    caseId - the case's datastore ID. reviewer - who reviews. studyLabelPositive - the reviewer's study label.
    correctedSegmentId - the segment exported as the corrected mask.
    datastoreFolder - the training datastore. worklistFolder - the studies waiting for review.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    arterySegmentation: vtkMRMLSegmentationNode
    arterySegmentId: str = ""
    device: Device = Device.auto
    explainer: Explainer = Explainer(DEFAULT_EXPLAINER)
    segmenterVersion: str = ""
    heatmapThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.2
    heatmapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    caseId: str = ""
    reviewer: str = ""
    studyLabelPositive: bool = False
    correctedSegmentId: str = ""
    datastoreFolder: Path
    worklistFolder: Path


class PELabelUpWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module's panel: binds the parameter node to the ``.ui`` and turns clicks into Logic calls.

    Helpers of ``PELabelUpQt`` drive the result widgets (:class:`~PELabelUpQt.review_panel.ReviewPanel`) and
    the combo boxes the parameter node cannot bind (:class:`~PELabelUpQt.choices.ChoiceBoxes`).
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.reviewPanel = None
        self.choiceBoxes = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(resourcePath("UI/PELabelUp.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PELabelUpLogic()
        self.reviewPanel = ReviewPanel(self.ui, self.logic)  # connects the emboli table and the slice plot
        self.choiceBoxes = ChoiceBoxes(self.ui, lambda: self._parameterNode)  # and the three unbound selectors

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.analyzeButton.connect("clicked(bool)", self.onAnalyze)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.nextCaseButton.connect("clicked(bool)", self.onNextCase)
        self.choiceBoxes.fillModelVersions()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        if self.logic is not None:
            self.logic.close_worker()  # cancels a running analysis: no analysis child outlives the module

    def enter(self) -> None:
        self.initializeParameterNode()
        self.choiceBoxes.fillModelVersions()  # fine-tuned versions may have been added meanwhile
        self.reviewPanel.enter()

    def exit(self) -> None:
        self.reviewPanel.exit()
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.logic.forget_case()
        self.reviewPanel.forgetSegmentation()
        self.reviewPanel.clear()  # nothing of the last patient stays on screen
        self.reviewPanel.showStatus("", progress=0)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        self.reviewPanel.useSceneNodes()
        if self._parameterNode.datastoreFolder == Path():
            self._parameterNode.datastoreFolder = Path(slicer.app.defaultScenePath) / "PELabelUp datastore"
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode: PELabelUpParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Show the parameter node in the widgets it is not bound to, apply the heatmap display, set enabled states."""
        p, running = self._parameterNode, self.logic.is_running
        if p is None:
            return
        self.ui.analyzeButton.enabled = bool(p.inputVolume) and not running
        self.ui.cancelButton.enabled = running
        self.ui.exportButton.enabled = self.logic.review is not None and not running
        self.ui.nextCaseButton.enabled = p.worklistFolder != Path() and not running
        self.choiceBoxes.showParameterNode(p)
        if self.logic.review is not None:
            self.logic.set_heatmap_display(p.heatmapThreshold, p.heatmapOpacity)

    def onAnalyze(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to start the analysis."), waitCursor=True):
            if self.logic.review is not None and not self.logic.exported and not slicer.util.confirmOkCancelDisplay(
                    _("The new analysis replaces the current segments, and this case was not exported: any "
                      "corrections made to them would be lost. Analyse anyway?")):
                return
            ensureRequirements()
            p = self._parameterNode
            versions = {"segmenter": p.segmenterVersion} if p.segmenterVersion else {}
            # optional: a segment replacing the artery model's territory
            self.logic.analyze_async(p.inputVolume, device=p.device.value, explainer=p.explainer.value,
                                     model_versions=versions, artery_segmentation=p.arterySegmentation,
                                     artery_segment_id=p.arterySegmentId or None,
                                     on_progress=self.reviewPanel.showProgress, on_finished=self.onAnalysisFinished)
            self.reviewPanel.showStatus(_("Starting the analysis..."), progress=0)
            self.onParameterNodeModified()

    def onCancel(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to cancel the analysis."), waitCursor=True):
            self.logic.cancel()
            self.reviewPanel.showStatus(_("Cancelling..."))

    def onAnalysisFinished(self, state: str, error: str | None) -> None:
        self.onParameterNodeModified()
        if state == "cancelled":
            self.reviewPanel.showStatus(_("The analysis was cancelled."), progress=0)
            return
        with slicer.util.tryWithErrorDisplay(_("The analysis failed."), waitCursor=True):
            if error:
                self.reviewPanel.showStatus(_("The analysis failed: {reason}").format(reason=error))
                raise RuntimeError(error)
            self.showReview()

    def showReview(self) -> None:
        """Show the loaded review and start the review fields from the model's call (also when the analysis
        ended while another module was shown, so the Widget holds no parameter node)."""
        self.reviewPanel.show(self.logic.review, self._parameterNode or self.logic.getParameterNode())
        self.onParameterNodeModified()

    def onExport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Export to training failed."), waitCursor=True):
            p = self._parameterNode
            record = self.logic.export(p.datastoreFolder, p.caseId, p.reviewer, p.studyLabelPositive,
                                       segment_id=p.correctedSegmentId or None)
            self.reviewPanel.showStatus(_("Exported {case} as version {version} ({decision}).").format(
                case=record.case_id, version=record.version, decision=record.label_decision))

    def onNextCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not open the next case."), waitCursor=True):
            if self.logic.review is not None and not self.logic.exported and not slicer.util.confirmOkCancelDisplay(
                    _("The current case was not exported. Leave it for now?")):
                return
            p = self._parameterNode
            study = self.logic.next_case(p.worklistFolder, p.datastoreFolder)
            if study is None:
                self.reviewPanel.showStatus(_("Every study of the worklist is reviewed (or passed over today)."))
                return
            with slicer.util.NodeModify(p):
                p.inputVolume, p.caseId = self.logic.case_node, study.study_id
            self.reviewPanel.clear()
            if self.logic.review is not None:
                self.showReview()
            else:
                self.reviewPanel.showStatus(_("Opened {case}; it has no analysis yet: press Analyze.").format(
                    case=study.study_id))


class PELabelUpLogic(ScriptedLoadableModuleLogic):
    """Runs without the Widget: the analysis worker child (polled by a timer), the review, export and the next case.

    Settings come as arguments (the Widget reads them from the parameter node). Bad values raise ``ValueError``
    naming the value; nothing here opens a dialog. The review itself is a ``PELabelUpLib.slicer_review.ReviewSession``;
    the analysis child runs in a :class:`~PELabelUpQt.analysis_runner.AnalysisRunner`.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._session = None
        self._runner = AnalysisRunner(lambda: self.session)

    def getParameterNode(self) -> PELabelUpParameterNode:
        return PELabelUpParameterNode(super().getParameterNode())

    @property
    def session(self):
        """The review session on Slicer's scene (``PELabelUpLib.mrml`` is imported on first use)."""
        if self._session is None:
            from PELabelUpLib.mrml import SlicerLogics
            from PELabelUpLib.slicer_review import ReviewSession

            self._session = ReviewSession(SlicerLogics.from_application_logic(slicer.app.applicationLogic()))
        return self._session

    @property
    def review(self):
        return self._session.review if self._session is not None else None

    @property
    def exported(self) -> bool:
        return bool(self._session is not None and self._session.exported)

    @property
    def case_node(self):
        return self._session.case.ct if self._session is not None and self._session.case else None

    @property
    def case_id(self) -> str | None:
        return self._session.case.case_id if self._session is not None and self._session.case else None

    @property
    def process(self):
        """The last analysis (a ``PELabelUpLib.slicer_worker.WorkerJob`` of the worker child), ``None`` before the first."""
        return self._runner.process

    @property
    def is_running(self) -> bool:
        return self._runner.is_running

    def analyze_async(self, input_volume, *, output_folder=None, device: str = "auto", explainer: str = DEFAULT_EXPLAINER,
                      model_versions=None, models_dir=None, artery_segmentation=None, artery_segment_id=None,
                      on_progress=None, on_finished=None) -> Path:
        """Start ``pelabelup analyze`` on ``input_volume`` in a child process and return its output folder.

        ``on_progress(event)`` gets each progress event; ``on_finished(state, error)`` is called once with state
        ``done`` (the results are loaded: :attr:`review`), ``failed`` (``error`` says why) or ``cancelled``.
        ``artery_segmentation`` and ``artery_segment_id``: a pulmonary-artery segment (the review's corrected
        "Pulmonary arteries", or another tool's) used as the artery territory instead of the artery model's.
        """
        artery_segment = (artery_segmentation, artery_segment_id) if artery_segmentation and artery_segment_id \
            else None
        return self._runner.start(input_volume, output_folder=output_folder, on_progress=on_progress,
                                  on_finished=on_finished, device=device, explainer=explainer,
                                  model_versions=model_versions, models_dir=models_dir, artery_segment=artery_segment)

    def cancel(self) -> bool:
        """Ask the running analysis to stop (its end reaches ``on_finished``); False when none runs."""
        return self._runner.cancel()

    def close_worker(self) -> None:
        """End the analysis worker, which keeps the models loaded between analyses (the next analysis starts one)."""
        self._runner.close()

    def wait(self, timeout_s: float) -> str:
        """Process Qt events until the analysis has ended and been loaded; returns its state (tests, scripts)."""
        return self._runner.wait(timeout_s)

    def set_heatmap_display(self, threshold: float, opacity: float) -> None:
        self.session.set_heatmap_display(threshold, opacity)

    def center_on_embolus(self, row: int):
        return self.session.center_on_embolus(row)

    def jump_to_slice(self, k: int):
        return self.session.jump_to_slice(k)

    def export(self, datastore_folder, case_id: str, reviewer: str, study_label: bool, *, segment_id=None):
        """Export the corrected segment to the training datastore; returns the datastore's ``ExportRecord``."""
        if self.is_running:
            raise RuntimeError("an analysis is running: wait for it before exporting")
        return self.session.export(datastore_folder, case_id, reviewer, study_label, segment_id=segment_id)

    def next_case(self, worklist_folder, datastore_folder):
        """Open the worklist's next unreviewed study (and its analysis); ``None`` when none is left."""
        if self.is_running:
            raise RuntimeError("an analysis is running: cancel it or wait for it")
        return self.session.next_case(worklist_folder, datastore_folder)

    def forget_case(self) -> None:
        """The scene is closing: stop the analysis (its results are not loaded) and drop the session (its nodes go
        with the scene)."""
        self._runner.abandon()
        self._session = None


class PELabelUpTest(ScriptedLoadableModuleTest):
    """The review loop inside Slicer: worklist -> analysis (bundled models) -> edit -> export -> next case."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_review_loop()
        self.test_widget_binds_the_parameter_node()

    def test_review_loop(self):
        self.assertEqual([r.pip for r in missing_requirements()], [], "install the Python requirements first")
        from PELabelUpLib.datastore import Datastore
        from PELabelUpLib.io import read_label_file, write_volume
        from PELabelUpLib.mrml import corrected_mask, set_segment_mask
        from PELabelUpLib.synthetic.phantom import generate_phantom

        root = Path(tempfile.mkdtemp(prefix="PELabelUpTest-", dir=slicer.app.temporaryPath))
        case = generate_phantom(3, size_xy=128, n_slices=64, positive=True)
        write_volume(case.ct, root / "worklist" / "phantom-a.nrrd")
        shutil.copy(root / "worklist" / "phantom-a.nrrd", root / "worklist" / "phantom-b.nrrd")
        logic = PELabelUpLogic()
        study = logic.next_case(root / "worklist", root / "datastore")
        self.assertEqual((study.study_id, logic.review), ("phantom-a", None))
        self.delayDisplay("Analysing a synthetic study")
        out = logic.analyze_async(logic.case_node, device="cpu")
        self.assertEqual(out, root / "worklist" / "analysis" / "phantom-a")
        self.assertEqual(logic.wait(timeout_s=900), "done", logic.process.error_message())
        logic.close_worker()

        review = logic.review
        self.assertIs(review.ct, logic.case_node)
        self.assertEqual(review.heatmap.GetImageData().GetDimensions(), review.ct.GetImageData().GetDimensions())
        self.assertAlmostEqual(float(review.ct.GetAttribute("PELabelUp.PEProbability")),
                               review.record.pe_probability, places=5)
        pseudomask_id = logic.session.correctable_segments()[0][0]
        self.assertEqual(review.segment_ids["PE pseudo-mask"], pseudomask_id)
        self.assertEqual(review.emboli_table.GetNumberOfRows(), len(review.record.emboli))
        self.assertEqual(review.slice_table.GetNumberOfRows(), case.ct.geometry.size[2])

        self.delayDisplay("Correcting the artery territory and analysing again with it")
        arteries_id = review.segment_ids["Pulmonary arteries"]
        set_segment_mask(review.segmentation, arteries_id, case.arteries > 0, review.ct)
        again = logic.analyze_async(logic.case_node, output_folder=root / "again", device="cpu",
                                    artery_segmentation=review.segmentation, artery_segment_id=arteries_id)
        self.assertEqual(logic.wait(timeout_s=900), "done", logic.process.error_message())
        logic.close_worker()
        given = json.loads((again / "result.json").read_text())["territory"]
        self.assertEqual((given["source"], given["file"]), ("file", "arteries-given.nrrd"))
        self.assertEqual(given["voxels"], int((case.arteries > 0).sum()) + given["holes_filled_voxels"])
        review = logic.review
        self.assertEqual(Path(review.record.folder).resolve(), again.resolve())

        self.delayDisplay("Editing the pseudo-mask and exporting it")
        added = case.arteries > 0
        added[:, :, : added.shape[2] // 2] = False  # paint the arterial lumen in one half of the grid
        set_segment_mask(review.segmentation, pseudomask_id, added, review.ct, mode="paint")
        expected = corrected_mask(review.segmentation, pseudomask_id, review.ct)
        self.assertTrue(expected[added].all())
        record = logic.export(root / "datastore", "phantom-a", "PELabelUp self-test", True)
        self.assertEqual(record.version, 1)
        row = Datastore(root / "datastore", create=False).latest("phantom-a")
        self.assertEqual((row.reviewer, row.study_label, row.version), ("PELabelUp self-test", True, 1))
        final, _geometry = read_label_file(row.final_mask_path)
        self.assertEqual(int((final > 0).sum()), int(expected.sum()))

        self.assertEqual(logic.next_case(root / "worklist", root / "datastore").study_id, "phantom-b")
        self.delayDisplay("Review loop passed")

    def test_widget_binds_the_parameter_node(self):
        widget = slicer.util.getModuleWidget("PELabelUp")
        widget.initializeParameterNode()  # what entering the module does (the scene was cleared since setup)
        parameters = widget.logic.getParameterNode()
        parameters.heatmapThreshold = 0.35
        parameters.device = Device.cpu
        slicer.app.processEvents()
        self.assertAlmostEqual(widget.ui.heatmapThresholdSlider.value, 0.35)
        self.assertEqual(widget.ui.deviceComboBox.currentText, Device.cpu.label())

        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "arteries")
        segmentation.GetSegmentation().AddEmptySegment("left", "left pulmonary artery")
        rightId = segmentation.GetSegmentation().AddEmptySegment("right", "right pulmonary artery")
        parameters.arterySegmentation, parameters.arterySegmentId = segmentation, rightId
        slicer.app.processEvents()
        selector = widget.ui.arterySegmentSelector
        self.assertEqual((selector.currentNode(), selector.currentSegmentID()), (segmentation, rightId))
        selector.setCurrentSegmentID("left")  # the reader's choice goes into the parameter node (saved with the scene)
        slicer.app.processEvents()
        self.assertEqual(parameters.arterySegmentId, "left")
        selector.setCurrentNode(None)
        slicer.app.processEvents()
        self.assertIsNone(parameters.arterySegmentation)
        self.delayDisplay("Widget bindings passed")
