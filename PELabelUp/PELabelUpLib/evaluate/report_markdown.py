"""``report.md`` from the metrics document of :func:`~PELabelUpLib.evaluate.report.metrics_document`."""

from __future__ import annotations

from typing import Any

from .plots import plural


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: ``n/a`` for ``None``, fixed decimals for floats, ``yes``/``no`` for booleans."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return lines


def summary_rows(m: dict[str, Any]) -> list[list[Any]]:
    """``[metric, value, over]`` rows of the summary table."""
    study, slc, seg, det, froc = m["study"], m["slice"], m["segmentation"], m["detection"], m["froc"]
    point, art = m["pointing"], m["arteries"]
    rows: list[list[Any]] = [
        ["Study AUC (pe_probability)", fmt(study["auc"]),
         f"{study['n_positive']} positive / {study['n_negative']} negative studies"],
        ["Slice AUC (slice_probabilities, pooled)", fmt(slc["auc"]),
         f"{slc['n_positive']} positive / {slc['n_negative']} negative slices"],
        [f"Dice of the {seg['mask']}, mean / median", f"{fmt(seg['dice_mean'])} / {fmt(seg['dice_median'])}",
         f"{plural(seg['n_cases'], 'positive study', 'positive studies')} (range {fmt(seg['dice_min'])}-{fmt(seg['dice_max'])})"],
        ["Embolus sensitivity", fmt(det["sensitivity"]), f"{det['tp']} of {plural(det['n_emboli'], 'embolus', 'emboli')} detected"],
        ["False-positive components per scan", fmt(det["fp_per_scan"]), f"{det['fp']} in {plural(det['n_scans'], 'scan')}"],
        ["Detection F1 (pooled)", fmt(det["f1"]), f"TP {det['tp']}, FP {det['fp']}, FN {det['fn']}"],
    ]
    if det.get("by_level"):
        rows.append(["Emboli detected by level", ", ".join(f"{k} {f}/{n}" for k, (f, n) in det["by_level"].items()),
                     "where case.json names each embolus's level"])
    if det.get("missed_outside_territory") is not None:
        rows.append(["Missed emboli outside the predicted territory", str(det["missed_outside_territory"]),
                     f"of {det['fn']} missed: no voxel in arteries.nii.gz, where the chain looks for clot"])
    if froc is not None:
        at = froc["sensitivity_at_fp"]
        rows.append(["FROC sensitivity at " + " / ".join(at) + " FP per scan",
                     " / ".join(fmt(v) for v in at.values()), "threshold on each component's peak heat"])
    else:
        rows.append(["FROC sensitivity", "n/a", "no embolus"])
    rows += [
        [f"Pointing accuracy, positive slices ({point['tolerance_mm']:g} mm)", fmt(point["slice_accuracy"]),
         f"{point['slice_hits']} of {point['n_positive_slices']} slices"],
        [f"Pointing accuracy, positive studies (3-D, {point['tolerance_mm']:g} mm)", fmt(point["study_accuracy"]),
         f"{point['study_hits']} of {point['n_positive_studies']} studies"],
    ]
    if art is not None:
        rows.append(["Artery territory Dice, mean / median", f"{fmt(art['dice_mean'])} / {fmt(art['dice_median'])}",
                     f"{plural(art['n_cases'], 'case')} with arteries.nii.gz"])
    return rows


def territory_sources(counts: dict[str, int]) -> str:
    """Where the evaluated analyses' artery territories came from, for the Inputs table."""
    given, model = counts.get("file", 0), counts.get("model", 0)
    if not given:
        return "the artery model's, in every case"
    if not model:
        return "given to the analysis (--arteries) in every case: the artery Dice scores those masks, not a model"
    return f"the artery model's in {plural(model, 'case')}, given to the analysis (--arteries) in {given}"


def case_table(cases: list[dict[str, Any]]) -> list[str]:
    header = ["case", "PE", "P(PE)", "slice AUC", "emboli", "TP", "FN", "FP", "Dice", "GT mL", "mask mL",
              "pointing (slices)", "artery Dice"]
    rows = []
    for c in cases:
        pointing = f"{c['pointing_slice_hits']}/{c['pointing_slices']}" if c["pointing_slices"] else "-"
        rows.append([f"`{c['case_id']}`", "yes" if c["positive"] else "no", fmt(c["pe_probability"]),
                     fmt(c["slice_auc"]), c["n_emboli"], c["tp"], c["fn"], c["fp"],
                     fmt(c["dice"]) if c["positive"] else "-", f"{c['truth_volume_mm3'] / 1000:.2f}",
                     f"{c['pred_volume_mm3'] / 1000:.2f}", pointing,
                     fmt(c["artery_dice"]) if c["artery_dice"] is not None else "-"])
    return _table(header, rows)


