"""PELabelUp: the 3D Slicer module (descriptor, parameter node, Widget, Logic, Test; Slicer's template order).

The GUI process never imports torch: Analyze runs ``pelabelup analyze`` in a child Python
(``PELabelUpLib.slicer_process``); everything else calls ``PELabelUpLib.mrml`` and ``PELabelUpLib.datastore``,
imported when first needed so that the module loads before its Python requirements are installed.
No ``from __future__ import annotations`` here: Slicer's parameter node wrapper reads the annotations at run time.
The Test keeps the ``unittest`` assertions of Slicer's template (Slicer's runner reports them).
"""
# ruff: noqa: PT009

import contextlib
import enum
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
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

from PELabelUpLib.explain.registry import EXPLAINERS
from PELabelUpLib.models.registry import list_model_versions
from PELabelUpLib.slicer_process import (
    STUDY_THRESHOLD,
    AnalysisProcess,
    ProgressEvent,
    build_analyze_command,
    child_python,
    missing_requirements,
)

MODULE_DIR = Path(__file__).resolve().parent


def resourcePath(relative: str) -> str:
    """A resource file: ``Resources/`` beside the module (built extension) or one folder up (source checkout)."""
    for root in (MODULE_DIR, MODULE_DIR.parent):
        candidate = root / "Resources" / relative
        if candidate.exists():
            return str(candidate)
    return str(MODULE_DIR / "Resources" / relative)


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
<b>Research software, not for clinical use.</b>
""")
        self.parent.acknowledgementText = _("""
After "Label up: Learning Pulmonary Embolism Segmentation from Image Level Annotation through Model
Explainability" (Condrea, Rapaka, Leordeanu). Built on 3D Slicer, PyTorch and MONAI.
""")
        icon = Path(resourcePath("Icons/PELabelUp.png"))
        if icon.is_file():
            self.parent.icon = qt.QIcon(str(icon))


class Device(enum.Enum):
    """Where the analysis runs its networks (``pelabelup analyze --device``)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"

    def label(self) -> str:
        return {"auto": _("Automatic (GPU when available)"), "cpu": _("CPU"), "cuda": _("GPU (CUDA)")}[self.value]


class _RegisteredExplainer(enum.Enum):
    def label(self) -> str:
        return EXPLAINERS[self.value].label


#: the explainers of PELabelUpLib.explain.registry, as the parameter node's choices
Explainer = _RegisteredExplainer("Explainer", [(name, name) for name in EXPLAINERS])


