"""iExplain loop with a deterministic explainer that looks at the strongest blob still visible."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from PELabelUpLib.pseudomask import components, iterative_pseudomask, replace_with

LOW, HIGH = 0.3, 0.8
BLOBS = {  # intensity -> (Z, Y, X) box; far apart, so one blob's heat never reaches another
    3.0: (slice(2, 5), slice(2, 6), slice(2, 6)),
    2.0: (slice(7, 10), slice(12, 16), slice(3, 6)),
    1.0: (slice(2, 4), slice(13, 17), slice(13, 17)),
}
DISTRACTOR = (slice(8, 10), slice(3, 6), slice(14, 17))  # a candidate the "model" never looks at


@pytest.fixture
def a_volume() -> np.ndarray:
    """``(1, 12, 20, 20)`` channel-first inputs with three blobs of intensity 3, 2 and 1."""
    volume = np.zeros((1, 12, 20, 20), dtype=np.float32)
    for intensity, box in BLOBS.items():
        volume[(0, *box)] = intensity
    return volume


@pytest.fixture
def some_candidates(a_volume: np.ndarray) -> np.ndarray:
    mask = a_volume[0] > 0.5
    mask[DISTRACTOR] = True
    return components(mask, (1.0, 1.0, 1.0))


def strongest_blob_heat(inputs: np.ndarray) -> np.ndarray:
    """A plain explainer: a Gaussian bump (peak 1, sigma 2 voxels) on the brightest visible blob."""
    volume = inputs[0]
    labels, n = ndimage.label(volume > 0.5)
    if n == 0:
        return np.zeros(volume.shape)
    brightest = int(np.argmax(ndimage.mean(volume, labels, range(1, n + 1)))) + 1
    centre = np.round(ndimage.center_of_mass(labels == brightest))
    grid = np.indices(volume.shape)
    distance2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return np.exp(-distance2 / (2 * 2.0**2))


def blob_id(candidates: np.ndarray, intensity: float) -> int:
    return int(candidates[BLOBS[intensity]].max())


def test_finds_every_blob_strongest_first_then_stops(a_volume, some_candidates):
    before = a_volume.copy()
    result = iterative_pseudomask(strongest_blob_heat, a_volume, some_candidates, low=LOW, high=HIGH,
                                  max_rounds=10)
    assert [r.new_ids for r in result.rounds] == [
        (blob_id(some_candidates, 3.0),),
        (blob_id(some_candidates, 2.0),),
        (blob_id(some_candidates, 1.0),),
        (),
    ]
    assert result.stop_reason == "nothing_new"
    np.testing.assert_array_equal(result.mask, a_volume[0] > 0.5)  # all blobs, not the distractor
    assert [r.new_voxels for r in result.rounds] == [48, 36, 32, 0]
    assert result.found_in_round == {blob_id(some_candidates, v): i for i, v in enumerate((3.0, 2.0, 1.0), 1)}
    assert all(0.8 < h <= 1.0 for h in result.component_heat.values())
    assert result.heat_max.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(a_volume, before)  # inputs untouched


def test_max_rounds_caps_the_search(a_volume, some_candidates):
    result = iterative_pseudomask(strongest_blob_heat, a_volume, some_candidates, low=LOW, high=HIGH,
                                  max_rounds=2)
    assert result.stop_reason == "max_rounds"
    assert len(result.rounds) == 2
    assert set(result.found_in_round) == {blob_id(some_candidates, 3.0), blob_id(some_candidates, 2.0)}


def test_low_classifier_score_stops_before_explaining(a_volume, some_candidates):
    calls = []

    def score(inputs: np.ndarray) -> float:
        calls.append(float(inputs.max()))
        return float(inputs.max()) / 3.0  # "PE probability": brightest visible blob

    result = iterative_pseudomask(
        strongest_blob_heat, a_volume, some_candidates, low=LOW, high=HIGH, score_fn=score, min_score=0.5
    )
    assert result.stop_reason == "low_score"
    assert calls == [3.0, 2.0, 1.0]
    assert [r.score for r in result.rounds] == [1.0, pytest.approx(2 / 3)]
    assert len(result.found_in_round) == 2


def test_an_explainer_that_keeps_looking_at_the_same_place_stops_the_loop(a_volume, some_candidates):
    first_heat = strongest_blob_heat(a_volume)
    result = iterative_pseudomask(lambda _inputs: first_heat, a_volume, some_candidates, low=LOW, high=HIGH)
    assert [len(r.new_ids) for r in result.rounds] == [1, 0]
    assert result.stop_reason == "nothing_new"


def test_margin_hides_a_dilated_region(a_volume, some_candidates):
    hidden_sizes = []
    hide = replace_with(0.0)

    def mask_fn(inputs: np.ndarray, found: np.ndarray) -> np.ndarray:
        hidden_sizes.append(int(found.sum()))
        return hide(inputs, found)

    iterative_pseudomask(strongest_blob_heat, a_volume, some_candidates, low=LOW, high=HIGH, max_rounds=2,
                         mask_fn=mask_fn, mask_margin_voxels=1)
    assert hidden_sizes == [5 * 6 * 6]  # the 3x4x4 blob grown by one voxel (26-neighbourhood) each way


def test_no_candidates_means_no_rounds(a_volume):
    result = iterative_pseudomask(strongest_blob_heat, a_volume, np.zeros((12, 20, 20), dtype=np.int32),
                                  low=LOW, high=HIGH)
    assert result.stop_reason == "no_candidates"
    assert result.rounds == []
    assert not result.mask.any()


def test_bad_arguments_fail_fast(a_volume, some_candidates):
    with pytest.raises(ValueError, match=r"must end with the candidates' shape \(12, 20, 21\)"):
        iterative_pseudomask(strongest_blob_heat, a_volume, np.zeros((12, 20, 21), np.int32),
                             low=LOW, high=HIGH)
    with pytest.raises(ValueError, match="max_rounds must be >= 1, got 0"):
        iterative_pseudomask(strongest_blob_heat, a_volume, some_candidates, low=LOW, high=HIGH, max_rounds=0)
    with pytest.raises(ValueError, match=r"explain_fn returned shape \(12, 20\), expected \(12, 20, 20\)"):
        iterative_pseudomask(lambda _i: np.zeros((12, 20)), a_volume, some_candidates, low=LOW, high=HIGH)
