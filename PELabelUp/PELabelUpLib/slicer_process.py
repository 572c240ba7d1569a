"""Analysis child processes for the 3D Slicer module: command lines, JSON-lines progress, starting and cancelling.

The Slicer GUI process never imports torch. An analysis runs in a child Python (Slicer's ``PythonSlicer``) that
prints one :class:`~.analysis.progress.ProgressEvent` per stdout line and writes an output folder that appears
only complete. The module keeps a long-lived ``pelabelup serve`` child (:mod:`~PELabelUpLib.slicer_worker`);
:class:`AnalysisProcess` runs one ``pelabelup analyze INPUT --out DIR --progress json`` child (scripts, tests).
Cancel sends SIGTERM; the child removes what it was writing and exits with 143
(:data:`~.analysis.interrupt.EXIT_TERMINATED`).

Everything here is plain Python (no Qt, no Slicer, no torch), so the module and the tests share it:
:func:`build_analyze_command` makes the argument vector and environment (:func:`analysis_paths`,
:func:`model_options` and :func:`child_environment` serve the worker's too), :class:`ProgressStream` turns
stdout text into events, :class:`ChildPipes` reads a child's pipes, :func:`kill_if_overdue` ends one that
ignores SIGTERM, :class:`AnalysisProcess` starts the child and is polled without blocking (from a
``qt.QTimer`` in the module), and :func:`missing_requirements` names the packages the child lacks, without
importing them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from .analysis.interrupt import EXIT_TERMINATED
from .analysis.progress import ProgressEvent, parse_progress_line
from .explain.registry import DEFAULT_EXPLAINER, check_explainer
from .models.registry import MODEL_TASKS

log = logging.getLogger(__name__)

#: the ``--device`` choices of ``pelabelup analyze``
DEVICES = ("auto", "cpu", "cuda")
#: the folder holding ``PELabelUpLib`` (put on the child's ``PYTHONPATH``)
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
#: the module run as ``python -m`` in the child
CLI_MODULE = "PELabelUpLib.cli.main"
#: a study is called "PE present" by the model when its probability reaches this
STUDY_THRESHOLD = 0.5

ProcessState = Literal["not started", "running", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class AnalyzeCommand:
    """A ``pelabelup analyze`` child: argument vector, full environment, and the output folder it will create."""

    argv: tuple[str, ...]
    env: dict[str, str]
    out_dir: Path


def build_analyze_command(
    input_path: str | Path,
    out_dir: str | Path,
    *,
    python_executable: str | Path,
    device: str = "auto",
    explainer: str = DEFAULT_EXPLAINER,
    model_versions: Mapping[str, str] | None = None,
    models_dir: str | Path | None = None,
    base_env: Mapping[str, str] | None = None,
    package_root: str | Path = PACKAGE_ROOT,
) -> AnalyzeCommand:
    """The command line of one analysis, checked before anything starts.

    Args:
        input_path: the CT (image file or DICOM folder) as ``pelabelup analyze`` reads it.
        out_dir: the output folder; must not exist (the child creates it whole, or not at all).
        python_executable: the child's Python (``PythonSlicer`` inside Slicer, ``sys.executable`` elsewhere);
            a name is looked up on ``PATH``.
        device: one of :data:`DEVICES`.
        explainer: a registered explainer name (:func:`~.explain.registry.explainer_names`).
        model_versions: model task -> version (``"latest"`` or exact) for ``--model-version TASK=VERSION``.
        models_dir: ``--models-dir`` (the only models folder searched); ``None``: bundled and user models.
        base_env: the child's environment before PELabelUp's additions (Slicer: its startup environment);
            default ``os.environ``.
        package_root: the folder holding ``PELabelUpLib``, put first on the child's ``PYTHONPATH``.

    Raises:
        ValueError: a missing input or Python, an existing output folder, an unknown device, explainer or
            model task, an empty version; the message carries the bad value.
    """
    input_path, out_dir = analysis_paths(input_path, out_dir)
    python, options = model_options(python_executable, device=device, explainer=explainer,
                                    model_versions=model_versions, models_dir=models_dir)
    argv = [python, "-m", CLI_MODULE, "analyze", str(input_path), "--out", str(out_dir), *options, "--progress", "json"]
    env = child_environment(base_env, package_root)
    return AnalyzeCommand(argv=tuple(argv), env=env, out_dir=out_dir)


def analysis_paths(input_path: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """``input_path`` and ``out_dir`` as Paths, checked for one analysis: ``ValueError`` when the input is missing
    or the output folder exists already (an analysis child or a worker request would fail on them)."""
    input_path, out_dir = Path(input_path), Path(out_dir)
    if not input_path.exists():
        raise ValueError(f"input CT not found: {input_path}")
    if out_dir.exists():
        raise ValueError(f"output folder exists already: {out_dir}")
    return input_path, out_dir


def kill_if_overdue(proc: subprocess.Popen[str], terminated_at: float | None, kill_after_s: float,
                    what: str) -> None:
    """Kill ``proc`` when it was sent SIGTERM at ``terminated_at`` (``time.monotonic()``; ``None``: never) and is
    still running ``kill_after_s`` later."""
    if terminated_at is not None and proc.poll() is None and time.monotonic() - terminated_at > kill_after_s:
        log.warning("%s %d ignored SIGTERM for %.0f s: killing it", what, proc.pid, kill_after_s)
        proc.kill()


def model_options(python_executable: str | Path, *, device: str, explainer: str,
                  model_versions: Mapping[str, str] | None, models_dir: str | Path | None) -> tuple[str, list[str]]:
    """The child's Python, found on ``PATH``, and the model options that ``pelabelup analyze`` and ``pelabelup serve``
    share, checked (see :func:`build_analyze_command` for the arguments and the errors)."""
    python = shutil.which(str(python_executable))
    if python is None:
        raise ValueError(f"Python executable not found: {python_executable}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    check_explainer(explainer)
    options = ["--device", device, "--explainer", explainer]
    for task, version in (model_versions or {}).items():
        if task not in MODEL_TASKS:
            raise ValueError(f"unknown model task {task!r}; known: {', '.join(MODEL_TASKS)}")
        if not isinstance(version, str) or not version.strip():
            raise ValueError(f"model version of {task!r} must be a non-empty string, got {version!r}")
        options += ["--model-version", f"{task}={version.strip()}"]
    if models_dir is not None:
        options += ["--models-dir", str(models_dir)]
    return python, options


def child_environment(base_env: Mapping[str, str] | None = None, package_root: str | Path = PACKAGE_ROOT
                      ) -> dict[str, str]:
    """The environment of an analysis child: ``base_env`` (default ``os.environ``) with ``package_root`` first on
    ``PYTHONPATH``, UTF-8 and unbuffered standard streams."""
    env = dict(os.environ if base_env is None else base_env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_root), env.get("PYTHONPATH", "")) if p)
    env["PYTHONIOENCODING"] = "utf-8"  # progress messages may hold non-ASCII text, whatever the locale
    env["PYTHONUNBUFFERED"] = "1"
    return env


def child_python(search_path: str | None = None, current: str = sys.executable) -> str:
    """The Python to run the analysis in: Slicer's ``PythonSlicer`` (Slicer's Python and packages, without the
    application) when it is on ``search_path`` (default ``PATH``), else ``current`` when that is a Python
    interpreter (outside Slicer). Inside Slicer ``sys.executable`` may be the application itself, never run
    with ``-m``.

    Raises:
        ValueError: neither is found (the message names ``current``).
    """
    found = shutil.which("PythonSlicer", path=search_path)
    if found:
        return found
    if Path(current).name.lower().startswith("python"):
        return current
    raise ValueError(f"PythonSlicer not found on PATH and {current!r} is not a Python interpreter")


class ProgressStream:
    """Turns a child's stdout text, in chunks of any size, into progress events.

    Lines that are not protocol lines (a library printing to stdout) are kept in :attr:`other_lines` and logged;
    they never stop the stream. :attr:`last` is the latest event.
    """

    def __init__(self) -> None:
        self._partial = ""
        self.other_lines: list[str] = []
        self.last: ProgressEvent | None = None

    def feed(self, text: str) -> list[ProgressEvent]:
        """The events completed by ``text`` (a trailing partial line waits for the next chunk)."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        return self._parse(lines)

    def close(self) -> list[ProgressEvent]:
        """The event on a last line without a newline, if any."""
        rest, self._partial = self._partial, ""
        return self._parse([rest])

    def _parse(self, lines: Iterable[str]) -> list[ProgressEvent]:
        events = []
        for line in (raw.strip() for raw in lines):
            if not line:
                continue
            try:
                event = parse_progress_line(line)
            except ValueError as exc:
                self.other_lines.append(line)
                log.info("analysis child: %s", exc if line.startswith("{") else line)
                continue
            events.append(event)
            self.last = event
        return events


