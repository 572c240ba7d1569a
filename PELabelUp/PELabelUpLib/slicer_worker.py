"""The 3D Slicer module's long-lived analysis child: one ``pelabelup serve`` process for many analyses.

A fresh ``pelabelup analyze`` child pays for importing torch and loading the models every time (on a GPU also
for starting CUDA: 11-15 s on an H200, about as long as a whole warm analysis). :class:`AnalysisWorker` starts
``pelabelup serve`` once (:mod:`~PELabelUpLib.analysis.serve` has the protocol) and sends it one request per
analysis; each request is a :class:`WorkerJob`, polled exactly like an
:class:`~PELabelUpLib.slicer_process.AnalysisProcess` (``poll``, ``state``, ``cancel``, ``wait``,
``error_message``, ``out_dir``). Cancel ends the worker (SIGTERM: the analysis in progress leaves nothing); the
next analysis starts a fresh one. Closing the worker's stdin (:meth:`AnalysisWorker.close`, or the parent's exit)
ends it. Plain Python: no Qt, no Slicer, no torch.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .analysis.progress import ProgressEvent
from .analysis.requests import FAILED, READY, Request
from .explain.registry import DEFAULT_EXPLAINER
from .slicer_process import (
    CLI_MODULE,
    PACKAGE_ROOT,
    ChildPipes,
    ProcessState,
    ProgressStream,
    analysis_paths,
    child_environment,
    kill_if_overdue,
    last_error_line,
    model_options,
    poll_until_ended,
    start_child,
)

log = logging.getLogger(__name__)

#: the stage of a successful analysis's last line
DONE = "done"
#: the fraction a job reports when the worker's models are loaded (``pelabelup analyze``'s ``models`` step ends there)
MODELS_LOADED = 0.05


@dataclass(frozen=True)
class ServeCommand:
    """A ``pelabelup serve`` child: argument vector and full environment. Equal commands can share a worker."""

    argv: tuple[str, ...]
    env: dict[str, str]


def build_serve_command(*, python_executable: str | Path, device: str = "auto", explainer: str = DEFAULT_EXPLAINER,
                        model_versions: Mapping[str, str] | None = None, models_dir: str | Path | None = None,
                        base_env: Mapping[str, str] | None = None, package_root: str | Path = PACKAGE_ROOT
                        ) -> ServeCommand:
    """The worker's command line, checked like :func:`~PELabelUpLib.slicer_process.build_analyze_command`'s
    (same arguments but the input and output, which each request names). Raises ``ValueError`` likewise."""
    python, options = model_options(python_executable, device=device, explainer=explainer,
                                    model_versions=model_versions, models_dir=models_dir)
    return ServeCommand(argv=(python, "-m", CLI_MODULE, "serve", *options),
                        env=child_environment(base_env, package_root))


class WorkerJob:
    """One analysis of an :class:`AnalysisWorker` (made by :meth:`AnalysisWorker.submit`)."""

    def __init__(self, worker: AnalysisWorker, request_id: str, out_dir: Path) -> None:
        self.worker, self.request_id, self.out_dir = worker, request_id, out_dir
        self._state: ProcessState = "running"
        self._error: str | None = None

    @property
    def state(self) -> ProcessState:
        """``running``, then ``done``, ``failed`` or ``cancelled``."""
        return self._state

    def _end(self, state: ProcessState, error: str | None = None) -> None:
        if self._state == "running":
            self._state, self._error = state, error

    def poll(self) -> list[ProgressEvent]:
        """This job's events since the last call; never blocks (see :meth:`AnalysisWorker.poll`)."""
        return self.worker.poll()

    def abandon(self) -> None:
        """Count this analysis as cancelled without waiting for the worker to say so (its worker was closed)."""
        self._end("cancelled")

    def cancel(self) -> None:
        """Stop this analysis: the worker is ended (SIGTERM), the next analysis starts a fresh one."""
        if self._state == "running":
            self.worker.terminate()

    def wait(self, timeout_s: float, interval_s: float = 0.05) -> list[ProgressEvent]:
        """Poll until the job has ended; raises ``TimeoutError`` after ``timeout_s`` (the job goes on)."""
        return poll_until_ended(self.poll, lambda: self._state != "running", timeout_s, interval_s, "the analysis")

    def error_message(self) -> str:
        """One line saying why the job did not finish."""
        if self._state == "cancelled":
            return "the analysis was cancelled"
        return self._error or "the analysis ended without a result"


