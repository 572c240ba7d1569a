"""PNG overviews: written with the requested size, through the largest embolus, refusing bad input."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.render import overview_point, render_overview
from PELabelUpLib.synthetic.grid import rotation
from PELabelUpLib.volume import CTVolume


@pytest.fixture(scope="module")
def a_volume() -> tuple[CTVolume, dict[str, np.ndarray]]:
    """A bright tube in air with two labelled blobs, anisotropic spacing."""
    geometry = Geometry(size=(40, 32, 24), spacing_mm=(0.8, 0.8, 2.0), origin_mm=(-16.0, -12.0, -24.0))
    hu = np.full(geometry.shape_zyx, -1000, dtype=np.int16)
    hu[:, 12:20, 10:30] = 400
    emboli = np.zeros(geometry.shape_zyx, dtype=np.uint8)
    emboli[4:6, 14:16, 12:14] = 1  # 8 voxels
    emboli[10:14, 13:18, 20:26] = 2  # 120 voxels: the largest
    arteries = (hu > 0).astype(np.uint8)
    return CTVolume(hu, geometry, source="test"), {"emboli": emboli, "arteries": arteries}


def test_writes_a_png_of_the_requested_size(a_volume, tmp_path):
    ct, overlays = a_volume
    path = render_overview(ct, overlays, tmp_path / "sub" / "overview.png", title="a test", size_px=(900, 360))
    assert path.is_file()
    assert path.stat().st_size > 1000
    image = mpimg.imread(path)
    assert image.shape[:2] == (360, 900)
    assert image[..., :3].std() > 0.05, "not a blank picture"
    # the emboli overlay is drawn in red: some strongly red pixels exist
    red = (image[..., 0] > 0.6) & (image[..., 1] < 0.35) & (image[..., 2] < 0.35)
    assert red.sum() > 20


def test_plain_volume_and_oblique_grid(a_volume, tmp_path):
    ct, _ = a_volume
    tilted = Geometry(ct.geometry.size, ct.geometry.spacing_mm, ct.geometry.origin_mm,
                      tuple(rotation(np.array([1.0, 0.0, 0.0]), 10.0).ravel()))
    path = render_overview(CTVolume(ct.hu, tilted), None, tmp_path / "plain.png")
    assert mpimg.imread(path).shape[:2] == (560, 1500)


def test_default_point_is_the_largest_embolus(a_volume):
    ct, overlays = a_volume
    z, y, x = overview_point(ct.hu.shape, overlays)
    assert overlays["emboli"][z, y, x] == 2
    assert overview_point(ct.hu.shape, {"arteries": overlays["arteries"]}) == (12, 16, 20)


def test_heatmap_is_drawn_in_warm_colours_where_it_is_high(a_volume, tmp_path):
    ct, overlays = a_volume
    heat = np.zeros(ct.hu.shape, np.float32)
    heat[8:16, 10:20, 16:30] = 0.7  # around the largest embolus, where the planes cut (inferno: orange)
    plain = mpimg.imread(render_overview(ct, None, tmp_path / "plain.png", size_px=(900, 360), heatmap=heat * 0))
    hot = mpimg.imread(render_overview(ct, None, tmp_path / "hot.png", size_px=(900, 360), heatmap=heat))
    warm = lambda im: (im[..., 0] > 0.7) & (im[..., 2] < 0.5) & (im[..., 0] - im[..., 2] > 0.3)  # noqa: E731
    assert warm(hot).sum() > 50 + warm(plain).sum()  # inferno's top is yellow-orange: red high, blue low
    faint = mpimg.imread(render_overview(ct, None, tmp_path / "faint.png", size_px=(900, 360), heatmap=heat * 0.1))
    assert warm(faint).sum() == warm(plain).sum()  # below the floor: nothing drawn (the legend is alike)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"window": (100, 0)}, "width"), ({"point_zyx": (99, 0, 0)}, "outside"), ({"overlays": {"x": np.zeros(3)}}, "shape"),
     ({"heatmap": np.zeros((2, 2, 2))}, "heatmap")],
)
def test_bad_input_is_refused(a_volume, tmp_path, kwargs, match):
    ct, overlays = a_volume
    args = {"overlays": overlays, **kwargs}
    with pytest.raises(ValueError, match=match):
        render_overview(ct, args.pop("overlays"), tmp_path / "x.png", **args)
