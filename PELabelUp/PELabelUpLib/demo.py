"""The demo job behind ``make demo``: one embedded synthetic CTPA case, written and pictured.

Until the bundled models exist, the demo generates a positive phantom (deterministic), writes its CT and
ground truth as NIfTI and renders a PNG overview of the CT with the arteries and emboli outlined.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .render import render_overview
from .synthetic.cohort import write_case_nifti
from .synthetic.phantom import generate_phantom

DEMO_SEED = 20261126
DEMO_OVERRIDES = {"size_xy": (256, 256), "n_slices": 160, "spacing_mm": (1.2, 1.2, 1.5),
                  "positive": True, "n_emboli": 4}


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    ct: Path
    overview: Path
    case_json: Path
    n_emboli: int
    positive_slices: int


def run_demo(out_dir: str | Path, *, seed: int = DEMO_SEED) -> DemoResult:
    """Generate the demo case into ``out_dir/<case_id>/`` and its overview PNG; returns where things are."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    case = generate_phantom(seed, **DEMO_OVERRIDES)
    folder = write_case_nifti(case, out) if not (out / case.case_id).exists() else out / case.case_id
    overview = folder / "overview.png"
    render_overview(case.ct, {"arteries": case.arteries, "emboli": case.emboli}, overview,
                    title=f"{case.case_id}: {len(case.emboli_list)} emboli")
    record = json.loads((folder / "case.json").read_text())
    return DemoResult(folder=folder, ct=folder / "ct.nii.gz", overview=overview, case_json=folder / "case.json",
                      n_emboli=len(record["emboli"]), positive_slices=sum(record["slice_labels"]))