DEFINITIONS = """\
- **Study AUC**: ROC area of `pe_probability` against the study label (ties count one half).
- **Slice AUC**: ROC area of every case's `slice_probabilities` pooled against the axial slice labels.
- **Dice**: voxel Dice `2|P∩T|/(|P|+|T|)` of the chosen mask against the reference emboli, positive studies.
- **Emboli and findings**: 26-connected components of the reference and of the mask. An embolus is detected
  when a predicted voxel overlaps it; a finding that overlaps no embolus is a false positive. F1 is
  `2TP/(2TP+FP+FN)` over the pooled counts.
- **FROC**: each finding is scored by its peak heat in `heatmap.nii.gz`; at each observed score the findings
  scoring at least that much are kept. Sensitivity at *r* FP/scan is the best sensitivity whose mean
  false positives per scan do not exceed *r*.
- **Pointing accuracy**: on each slice (or volume) holding an embolus, the heatmap's maximum is a hit when it
  lies within the tolerance (mm, in-plane for slices) of a reference voxel.
- **Artery territory Dice**: Dice of `arteries.nii.gz` of the prediction against the reference arteries.
- **Emboli detected by level**: the emboli whose arterial level (central, lobar, segmental, subsegmental)
  the ground truth's `case.json` names, detected (a predicted voxel on the embolus) of all at that level.
- **Missed emboli outside the predicted territory**: missed emboli with no voxel in `arteries.nii.gz`; the
  chain looks for clot inside the territory only, so these are lost to the artery model.
"""


def render_markdown(m: dict[str, Any]) -> str:
    """The whole ``report.md`` (relative links to the PNGs named in ``m["plots"]``)."""
    inputs, plots = m["inputs"], m["plots"]
    lines = [
        "# PELabelUp evaluation report",
        "",
        f"Created {m['created_utc']} by pelabelup {m['pelabelup_version']}. Mask scored: `{m['settings']['mask']}`. "
        "Research software, not for clinical use.",
        "",
        "## Inputs",
        "",
        *_table(["", ""], [
            ["cohort (ground truth)", f"`{inputs['cohort']}`"],
            ["predictions", f"`{inputs['predictions']}`"],
            ["cases evaluated", f"{inputs['n_evaluated']} of {inputs['n_cohort_cases']}"
             + (f" ({inputs['n_missing']} without prediction skipped)" if inputs["n_missing"] else "")],
            ["studies", f"{inputs['n_positive_studies']} positive, {inputs['n_negative_studies']} negative"],
            ["axial slices", f"{inputs['n_slices']} ({inputs['n_positive_slices']} with an embolus)"],
            ["reference emboli (26-connected)", str(inputs["n_emboli"])],
            ["artery territory", territory_sources(inputs.get("territory_sources", {}))],
        ]),
        "",
        "Paths are relative to this report's folder. Every figure, with the curves, is in "
        "[metrics.json](metrics.json).",
        "",
        "## Summary",
        "",
        *_table(["metric", "value", "over"], summary_rows(m)),
        "",
    ]
    if m["notes"]:
        lines += ["Notes:", "", *(f"- {note}" for note in m["notes"]), ""]
    lines += ["## Curves", ""]
    if "roc" in plots:
        lines += [f"![ROC curves: study and slice]({plots['roc']})", ""]
    if "froc" in plots:
        lines += [f"![FROC curve]({plots['froc']})", ""]
    if m.get("case_panels"):
        lines += ["## Cases with the worst and best Dice", "",
                  "Axial slices through each case's largest reference embolus: the whole slice (crop outlined "
                  "in blue), then crops across the embolus. Rows: CT (PE window L100/W700), heatmap overlay, "
                  "reference (green) and predicted mask (red) contours.", ""]
        for panel in m["case_panels"]:
            lines += [f"### `{panel['case_id']}`: {panel['role']} ({fmt(panel['dice'])})", "",
                      f"![{panel['case_id']}]({panel['path']})", ""]
    lines += ["## Per case", "", *case_table(m["cases"]), "", "## Definitions", "", DEFINITIONS]
    return "\n".join(lines)
