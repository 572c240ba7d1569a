"""Emboli found by level: the level of each embolus from case.json, counted per labelled embolus."""

from __future__ import annotations

import numpy as np

from PELabelUpLib.evaluate.levels import emboli_levels, found_by_level, sum_levels


def test_emboli_are_counted_by_level() -> None:
    labels = np.zeros((1, 1, 9), np.uint8)
    labels[0, 0, [0, 1]] = 1
    labels[0, 0, 3] = 2
    labels[0, 0, 5] = 3
    labels[0, 0, 7] = 4
    pred = np.zeros_like(labels)
    pred[0, 0, [1, 5, 8]] = 1  # finds 1 and 3; the voxel at 8 borders 4 without lying on it
    levels = {1: "central", 2: "segmental", 3: "segmental", 4: "subsegmental", 5: "lobar"}  # 5: not in the map
    assert found_by_level(pred, labels, levels) == {"central": [1, 1], "segmental": [1, 2], "subsegmental": [0, 1]}
    assert found_by_level(pred, labels, {}) == {}


def test_levels_come_from_a_case_record() -> None:
    record = {"emboli": [{"label": 1, "level": "lobar"}, {"label": 2, "level": "subsegmental"},
                         {"label": 3}, {"level": "central"}, "junk"]}
    assert emboli_levels(record) == {1: "lobar", 2: "subsegmental"}
    assert emboli_levels({"positive": False}) == {} == emboli_levels({"emboli": "none"})


def test_sums_keep_the_levels_from_the_trunk_out() -> None:
    total = sum_levels([{"subsegmental": [0, 2], "central": [1, 1]}, {"lobar": [2, 3], "central": [0, 1]},
                        {"other": [1, 1]}, {}])
    assert total == {"central": [1, 2], "lobar": [2, 3], "subsegmental": [0, 2], "other": [1, 1]}
    assert list(total) == ["central", "lobar", "subsegmental", "other"]
