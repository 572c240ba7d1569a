"""2.5-D slice stacks: physical scale, territory masking, exact way back, study aggregation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from PELabelUpLib.models.slices import SliceSpec, build_slice_stack, replace_planes, study_probability
from PELabelUpLib.synthetic.phantom import generate_phantom


@pytest.fixture
def a_tube_volume():
    """HU ``(Z, Y, X)`` = (20, 120, 100) at (0.8, 0.6, 2.0) mm: air body, a bright tube along z."""
    hu = np.full((20, 120, 100), -800, np.int16)
    territory = np.zeros_like(hu, dtype=np.uint8)
    yy, xx = np.mgrid[:120, :100]
    tube = (((yy - 70) * 0.6) ** 2 + ((xx - 40) * 0.8) ** 2) <= 6.0 ** 2
    hu[:, tube] = 400
    territory[:, tube] = 1
    return hu, territory, (0.8, 0.6, 2.0)


def test_stack_is_territory_masked_and_centred(a_tube_volume):
    hu, territory, spacing = a_tube_volume
    spec = SliceSpec(pixel_mm=1.0, size_px=64, territory_dilation_mm=2.0)
    stack = build_slice_stack(hu, territory, spacing, spec)
    assert stack.image.shape == stack.territory.shape == (20, 64, 64)
    centre = np.array(np.nonzero(stack.territory[5])).mean(axis=1)
    np.testing.assert_allclose(centre, [31.5, 31.5], atol=1.0)
    # tube radius 6 mm -> about 113 pixels of 1 mm^2
    assert 95 <= stack.territory[5].sum() <= 130
    inner = ndimage.binary_erosion(stack.territory[5] > 0, iterations=2)
    expected = round((400 - (100 - 700 / 2)) / 700 * 255)  # 400 HU in the PE window L100/W700
    assert np.abs(stack.image[5][inner].astype(int) - expected).max() <= 1
    far = np.ones((64, 64), bool)
    far[16:48, 16:48] = False
    assert stack.image[5][far].max() == 0, "nothing outside the dilated territory is shown"
    x = stack.sample(0, spec.context)
    assert x.shape == (spec.channels, 64, 64)
    np.testing.assert_array_equal(x[0], x[1])  # the edge repeats the first slice


def test_heatmap_goes_back_onto_the_input_grid(a_tube_volume):
    hu, territory, spacing = a_tube_volume
    spec = SliceSpec(pixel_mm=1.0, size_px=64)
    stack = build_slice_stack(hu, territory, spacing, spec)
    back = stack.frame.to_volume(stack.territory.astype(np.float32))
    assert back.shape == hu.shape
    dice = 2 * ((back >= 0.5) & (territory > 0)).sum() / ((back >= 0.5).sum() + territory.sum())
    assert dice > 0.93
    with pytest.raises(ValueError, match="slice maps must be"):
        stack.frame.to_volume(np.zeros((20, 32, 32), np.float32))


def test_study_probability_does_not_inflate_with_slice_count():
    rng = np.random.default_rng(0)
    short = rng.uniform(0.0, 0.2, 60)
    long = rng.uniform(0.0, 0.2, 300)
    top_short = study_probability(short, 1.0)
    top_long = study_probability(long, 1.0)
    assert abs(top_long - top_short) < 0.02
    positive = long.copy()
    positive[100:115] = 0.95
    assert study_probability(positive, 1.0) > 0.9
    assert study_probability(positive, 2.5) > 0.9  # K = 4 slices over 10 mm
    with pytest.raises(ValueError, match="positive"):
        study_probability(short, 0.0)


def test_replacing_planes_gives_the_stack_of_the_changed_volume():
    """An iExplain round changes the CT inside the territory's box only; rebuilding those planes must give
    exactly the stack of the whole changed volume (a real phantom, anisotropic, the bundled slice spec)."""
    case = generate_phantom(3, size_xy=(96, 80), n_slices=40, spacing_mm=(1.1, 0.9, 2.0), positive=True)
    hu, territory = case.ct.hu, case.arteries.astype(np.uint8)
    spacing = case.ct.geometry.spacing_mm
    spec = SliceSpec()
    stack = build_slice_stack(hu, territory, spacing, spec)
    zs, ys, xs = (np.flatnonzero(territory.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    box = (slice(zs[0], zs[-1] + 1), slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
    changed = hu.copy()
    changed[box] = np.where(case.emboli[box] > 0, 300, changed[box])  # clot voxels replaced by lumen HU
    assert (changed != hu).any()
    planes = changed[box[0]].copy()
    rebuilt = replace_planes(stack, planes, int(box[0].start), spec)
    whole = build_slice_stack(changed, territory, spacing, spec)
    np.testing.assert_array_equal(rebuilt.image, whole.image)
    np.testing.assert_array_equal(rebuilt.territory, whole.territory)
    assert rebuilt.frame == whole.frame
    assert not np.array_equal(rebuilt.image, stack.image)
    assert stack.image is not rebuilt.image  # the first round's stack is left as it was
    with pytest.raises(ValueError, match="do not fit"):
        replace_planes(stack, planes, hu.shape[0] - 1, spec)