def _pump(stream: IO[str], sink: queue.Queue[str | None]) -> None:
    """Copy a pipe's lines into a queue, then ``None`` (the reader threads of :class:`ChildPipes`)."""
    try:
        for line in stream:
            sink.put(line)
    finally:
        sink.put(None)


class ChildPipes:
    """Two reader threads move a child's stdout and stderr lines into queues (an unread pipe would stall the
    child); :meth:`drain` empties one on the caller's thread without blocking."""

    def __init__(self) -> None:
        self._queues: dict[str, queue.Queue[str | None]] = {"stdout": queue.Queue(), "stderr": queue.Queue()}
        self.open = 0

    def start(self, proc: subprocess.Popen[str], label: str) -> None:
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            threading.Thread(target=_pump, args=(pipe, self._queues[name]), daemon=True,
                             name=f"{label}-{name}").start()
        self.open = 2

    @property
    def closed(self) -> bool:
        """Both pipes have ended and been drained."""
        return self.open == 0

    def drain(self, name: str) -> list[str]:
        """The lines of ``stdout`` or ``stderr`` that arrived since the last call."""
        lines = []
        while True:
            try:
                line = self._queues[name].get_nowait()
            except queue.Empty:
                return lines
            if line is None:
                self.open -= 1
            else:
                lines.append(line)


