"""``pelabelup analyze --arteries``: a given pulmonary-artery mask replaces the artery model's territory.

The test artery model's territory is the whole body, so the clot study's clot is found without a mask; a given
mask decides where emboli may lie instead. The study is oblique and anisotropic (``analysis_helpers``).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
from analysis_helpers import CLOT_SLICES, run_cli

from PELabelUpLib.analysis.progress import JsonLinesProgress
from PELabelUpLib.analysis.requests import Request, parse_request
from PELabelUpLib.analysis.run import analyze
from PELabelUpLib.analysis.serve import serve
from PELabelUpLib.analysis.territory import read_territory
from PELabelUpLib.errors import InputError
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import write_volume

pytestmark = pytest.mark.slow  # several analyses and a child process


def read_mask(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def box_mask(shape, z, y, x) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[z, y, x] = 1
    return mask


@pytest.fixture(scope="module")
def a_clot_box(a_clot_study) -> np.ndarray:
    """A territory holding the clot with a margin of blood around it (not the whole body)."""
    volume, clot = a_clot_study
    zz, yy, xx = np.nonzero(clot)
    return box_mask(volume.hu.shape, slice(zz.min() - 2, zz.max() + 3), slice(yy.min() - 5, yy.max() + 6),
                    slice(xx.min() - 5, xx.max() + 6))


def test_a_mask_holding_the_clot_is_the_territory(tmp_path, a_clot_study, a_clot_box, a_nifti_study, a_models_dir):
    volume, clot = a_clot_study
    mask_file = write_volume(a_clot_box, tmp_path / "pa.nii.gz", volume.geometry)
    out = analyze(a_nifti_study, tmp_path / "out", device="cpu", models_dir=a_models_dir, arteries=mask_file)
    arteries = read_mask(out / "arteries.nii.gz")
    np.testing.assert_array_equal(arteries, a_clot_box)
    pseudo = read_mask(out / "pseudomask.nii.gz") > 0
    assert pseudo[clot].mean() > 0.8, "the clot inside the given territory is found"
    assert not (pseudo & (a_clot_box == 0)).any(), "the pseudo-mask lies inside the given territory"
    record = json.loads((out / "result.json").read_text())
    assert record["territory"] == {
        "source": "file", "file": "pa.nii.gz", "sha256": hashlib.sha256(mask_file.read_bytes()).hexdigest(),
        "label": None, "resampled": False, "voxels": int(a_clot_box.sum()),
        "volume_ml": round(int(a_clot_box.sum()) * float(np.prod(volume.geometry.spacing_mm)) / 1000, 3),
        "holes_filled_voxels": 0}
    assert [m["task"] for m in record["models"]] == ["classifier"], "the artery model did not run"
    header = nrrd.read_header(str(out / "segmentation.seg.nrrd"))
    (arteries_tags,) = [header[k.replace("_Name", "_Tags")] for k, v in header.items()
                        if k.endswith("_Name") and v == "Pulmonary arteries"]
    assert "PELabelUp.Source:given mask pa.nii.gz|" in arteries_tags


def test_a_mask_given_needs_no_artery_model(tmp_path, a_clot_study, a_clot_box, a_nifti_study, a_models_dir):
    """Where every study brings its mask the artery model is neither loaded nor needed; without a mask its
    absence is the one-line missing-model error."""
    volume, clot = a_clot_study
    no_artery = tmp_path / "models"
    shutil.copytree(a_models_dir / "pelabelup-classifier", no_artery / "pelabelup-classifier")
    mask_file = write_volume(a_clot_box, tmp_path / "pa.nii.gz", volume.geometry)
    out = analyze(a_nifti_study, tmp_path / "out", device="cpu", models_dir=no_artery, arteries=mask_file)
    assert (read_mask(out / "pseudomask.nii.gz") > 0)[clot].mean() > 0.8
    refused = run_cli("analyze", str(a_nifti_study), "--out", str(tmp_path / "refused"), "--models-dir",
                      str(no_artery), "--device", "cpu", "--progress", "none")
    assert refused.returncode != 0 and "pelabelup-arteries" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "refused").exists()


def test_a_mask_without_the_clot_finds_nothing_the_model_would(tmp_path, a_clot_study, a_nifti_study, a_models_dir):
    volume, clot = a_clot_study
    # the same blood on slices far from the clot's: the model's territory (the whole body) finds the clot
    elsewhere = box_mask(volume.hu.shape, slice(0, CLOT_SLICES.start - 4), slice(4, 40), slice(4, 36))
    mask_file = write_volume(elsewhere, tmp_path / "elsewhere.nrrd", volume.geometry)
    given = analyze(a_nifti_study, tmp_path / "given", device="cpu", models_dir=a_models_dir, arteries=mask_file)
    model = analyze(a_nifti_study, tmp_path / "model", device="cpu", models_dir=a_models_dir)
    assert (read_mask(model / "pseudomask.nii.gz") > 0)[clot].mean() > 0.8
    assert not read_mask(given / "pseudomask.nii.gz").any()
    assert json.loads((model / "result.json").read_text())["territory"] == {"source": "model"}
    assert json.loads((given / "result.json").read_text())["emboli"] == []


def test_a_mask_on_another_grid_is_resampled_in_world_space(tmp_path, a_clot_study, a_clot_box):
    volume, _ = a_clot_study
    # an axis-aligned grid at 1.1 mm over the oblique study's whole extent
    corners = np.array([[i, j, k] for i in (0, volume.geometry.size[0] - 1) for j in (0, volume.geometry.size[1] - 1)
                        for k in (0, volume.geometry.size[2] - 1)], float)
    world = volume.geometry.index_to_world(corners)
    low, high = world.min(0) - 2.0, world.max(0) + 2.0
    size = tuple(int(np.ceil((h - lo) / 1.1)) + 1 for lo, h in zip(low, high, strict=True))
    coarse = Geometry(size=size, spacing_mm=(1.1, 1.1, 1.1), origin_mm=tuple(low), direction=tuple(np.eye(3).ravel()))
    on_coarse = sitk.Resample(volume.geometry.array_to_sitk(a_clot_box), coarse.array_to_sitk(
        np.zeros(coarse.shape_zyx, np.uint8)), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    mask_file = tmp_path / "coarse.nii.gz"
    sitk.WriteImage(on_coarse, str(mask_file))

    territory = read_territory(mask_file, volume.geometry)
    expected = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(mask_file)), volume.to_sitk(),
                                                    sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    np.testing.assert_array_equal(territory.mask, expected)
    assert territory.record["resampled"] is True
    agreement = (territory.mask & a_clot_box).sum() / a_clot_box.sum()
    assert agreement > 0.85, "the box comes back where it was drawn, up to the coarse grid"


def test_a_label_map_needs_the_artery_label(tmp_path, a_clot_study, a_clot_box):
    volume, _ = a_clot_study
    labels = a_clot_box * 5
    labels[:3, :10, :10] = 1  # another structure
    mask_file = write_volume(labels.astype(np.uint8), tmp_path / "labels.nii.gz", volume.geometry)
    with pytest.raises(InputError, match=r"labels\.nii\.gz: holds 2 labels \(1, 5\): name the artery label"):
        read_territory(mask_file, volume.geometry)
    with pytest.raises(InputError, match=r"has no voxel of label 7 \(labels present: 1, 5\)"):
        read_territory(mask_file, volume.geometry, label=7)
    territory = read_territory(mask_file, volume.geometry, label=5)
    np.testing.assert_array_equal(territory.mask, a_clot_box)
    assert territory.record["label"] == 5


@pytest.mark.parametrize(("what", "message"), [
    ("empty", r"empty\.nii\.gz: is empty"),
    ("fractional", r"fractional\.nii\.gz: holds fractional values"),
    ("far away", r"far\.nii\.gz: lies outside the CT"),
    ("2-D", r"flat\.nii\.gz: 2-D"),
    ("the CT itself", r"ct\.nii\.gz: holds negative values \(down to -800\): expected a mask or label map, not an image"),
])
def test_unusable_masks_are_refused_in_one_line(tmp_path, a_clot_study, a_clot_box, what, message):
    volume, _ = a_clot_study
    g = volume.geometry
    if what == "empty":
        path = write_volume(np.zeros(g.shape_zyx, np.uint8), tmp_path / "empty.nii.gz", g)
    elif what == "fractional":
        path = write_volume(a_clot_box * np.float32(0.7), tmp_path / "fractional.nii.gz", g)
    elif what == "far away":
        far = Geometry(size=g.size, spacing_mm=g.spacing_mm, origin_mm=(5000.0, 5000.0, 5000.0), direction=g.direction)
        path = write_volume(a_clot_box, tmp_path / "far.nii.gz", far)
    elif what == "the CT itself":
        path = write_volume(volume, tmp_path / "ct.nii.gz")
    else:
        path = tmp_path / "flat.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 8), np.uint8)), str(path))
    with pytest.raises(InputError, match=message) as caught:
        read_territory(path, g)
    assert "\n" not in str(caught.value)


def test_cli_refusals_are_one_line_and_leave_nothing(tmp_path, a_clot_study, a_nifti_study, a_models_dir):
    volume, _ = a_clot_study
    empty = write_volume(np.zeros(volume.hu.shape, np.uint8), tmp_path / "empty.nii.gz", volume.geometry)
    out = tmp_path / "out"
    common = ("--models-dir", str(a_models_dir), "--device", "cpu", "--progress", "none")
    done = run_cli("analyze", str(a_nifti_study), "--out", str(out), "--arteries", str(empty), *common)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("empty.nii.gz: is empty: no nonzero voxel")
    assert not out.exists() and list(tmp_path.iterdir()) == [empty]
    batch = run_cli("analyze", str(a_nifti_study.parent), "--batch", "--out", str(out), "--arteries", str(empty),
                    *common)
    assert batch.returncode == 2 and not out.exists()
    assert batch.stderr.strip().splitlines()[-1].endswith("must name {input_dir} and/or {input_stem} (one mask per "
                                                          "input)")
    label = run_cli("analyze", str(a_nifti_study), "--out", str(out), "--arteries-label", "3", *common)
    assert label.returncode == 2 and not out.exists()
    assert label.stderr.strip() == "pelabelup analyze: error: --arteries-label needs an artery mask (--arteries)"


def test_the_worker_takes_the_mask_with_a_request(tmp_path, a_clot_study, a_clot_box, a_nifti_study, a_models_dir):
    volume, _ = a_clot_study
    mask_file = write_volume(a_clot_box * 3, tmp_path / "pa.nii.gz", volume.geometry)
    requests = [Request(input=a_nifti_study, out=tmp_path / "given", id="given", arteries=mask_file, arteries_label=3),
                Request(input=a_nifti_study, out=tmp_path / "wrong", id="wrong", arteries=mask_file, arteries_label=4)]
    assert [parse_request(r.to_json()) for r in requests] == requests
    stream = io.StringIO()
    counts = serve(iter(r.to_json() + "\n" for r in requests), JsonLinesProgress(stream), device="cpu",
                   models_dir=a_models_dir)
    assert counts == (1, 1)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    last = {e["input"]: e for e in events if e.get("input")}
    assert last["given"]["stage"] == "done"
    assert last["wrong"]["stage"] == "failed" and "has no voxel of label 4" in last["wrong"]["message"]
    np.testing.assert_array_equal(read_mask(tmp_path / "given" / "arteries.nii.gz"), a_clot_box)
    given = json.loads((tmp_path / "given" / "result.json").read_text())
    assert given["territory"]["label"] == 3
    assert [m["task"] for m in given["models"]] == ["classifier"], "the worker holds the artery model; it did not run"
    assert not (tmp_path / "wrong").exists()


@pytest.mark.parametrize("line", ['{"input": "a", "out": "b", "arteries": ""}',
                                  '{"input": "a", "out": "b", "arteries": "m.nii", "arteries_label": " "}',
                                  '{"input": "a", "out": "b", "arteries": "m.nii", "arteries_label": 1.5}',
                                  '{"input": "a", "out": "b", "arteries": 3}',
                                  '{"input": "a", "out": "b", "arteries": "m.nii", "arteries_label": 0}',
                                  '{"input": "a", "out": "b", "arteries": "m.nii", "arteries_label": true}',
                                  '{"input": "a", "out": "b", "arterys": "m.nii"}'])
def test_bad_artery_fields_of_a_request_are_refused(line):
    with pytest.raises(ValueError, match="arteries"):
        parse_request(line)


def test_an_analysis_seg_nrrd_gives_its_pulmonary_arteries(tmp_path, a_clot_study, a_clot_box, a_nifti_study,
                                                            a_models_dir):
    """The analysis's own ``segmentation.seg.nrrd`` (three overlapping segments, so several layers) read back as the
    territory: by default its "Pulmonary arteries", which equal the first analysis's ``arteries.nii.gz``."""
    volume, _ = a_clot_study
    first = analyze(a_nifti_study, tmp_path / "first", device="cpu", models_dir=a_models_dir,
                    arteries=write_volume(a_clot_box, tmp_path / "pa.nii.gz", volume.geometry))
    seg = first / "segmentation.seg.nrrd"
    territory = read_territory(seg, volume.geometry)
    np.testing.assert_array_equal(territory.mask, read_mask(first / "arteries.nii.gz"))
    assert territory.record["label"] == "Pulmonary arteries" and territory.record["file"] == "segmentation.seg.nrrd"
    by_id = read_territory(seg, volume.geometry, label="pe_pseudomask")
    np.testing.assert_array_equal(by_id.mask, read_mask(first / "pseudomask.nii.gz"))
    assert read_territory(seg, volume.geometry, label="pulmonary ARTERIES").record["label"] == "Pulmonary arteries"
    with pytest.raises(InputError, match=r"has no segment 'veins' \(segments: 'PE pseudo-mask', 'PE segmenter', "
                                         r"'Pulmonary arteries'\)$"):
        read_territory(seg, volume.geometry, label="veins")

    again = run_cli("analyze", str(a_nifti_study), "--out", str(tmp_path / "again"), "--arteries", str(seg),
                    "--arteries-label", "Pulmonary arteries", "--models-dir", str(a_models_dir), "--device", "cpu",
                    "--progress", "none")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "artery territory from segmentation.seg.nrrd" in again.stdout
    np.testing.assert_array_equal(read_mask(tmp_path / "again" / "arteries.nii.gz"), a_clot_box)


