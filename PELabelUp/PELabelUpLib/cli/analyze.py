"""``pelabelup analyze``: one CT (or a batch) through the models into the stable output folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..analysis.interrupt import EXIT_TERMINATED, Terminated, sigterm_raises
from ..analysis.progress import HumanProgress, JsonLinesProgress
from ..analysis.requests import FAILED
from ..explain.registry import DEFAULT_EXPLAINER, explainer_choices
from ..models.registry import MODEL_TASKS, MODELS_DIR_ENV
from ..precision import INFERENCE_PRECISIONS

HELP = "detect emboli in a CT: PE probability, heatmap, pseudo-mask, segmentation and a Slicer .seg.nrrd"
EPILOG = f"""\
examples:
  pelabelup analyze scan.nii.gz --out scan-analysis
  pelabelup analyze path/to/dicom-series --out study-7 --device cuda --explainer ig --progress json
  pelabelup analyze cohort/ --batch --out analyses            # one sub-folder per input, resumable
  pelabelup analyze scan.nii.gz --out scan-analysis --arteries pulmonary_artery.nii.gz   # your artery mask
  pelabelup analyze scan.nii.gz --out again --arteries corrected.seg.nrrd --arteries-label "Pulmonary arteries"
  pelabelup analyze cts.txt --batch --out analyses --arteries 'masks/{{input_stem}}/pulmonary_artery.nii.gz'
  torchrun --nproc_per_node=4 -m PELabelUpLib.cli.main analyze inputs.txt --batch --out analyses

