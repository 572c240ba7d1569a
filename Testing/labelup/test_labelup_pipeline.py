"""The label-up chain on a real volume with a clot, driven by a hand-built classifier whose logic is known.

The classifier is a real torch module with fixed weights: its feature map is high where a pixel is inside
the (locally averaged) territory yet dark, i.e. a filling defect, so Grad-CAM must point at the clot and the
pseudo-mask must select the clot's candidate component, on an oblique, anisotropic grid.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from PELabelUpLib.evaluate import dice
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.labelup.outputs import write_labelup_outputs
from PELabelUpLib.labelup.pipeline import LabelUpSettings, label_up_case
from PELabelUpLib.models.slices import SliceSpec
from PELabelUpLib.volume import CTVolume


class FillingDefectDetector(nn.Module):
    """Channels (I[k-1], I[k], I[k+1], T[k]) -> logit of a dark pixel inside the territory."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(4, 1, 3, padding=1)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 3] = 1.0 / 9.0  # local mean of the territory ...
            self.features.weight[0, 3, 1, 1] += 1.0  # ... plus the pixel's own territory
            self.features.weight[0, 1, 1, 1] = -1.5  # minus its brightness
            self.features.bias.fill_(-1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.features(x))
        return 30.0 * (f.amax(dim=(1, 2, 3)) - 0.2)[:, None]


@pytest.fixture
def an_oblique_study():
    """A bright tube (350 HU) along k with an occlusive clot (50 HU) on slices 8-12, oblique grid."""
    angle = np.deg2rad(12.0)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1.0]])
    geometry = Geometry(size=(100, 120, 24), spacing_mm=(0.8, 0.6, 2.0), origin_mm=(-40.0, 25.0, -300.0),
                        direction=tuple(rot.ravel()))
    rng = np.random.default_rng(0)
    hu = (rng.normal(0, 8, geometry.shape_zyx) - 800).astype(np.int16)
    yy, xx = np.mgrid[:120, :100]
    tube = (((yy - 70) * 0.6) ** 2 + ((xx - 45) * 0.8) ** 2) <= 6.0 ** 2
    territory = np.zeros(geometry.shape_zyx, np.uint8)
    territory[:, tube] = 1
    hu[:, tube] = 350 + rng.normal(0, 8, (24, int(tube.sum())))
    clot = np.zeros(geometry.shape_zyx, bool)
    clot[8:13][:, tube] = True
    hu[clot] = (50 + rng.normal(0, 8, int(clot.sum()))).astype(np.int16)
    return CTVolume(hu=hu, geometry=geometry, source="oblique-study"), territory, clot


def test_chain_finds_the_clot_on_the_input_grid(an_oblique_study, tmp_path):
    volume, territory, clot = an_oblique_study
    classifier = (FillingDefectDetector().eval(),
                  {"preprocessing": SliceSpec(pixel_mm=1.0, size_px=64, territory_dilation_mm=2.0).as_metadata()})
    settings = LabelUpSettings(explainer="gradcam", min_volume_mm3=5.0)
    stages = []
    result = label_up_case(volume, None, classifier, territory=territory, settings=settings,
                           progress=lambda stage, fraction, message: stages.append((stage, fraction)))

    positive_slices = clot.reshape(24, -1).any(axis=1)
    assert result.slice_probabilities[positive_slices].min() > 0.9
    assert result.slice_probabilities[~positive_slices].max() < 0.1
    assert result.study_probability > 0.9
    assert result.heatmap.shape == result.pseudomask.shape == volume.hu.shape
    assert 0.0 <= result.heatmap.min() and result.heatmap.max() <= 1.0
    assert result.heatmap[~positive_slices].max() == 0.0, "slices the classifier clears are not explained"
    assert dice(result.pseudomask > 0, clot) > 0.7
    assert np.all(territory[result.pseudomask > 0] == 1), "the pseudo-mask lies inside the territory"
    assert len(result.emboli) == 1
    centroid = np.asarray(result.emboli[0]["centroid_lps_mm"])
    expected = volume.geometry.index_to_world(np.argwhere(clot)[:, ::-1].mean(axis=0))
    np.testing.assert_allclose(centroid, expected, atol=1.5)
    assert [s for s, _ in stages] == ["classifier", "pseudomask", "pseudomask"]
    assert result.stop_reason in ("nothing_new", "max_rounds")

    out = write_labelup_outputs(tmp_path / "case", result, volume, settings)
    for name in ("heatmap.nii.gz", "pseudomask.nii.gz", "arteries.nii.gz"):
        image = sitk.ReadImage(str(out / name))
        assert Geometry.from_sitk(image).same_grid(volume.geometry, tol=1e-4), name
    record = json.loads((out / "result.json").read_text())
    assert len(record["slice_probabilities"]) == 24
    assert record["iexplain"]["explanation_layers"] is None  # the metadata names none: the last convolution
    assert record["emboli"][0]["source"] == "pseudomask"
    with pytest.raises(FileExistsError):
        write_labelup_outputs(tmp_path / "case", result, volume, settings)