def test_a_cropped_seg_nrrd_lands_where_its_segment_was_drawn(tmp_path, a_clot_study, a_clot_box):
    """Slicer may save a segmentation cropped to its segments: the file's own grid is a part of the CT's."""
    from PELabelUpLib.io.seg_nrrd import Segment, write_seg_nrrd
    from PELabelUpLib.preprocessing import crop_geometry, mask_box

    volume, _ = a_clot_study
    box = mask_box(a_clot_box, margin_voxels=1)
    cropped = write_seg_nrrd([Segment("vessels", "vessels", a_clot_box[box.slices]),
                              Segment("trunk", "Pulmonary_Artery", a_clot_box[box.slices])],
                             crop_geometry(volume.geometry, box), tmp_path / "cropped.seg.nrrd")
    territory = read_territory(cropped, volume.geometry)
    np.testing.assert_array_equal(territory.mask, a_clot_box)
    assert territory.record["label"] == "Pulmonary_Artery" and territory.record["resampled"] is True
    two = write_seg_nrrd([Segment("a", "vessels", a_clot_box), Segment("b", "bones", a_clot_box)], volume.geometry,
                         tmp_path / "two.seg.nrrd")
    with pytest.raises(InputError, match=r"two\.seg\.nrrd: holds 2 segments \('vessels', 'bones'\): name the artery "
                                         r"segment \(--arteries-label NAME\)"):
        read_territory(two, volume.geometry)


