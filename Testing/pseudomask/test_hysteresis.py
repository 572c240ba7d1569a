"""Hysteresis thresholding: hand-made maps with known answers, and a naive flood-fill reference."""

from __future__ import annotations

from collections import deque
from itertools import product

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from PELabelUpLib.pseudomask import hysteresis

# 2-D map, low = 0.35, high = 0.8. By construction:
#  * the top-left group (0.9 seed, 0.5, 0.4) is kept whole;
#  * the right column pair (0.6, 0.6) never exceeds high: dropped;
#  * the 0.95 seed at (3, 4) is kept, and its diagonal neighbour 0.5 at (4, 3) only with 8-connectivity;
#  * the bottom-left pair (0.5, 0.5) is diagonal and seedless: dropped;  0.3 is below low.
HEAT = np.array(
    [
        [0.9, 0.5, 0.0, 0.0, 0.6],
        [0.0, 0.4, 0.0, 0.0, 0.6],
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [0.5, 0.0, 0.0, 0.3, 0.95],
        [0.0, 0.5, 0.0, 0.5, 0.0],
    ]
)
KEPT_8 = np.zeros((5, 5), dtype=bool)
KEPT_8[0, 0] = KEPT_8[0, 1] = KEPT_8[1, 1] = KEPT_8[3, 4] = KEPT_8[4, 3] = True
KEPT_4 = KEPT_8.copy()
KEPT_4[4, 3] = False


@pytest.mark.parametrize(("connectivity", "expected"), [(None, KEPT_8), (8, KEPT_8), (4, KEPT_4)])
def test_hand_made_2d_map(connectivity, expected):
    np.testing.assert_array_equal(hysteresis(HEAT, 0.35, 0.8, connectivity=connectivity), expected)


@pytest.mark.parametrize(("connectivity", "linked"), [(26, True), (18, False), (6, False)])
def test_3d_corner_neighbour_joins_only_with_26_connectivity(connectivity, linked):
    heat = np.zeros((4, 4, 4))
    heat[1, 1, 1] = 1.0  # seed
    heat[2, 2, 2] = 0.5  # touches the seed by a corner only
    heat[1, 1, 0] = 0.5  # face neighbour on the far side: always joins
    mask = hysteresis(heat, 0.2, 0.9, connectivity=connectivity)
    assert mask[1, 1, 1]
    assert mask[1, 1, 0]
    assert mask[2, 2, 2] == linked
    assert mask.sum() == 2 + linked


def test_nan_heat_is_cold():
    heat = np.array([[np.nan, 0.9, 0.5, np.nan, 0.6]])
    np.testing.assert_array_equal(hysteresis(heat, 0.4, 0.8), [[False, True, True, False, False]])


def flood_fill_reference(heat: np.ndarray, low: float, high: float) -> np.ndarray:
    """Naive breadth-first search from every seed over 8/26-neighbours above ``low``."""
    kept = np.zeros(heat.shape, dtype=bool)
    steps = [d for d in product((-1, 0, 1), repeat=heat.ndim) if any(d)]
    queue = deque(zip(*np.nonzero(heat > high), strict=True))
    for seed in queue:
        kept[seed] = True
    while queue:
        here = queue.popleft()
        for step in steps:
            there = tuple(h + s for h, s in zip(here, step, strict=True))
            inside = all(0 <= t < n for t, n in zip(there, heat.shape, strict=True))
            if inside and not kept[there] and heat[there] > low:
                kept[there] = True
                queue.append(there)
    return kept


@settings(max_examples=80, deadline=None)
@given(
    heat=arrays(np.float64, st.sampled_from([(6, 7), (3, 4, 5)]), elements=st.floats(0.0, 1.0)),
    low=st.floats(0.0, 1.0),
    gap=st.floats(0.0, 0.5),
)
def test_matches_a_naive_flood_fill(heat, low, gap):
    high = min(1.0, low + gap)
    np.testing.assert_array_equal(hysteresis(heat, low, high), flood_fill_reference(heat, low, high))


@pytest.mark.parametrize(
    ("low", "high", "connectivity", "message"),
    [
        (0.8, 0.2, None, "low <= high, got low=0.8, high=0.2"),
        (float("nan"), 0.5, None, "finite thresholds"),
        (0.2, 0.8, 26, r"connectivity for 2-D arrays must be one of \[4, 8\], got 26"),
    ],
)
def test_bad_arguments_fail_fast(low, high, connectivity, message):
    with pytest.raises(ValueError, match=message):
        hysteresis(HEAT, low, high, connectivity=connectivity)