@parameterNodeWrapper
class PELabelUpParameterNode:
    """The module's settings, saved with the scene.

    inputVolume - the CT to analyse. device, explainer - how the analysis runs.
    segmenterVersion - "" (bundled), "latest" or an exact version of the emboli segmenter.
    heatmapThreshold - heat below it is transparent (0..1). heatmapOpacity - the heatmap layer's opacity (0..1).
    caseId - the case's datastore ID. reviewer - who reviews. studyLabelPositive - the reviewer's study label.
    correctedSegmentId - the segment exported as the corrected mask.
    datastoreFolder - the training datastore. worklistFolder - the studies waiting for review.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    device: Device = Device.auto
    explainer: Explainer
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
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(resourcePath("UI/PELabelUp.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PELabelUpLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.analyzeButton.connect("clicked(bool)", self.onAnalyze)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.nextCaseButton.connect("clicked(bool)", self.onNextCase)
        self.ui.modelVersionComboBox.connect("currentIndexChanged(int)", self.onModelVersionChosen)
        self.ui.correctedSegmentComboBox.connect("currentIndexChanged(int)", self.onCorrectedSegmentChosen)
        self.ui.emboliTableView.connect("clicked(QModelIndex)", self.onEmbolusClicked)
        self.ui.slicePlotWidget.plotView().connect("dataSelected(vtkStringArray*,vtkCollection*)", self.onSlicePicked)
        self.fillModelVersions()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        if self.logic is not None:
            self.logic.cancel()  # no analysis child outlives the module

    def enter(self) -> None:
        self.initializeParameterNode()
        self.fillModelVersions()  # fine-tuned versions may have been added meanwhile
        self.ui.segmentEditorWidget.installKeyboardShortcuts()

    def exit(self) -> None:
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.ui.segmentEditorWidget.removeViewObservations()
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.logic.forget_case()
        self.ui.segmentEditorWidget.setSegmentationNode(None)
        self.ui.segmentEditorWidget.removeViewObservations()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(self.logic.segment_editor_node())
        self.ui.slicePlotWidget.setMRMLPlotViewNode(self.logic.plot_view_node())
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
        self._select(self.ui.modelVersionComboBox, p.segmenterVersion)
        self._select(self.ui.correctedSegmentComboBox, p.correctedSegmentId)
        if self.logic.review is not None:
            self.logic.set_heatmap_display(p.heatmapThreshold, p.heatmapOpacity)
        self.ui.analyzeButton.enabled = bool(p.inputVolume) and not running
        self.ui.cancelButton.enabled = running
        self.ui.exportButton.enabled = self.logic.review is not None and not running
        self.ui.nextCaseButton.enabled = p.worklistFolder != Path() and not running

    @staticmethod
    def _select(comboBox, value: str) -> None:
        index = comboBox.findData(value)
        if index >= 0 and index != comboBox.currentIndex:
            comboBox.currentIndex = index

    def fillModelVersions(self) -> None:
        """The segmenter versions on the models search path (the model registry's), bundled first."""
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
        if self._parameterNode is not None:
            self._select(combo, self._parameterNode.segmenterVersion)

    def onModelVersionChosen(self, index: int) -> None:
        if self._parameterNode is not None and index >= 0:
            self._parameterNode.segmenterVersion = self.ui.modelVersionComboBox.itemData(index) or ""

    def onCorrectedSegmentChosen(self, index: int) -> None:
        if self._parameterNode is not None and index >= 0:
            self._parameterNode.correctedSegmentId = self.ui.correctedSegmentComboBox.itemData(index) or ""

    def ensureRequirements(self) -> None:
        """Install what the analysis needs, after the user agreed (torch through the PyTorch extension)."""
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

    def onAnalyze(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to start the analysis."), waitCursor=True):
            self.ensureRequirements()
            p = self._parameterNode
            versions = {"segmenter": p.segmenterVersion} if p.segmenterVersion else {}
            self.logic.analyze_async(p.inputVolume, device=p.device.value, explainer=p.explainer.value,
                                     model_versions=versions, on_progress=self.onProgress,
                                     on_finished=self.onAnalysisFinished)
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("Starting the analysis...")
            self.onParameterNodeModified()

    def onCancel(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to cancel the analysis."), waitCursor=True):
            self.logic.cancel()
            self.ui.statusLabel.text = _("Cancelling...")

    def onProgress(self, event: ProgressEvent) -> None:
        self.ui.progressBar.value = int(round(1000 * event.fraction))
        self.ui.statusLabel.text = f"{event.stage}: {event.message}"

    def onAnalysisFinished(self, state: str, error: str | None) -> None:
        self.onParameterNodeModified()
        if state == "cancelled":
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("The analysis was cancelled.")
            return
        with slicer.util.tryWithErrorDisplay(_("The analysis failed."), waitCursor=True):
            if error:
                self.ui.statusLabel.text = _("The analysis failed: {reason}").format(reason=error)
                raise RuntimeError(error)
            self.showReview()

    def showReview(self) -> None:
        """Point the result widgets at the loaded review and start the review fields from the model's call."""
        review, p = self.logic.review, self._parameterNode
        probability = review.record.pe_probability
        call = _("PE present") if probability >= STUDY_THRESHOLD else _("no PE")
        self.ui.peProbabilityLabel.text = _("{probability:.1%} (model: {call})").format(probability=probability,
                                                                                         call=call)
        self.ui.emboliTableView.setMRMLTableNode(review.emboli_table)
        self.logic.plot_view_node().SetPlotChartNodeID(review.slice_chart.GetID())
        self.ui.segmentEditorWidget.setSegmentationNode(review.segmentation)
        self.ui.segmentEditorWidget.setSourceVolumeNode(review.ct)
        segments = self.logic.session.correctable_segments()
        combo = self.ui.correctedSegmentComboBox
        combo.clear()
        for segment_id, name in segments:
            combo.addItem(name, segment_id)
        with slicer.util.NodeModify(p):
            p.studyLabelPositive = probability >= STUDY_THRESHOLD
            p.correctedSegmentId = segments[0][0] if segments else ""
            p.caseId = self.logic.case_id or review.ct.GetName()
        self.ui.progressBar.value = 1000
        self.ui.statusLabel.text = _("{n} emboli; correct the segment, then export.").format(
            n=review.emboli_table.GetNumberOfRows())
        self.onParameterNodeModified()

    def onEmbolusClicked(self, index) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to show the embolus."), waitCursor=True):
            view = self.ui.emboliTableView
            self.logic.center_on_embolus(view.tableModel().mrmlTableRowIndex(view.sortFilterProxyModel().mapToSource(index)))

    def onSlicePicked(self, seriesIds, selections) -> None:
        """A picked point of the slice plot: its row is the slice index k (the middle one of a box selection)."""
        picked = [selections.GetItemAsObject(n) for n in range(selections.GetNumberOfItems())]
        rows = sorted(int(a.GetValue(i)) for a in picked for i in range(a.GetNumberOfValues()))
        if rows:
            with slicer.util.tryWithErrorDisplay(_("Failed to show the slice."), waitCursor=True):
                self.logic.jump_to_slice(rows[len(rows) // 2])

    def onExport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Export to training failed."), waitCursor=True):
            p = self._parameterNode
            record = self.logic.export(p.datastoreFolder, p.caseId, p.reviewer, p.studyLabelPositive,
                                       segment_id=p.correctedSegmentId or None)
            self.ui.statusLabel.text = _("Exported {case} as version {version} ({decision}).").format(
                case=record.case_id, version=record.version, decision=record.label_decision)

    def onNextCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not open the next case."), waitCursor=True):
            if self.logic.review is not None and not self.logic.exported and not slicer.util.confirmOkCancelDisplay(
                    _("The current case was not exported. Leave it for now?")):
                return
            p = self._parameterNode
            study = self.logic.next_case(p.worklistFolder, p.datastoreFolder)
            if study is None:
                self.ui.statusLabel.text = _("Every study of the worklist is reviewed (or passed over today).")
                return
            with slicer.util.NodeModify(p):
                p.inputVolume, p.caseId = self.logic.case_node, study.study_id
            self.ui.peProbabilityLabel.text = "-"
            self.ui.emboliTableView.setMRMLTableNode(None)
            if self.logic.review is not None:
                self.showReview()
            else:
                self.ui.statusLabel.text = _("Opened {case}; it has no analysis yet: press Analyze.").format(
                    case=study.study_id)


class PELabelUpLogic(ScriptedLoadableModuleLogic):
    """Runs without the Widget: the analysis child (polled by a timer), the review, export and the next case.

    Settings come as arguments (the Widget reads them from the parameter node). Bad values raise ``ValueError``
    naming the value; nothing here opens a dialog. The review itself is a ``PELabelUpLib.slicer_review.ReviewSession``.
    """

    POLL_INTERVAL_MS = 200

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.process: AnalysisProcess | None = None
        self._session = None
        self._run = None  # (CT node, work folder, on_progress, on_finished) of the analysis in progress
        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._poll)

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
    def is_running(self) -> bool:
        return self.process is not None and self.process.state == "running"

    def analyze_async(self, input_volume, *, output_folder=None, device: str = "auto", explainer: str = "gradcam",
                      model_versions=None, models_dir=None, on_progress=None, on_finished=None) -> Path:
        """Start ``pelabelup analyze`` on ``input_volume`` in a child process and return its output folder.

        ``on_progress(event)`` gets each progress event; ``on_finished(state, error)`` is called once with state
        ``done`` (the results are loaded: :attr:`review`), ``failed`` (``error`` says why) or ``cancelled``.
        """
        if self.is_running:
            raise RuntimeError("an analysis is running already: cancel it or wait for it")
        session = self.session
        work = Path(tempfile.mkdtemp(prefix="PELabelUp-", dir=slicer.app.temporaryPath))
        out = Path(output_folder) if output_folder else session.output_folder(input_volume, work)
        command = build_analyze_command(
            session.analysis_input(input_volume, work), out, python_executable=child_python(),
            device=device, explainer=explainer, model_versions=model_versions, models_dir=models_dir,
            base_env=slicer.util.startupEnvironment())
        self.process = AnalysisProcess(command)
        self.process.start()
        self._run = (input_volume, work, on_progress, on_finished)
        self._timer.start()
        return out

    def _poll(self) -> None:
        ct, work, on_progress, on_finished = self._run
        for event in self.process.poll():
            if on_progress:
                on_progress(event)
        state = self.process.state
        if state == "running":
            return
        self._timer.stop()
        error = self.process.error_message() if state == "failed" else None
        if state == "done":
            try:
                self.session.load_results(self.process.command.out_dir, ct)
            except Exception as exc:  # reported to the caller rather than lost in Qt's event loop
                logging.exception("PELabelUp: loading %s failed", self.process.command.out_dir)
                state, error = "failed", str(exc)
        (work / "input.nrrd").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            work.rmdir()  # kept when the analysis was written into it
        if on_finished:
            on_finished(state, error)

    def cancel(self) -> bool:
        """Ask the running analysis to stop (its end reaches ``on_finished``); False when none runs."""
        if not self.is_running:
            return False
        self.process.cancel()
        return True

    def wait(self, timeout_s: float) -> str:
        """Process Qt events until the analysis has ended and been loaded; returns its state (tests, scripts)."""
        deadline = time.monotonic() + timeout_s
        while self._timer.isActive():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the analysis did not end within {timeout_s:.0f} s")
            slicer.app.processEvents()
            time.sleep(0.05)
        return self.process.state if self.process is not None else "not started"

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
        """The scene is closing: stop the analysis and drop the session (its nodes go with the scene)."""
        self.cancel()
        self._session = None

    @staticmethod
    def _singleton(class_name: str):
        node = slicer.mrmlScene.GetSingletonNode("PELabelUp", class_name)
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass(class_name)
            node.UnRegister(None)
            node.SetSingletonTag("PELabelUp")
            node = slicer.mrmlScene.AddNode(node)
        return node

    def segment_editor_node(self):
        return self._singleton("vtkMRMLSegmentEditorNode")

    def plot_view_node(self):
        node = self._singleton("vtkMRMLPlotViewNode")
        node.SetInteractionMode(slicer.vtkMRMLPlotViewNode.InteractionModeSelectPoints)
        return node


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

        review = logic.review
        self.assertIs(review.ct, logic.case_node)
        self.assertEqual(review.heatmap.GetImageData().GetDimensions(), review.ct.GetImageData().GetDimensions())
        self.assertAlmostEqual(float(review.ct.GetAttribute("PELabelUp.PEProbability")),
                               review.record.pe_probability, places=5)
        pseudomask_id = logic.session.correctable_segments()[0][0]
        self.assertEqual(review.segment_ids["PE pseudo-mask"], pseudomask_id)
        self.assertEqual(review.emboli_table.GetNumberOfRows(), len(review.record.emboli))
        self.assertEqual(review.slice_table.GetNumberOfRows(), case.ct.geometry.size[2])

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
        self.delayDisplay("Widget bindings passed")