def test_labels_of_the_wrong_kind_are_refused(tmp_path, a_clot_study, a_clot_box):
    volume, _ = a_clot_study
    labels = write_volume(a_clot_box * 2, tmp_path / "labels.nrrd", volume.geometry)
    with pytest.raises(InputError, match=r"labels\.nrrd: is a label map: its artery label is a number, not 'arteries'"):
        read_territory(labels, volume.geometry, label="arteries")
    assert read_territory(labels, volume.geometry, label="2").record["label"] == 2
    with pytest.raises(InputError, match=r"missing\.seg\.nrrd: file or folder not found$"):
        read_territory(tmp_path / "missing.seg.nrrd", volume.geometry)
    plain = write_volume(a_clot_box, tmp_path / "plain.seg.nrrd", volume.geometry)
    with pytest.raises(InputError, match=r"plain\.seg\.nrrd: lists no segment \(no Segment0_ID field\)"):
        read_territory(plain, volume.geometry)


def test_a_lumen_only_mask_gets_its_enclosed_clot_back(tmp_path, a_clot_study, a_clot_box, a_nifti_study,
                                                        a_models_dir):
    """A segmentation of the opacified lumen leaves a hole where the clot sits with blood around it: the hole is
    filled, so the clot is found; a cut through the whole calibre is left open."""
    volume, clot = a_clot_study
    lumen = a_clot_box * ~clot
    territory = read_territory(write_volume(lumen, tmp_path / "lumen.nii.gz", volume.geometry), volume.geometry)
    np.testing.assert_array_equal(territory.mask, a_clot_box)
    assert territory.record["holes_filled_voxels"] == int(clot.sum())

    cut = a_clot_box.copy()
    cut[CLOT_SLICES.start:CLOT_SLICES.stop] = 0  # the clot's slices missing from the mask: an open gap
    assert read_territory(write_volume(cut, tmp_path / "cut.nii.gz", volume.geometry),
                          volume.geometry).record["holes_filled_voxels"] == 0

    out = analyze(a_nifti_study, tmp_path / "out", device="cpu", models_dir=a_models_dir,
                  arteries=tmp_path / "lumen.nii.gz")
    assert (read_mask(out / "pseudomask.nii.gz") > 0)[clot].mean() > 0.8


