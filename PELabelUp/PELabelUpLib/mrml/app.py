"""The MRML scene and the Slicer module logics every function of this package takes as arguments.

Inside 3D Slicer the logics come from the running application
(:meth:`SlicerLogics.from_application_logic` with ``slicer.app.applicationLogic()``); without the application
(the ``slicer-core`` wheel: tests, scripts, servers) :func:`create_headless_scene` builds a scene with the same
real logics, registered under the same module names, and three slice views (Red axial, Yellow sagittal,
Green coronal) whose slice logics blend the layers into an RGBA image (see :mod:`.render`).

Nothing here uses ``slicer.app``, ``slicer.mrmlScene`` or ``slicer.util`` helpers that need the application.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import slicer
from vtkmodules.vtkCommonCore import vtkCollection, vtkLogger

log = logging.getLogger(__name__)

# layout name -> default orientation, as in Slicer's conventional layout
SLICE_VIEWS: dict[str, str] = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}
DEFAULT_VIEW_SIZE_PX = (512, 512)


@dataclass(frozen=True)
class SlicerLogics:
    """A scene and the module logics that act on it.

    Attributes:
        scene: the ``vtkMRMLScene``.
        app: the ``vtkSlicerApplicationLogic`` (owns the slice logics and the module logic registry).
        colors: the Colors module logic.
        volumes: the Volumes module logic (``AddArchetypeVolume``).
        subject_hierarchy: the Subject Hierarchy module logic.
        segmentations: the Segmentations module logic.
        slice_logics: ``vtkMRMLSliceLogic`` by layout name (``"Red"``, ``"Yellow"``, ``"Green"``...).

    The application logic does not own the module logics registered with it: keep this object alive as long as
    the scene is used headless (inside Slicer the modules own them).
    """

    scene: slicer.vtkMRMLScene
    app: slicer.vtkSlicerApplicationLogic
    colors: slicer.vtkMRMLColorLogic
    volumes: slicer.vtkSlicerVolumesLogic
    subject_hierarchy: slicer.vtkSlicerSubjectHierarchyModuleLogic
    segmentations: slicer.vtkSlicerSegmentationsModuleLogic
    slice_logics: dict[str, slicer.vtkMRMLSliceLogic] = field(default_factory=dict)

    @classmethod
    def from_application_logic(cls, app: slicer.vtkSlicerApplicationLogic) -> SlicerLogics:
        """The logics registered with a running application logic (Slicer's, or a headless one).

        Raises:
            ValueError: a needed module logic is not registered (the missing module names are listed).
        """
        names = {"colors": "Colors", "volumes": "Volumes", "subject_hierarchy": "SubjectHierarchy",
                 "segmentations": "Segmentations"}
        found = {key: app.GetModuleLogic(name) for key, name in names.items()}
        missing = [names[key] for key, logic in found.items() if logic is None]
        if missing:
            raise ValueError(f"module logics not registered with the application logic: {', '.join(missing)}")
        return cls(scene=app.GetMRMLScene(), app=app, slice_logics=slice_logics_by_name(app), **found)


def slice_logics_by_name(app: slicer.vtkMRMLApplicationLogic) -> dict[str, slicer.vtkMRMLSliceLogic]:
    """The application's slice logics keyed by their slice node's layout name (``"Red"``...)."""
    logics: dict[str, slicer.vtkMRMLSliceLogic] = {}
    collection = app.GetSliceLogics()
    for n in range(collection.GetNumberOfItems() if collection is not None else 0):
        logic = collection.GetItemAsObject(n)
        node = logic.GetSliceNode()
        if node is not None:
            logics[node.GetLayoutName()] = logic
    return logics


@contextmanager
def _quiet_vtk_log() -> Iterator[None]:
    """Silence VTK's stderr log for a block (the wheel's colour logic complains that it has no colour files)."""
    previous = vtkLogger.GetCurrentVerbosityCutoff()
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_OFF)
    try:
        yield
    finally:
        vtkLogger.SetStderrVerbosity(previous)


def _register(app: slicer.vtkSlicerApplicationLogic, scene: slicer.vtkMRMLScene, name: str, logic):
    # application logic first: the other order makes the colour logic complain
    logic.SetMRMLApplicationLogic(app)
    logic.SetMRMLScene(scene)
    app.SetModuleLogic(name, logic)
    return logic


def add_slice_view(app: slicer.vtkSlicerApplicationLogic, scene: slicer.vtkMRMLScene, layout_name: str,
                   orientation: str, view_size_px: tuple[int, int]) -> slicer.vtkMRMLSliceLogic:
    """A slice view without a widget: slice node, composite node and the slice logic that blends them.

    ``view_size_px`` is (width, height) in pixels, the size of the image the logic produces.
    """
    width, height = (int(v) for v in view_size_px)
    if width < 1 or height < 1:
        raise ValueError(f"view size must be two positive pixel counts, got {view_size_px}")
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLApplicationLogic(app)
    logic.SetMRMLScene(scene)
    node = logic.AddSliceNode(layout_name)
    node.SetOrientation(orientation)
    logic.ResizeSliceNode(width, height)
    app.GetSliceLogics().AddItem(logic)
    return logic


def create_headless_scene(
    slice_views: Sequence[str] = tuple(SLICE_VIEWS), view_size_px: tuple[int, int] = DEFAULT_VIEW_SIZE_PX
) -> SlicerLogics:
    """A ``vtkMRMLScene`` with Slicer's application logic and the Colors, Volumes, Subject Hierarchy and
    Segmentations module logics, as Slicer builds them, without Qt or the Slicer application.

    Args:
        slice_views: layout names of the slice views to create (``"Red"`` axial, ``"Yellow"`` sagittal,
            ``"Green"`` coronal; another name gets an axial view).
        view_size_px: (width, height) of every slice view in pixels.

    Returns:
        :class:`SlicerLogics` with the scene, the logics and the slice logics by layout name.
    """
    scene = slicer.vtkMRMLScene()
    crosshair = slicer.vtkMRMLCrosshairNode()
    crosshair.SetCrosshairName("default")
    scene.AddNode(crosshair)

    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    app.GetColorLogic().SetMRMLScene(scene)
    app.GetColorLogic().AddDefaultColorNodes()
    app.SetSliceLogics(vtkCollection())
    app.SetViewLogics(vtkCollection())

    with _quiet_vtk_log():  # the wheel has no colour files; the logic says so on stderr
        colors = _register(app, scene, "Colors", slicer.vtkSlicerColorLogic())
    volumes = _register(app, scene, "Volumes", slicer.vtkSlicerVolumesLogic())
    subject_hierarchy = _register(app, scene, "SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic())
    segmentations = _register(app, scene, "Segmentations", slicer.vtkSlicerSegmentationsModuleLogic())
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)  # patient right = screen left

    slice_logics = {
        name: add_slice_view(app, scene, name, SLICE_VIEWS.get(name, "Axial"), view_size_px) for name in slice_views
    }
    log.debug("headless scene with %d nodes, slice views %s", scene.GetNumberOfNodes(), list(slice_logics))
    return SlicerLogics(scene=scene, app=app, colors=colors, volumes=volumes, subject_hierarchy=subject_hierarchy,
                        segmentations=segmentations, slice_logics=slice_logics)
