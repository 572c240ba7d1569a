"""Volume nodes as grids and arrays: IJK->RAS matrices, LPS :class:`Geometry`, numpy views of voxels.

MRML works in RAS; the core and the files work in LPS (``RAS = diag(-1, -1, 1) @ LPS``). A volume node's
IJK->RAS matrix maps the continuous index ``(i, j, k) = (x, y, z)`` to RAS mm. Numpy arrays are ``(Z, Y, X)``,
the order of the node's ``vtkImageData`` scalars.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtkmodules.util import numpy_support

from ..geometry import Geometry

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def numpy_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras(volume_node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The node's 4x4 IJK->RAS matrix (index (i, j, k) -> RAS mm)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix_to_numpy(matrix)


def geometry_of(volume_node: slicer.vtkMRMLVolumeNode) -> Geometry:
    """The node's grid as an LPS :class:`Geometry` (size (x, y, z), spacing mm, origin LPS mm, direction)."""
    image = volume_node.GetImageData()
    if image is None:
        raise ValueError(f"volume node {volume_node.GetName()!r} has no image data")
    m = ijk_to_ras(volume_node)
    spacing = np.asarray(volume_node.GetSpacing(), dtype=float)
    direction_lps = LPS_TO_RAS @ m[:3, :3] / spacing  # columns: LPS unit vectors of i, j, k
    return Geometry(size=tuple(int(d) for d in image.GetDimensions()), spacing_mm=tuple(float(s) for s in spacing),
                    origin_mm=tuple(float(v) for v in LPS_TO_RAS @ m[:3, 3]),
                    direction=tuple(float(v) for v in direction_lps.ravel()))


def ijk_to_ras_of(geometry: Geometry) -> np.ndarray:
    """4x4 IJK->RAS matrix of an LPS :class:`Geometry`."""
    m = np.eye(4)
    m[:3, :3] = LPS_TO_RAS @ geometry.direction_matrix @ np.diag(geometry.spacing_mm)
    m[:3, 3] = LPS_TO_RAS @ np.asarray(geometry.origin_mm, dtype=float)
    return m


def index_to_ras(volume_node: slicer.vtkMRMLVolumeNode, ijk: np.ndarray) -> np.ndarray:
    """Continuous index ``(..., 3)`` in (i, j, k) order -> RAS mm ``(..., 3)``."""
    m = ijk_to_ras(volume_node)
    return np.asarray(ijk, dtype=float) @ m[:3, :3].T + m[:3, 3]


def lps_to_ras(xyz_lps: np.ndarray) -> np.ndarray:
    """LPS mm ``(..., 3)`` -> RAS mm ``(..., 3)`` (and back: the map is its own inverse)."""
    return np.asarray(xyz_lps, dtype=float) @ LPS_TO_RAS


def voxels(image: vtk.vtkImageData) -> np.ndarray:
    """The scalars of a one-component ``vtkImageData`` as a ``(Z, Y, X)`` numpy view (shares memory)."""
    dims = image.GetDimensions()
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        raise ValueError("image data has no scalars")
    if scalars.GetNumberOfComponents() != 1:
        raise ValueError(f"expected one scalar component, got {scalars.GetNumberOfComponents()}")
    return numpy_support.vtk_to_numpy(scalars).reshape(dims[2], dims[1], dims[0])


def volume_array(volume_node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The voxels of a scalar or labelmap volume node, ``(Z, Y, X)``, as a view of its image data."""
    image = volume_node.GetImageData()
    if image is None:
        raise ValueError(f"volume node {volume_node.GetName()!r} has no image data")
    return voxels(image)


def image_from_array(array_zyx: np.ndarray) -> vtk.vtkImageData:
    """A ``vtkImageData`` holding a copy of a ``(Z, Y, X)`` array (origin 0, spacing 1: the node adds the grid)."""
    array = np.ascontiguousarray(array_zyx)
    if array.ndim != 3:
        raise ValueError(f"expected a 3-D (Z, Y, X) array, got shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


def add_volume_on_grid(scene: slicer.vtkMRMLScene, array_zyx: np.ndarray, geometry: Geometry, name: str, *,
                       labelmap: bool = False) -> slicer.vtkMRMLVolumeNode:
    """A new scalar (or labelmap) volume node holding a copy of ``array_zyx`` on an LPS :class:`Geometry`."""
    if tuple(np.shape(array_zyx)) != geometry.shape_zyx:
        raise ValueError(f"array shape {np.shape(array_zyx)} does not match the grid (Z, Y, X) {geometry.shape_zyx}")
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    node.SetIJKToRASMatrix(numpy_to_matrix(ijk_to_ras_of(geometry)))
    node.SetAndObserveImageData(image_from_array(array_zyx))
    node.CreateDefaultDisplayNodes()
    return node


def add_volume_from_array(scene: slicer.vtkMRMLScene, array_zyx: np.ndarray, like: slicer.vtkMRMLVolumeNode,
                          name: str, *, labelmap: bool = False) -> slicer.vtkMRMLVolumeNode:
    """A new scalar (or labelmap) volume node with ``array_zyx`` on the grid of ``like`` (same IJK->RAS).

    Raises:
        ValueError: the array's shape is not the ``(Z, Y, X)`` shape of ``like``.
    """
    expected = geometry_of(like).shape_zyx
    if tuple(np.shape(array_zyx)) != expected:
        raise ValueError(f"array shape {np.shape(array_zyx)} does not match the grid (Z, Y, X) {expected} "
                         f"of {like.GetName()!r}")
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, name)
    node.SetIJKToRASMatrix(numpy_to_matrix(ijk_to_ras(like)))
    node.SetAndObserveImageData(image_from_array(array_zyx))
    node.CreateDefaultDisplayNodes()
    return node