def test_a_batch_takes_each_inputs_mask_from_a_pattern(tmp_path, a_clot_study, a_clot_box, a_models_dir):
    """``--batch --arteries 'masks/{input_stem}.nrrd'``: each study its own mask; one without a mask fails alone."""
    volume, clot = a_clot_study
    studies = tmp_path / "studies"
    for name in ("first", "second", "third"):
        write_volume(volume, studies / f"{name}.nii.gz")
    elsewhere = box_mask(volume.hu.shape, slice(0, CLOT_SLICES.start - 4), slice(4, 40), slice(4, 36))
    write_volume(a_clot_box, tmp_path / "masks" / "first.nrrd", volume.geometry)
    write_volume(elsewhere, tmp_path / "masks" / "second.nrrd", volume.geometry)
    pattern = str(tmp_path / "masks" / "{input_stem}.nrrd")
    done = run_cli("analyze", str(studies), "--batch", "--out", str(tmp_path / "out"), "--arteries", pattern,
                   "--models-dir", str(a_models_dir), "--device", "cpu", "--progress", "none")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "third: error: " in done.stderr and "third.nrrd: file or folder not found" in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["first", "second"]
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / "first" / "arteries.nii.gz"), a_clot_box)
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / "second" / "arteries.nii.gz"), elsewhere)
    assert (read_mask(tmp_path / "out" / "first" / "pseudomask.nii.gz") > 0)[clot].mean() > 0.8
    assert not read_mask(tmp_path / "out" / "second" / "pseudomask.nii.gz").any()
    records = [json.loads((tmp_path / "out" / n / "result.json").read_text())["territory"] for n in ("first", "second")]
    assert [r["file"] for r in records] == ["first.nrrd", "second.nrrd"]
    assert all(json.loads((tmp_path / "out" / n / "result.json").read_text())["models"][0]["task"] == "classifier"
               for n in ("first", "second"))

    one = run_cli("analyze", str(studies / "first.nii.gz"), "--out", str(tmp_path / "one"), "--arteries", pattern,
                  "--models-dir", str(a_models_dir), "--device", "cpu", "--progress", "none")
    assert one.returncode == 0, one.stderr[-2000:]
    assert "artery territory from first.nrrd" in one.stdout