def test_a_negative_study_yields_no_pseudomask(an_oblique_study):
    volume, territory, clot = an_oblique_study
    hu = volume.hu.copy()
    hu[clot] = 350
    clean = CTVolume(hu=hu, geometry=volume.geometry)
    classifier = (FillingDefectDetector().eval(),
                  {"preprocessing": SliceSpec(pixel_mm=1.0, size_px=64, territory_dilation_mm=2.0).as_metadata()})
    result = label_up_case(clean, None, classifier, territory=territory)
    assert result.study_probability < 0.1
    assert result.pseudomask.sum() == 0
    assert result.emboli == []


def test_needs_arteries_or_a_territory(an_oblique_study):
    volume, _, _ = an_oblique_study
    with pytest.raises(ValueError, match="artery model or a territory"):
        label_up_case(volume, None, (FillingDefectDetector(), {}))


def test_emboli_indices_refer_to_the_full_grid(an_oblique_study):
    volume, territory, clot = an_oblique_study
    classifier = (FillingDefectDetector().eval(),
                  {"preprocessing": SliceSpec(pixel_mm=1.0, size_px=64, territory_dilation_mm=2.0).as_metadata()})
    result = label_up_case(volume, None, classifier, territory=territory)
    (embolus,) = result.emboli
    i, j, k = embolus["centroid_ijk"]
    np.testing.assert_allclose([k, j, i], np.argwhere(result.pseudomask > 0).mean(axis=0), atol=1e-6)
    pi, pj, pk = embolus["peak_ijk"]
    assert result.heatmap[pk, pj, pi] == pytest.approx(embolus["peak_heat"])
    lps = volume.geometry.index_to_world(np.asarray(embolus["centroid_ijk"]))
    np.testing.assert_allclose(lps, embolus["centroid_lps_mm"], atol=1e-6)


def test_a_study_under_the_gate_keeps_its_heatmap_but_gets_no_mask(an_oblique_study):
    volume, territory, clot = an_oblique_study
    classifier = (FillingDefectDetector().eval(),
                  {"preprocessing": SliceSpec(pixel_mm=1.0, size_px=64, territory_dilation_mm=2.0).as_metadata()})
    found = label_up_case(volume, None, classifier, territory=territory)
    gated = label_up_case(volume, None, classifier, territory=territory,
                          settings=LabelUpSettings(min_study_probability=1.01))  # no study reaches it
    assert found.pseudomask.any() and found.emboli
    assert gated.study_probability == found.study_probability
    assert not gated.pseudomask.any() and gated.emboli == []
    assert gated.stop_reason == "study_negative" and gated.rounds == 1  # one explanation, no further rounds
    assert gated.heatmap[clot].max() > 0.5  # the reader still sees where the classifier looked


def test_candidates_under_the_minimum_volume_are_dropped(an_oblique_study):
    volume, territory, clot = an_oblique_study
    classifier = (FillingDefectDetector().eval(),
                  {"preprocessing": SliceSpec(pixel_mm=1.0, size_px=64, territory_dilation_mm=2.0).as_metadata()})
    clot_mm3 = clot.sum() * float(np.prod(volume.geometry.spacing_mm))
    kept = label_up_case(volume, None, classifier, territory=territory,
                         settings=LabelUpSettings(min_volume_mm3=0.5 * clot_mm3))
    dropped = label_up_case(volume, None, classifier, territory=territory,
                            settings=LabelUpSettings(min_volume_mm3=2.0 * clot_mm3))
    assert len(kept.emboli) == 1 and kept.pseudomask.any()
    assert dropped.emboli == [] and not dropped.pseudomask.any()


def test_the_classifier_metadata_names_the_layers_the_grad_cam_family_explains(an_oblique_study):
    volume, territory, _ = an_oblique_study
    metadata = {"preprocessing": SliceSpec(pixel_mm=1.0, size_px=64, territory_dilation_mm=2.0).as_metadata()}
    network = FillingDefectDetector().eval()
    default = label_up_case(volume, None, (network, metadata), territory=territory)
    named = label_up_case(volume, None, (network, metadata | {"explanation": {"target_layers": ["features"]}}),
                          territory=territory)
    np.testing.assert_array_equal(named.heatmap, default.heatmap)  # "features" is the last convolution
    assert named.explanation_layers == ["features"] and default.explanation_layers is None
    missing = metadata | {"explanation": {"target_layers": ["features.9"]}}
    with pytest.raises(ValueError, match=r"target layer\(s\) \['features.9'\] not found"):
        label_up_case(volume, None, (network, missing), territory=territory)
    for explainer in ("gradcampp", "ig"):  # Grad-CAM++ takes the layers too; Integrated Gradients has none
        settings = LabelUpSettings(explainer=explainer, max_rounds=1)
        if explainer == "ig":
            assert label_up_case(volume, None, (network, missing), territory=territory, settings=settings).rounds == 1
        else:
            with pytest.raises(ValueError, match="not found"):
                label_up_case(volume, None, (network, missing), territory=territory, settings=settings)