OUTDIR receives, on the input's exact grid: result.json, heatmap.nii.gz, pseudomask.nii.gz,
segmentation.nii.gz, arteries.nii.gz and segmentation.seg.nrrd; for a DICOM input also segmentation.dcm,
the segments as a DICOM SEG on the source images (for PACS). It appears only when complete; SIGTERM
or an error leaves nothing. Models: the bundled Resources/Models (or ${MODELS_DIR_ENV}), or --models-dir.
--progress json prints one JSON object a line on stdout: {{"stage", "fraction", "message"}}, ending at 1.0
(stage "done", or "failed" with the reason, also after SIGTERM; Ctrl-C stops it without a last line).
--arteries replaces the artery model's territory by a pulmonary-artery mask (a reader's, or another
tool's, e.g. TotalSegmentator's pulmonary_artery; any grid, resampled onto the CT's), or by a segment of a
.seg.nrrd (e.g. an analysis's segmentation.seg.nrrd with "Pulmonary arteries" corrected in Slicer). It should
hold the arteries with what fills them, clots included: emboli are looked for inside it only. The artery
model is then not loaded (nor needed), and result.json lists only the models that ran.
Exit status: 0 done, 1 some batch inputs failed, 2 bad input or model (one line on stderr), 143 SIGTERM.
"""


def _model_version(text: str) -> tuple[str, str]:
    task, sep, version = text.partition("=")
    if not sep or task not in MODEL_TASKS or not version:
        raise argparse.ArgumentTypeError(f"expected TASK=VERSION with TASK one of {', '.join(MODEL_TASKS)}, "
                                         f"got {text!r}")
    return task, version


def _artery_label(text: str) -> int | str:
    """A label map's artery label (a whole number from 1) or a ``.seg.nrrd`` segment's name or ID."""
    if text.strip().lstrip("+-").isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError(f"a label is a whole number from 1, got {text!r}")
        return int(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a label number or a segment name, got an empty text")
    return text


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options that choose where and how the models run (``analyze`` and ``serve`` share them)."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA with mixed precision when available, else CPU (default: auto)")
    p.add_argument("--explainer", choices=explainer_choices(), default=DEFAULT_EXPLAINER,
                   help="explanation method that selects the pseudo-mask; auto: Grad-CAM++ where the classifier "
                        "names a layer for it, else Grad-CAM (default: %(default)s)")
    p.add_argument("--precision", choices=INFERENCE_PRECISIONS, default="auto",
                   help="auto: mixed precision where the hardware computes it natively (float16 on CUDA; bfloat16 "
                        "for the 3-D networks on CPUs with AMX or AVX512-BF16); float32: full precision "
                        "everywhere, slower (default: auto)")
    p.add_argument("--models-dir", type=Path, default=None,
                   help=f"folder holding the model folders (default: bundled Resources/Models or ${MODELS_DIR_ENV})")
    p.add_argument("--model-version", type=_model_version, action="append", default=[], metavar="TASK=VERSION",
                   help="use another version of a model, e.g. segmenter=1.1.0 or segmenter=latest (repeatable)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help=HELP, description=HELP, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="CT file (NIfTI, NRRD, MHA), DICOM file or folder; with --batch a "
                                            "folder of inputs or a list file (one path a line)")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not exist; with --batch the "
                                                           "parent of one folder per input)")
    add_model_options(p)
    p.add_argument("--progress", choices=("json", "human", "none"), default="human",
                   help="json: JSON lines on stdout; human: a progress bar on stderr when it is a terminal "
                        "(default); none")
    p.add_argument("--batch", action="store_true", help="INPUT is a folder of inputs (image files and DICOM series folders) or a list file "
                        "(one path a line; relative paths are read from the list file's folder)")
    p.add_argument("--arteries", type=Path, default=None, metavar="MASK",
                   help="pulmonary-artery mask or label map (NIfTI, NRRD, MHA) or 3D Slicer segmentation (.seg.nrrd) "
                        "used as the territory instead of the artery model's; with --batch a pattern naming each "
                        "input's mask through {input_dir} and {input_stem}, e.g. '{input_dir}/arteries.nii.gz'")
    p.add_argument("--arteries-label", type=_artery_label, default=None, metavar="LABEL",
                   help="the artery label when MASK is a label map of several structures (a number), or the artery "
                        "segment of a .seg.nrrd (its name or ID; default: its only segment, or its only one named "
                        "like \"pulmonary artery\")")
    p.set_defaults(run=run)


def _summary(out: Path) -> str:
    import json

    from ..pseudomask.describe import emboli_count

    record = json.loads((out / "result.json").read_text())
    n = len([e for e in record["emboli"] if e["source"] == "pseudomask"])
    territory = record.get("territory", {})
    given = f"artery territory from {territory['file']}; " if territory.get("source") == "file" else ""
    return (f"PE probability {record['pe_probability']:.3f}; {emboli_count(n)} in the pseudo-mask; {given}"
            f"segmentation: {record['segmentation_source']}; device {record['device']['device']}; outputs in {out}")


def _one_mask(arteries: Path | None, input_path: Path) -> Path | None:
    """The one study's artery mask: ``arteries``, or the mask a pattern names for ``input_path``."""
    from ..analysis.territory import is_pattern, mask_for_input

    if arteries is None or not is_pattern(str(arteries)):
        return arteries
    return mask_for_input(str(arteries), input_path)


def run(args: argparse.Namespace) -> int:
    from ..analysis.batch import analyze_batch, list_inputs
    from ..analysis.run import analyze

    if args.progress == "json":
        progress: JsonLinesProgress | HumanProgress = JsonLinesProgress(sys.stdout)
    else:
        progress = HumanProgress(sys.stderr, disable=True if args.progress == "none" else None)  # None: TTY only
    options = {"device": args.device, "explainer": args.explainer, "precision": args.precision,
               "models_dir": args.models_dir,
               "progress": progress, "model_versions": dict(args.model_version)}
    report = sys.stderr if args.progress == "json" else sys.stdout  # stdout carries only JSON lines then
    with sigterm_raises():
        try:
            if args.arteries_label is not None and (args.batch or args.arteries is None):
                raise ValueError("--arteries-label " + ("is for one study's mask; not with --batch" if args.batch
                                                        else "needs an artery mask (--arteries)"))
            if args.batch:
                items = analyze_batch(list_inputs(args.input), args.out,
                                      arteries=None if args.arteries is None else str(args.arteries), **options)
            else:
                out = analyze(args.input, args.out, arteries=_one_mask(args.arteries, args.input),
                              arteries_label=args.arteries_label, **options)
        except Terminated:
            why = "terminated (SIGTERM); the output in progress was removed"
            if args.progress == "json":
                progress(FAILED, 1.0, why)
            print(f"pelabelup analyze: {why}", file=sys.stderr)
            return EXIT_TERMINATED
        except Exception as exc:  # the stream ends at 1.0 either way; main() prints the one-line error
            if args.progress == "json":
                progress(FAILED, 1.0, " ".join(str(exc).split()))
            raise
        finally:
            progress.close()
    if not args.batch:
        print(_summary(out), file=report)
        return 0
    for item in items:
        if item.status == "failed":
            print(f"pelabelup analyze: {item.name}: error: {item.error}", file=sys.stderr)
    counts = {s: sum(i.status == s for i in items) for s in ("done", "skipped", "failed")}
    print(f"{counts['done']} analysed, {counts['skipped']} skipped (finished earlier), {counts['failed']} failed; "
          f"outputs in {args.out}", file=report)
    return 1 if counts["failed"] else 0