def start_child(argv: Sequence[str], env: Mapping[str, str], pipes: ChildPipes, label: str, *,
                stdin: int) -> subprocess.Popen[str]:
    """Start an analysis child with text pipes (UTF-8, line-buffered; no console window on Windows) and the reader
    threads of ``pipes``. ``stdin``: ``subprocess.DEVNULL`` or ``subprocess.PIPE``."""
    flags = subprocess.CREATE_NO_WINDOW if sys.platform == "win32" else 0
    proc = subprocess.Popen(list(argv), env=dict(env), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8", errors="replace", bufsize=1, creationflags=flags)
    pipes.start(proc, label)
    return proc


def poll_until_ended(poll: Callable[[], list[ProgressEvent]], ended: Callable[[], bool], timeout_s: float,
                     interval_s: float, what: str) -> list[ProgressEvent]:
    """Call ``poll`` until ``ended()``; every event seen meanwhile. Raises ``TimeoutError`` after ``timeout_s``
    (what is waited for goes on)."""
    deadline = time.monotonic() + timeout_s
    events: list[ProgressEvent] = []
    while True:
        events += poll()
        if ended():
            return events
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not end within {timeout_s:.0f} s")
        time.sleep(interval_s)


def last_error_line(stderr_lines: Iterable[str]) -> str | None:
    """The last non-blank stderr line, stripped (``None`` when there is none)."""
    for line in reversed(list(stderr_lines)):
        if line.strip():
            return line.strip()
    return None


class AnalysisProcess:
    """A ``pelabelup analyze`` child process, polled without blocking.

    :class:`ChildPipes` reads stdout and stderr; :meth:`poll` drains them on the caller's thread. The last 200
    stderr lines are kept for error messages.

    Args:
        command: from :func:`build_analyze_command`.
        kill_after_s: after :meth:`cancel`, how long :meth:`poll` waits for the child to end before killing it.
    """

    def __init__(self, command: AnalyzeCommand, *, kill_after_s: float = 20.0) -> None:
        self.command = command
        self.kill_after_s = float(kill_after_s)
        self.stream = ProgressStream()
        self.stderr_lines: deque[str] = deque(maxlen=200)
        self._proc: subprocess.Popen[str] | None = None
        self._pipes = ChildPipes()
        self._cancelled_at: float | None = None
        self._finished = False

    def start(self) -> None:
        """Start the child. Raises ``RuntimeError`` when started before, ``OSError`` when it cannot start."""
        if self._proc is not None:
            raise RuntimeError("this analysis process was started already")
        self._proc = start_child(self.command.argv, self.command.env, self._pipes, "pelabelup-analyze",
                                 stdin=subprocess.DEVNULL)
        log.info("analysis child %d: %s", self._proc.pid, " ".join(self.command.argv))

    @property
    def returncode(self) -> int | None:
        """The child's exit status once :meth:`poll` has seen it end (``None`` before)."""
        return self._proc.returncode if self._finished and self._proc is not None else None

    @property
    def state(self) -> ProcessState:
        """``running`` until :meth:`poll` has read everything; then ``done`` (status 0), ``cancelled`` (after
        :meth:`cancel`, any other status) or ``failed``."""
        if self._proc is None:
            return "not started"
        if not self._finished:
            return "running"
        if self._proc.returncode == 0:
            return "done"
        return "cancelled" if self._cancelled_at is not None else "failed"

    def poll(self) -> list[ProgressEvent]:
        """The events that arrived since the last call; never blocks. Also kills a cancelled child that outlived
        ``kill_after_s``, and notices the end (:attr:`state`) once both pipes are drained."""
        if self._proc is None or self._finished:
            return []
        events = self.stream.feed("".join(self._pipes.drain("stdout")))
        self.stderr_lines.extend(line.rstrip("\n") for line in self._pipes.drain("stderr"))
        kill_if_overdue(self._proc, self._cancelled_at, self.kill_after_s, "analysis child")
        if self._pipes.closed and self._proc.poll() is not None:
            events += self.stream.close()
            self._finished = True
            log.info("analysis child %d ended with status %d (%s)", self._proc.pid, self._proc.returncode, self.state)
        return events

    def cancel(self) -> None:
        """Ask the child to stop (SIGTERM; on Windows the child is terminated at once). Returns at once;
        :meth:`poll` reports the end, and kills the child if it does not end within ``kill_after_s``."""
        if self._proc is None or self._finished or self._cancelled_at is not None:
            return
        self._cancelled_at = time.monotonic()
        if self._proc.poll() is None:
            self._proc.terminate()

    def wait(self, timeout_s: float, interval_s: float = 0.05) -> list[ProgressEvent]:
        """Poll until the child has ended (scripts and tests; the module polls from a timer). Returns every
        event seen meanwhile. Raises ``TimeoutError`` (the child keeps running) after ``timeout_s``."""
        return poll_until_ended(self.poll, lambda: self._finished, timeout_s, interval_s, "the analysis child")

    def error_message(self) -> str:
        """One line saying why the child failed: its last error line on stderr, else its exit status."""
        if self.state == "cancelled" or self.returncode == EXIT_TERMINATED:
            return "the analysis was cancelled"
        return last_error_line(self.stderr_lines) or f"the analysis ended with exit status {self.returncode}"


@dataclass(frozen=True)
class Requirement:
    """A Python package the analysis child needs.

    Attributes:
        module: its import name (looked up without importing it).
        pip: the pip requirement that installs it.
        installer: ``"pip"``, or ``"pytorch-extension"`` for torch (Slicer's PyTorch extension picks the build
            that fits the GPU driver).
    """

    module: str
    pip: str
    installer: Literal["pip", "pytorch-extension"] = "pip"


#: what ``pelabelup analyze`` imports beyond what 3D Slicer ships (numpy, SimpleITK). Not highdicom: it needs
#: pydicom 3, and installing it would upgrade the pydicom of Slicer's own DICOM module; without it an analysis of a
#: DICOM input is written without its DICOM SEG (``result.json``'s ``dicom_seg_error`` says so)
CHILD_REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("torch", "torch>=2.1", "pytorch-extension"),
    Requirement("monai", "monai>=1.4"),
    Requirement("scipy", "scipy>=1.11"),
    Requirement("pydicom", "pydicom>=2.4"),
    Requirement("tqdm", "tqdm>=4.66"),
)


def missing_requirements(requirements: Sequence[Requirement] = CHILD_REQUIREMENTS) -> list[Requirement]:
    """The requirements whose module cannot be found (``importlib.util.find_spec``: nothing is imported)."""
    importlib.invalidate_caches()  # packages installed since the last look count
    return [r for r in requirements if importlib.util.find_spec(r.module) is None]


def label_decision(pe_probability: float, reviewer_says_pe: bool,
                   threshold: float = STUDY_THRESHOLD) -> Literal["confirmed", "changed"]:
    """``confirmed`` when the reviewer's study label equals the model's (probability >= ``threshold``)."""
    if not 0.0 <= pe_probability <= 1.0:
        raise ValueError(f"PE probability must be in [0, 1], got {pe_probability!r}")
    return "confirmed" if (pe_probability >= threshold) == bool(reviewer_says_pe) else "changed"
