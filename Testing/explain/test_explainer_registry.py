"""Explainer registry (torch-free names for the CLI and Slicer), normaliser and blur."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from PELabelUpLib.explain import EXPLAINERS, Explainer, explainer_for_model, explainer_names, get_explainer
from PELabelUpLib.explain.gradcam import GradCAM, GradCAMPlusPlus
from PELabelUpLib.explain.ig import IntegratedGradients
from PELabelUpLib.explain.normalize import normalize_heatmaps
from PELabelUpLib.explain.registry import model_target_layers
from PELabelUpLib.explain.smoothing import gaussian_blur


def test_registry_lists_the_three_explainers_in_order():
    assert explainer_names() == ("gradcam", "gradcampp", "ig")
    assert all(spec.name == name and spec.label and spec.description for name, spec in EXPLAINERS.items())


@pytest.mark.parametrize(
    ("name", "kwargs", "cls"),
    [("gradcam", {"target_layers": "features.4"}, GradCAM), ("gradcampp", {}, GradCAMPlusPlus),
     ("ig", {"n_steps": 8, "baseline": "blurred"}, IntegratedGradients)],
)
def test_get_explainer_builds_the_registered_class(name, kwargs, cls):
    explainer = get_explainer(name, **kwargs)
    assert type(explainer) is cls
    assert isinstance(explainer, Explainer)
    assert explainer.name == name


@pytest.mark.parametrize("name", ["GradCAM", "lime", "", None])
def test_unknown_name_lists_the_choices(name):
    message = f"unknown explainer {name!r}; choose one of: gradcam, gradcampp, ig"
    with pytest.raises(ValueError, match=message):
        get_explainer(name)


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        EXPLAINERS["mine"] = EXPLAINERS["ig"]  # type: ignore[index]


def test_registry_import_does_not_load_torch():
    code = (
        "import sys\n"
        "from PELabelUpLib.explain import EXPLAINERS, get_explainer\n"
        "assert 'torch' not in sys.modules, 'torch loaded'\n"
        "assert 'monai' not in sys.modules, 'monai loaded'\n"
        "print(','.join(EXPLAINERS))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "gradcam,gradcampp,ig"


def test_normaliser_maps_min_to_0_and_max_to_1_per_sample():
    maps = torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[-4.0, -4.0], [0.0, -2.0]]])
    expected = torch.tensor([[[0.0, 0.5], [0.25, 1.0]], [[0.0, 0.0], [1.0, 0.5]]])
    assert torch.allclose(normalize_heatmaps(maps), expected)


def test_normaliser_ignores_non_finite_values_and_zeroes_flat_maps():
    maps = torch.tensor([[float("nan"), 1.0, 3.0, float("inf")], [2.0, 2.0, 2.0, 2.0],
                         [float("nan"), float("nan"), float("-inf"), float("nan")]])
    out = normalize_heatmaps(maps)
    assert torch.equal(out, torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0] * 4, [0.0] * 4]))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
              elements=st.floats(-1e6, 1e6, width=32) | st.just(np.nan)))
def test_normaliser_keeps_the_order_of_values_within_unit_range(maps):
    out = normalize_heatmaps(torch.from_numpy(maps)).numpy()
    assert out.shape == maps.shape
    assert np.isfinite(out).all()
    assert out.min() >= 0.0
    assert out.max() <= 1.0
    for sample_in, sample_out in zip(maps, out, strict=True):
        finite = np.isfinite(sample_in)
        values, scaled = sample_in[finite], sample_out[finite]
        order = np.argsort(values, kind="stable")
        assert (np.diff(scaled[order]) >= 0).all()  # never inverted (unlike MONAI's default normaliser)
        if finite.any() and values.max() > values.min():
            assert scaled[values.argmax()] == 1.0
            assert scaled[values.argmin()] == 0.0


@pytest.mark.parametrize("shape", [(2, 3, 11, 13), (1, 2, 9, 9, 11)])
def test_blur_keeps_constant_images_and_smooths_a_spike(shape):
    flat = torch.full(shape, 3.0)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat)
    spike = torch.zeros(shape)
    centre = tuple(n // 2 for n in shape[2:])
    spike[(0, 0, *centre)] = 1.0
    blurred = gaussian_blur(spike, 1.0)
    assert blurred.sum() == pytest.approx(1.0, abs=1e-5)  # far from the edges, mass is kept
    assert float(blurred.max()) == float(blurred[(0, 0, *centre)]) < 0.5
    assert torch.equal(gaussian_blur(spike, 0.0), spike)


def test_blur_refuses_bad_sigma():
    with pytest.raises(ValueError, match=r"sigma must be 2 non-negative voxel counts, got \(1.0, -1.0\)"):
        gaussian_blur(torch.zeros(1, 1, 8, 8), (1.0, -1.0))


@pytest.mark.parametrize(("metadata", "expected"), [
    ({}, None), ({"explanation": {}}, None), ({"explanation": {"target_layers": ["a.1", "b"]}}, ("a.1", "b")),
])
def test_a_classifier_metadata_names_its_explanation_layers(metadata, expected):
    assert model_target_layers(metadata) == expected
    built = explainer_for_model("gradcam", metadata)
    assert type(built) is GradCAM and built.target_layers == expected
    assert type(explainer_for_model("ig", metadata)) is IntegratedGradients  # no layers to name


@pytest.mark.parametrize("layers", ["features.1", [], ["ok", ""], [3], {"a": 1}])
def test_malformed_explanation_layers_are_refused(layers):
    with pytest.raises(ValueError, match="explanation.target_layers"):
        model_target_layers({"explanation": {"target_layers": layers}})


def test_an_explainer_may_have_layers_of_its_own():
    metadata = {"explanation": {"target_layers": ["a", "b"], "gradcampp": {"target_layers": ["a"]}}}
    assert model_target_layers(metadata, "gradcampp") == ("a",)
    assert model_target_layers(metadata, "gradcam") == model_target_layers(metadata) == ("a", "b")
    assert explainer_for_model("gradcampp", metadata).target_layers == ("a",)
    assert explainer_for_model("gradcam", metadata).target_layers == ("a", "b")
    assert model_target_layers({"explanation": {"gradcampp": {"target_layers": ["a"]}}}, "gradcam") is None


def test_auto_asks_the_classifier_which_explainer():
    """``auto``: Grad-CAM++ at the layer the classifier's metadata names for it, else Grad-CAM (Grad-CAM++ at the
    default signed layer points badly); a named explainer is never replaced."""
    from PELabelUpLib.explain.registry import (
        AUTO_EXPLAINER,
        DEFAULT_EXPLAINER,
        check_explainer,
        explainer_choices,
        resolve_explainer,
    )

    assert DEFAULT_EXPLAINER == AUTO_EXPLAINER == "auto"
    assert explainer_choices() == ("auto", *explainer_names())
    named = {"explanation": {"target_layers": ["features.1.5", "features.3.3"],
                             "gradcampp": {"target_layers": ["features.1.5"]}}}
    plain = {"explanation": {"target_layers": ["features.1.5"]}}
    assert resolve_explainer("auto", named) == "gradcampp"
    assert [resolve_explainer("auto", m) for m in (plain, {}, {"explanation": {"gradcampp": {}}})] == ["gradcam"] * 3
    assert [resolve_explainer(n, named) for n in explainer_names()] == list(explainer_names())
    chosen = explainer_for_model("auto", named)
    assert type(chosen) is GradCAMPlusPlus and tuple(chosen.target_layers) == ("features.1.5",)
    assert type(explainer_for_model("auto", plain)) is GradCAM
    assert check_explainer("auto") == "auto"
    with pytest.raises(ValueError, match=r"unknown explainer 'automatic'; choose one of: auto, gradcam, gradcampp, ig"):
        check_explainer("automatic")
