"""The JSON-lines progress protocol a parent process reads, and the human progress bar."""

from __future__ import annotations

import io
import json

import pytest

from PELabelUpLib.analysis.progress import (
    HumanProgress,
    JsonLinesProgress,
    ProgressEvent,
    ScaledProgress,
    parse_progress_line,
)


def test_json_lines_round_trip_and_never_go_back():
    stream = io.StringIO()
    progress = JsonLinesProgress(stream)
    progress("arteries", 0.2, "segmenting\nthe arteries")
    progress("classifier", 0.1, "a late, lower fraction")
    progress.context.update(input="case_7", index=2, total=5)
    progress("done", 1.0, "finished")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    events = [parse_progress_line(line) for line in lines]
    assert events[0] == ProgressEvent("arteries", 0.2, "segmenting the arteries")
    assert events[1].fraction == 0.2
    assert events[2] == ProgressEvent("done", 1.0, "finished", input="case_7", index=2, total=5)
    assert set(json.loads(lines[0])) == {"stage", "fraction", "message"}


@pytest.mark.parametrize(("line", "reason"), [
    ("not json", "invalid JSON"),
    ("[1, 2]", "needs stage"),
    ('{"stage": "x"}', "needs stage"),
    ('{"stage": "x", "fraction": 2, "message": ""}', "fraction must lie"),
])
def test_malformed_lines_are_refused(line, reason):
    with pytest.raises(ValueError, match=reason):
        parse_progress_line(line)


def test_scaled_progress_maps_a_step_into_its_share():
    seen = []
    scaled = ScaledProgress(lambda *event: seen.append(event), 0.5, 0.75)
    scaled("a", 0.0, "")
    scaled("b", 0.5, "")
    scaled("c", 0.2, "")
    scaled("d", 2.0, "")
    assert [round(f, 6) for _, f, _ in seen] == [0.5, 0.625, 0.625, 0.75]


def test_the_human_bar_writes_to_its_stream_and_only_when_enabled():
    stream = io.StringIO()
    bar = HumanProgress(stream, disable=False)
    bar("classifier", 0.5, "classifying slices")
    bar.close()
    assert "classifier" in stream.getvalue() and "50%" in stream.getvalue()
    quiet = io.StringIO()
    bar = HumanProgress(quiet)  # not a terminal: nothing
    bar("classifier", 0.5, "classifying slices")
    bar.close()
    assert quiet.getvalue() == ""
