"""The headless scene: Slicer's module logics registered as in the application, slice views, colours."""

from __future__ import annotations

import sys

import matplotlib
import numpy as np
import pytest

from PELabelUpLib.mrml import SlicerLogics, create_headless_scene, perceptual_color_node
from PELabelUpLib.mrml.app import SLICE_VIEWS
from PELabelUpLib.mrml.colors import colormap_rgba

slicer = pytest.importorskip("slicer")


def test_scene_has_the_module_logics_under_their_module_names(a_scene: SlicerLogics) -> None:
    again = SlicerLogics.from_application_logic(a_scene.app)
    assert again.scene is a_scene.scene
    assert again.volumes is a_scene.volumes
    assert again.segmentations is a_scene.segmentations
    assert again.subject_hierarchy is a_scene.subject_hierarchy
    assert isinstance(a_scene.colors, slicer.vtkSlicerColorLogic)
    assert a_scene.scene.GetSubjectHierarchyNode() is not None
    assert a_scene.volumes.GetMRMLApplicationLogic() is a_scene.app


def test_missing_module_logic_is_named() -> None:
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(slicer.vtkMRMLScene())
    volumes = slicer.vtkSlicerVolumesLogic()  # the application logic does not own its module logics
    app.SetModuleLogic("Volumes", volumes)
    with pytest.raises(ValueError, match="Colors, SubjectHierarchy, Segmentations"):
        SlicerLogics.from_application_logic(app)


def test_slice_views_have_nodes_composite_nodes_and_orientations(a_scene: SlicerLogics) -> None:
    assert set(a_scene.slice_logics) == set(SLICE_VIEWS)
    for name, logic in a_scene.slice_logics.items():
        node = logic.GetSliceNode()
        assert node.GetLayoutName() == name
        assert node.GetOrientation() == SLICE_VIEWS[name]
        assert logic.GetSliceCompositeNode() is not None
    assert a_scene.scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode") == len(SLICE_VIEWS)
    assert SlicerLogics.from_application_logic(a_scene.app).slice_logics.keys() == a_scene.slice_logics.keys()


def test_building_a_scene_keeps_stderr_clean(capfd: pytest.CaptureFixture[str]) -> None:
    create_headless_scene(slice_views=("Red",), view_size_px=(8, 8))
    assert capfd.readouterr().err == ""


def test_bad_view_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(0, 10\)"):
        create_headless_scene(view_size_px=(0, 10))


def test_colour_node_holds_matplotlib_colours_and_is_reused(a_scene: SlicerLogics) -> None:
    node = perceptual_color_node(a_scene.scene, "viridis", 64)
    expected = matplotlib.colormaps["viridis"](np.linspace(0, 1, 64))
    got = np.array([node.GetLookupTable().GetTableValue(i) for i in range(64)])
    np.testing.assert_allclose(got, expected, atol=0.5 / 255 + 1e-6)  # the lookup table keeps 8 bits
    assert perceptual_color_node(a_scene.scene, "viridis", 64) is node
    assert perceptual_color_node(a_scene.scene, "inferno", 64) is not node


@pytest.mark.parametrize(("name", "n_colors"), [("jet", 256), ("inferno", 1), ("inferno", 2.5)])
def test_bad_colour_map_requests_are_refused(name: str, n_colors: float) -> None:
    with pytest.raises(ValueError, match=repr(name) if name == "jet" else str(n_colors)):
        colormap_rgba(name, n_colors)  # type: ignore[arg-type]


def test_without_matplotlib_slicers_own_colour_node_is_used(a_scene: SlicerLogics, monkeypatch) -> None:
    """Slicer's Python may lack matplotlib; Slicer itself has an "Inferno" colour node then."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    with pytest.raises(ImportError):
        perceptual_color_node(a_scene.scene, "inferno")
    builtin = slicer.vtkMRMLColorTableNode()
    builtin.SetName("Inferno")
    a_scene.scene.AddNode(builtin)
    assert perceptual_color_node(a_scene.scene, "inferno") is builtin
