"""The module's analysis in a child process, driven from Slicer's GUI thread by a Qt timer.

The CT node goes to the child as a file (the case's own file when it still holds what was loaded from it, else
a copy in a work folder under Slicer's temporary folder); a chosen pulmonary-artery segment goes beside it, written
on the CT's grid, and replaces the artery model's territory. The child is a long-lived ``pelabelup serve`` worker
(``PELabelUpLib.slicer_worker``): it loads the models once and is kept for the next analysis while the device,
explainer and models stay the same, so only the first analysis pays for starting torch (and CUDA). A
``qt.QTimer`` reads the worker's progress lines, so Slicer stays responsive and never imports torch. When an
analysis has ended its results are loaded into the review session and the work folder is removed. Cancel ends the
worker (the analysis in progress leaves nothing); the next analysis starts a fresh one. The worker ends with
Slicer (its stdin closes) or with :meth:`AnalysisRunner.close`.
"""

import contextlib
import logging
import shutil
import tempfile
import time
from pathlib import Path

import qt
import slicer

from PELabelUpLib.slicer_process import child_python
from PELabelUpLib.slicer_worker import AnalysisWorker, WorkerJob, build_serve_command


class AnalysisRunner:
    """One analysis at a time for a ``PELabelUpLib.slicer_review.ReviewSession``.

    Args:
        session: a callable returning the review session (the Logic creates it on first use).
        interval_ms: how often the timer reads the child's output.
    """

    POLL_INTERVAL_MS = 200

    def __init__(self, session, interval_ms: int = POLL_INTERVAL_MS) -> None:
        self.process: WorkerJob | None = None
        self._worker: AnalysisWorker | None = None
        self._session = session
        self._run = None  # (CT node, work folder, on_progress, on_finished) of the analysis in progress
        self._abandoned = False  # its results must not be loaded (the scene closed, or the module)
        self.final_state = "not started"  # of the last analysis, once ended and loaded (or not)
        self._timer = qt.QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.connect("timeout()", self._poll)

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.state == "running"

    def start(self, input_volume, *, output_folder=None, on_progress=None, on_finished=None, artery_segment=None,
              **options) -> Path:
        """Start the analysis of ``input_volume`` in the worker (started first when needed) and return its output
        folder.

        Args:
            input_volume: the CT volume node.
            output_folder: where the analysis goes; ``None``: the case's analysis folder, else the work folder.
            on_progress: called with each progress event.
            on_finished: called once as ``on_finished(state, error)``, state ``done`` (the results are loaded
                into the session), ``failed`` (``error`` says why) or ``cancelled``.
            artery_segment: ``(segmentation node, segment ID)`` of a pulmonary-artery segment used as the artery
                territory instead of the artery model's; ``None``: the model's.
            **options: for :func:`~PELabelUpLib.slicer_worker.build_serve_command` (``device``,
                ``explainer``, ``model_versions``, ``models_dir``).

        Raises:
            RuntimeError: an analysis is running.
            ValueError: the artery segment is unknown or empty.
        """
        if self.is_running:
            raise RuntimeError("an analysis is running already: cancel it or wait for it")
        session = self._session()
        work = Path(tempfile.mkdtemp(prefix="PELabelUp-", dir=slicer.app.temporaryPath))
        out = Path(output_folder) if output_folder else session.output_folder(input_volume, work)
        try:
            arteries = session.artery_input(*artery_segment, input_volume, work) if artery_segment else None
        except Exception:
            shutil.rmtree(work, ignore_errors=True)
            raise
        command = build_serve_command(python_executable=child_python(), base_env=slicer.util.startupEnvironment(),
                                      **options)
        if self._worker is None or not self._worker.alive or self._worker.command != command:
            self.close()
            self._worker = AnalysisWorker(command)
            self._worker.start()
        self.process = self._worker.submit(session.analysis_input(input_volume, work), out, arteries=arteries)
        self._run, self._abandoned, self.final_state = (input_volume, work, on_progress, on_finished), False, "running"
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
        if self._abandoned or ct.GetScene() is None:  # the CT has left the scene: nothing to load it onto
            state, error = "cancelled", None
        elif state == "done":
            try:
                self._session().load_results(self.process.out_dir, ct)
            except Exception as exc:  # reported to the caller rather than lost in Qt's event loop
                logging.exception("PELabelUp: loading %s failed", self.process.out_dir)
                state, error = "failed", str(exc)
        for written in work.iterdir():
            if written.is_file():  # the CT and artery mask written for the worker; not an analysis folder in it
                written.unlink()
        with contextlib.suppress(OSError):
            work.rmdir()  # kept when the analysis was written into it
        self.final_state = state
        if on_finished:
            on_finished(state, error)

    def cancel(self) -> bool:
        """Ask the running analysis to stop (its end reaches ``on_finished``); False when none runs."""
        if not self.is_running:
            return False
        self.process.cancel()
        return True

    def abandon(self) -> None:
        """The scene is closing: cancel the running analysis, whose results must not be loaded even when it has
        just finished (its end still reaches ``on_finished``, as ``cancelled``)."""
        if self._timer.isActive():
            self._abandoned = True
            self.cancel()

    def close(self) -> None:
        """End the worker (a running analysis is abandoned); the next analysis starts a fresh one."""
        running = self._timer.isActive()
        if running:
            self._abandoned = True
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if running:  # the worker has ended: report the end now rather than from a timer that may outlive us
            try:
                self.process.wait(timeout_s=5.0)
            except TimeoutError:
                self.process.abandon()  # its last lines never came: cancelled all the same
            self._poll()
        self._timer.stop()

    def wait(self, timeout_s: float) -> str:
        """Process Qt events until the analysis has ended and been loaded; returns its final state (``done`` only
        when its results were loaded; tests, scripts)."""
        deadline = time.monotonic() + timeout_s
        while self._timer.isActive():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the analysis did not end within {timeout_s:.0f} s")
            slicer.app.processEvents()
            time.sleep(0.05)
        return self.final_state
