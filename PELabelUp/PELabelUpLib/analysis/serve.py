"""A long-lived analysis worker: the models load once, then every request is one analysis (``pelabelup serve``).

A fresh ``pelabelup analyze`` process pays for importing torch and MONAI, loading the models and, on a GPU,
starting CUDA: 11-15 s on an H200 before the first network runs, 2-4 s on 2 CPU cores. A front end
that analyses one case after another (the Slicer module) keeps one worker instead and pays that once.

Protocol, on top of the progress protocol of :mod:`.progress`:

* Requests arrive on stdin, one JSON object a line: ``{"input": PATH, "out": DIR}``, with an optional ``"id"``
  (text; default: the name of ``out``), and optionally ``"arteries"`` (a pulmonary-artery mask used as the
  territory, ``pelabelup analyze --arteries``) with ``"arteries_label"`` (its label in a label map, or its
  segment in a ``.seg.nrrd``). Relative paths are relative to the worker's working folder. ``out`` must not
  exist; it appears only complete, as with ``pelabelup analyze``.
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
from collections.abc import Iterable
from pathlib import Path

from ..explain.registry import DEFAULT_EXPLAINER
from ..labelup.pipeline import LabelUpSettings
from .device import resolve_device
from .outputs import check_output_free
from .progress import JsonLinesProgress
from .requests import FAILED, READY, parse_request
from .run import INPUT_ERRORS, analyze_volume, chain_settings, load_models_timed, read_input

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
    settings = chain_settings(settings, explainer, precision)
    torch_device = resolve_device(device)
    models, model_seconds = load_models_timed(torch_device, progress, models_dir=models_dir,
                                              model_versions=model_versions)
    progress(READY, 1.0, f"models loaded on {torch_device} in {model_seconds:.1f} s; waiting for requests")
    done = failed = 0
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        progress.restart(input=f"request {index}", index=index)
        try:
            request = parse_request(line)
            progress.restart(input=request.id, index=index)
            out = check_output_free(request.out)
            volume, load_seconds = read_input(request.input, progress, arteries=request.arteries,
                                              arteries_label=request.arteries_label)
            # the models' load time is counted once, in the first request's timings
            timings = {"models": model_seconds if done + failed == 0 else 0.0, "load": load_seconds}
            analyze_volume(volume.ct, out, models=models, device=torch_device, settings=settings, progress=progress,
                           timings_s=timings, extra={"worker": {"request": index}}, territory=volume.territory)
            done += 1
        except INPUT_ERRORS as exc:  # this request fails, the worker goes on
            reason = " ".join(str(exc).split())
            log.error("%s: %s", progress.context["input"], reason)
            progress(FAILED, 1.0, reason)
            failed += 1
    progress.restart()
    return done, failed