class AnalysisWorker:
    """A ``pelabelup serve`` child that runs one :class:`WorkerJob` at a time, polled without blocking.

    Args:
        command: from :func:`build_serve_command`.
        kill_after_s: after :meth:`terminate`, how long :meth:`poll` waits for the child before killing it.
    """

    def __init__(self, command: ServeCommand, *, kill_after_s: float = 20.0) -> None:
        self.command = command
        self.kill_after_s = float(kill_after_s)
        self.stream = ProgressStream()
        self.stderr_lines: deque[str] = deque(maxlen=200)
        self.ready = False
        self.job: WorkerJob | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._pipes = ChildPipes()
        self._terminated_at: float | None = None
        self._requests = 0

    def start(self) -> None:
        """Start the child (the models load while the first request waits in its stdin)."""
        if self._proc is not None:
            raise RuntimeError("this worker was started already")
        self._proc = start_child(self.command.argv, self.command.env, self._pipes, "pelabelup-serve",
                                 stdin=subprocess.PIPE)
        log.info("analysis worker %d: %s", self._proc.pid, " ".join(self.command.argv))

    @property
    def alive(self) -> bool:
        """Started, not asked to stop, and not ended (as far as :meth:`poll` has seen)."""
        return self._proc is not None and self._terminated_at is None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has ended (``None`` before)."""
        return self._proc.poll() if self._proc is not None else None

    def submit(self, input_path: str | Path, out_dir: str | Path, *, arteries: str | Path | None = None) -> WorkerJob:
        """Send one analysis request and return its job; ``arteries``: an artery mask on the CT's grid to use as
        the territory instead of the artery model's (``pelabelup analyze --arteries``).

        Raises:
            ValueError: a missing input or artery mask, or an existing output folder (nothing is sent).
            RuntimeError: the worker is not running, or a job is still running.
        """
        input_path, out_dir = analysis_paths(input_path, out_dir)
        if arteries is not None and not Path(arteries).is_file():
            raise ValueError(f"artery mask not found: {arteries}")
        if not self.alive:
            raise RuntimeError(f"the analysis worker is not running{self._why_ended()}")
        if self.job is not None and self.job.state == "running":
            raise RuntimeError("the analysis worker is busy: wait for its analysis or cancel it")
        request_id = f"{self._requests}:{out_dir.name}"
        self._requests += 1
        self.job = WorkerJob(self, request_id, out_dir)
        try:
            # absolute: the child keeps the working folder it started in, the parent may have moved since
            request = Request(input=input_path.absolute(), out=out_dir.absolute(), id=request_id,
                              arteries=None if arteries is None else Path(arteries).absolute())
            self._proc.stdin.write(request.to_json() + "\n")
            self._proc.stdin.flush()
        except OSError as exc:  # it ended meanwhile (a closed pipe)
            self.job._end("failed", f"the analysis worker is not running{self._why_ended()}")
            raise RuntimeError(self.job.error_message()) from exc
        return self.job

    def poll(self) -> list[ProgressEvent]:
        """The current job's events since the last call; never blocks. The worker's start-up lines reach the job
        waiting for it as its ``models`` stage (fractions 0 to 0.05, as ``pelabelup analyze`` reports them). Ends
        the job on its ``done`` or ``failed`` line, or when the child ends; kills a terminated child that outlived
        ``kill_after_s``."""
        if self._proc is None:
            return []
        self.stderr_lines.extend(line.rstrip("\n") for line in self._pipes.drain("stderr"))
        events = []
        for event in self.stream.feed("".join(self._pipes.drain("stdout"))):
            if event.input is None:  # the worker's start-up: shown as the waiting job's "models" stage
                self.ready = self.ready or event.stage == READY
                if self.job is not None and self.job.state == "running":
                    events.append(ProgressEvent("models", MODELS_LOADED if event.stage == READY else 0.0,
                                                event.message, input=self.job.request_id))
            elif self.job is not None and event.input == self.job.request_id:
                events.append(event)
                if event.stage == DONE and event.fraction >= 1.0:
                    self.job._end("done")
                elif event.stage == FAILED:
                    self.job._end("failed", event.message)
        kill_if_overdue(self._proc, self._terminated_at, self.kill_after_s, "analysis worker")
        if self._pipes.closed and self._proc.poll() is not None and self.job is not None:
            self.job._end("cancelled" if self._terminated_at is not None else "failed", self._last_error())
        return events

    def _why_ended(self) -> str:
        """``: <its last error line>`` once the child has ended, else nothing."""
        if self._proc is None or self._proc.poll() is None:
            return ""
        self._proc.wait()
        deadline = time.monotonic() + 5.0
        while not self._pipes.closed and time.monotonic() < deadline:  # its last words are in the pipes
            self.stderr_lines.extend(line.rstrip("\n") for line in self._pipes.drain("stderr"))
            self._pipes.drain("stdout")
            time.sleep(0.01)
        return f": {self._last_error()}"

    def _last_error(self) -> str:
        return last_error_line(self.stderr_lines) or f"the analysis worker ended with exit status {self._proc.returncode}"

    def terminate(self) -> None:
        """End the child now (SIGTERM; the analysis in progress leaves nothing); :meth:`poll` reports the job's end."""
        if self._proc is None or self._terminated_at is not None:
            return
        self._terminated_at = time.monotonic()
        if self._proc.poll() is None:
            self._proc.terminate()

    def close(self, timeout_s: float = 10.0) -> int | None:
        """End the child at its next request boundary (its stdin is closed; a running job is cancelled first).
        Returns its exit status, ``None`` when it did not end within ``timeout_s`` (it is then killed)."""
        if self._proc is None:
            return None
        if self.job is not None and self.job.state == "running":
            self.terminate()
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._terminated_at = self._terminated_at or time.monotonic()
            self._proc.kill()  # deaf to SIGTERM (or stuck in a long native call): nothing may outlive the module
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5.0)
            return None
