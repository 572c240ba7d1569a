"""A separate process that exports into a datastore, for the concurrency and crash tests.

Usage: ``python export_worker.py SPEC_JSON``. The spec names the datastore ``root``, this worker's number
``writer``, the ``exports`` to do (``[case_id, image_seed, export_number]`` each), optionally a ``ready``
file to create and a ``go`` file to wait for (a start barrier), and ``pause_at``/``paused`` to stop forever
at one export stage after creating the ``paused`` file (the test then kills the process). Each finished
export is reported on stdout as one JSON line ``{"case_id", "version", "writer", "export"}``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from datastore_helpers import ct_volume, signed_mask

from PELabelUpLib.datastore import Datastore


def main(spec: dict) -> None:
    pause_at, paused = spec.get("pause_at"), spec.get("paused")

    def on_stage(stage: str) -> None:
        if stage == pause_at:
            Path(paused).write_text(stage)
            while True:
                time.sleep(60)

    store = Datastore(spec["root"], on_stage=on_stage)
    if spec.get("ready"):
        Path(spec["ready"]).write_text("ready")
        deadline = time.monotonic() + 60
        while not Path(spec["go"]).exists():
            if time.monotonic() > deadline:
                raise TimeoutError("no go signal")
            time.sleep(0.01)
    writer = int(spec["writer"])
    for case_id, image_seed, number in spec["exports"]:
        image = ct_volume(image_seed)
        mask = signed_mask(image.geometry.shape_zyx, writer, number)
        record = store.export(case_id, image, mask, reviewer=f"reviewer-{writer}", study_label=True,
                              label_decision="confirmed", model_versions={"writer": writer, "export": number},
                              original_masks={"pseudomask": mask > 0})
        sys.stdout.write(json.dumps({"case_id": record.case_id, "version": record.version, "writer": writer,
                                     "export": number}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
