"""Slicer ``.seg.nrrd`` writer: read back by pynrrd, slicerio and Slicer's own storage node, voxel-exact.

Masks overlap (a clot inside an artery, two clot masks sharing voxels), so the file needs layers; every grid of
the io table (oblique, anisotropic, odd origins) must come back on the same LPS positions.
"""

from __future__ import annotations

from pathlib import Path

import nrrd
import numpy as np
import pytest
from io_helpers import GEOMETRIES

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io.seg_nrrd import Segment, mask_extent, pack_layers, write_seg_nrrd

EMBOLUS_ENTRY = ("Segmentation category and type - DICOM master list~SCT^49755003^Morphologically Altered Structure"
                 "~SCT^55584005^Embolus~^^~Anatomic codes - DICOM master list~SCT^81040000^Pulmonary artery~^^")
ARTERY_ENTRY = ("Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure"
                "~SCT^81040000^Pulmonary artery~^^~~^^~^^")


def overlapping_segments(geometry: Geometry, seed: int = 0) -> list[Segment]:
    """An 'artery' blob, two 'clot' masks inside it that share voxels, and an empty segment."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n) for n in geometry.shape_zyx), indexing="ij")
    cz, cy, cx = (np.asarray(geometry.shape_zyx) - 1) / 2.0
    artery = ((x - cx) / (0.4 * geometry.size[0])) ** 2 + ((y - cy) / (0.3 * geometry.size[1])) ** 2 < 1.0
    artery &= rng.random(artery.shape) < 0.97
    clot_a = artery & (z < cz) & (x <= cx)
    clot_b = artery & (z <= cz + 1) & (x >= cx - 2) & (y < cy + 2)
    return [
        Segment("clot_a", "PE pseudo-mask", clot_a, (0.0, 0.9, 1.0), EMBOLUS_ENTRY, {"PELabelUp.Source": "pseudomask"}),
        Segment("clot_b", "PE segmenter", clot_b, (0.35, 1.0, 0.25), EMBOLUS_ENTRY),
        Segment("artery", "Pulmonary arteries", artery, (0.85, 0.55, 0.95), ARTERY_ENTRY),
        Segment("none", "Nothing", np.zeros(geometry.shape_zyx, bool), (1.0, 1.0, 0.0)),
    ]


def masks_from_pynrrd(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    data, header = nrrd.read(str(path), index_order="C")  # (Z, Y, X[, layer])
    if data.ndim == 3:
        data = data[..., None]
    masks, n = {}, 0
    while f"Segment{n}_ID" in header:
        layer, label = int(header[f"Segment{n}_Layer"]), int(header[f"Segment{n}_LabelValue"])
        masks[header[f"Segment{n}_Name"]] = data[..., layer] == label
        n += 1
    return masks, header


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_pynrrd_reads_the_grid_names_and_exact_masks(geometry, tmp_path):
    segments = overlapping_segments(geometry)
    path = write_seg_nrrd(segments, geometry, tmp_path / "out" / "s.seg.nrrd")

    masks, header = masks_from_pynrrd(path)
    assert list(masks) == [s.name for s in segments]
    for s in segments:
        np.testing.assert_array_equal(masks[s.name], s.mask, err_msg=s.name)
    assert header["space"] == "left-posterior-superior"
    assert list(header["kinds"]) == ["list", "domain", "domain", "domain"]
    columns = np.asarray(header["space directions"])[1:].T  # rows of the header are the axes' vectors
    np.testing.assert_allclose(columns, geometry.direction_matrix * np.asarray(geometry.spacing_mm), atol=1e-12)
    np.testing.assert_allclose(header["space origin"], geometry.origin_mm, atol=1e-12)
    assert header["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert header["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"
    assert header["Segment0_Tags"] == f"PELabelUp.Source:pseudomask|TerminologyEntry:{EMBOLUS_ENTRY}|"
    assert header["Segment3_Extent"] == "0 -1 0 -1 0 -1"
    for n, s in enumerate(segments):
        assert header[f"Segment{n}_Extent"] == " ".join(map(str, mask_extent(np.asarray(s.mask))))
    assert not list(tmp_path.joinpath("out").glob(".*")), "no temporary file is left"


def test_layers_are_packed_greedily():
    a = np.zeros((2, 3, 4), bool)
    a[0, 0, :2] = True
    b = np.roll(a, 1, axis=2)  # overlaps a
    c = np.zeros_like(a)
    c[1] = True  # touches neither
    assert pack_layers([a, b, c]) == [(0, 1), (1, 1), (0, 2)]
    assert pack_layers([a, c], [5, 5]) == [(0, 5), (1, 5)], "a value used in a layer sends the mask on"


def test_a_label_map_keeps_its_values_in_one_layer(tmp_path):
    geometry = Geometry((6, 5, 4), (0.5, 0.5, 2.0), (1.0, 2.0, 3.0))
    labels = np.zeros(geometry.shape_zyx, np.uint8)
    labels[1, 1:3, 1:4] = 1
    labels[3, :, 4:] = 7
    path = write_seg_nrrd(labels, geometry, tmp_path / "final.seg.nrrd")
    data, header = nrrd.read(str(path), index_order="C")
    assert data.shape == geometry.shape_zyx and header["dimension"] == 3
    np.testing.assert_array_equal(data, labels)
    assert (header["Segment0_Name"], header["Segment0_LabelValue"]) == ("Segment_1", "1")
    assert (header["Segment1_Name"], header["Segment1_LabelValue"]) == ("Segment_7", "7")


@pytest.mark.parametrize(("change", "message"), [
    ({"mask": np.zeros((2, 2, 2), bool)}, "does not match the grid"),
    ({"name": "two\nlines"}, "segment name"),
    ({"color": (1.0, 2.0, 0.0)}, "color"),
    ({"terminology": "a~b"}, "7 '~'-separated"),
    ({"tags": {"a|b": "c"}}, "tag key"),
])
def test_bad_segments_are_refused(change, message, tmp_path):
    geometry = Geometry((4, 4, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    fields = {"segment_id": "s", "name": "S", "mask": np.ones(geometry.shape_zyx, bool)} | change
    with pytest.raises(ValueError, match=message):
        write_seg_nrrd([Segment(**fields)], geometry, tmp_path / "bad.seg.nrrd")
    assert not (tmp_path / "bad.seg.nrrd").exists()
    twice = [Segment("s", "S", np.ones(geometry.shape_zyx, bool))] * 2
    with pytest.raises(ValueError, match="unique"):
        write_seg_nrrd(twice, geometry, tmp_path / "bad.seg.nrrd")


def test_slicerio_reads_names_terminology_and_exact_masks(tmp_path):
    slicerio = pytest.importorskip("slicerio")
    geometry = GEOMETRIES[2].values[0]
    segments = overlapping_segments(geometry, seed=3)
    path = write_seg_nrrd(segments, geometry, tmp_path / "s.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    by_name = {s["name"]: s for s in segmentation["segments"]}
    assert list(by_name) == [s.name for s in segments]
    assert by_name["PE segmenter"]["terminology"]["type"] == ["SCT", "55584005", "Embolus"]
    assert by_name["PE segmenter"]["terminology"]["anatomicRegion"] == ["SCT", "81040000", "Pulmonary artery"]
    assert by_name["Pulmonary arteries"]["terminology"]["category"] == ["SCT", "123037004", "Anatomical Structure"]
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"])
    np.testing.assert_allclose(ijk_to_lps[:3, :3], geometry.direction_matrix * np.asarray(geometry.spacing_mm),
                               atol=1e-12)
    for s in segments[:3]:
        one = slicerio.extract_segments(segmentation, [(s.name, 1)])
        voxels = np.asarray(one["voxels"])  # slicerio keeps pynrrd's (i, j, k) order
        np.testing.assert_array_equal(voxels.transpose(2, 1, 0) == 1, s.mask, err_msg=s.name)


def test_slicer_storage_node_reads_names_and_exact_masks(tmp_path):
    slicer = pytest.importorskip("slicer")
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    geometry = GEOMETRIES[2].values[0]
    segments = overlapping_segments(geometry, seed=5)
    path = write_seg_nrrd(segments, geometry, tmp_path / "s.seg.nrrd")

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    logic = slicer.vtkSlicerSegmentationsModuleLogic()  # registers the labelmap representation rules
    logic.SetMRMLApplicationLogic(app)
    logic.SetMRMLScene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    segmentation = node.GetSegmentation()
    assert [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())] == \
        [s.name for s in segments]
    expected_ijk_to_ras = np.diag([-1.0, -1.0, 1.0]) @ geometry.direction_matrix @ np.diag(geometry.spacing_mm)
    for s in segments:
        segment = segmentation.GetSegment(s.segment_id)
        assert segment.GetTerminology() == (s.terminology or segment.GetTerminology())
        image = segment.GetRepresentation("Binary labelmap")
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        m = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        np.testing.assert_allclose(m[:3, :3], expected_ijk_to_ras, atol=1e-9)
        np.testing.assert_allclose(m[:3, 3], np.diag([-1.0, -1.0, 1.0]) @ geometry.origin_mm, atol=1e-9)
        full = np.zeros(geometry.shape_zyx, bool)
        i0, i1, j0, j1, k0, k1 = image.GetExtent()
        if i1 >= i0:
            voxels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
            full[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = voxels == segment.GetLabelValue()
        np.testing.assert_array_equal(full, s.mask, err_msg=s.name)
