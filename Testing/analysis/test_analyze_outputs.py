"""``pelabelup analyze``: the output folder on the input's exact grid, result.json, progress lines, .seg.nrrd.

The study is oblique (rotated about two axes) and anisotropic; the models are real networks with hand-set
weights (see ``analysis_helpers``), so where the clot lands in every output is known.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import highdicom
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
from analysis_helpers import CLOT_SLICES, add_segmenter, make_models_dir, run_cli

from PELabelUpLib.analysis.progress import parse_progress_line
from PELabelUpLib.analysis.run import analyze
from PELabelUpLib.evaluate import dice
from PELabelUpLib.explain.registry import DEFAULT_EXPLAINER
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import load_ct
from PELabelUpLib.labelup.pipeline import LabelUpSettings
from PELabelUpLib.models.folder import read_model_folder
from PELabelUpLib.models.inference import precision_record

IMAGES = {"heatmap.nii.gz": np.float32, "pseudomask.nii.gz": np.uint8, "segmentation.nii.gz": np.uint8,
          "arteries.nii.gz": np.uint8}
pytestmark = pytest.mark.slow  # end-to-end: a child process and several analyses

SEGMENT_FILES = {"PE pseudo-mask": "pseudomask.nii.gz", "PE segmenter": "segmentation.nii.gz",
                 "Pulmonary arteries": "arteries.nii.gz"}


def read_image(path: Path) -> tuple[np.ndarray, Geometry]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), Geometry.from_sitk(image)


@pytest.fixture(scope="module")
def a_cli_run(tmp_path_factory, a_nifti_study, a_models_dir):
    """``pelabelup analyze study.nii.gz --progress json`` in a child process."""
    out = tmp_path_factory.mktemp("cli") / "analysis"
    done = run_cli("analyze", str(a_nifti_study), "--out", str(out), "--models-dir", str(a_models_dir),
                   "--device", "cpu", "--progress", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    return done, out


def test_progress_is_json_lines_ending_at_one(a_cli_run):
    done, _ = a_cli_run
    events = [parse_progress_line(line) for line in done.stdout.splitlines()]
    fractions = [e.fraction for e in events]
    assert len(events) >= 8
    assert fractions == sorted(fractions), "fractions never decrease"
    assert (events[-1].stage, events[-1].fraction) == ("done", 1.0)
    assert fractions.count(1.0) == 1, "1.0 only on the last line"
    assert {"models", "load", "arteries", "classifier", "pseudomask", "segmenter", "write"} <= {e.stage for e in events}
    assert "%|" not in done.stderr, "no progress bar besides the JSON lines"


def test_outputs_lie_on_the_oblique_input_grid(a_cli_run, a_nifti_study, a_clot_study):
    _, out = a_cli_run
    volume, clot = a_clot_study
    source = load_ct(a_nifti_study).geometry
    assert sorted(p.name for p in out.iterdir()) == sorted([*IMAGES, "result.json", "segmentation.seg.nrrd"])
    for name, dtype in IMAGES.items():
        array, geometry = read_image(out / name)
        assert geometry.same_grid(source, tol=1e-6), name
        assert geometry.same_grid(volume.geometry, tol=1e-4), name
        assert array.dtype == dtype, name
    heat, _ = read_image(out / "heatmap.nii.gz")
    assert 0.0 <= heat.min() and heat.max() <= 1.0 and heat.max() > 0.5
    pseudomask, _ = read_image(out / "pseudomask.nii.gz")
    assert set(np.unique(pseudomask)) <= {0, 1}
    assert dice(pseudomask > 0, clot) > 0.9, "the pseudo-mask is the clot, voxel for voxel, on the input grid"
    segmentation, _ = read_image(out / "segmentation.nii.gz")
    np.testing.assert_array_equal(segmentation, pseudomask)
    arteries, _ = read_image(out / "arteries.nii.gz")
    assert arteries[clot].all(), "the territory holds the clot"
    assert not list(out.parent.glob(".*")), "no partial folder is left beside the output"


def test_result_json_records_probabilities_emboli_models_and_timings(a_cli_run, a_clot_study, a_models_dir):
    _, out = a_cli_run
    volume, clot = a_clot_study
    record = json.loads((out / "result.json").read_text())
    probs = np.asarray(record["slice_probabilities"])
    assert probs.shape == (volume.geometry.size[2],)
    on_clot = np.isin(np.arange(probs.size), CLOT_SLICES)
    assert probs[on_clot].min() > 0.9 and probs[~on_clot].max() < 0.1
    assert record["pe_probability"] > 0.5
    (embolus,) = record["emboli"]
    assert embolus["source"] == "pseudomask" and embolus["voxels"] == int(clot.sum())
    assert embolus["volume_mm3"] == pytest.approx(clot.sum() * np.prod(volume.geometry.spacing_mm), rel=1e-5)
    expected_lps = volume.geometry.index_to_world(np.argwhere(clot)[:, ::-1].mean(axis=0))
    np.testing.assert_allclose(embolus["centroid_lps_mm"], expected_lps, atol=1e-3)
    assert record["coordinate_system"].startswith("LPS")
    assert 0.5 < embolus["peak_heat"] <= 1.0
    assert record["segmentation_source"] == "pseudomask (no segmenter model)"
    assert record["device"]["device"] == "cpu" and record["settings"]["precision"] == "auto"
    assert record["device"]["precision"] == precision_record("cpu", "auto")
    for model in record["models"]:
        folder = read_model_folder(a_models_dir / model["folder"])
        assert (model["name"], model["version"], model["sha256"]) == \
            (folder.name, folder.version, folder.metadata["sha256"])
    assert [m["task"] for m in record["models"]] == ["artery", "classifier"]
    timings = record["timings_s"]
    assert {"models", "load", "arteries", "classifier", "explain_and_pseudomask", "segmenter", "write"} <= set(timings)
    assert timings["total"] == pytest.approx(sum(v for k, v in timings.items() if k != "total"), abs=0.01)
    assert record["settings"]["explainer"] == DEFAULT_EXPLAINER and record["format"] == 1
    assert record["iexplain"]["explainer"] == "gradcam", "auto: the test classifier names no Grad-CAM++ layer"
    assert "dicom_seg" not in record["files"] and not (out / "segmentation.dcm").exists(), "a NIfTI input: no SEG"


def test_seg_nrrd_holds_the_three_masks_exactly(a_cli_run, a_clot_study):
    _, out = a_cli_run
    geometry = a_clot_study[0].geometry
    data, header = nrrd.read(str(out / "segmentation.seg.nrrd"), index_order="C")
    data = data if data.ndim == 4 else data[..., None]
    names = [header[f"Segment{n}_Name"] for n in range(3)]
    assert names == list(SEGMENT_FILES) and "Segment3_Name" not in header
    np.testing.assert_allclose(header["space origin"], geometry.origin_mm, atol=1e-4)
    np.testing.assert_allclose(np.asarray(header["space directions"])[-3:].T,
                               geometry.direction_matrix * np.asarray(geometry.spacing_mm), atol=1e-4)
    for n, (name, file) in enumerate(SEGMENT_FILES.items()):
        layer, label = int(header[f"Segment{n}_Layer"]), int(header[f"Segment{n}_LabelValue"])
        expected, _ = read_image(out / file)
        np.testing.assert_array_equal(data[..., layer] == label, expected > 0, err_msg=name)
        assert "TerminologyEntry:" in header[f"Segment{n}_Tags"]
    assert "SCT^55584005^Embolus" in header["Segment0_Tags"]
    assert "SCT^81040000^Pulmonary artery" in header["Segment2_Tags"]
    assert "PELabelUp.Source:pseudomask (no segmenter model)" in header["Segment1_Tags"]


def test_slicer_and_slicerio_read_the_segments(a_cli_run):
    slicerio = pytest.importorskip("slicerio")
    slicer = pytest.importorskip("slicer")
    _, out = a_cli_run
    path = str(out / "segmentation.seg.nrrd")
    segmentation = slicerio.read_segmentation(path)
    assert [s["name"] for s in segmentation["segments"]] == list(SEGMENT_FILES)
    assert segmentation["segments"][0]["terminology"]["type"] == ["SCT", "55584005", "Embolus"]
    for name, file in SEGMENT_FILES.items():
        voxels = np.asarray(slicerio.extract_segments(segmentation, [(name, 1)])["voxels"]).transpose(2, 1, 0)
        np.testing.assert_array_equal(voxels == 1, read_image(out / file)[0] > 0, err_msg=name)

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLApplicationLogic(app)
    logic.SetMRMLScene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(path)
    assert storage.ReadData(node) == 1
    seg = node.GetSegmentation()
    assert [seg.GetNthSegment(n).GetName() for n in range(seg.GetNumberOfSegments())] == list(SEGMENT_FILES)
    assert "55584005" in seg.GetSegment("pe_pseudomask").GetTerminology()


def test_a_dicom_folder_gives_outputs_on_its_grid(tmp_path, a_dicom_study, a_clot_study, a_models_dir):
    volume, clot = a_clot_study
    events: list[tuple[str, float, str]] = []
    out = analyze(a_dicom_study, tmp_path / "dicom-analysis", device="cpu", models_dir=a_models_dir,
                  explainer="gradcampp", progress=lambda *event: events.append(event))
    read_geometry = load_ct(a_dicom_study).geometry
    assert read_geometry.same_grid(volume.geometry, tol=1e-3), "the DICOM series keeps the oblique grid"
    for name in IMAGES:
        array, geometry = read_image(out / name)
        assert geometry.same_grid(read_geometry, tol=1e-5), name
    pseudomask, _ = read_image(out / "pseudomask.nii.gz")
    assert dice(pseudomask > 0, clot) > 0.9
    record = json.loads((out / "result.json").read_text())
    assert record["settings"]["explainer"] == "gradcampp"
    assert record["geometry"]["size"] == list(read_geometry.size)
    assert events[-1][:2] == ("done", 1.0)
    # the same segments as a DICOM SEG on the source images (a NIfTI input gets none: test above)
    assert record["files"]["dicom_seg"] == "segmentation.dcm"
    seg = highdicom.seg.segread(out / "segmentation.dcm")
    labels = [d.SegmentLabel for d in seg.SegmentSequence]
    assert labels[0] == "PE pseudo-mask" and labels[-1] == "Pulmonary arteries"
    uids = load_ct(a_dicom_study).meta["sop_uids"]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, len(labels)])
    np.testing.assert_array_equal(pixels[..., 0] > 0, pseudomask > 0)
    np.testing.assert_array_equal(pixels[..., 1] > 0, read_image(out / "arteries.nii.gz")[0] > 0)


def test_a_dicom_seg_that_cannot_be_made_costs_the_analysis_nothing(tmp_path, a_dicom_study, a_models_dir):
    """Source images without what a SEG must copy (here FrameOfReferenceUID): the analysis is written without
    segmentation.dcm, and result.json says why."""
    import pydicom

    series = tmp_path / "series"
    shutil.copytree(a_dicom_study, series)
    for path in series.iterdir():
        ds = pydicom.dcmread(path)
        del ds.FrameOfReferenceUID
        ds.save_as(path)
    out = analyze(series, tmp_path / "out", device="cpu", models_dir=a_models_dir)
    record = json.loads((out / "result.json").read_text())
    assert "Frame Of Reference UID" in record["dicom_seg_error"] and "dicom_seg" not in record["files"]
    assert not (out / "segmentation.dcm").exists() and (out / "segmentation.seg.nrrd").is_file()


def test_a_segmenter_model_makes_the_segmentation(tmp_path, a_nifti_study, a_clot_study):
    models = make_models_dir(tmp_path / "models", segmenter=True)
    add_segmenter(models, version="0.0.4-test", folder="pelabelup-segmenter@0.0.4-test")
    out = analyze(a_nifti_study, tmp_path / "out", device="cpu", models_dir=models)
    record = json.loads((out / "result.json").read_text())
    assert record["segmentation_source"] == "segmenter"
    assert [m["version"] for m in record["models"] if m["task"] == "segmenter"] == ["0.0.3-test"], "bundled first"
    segmentation, _ = read_image(out / "segmentation.nii.gz")
    pseudomask, _ = read_image(out / "pseudomask.nii.gz")
    assert segmentation.sum() > pseudomask.sum() > 0, "the constant segmenter marks its whole allowed region"
    assert {e["source"] for e in record["emboli"]} == {"pseudomask", "segmenter"}
    segment_voxels = sum(e["voxels"] for e in record["emboli"] if e["source"] == "segmenter")
    assert segment_voxels == int(segmentation.sum())
    _, header = nrrd.read(str(out / "segmentation.seg.nrrd"), index_order="C")
    assert "PELabelUp.Source:segmenter|" in header["Segment1_Tags"]

    latest = analyze(a_nifti_study, tmp_path / "latest", device="cpu", models_dir=models,
                     model_versions={"segmenter": "latest"})
    record = json.loads((latest / "result.json").read_text())
    assert [m["folder"] for m in record["models"] if m["task"] == "segmenter"] == ["pelabelup-segmenter@0.0.4-test"]


def test_float32_precision_is_recorded_and_finds_the_same_masks(tmp_path, a_nifti_study):
    models = make_models_dir(tmp_path / "models", segmenter=True)
    auto = analyze(a_nifti_study, tmp_path / "auto", device="cpu", models_dir=models)
    full = analyze(a_nifti_study, tmp_path / "full", device="cpu", models_dir=models, precision="float32")
    record = json.loads((full / "result.json").read_text())
    assert record["settings"]["precision"] == "float32" and record["device"]["mixed_precision"] is False
    assert set(record["device"]["precision"].values()) == {"float32"}
    for name in ("arteries.nii.gz", "pseudomask.nii.gz", "segmentation.nii.gz"):
        np.testing.assert_array_equal(read_image(full / name)[0], read_image(auto / name)[0], err_msg=name)
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        analyze(a_nifti_study, tmp_path / "bad", device="cpu", models_dir=models, precision="half")
    assert not (tmp_path / "bad").exists()


def test_the_segmentation_follows_the_chain_rules(tmp_path, a_nifti_study):
    models = make_models_dir(tmp_path / "models", segmenter=True)
    gated = analyze(a_nifti_study, tmp_path / "gated", device="cpu", models_dir=models,
                    settings=LabelUpSettings(min_study_probability=1.01))  # the study reads as negative
    assert json.loads((gated / "result.json").read_text())["emboli"] == []
    assert read_image(gated / "segmentation.nii.gz")[0].sum() == 0 == read_image(gated / "pseudomask.nii.gz")[0].sum()

    full = analyze(a_nifti_study, tmp_path / "full", device="cpu", models_dir=models)
    segmentation, geometry = read_image(full / "segmentation.nii.gz")
    region_mm3 = float(segmentation.sum()) * float(np.prod(geometry.spacing_mm))
    assert region_mm3 > 0  # the constant segmenter marks its whole allowed region, one component
    small = analyze(a_nifti_study, tmp_path / "small", device="cpu", models_dir=models,
                    settings=LabelUpSettings(min_volume_mm3=1.5 * region_mm3))
    assert read_image(small / "segmentation.nii.gz")[0].sum() == 0  # under the minimum volume: dropped
