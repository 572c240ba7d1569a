"""A long-lived analysis worker: the models load once, then every request is one analysis (``pelabelup serve``).

A fresh ``pelabelup analyze`` process pays for importing torch and MONAI, loading the models and, on a GPU,
starting CUDA: 11-15 s on an H200 before the first network runs, 2-4 s on 2 CPU cores. A front end
that analyses one case after another (the Slicer module) keeps one worker instead and pays that once.

Protocol, on top of the progress protocol of :mod:`.progress`:

* Requests arrive on stdin, one JSON object a line: ``{"input": PATH, "out": DIR}``, with an optional ``"id"``
  (text; default: the name of ``out``). Relative paths are relative to the worker's working folder. ``out``
  must not exist; it appears only complete, as with ``pelabelup analyze``.
* Events go to stdout, one JSON object a line. Start-up sends ``models`` events, then
  ``{"stage": "ready", "fraction": 1.0, ...}``. Each request's events carry ``"input": <id>`` and ``"index"``
  (the request's 0-based line number on stdin); their fractions rise from 0 for every request. A request ends with stage
  ``done`` (fraction 1.0) or ``failed`` (fraction 1.0; the message is the one-line reason). A failed request
  (unreadable input, bad request line, existing ``out``) leaves nothing behind and the worker goes on.
* End of stdin ends the worker (exit status 0). SIGTERM stops the analysis in progress, which leaves nothing,
  and ends the worker (exit status 143, as ``analyze``). Missing or tampered models end it at start-up (2).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from ..explain.registry import DEFAULT_EXPLAINER
from ..io import load_ct
from ..labelup.pipeline import LabelUpSettings
from ..models.inference import check_precision
from .device import resolve_device
from .model_set import load_analysis_models
from .outputs import check_output_free
from .progress import JsonLinesProgress
from .requests import FAILED, READY, parse_request
from .run import analyze_volume, check_explainer

log = logging.getLogger(__name__)


def serve(lines: Iterable[str], progress: JsonLinesProgress, *, device: str = "auto",
          explainer: str = DEFAULT_EXPLAINER, precision: str = "auto", models_dir: str | Path | None = None,
          model_versions: dict[str, str] | None = None, settings: LabelUpSettings | None = None) -> tuple[int, int]:
    """Load the models, then analyse one request per line of ``lines`` until they end (see the module doc).

    Args:
        lines: request lines (``sys.stdin`` line by line); blank lines are skipped.
        progress: where the events go; its fraction and context restart with every request.
        device, explainer, precision, models_dir, model_versions, settings: as for :func:`~.run.analyze`, fixed
            for the worker's life.

    Returns:
        ``(done, failed)``: how many requests ended each way.

    Raises:
        InputError: a required model is missing or tampered with (before any request is read).
        ValueError: unknown explainer, precision or device, CUDA asked for but absent.
    """
    settings = replace(settings or LabelUpSettings(), explainer=check_explainer(explainer),
                       precision=check_precision(precision))
    torch_device = resolve_device(device)
    t0 = time.perf_counter()
    progress("models", 0.0, f"loading models on {torch_device}")
    models = load_analysis_models(device=torch_device, models_dir=models_dir, versions=model_versions)
    model_seconds = time.perf_counter() - t0
    progress(READY, 1.0, f"models loaded on {torch_device} in {model_seconds:.1f} s; waiting for requests")
    done = failed = 0
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        progress.restart(input=f"request {index}", index=index)
        try:
            request = parse_request(line)
            progress.context["input"] = request.id
            out = check_output_free(request.out)
            t0 = time.perf_counter()
            progress("load", 0.05, f"reading {request.input.name}")
            volume = load_ct(request.input)
            # the models' load time is counted once, in the first request's timings
            timings = {"models": model_seconds if done + failed == 0 else 0.0, "load": time.perf_counter() - t0}
            analyze_volume(volume, out, models=models, device=torch_device, settings=settings, progress=progress,
                           timings_s=timings, extra={"worker": {"request": index}})
            done += 1
        except (InputError, ValueError, RuntimeError, OSError) as exc:  # this request fails, the worker goes on
            reason = " ".join(str(exc).split())
            log.error("%s: %s", progress.context["input"], reason)
            progress(FAILED, 1.0, reason)
            failed += 1
    progress.restart()
    return done, failed
