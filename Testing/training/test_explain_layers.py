"""Choosing a classifier's explanation layers: slice pointing per candidate on a cohort with ground truth, and
the choice recorded in the model's metadata (read back by the chain's explainer)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from clot_cohort import write_clot_cohort

from PELabelUpLib.explain.registry import explainer_for_model
from PELabelUpLib.io import read_label_file
from PELabelUpLib.models.folder import load_model
from PELabelUpLib.models.registry import bundled_models_dir
from training.classifier.explain_layers import main, parse_candidate, slice_pointing
from training.segmenter.sources import TerritorySource


@pytest.fixture(scope="module")
def clots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clot_cohort(tmp_path_factory.mktemp("clots"), 2, seed=7)


@pytest.fixture
def classifier(tmp_path: Path) -> Path:
    bundled = bundled_models_dir()
    if bundled is None or not (bundled / "pelabelup-classifier").is_dir():
        pytest.skip("no bundled classifier in this checkout")
    folder = Path(shutil.copytree(bundled / "pelabelup-classifier", tmp_path / "classifier"))
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata.pop("explanation", None)  # start from a classifier that names no layers
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return folder


def test_candidates_parse() -> None:
    assert parse_candidate("default") is None
    assert parse_candidate("features.1.5, features.3.3") == ("features.1.5", "features.3.3")
    with pytest.raises(ValueError, match="comma-separated"):
        parse_candidate("features.1.5,,x")


def test_every_candidate_is_scored_on_every_positive_slice(clots: Path, classifier: Path) -> None:
    network, metadata = load_model(classifier)
    candidates = [None, ("features.1.5",), ("features.1.5", "features.3.3")]
    results = slice_pointing(clots, network, metadata, TerritorySource(), candidates)
    positive = sum(int(read_label_file(clots / c / "emboli.nii.gz")[0].any(axis=(1, 2)).sum())
                   for c in ("clot-000", "clot-001"))
    assert [r["layers"] for r in results] == ["default", "features.1.5", "features.1.5,features.3.3"]
    for r in results:
        assert r["studies"] == 2 and r["positive_slices"] == positive > 0
        assert 0 <= r["hits"] <= positive and r["pointing"] == pytest.approx(r["hits"] / positive)
    again = slice_pointing(clots, network, metadata, TerritorySource(), candidates[1:2], limit=1)
    assert again[0]["studies"] == 1 and again[0]["positive_slices"] < positive
    with pytest.raises(ValueError, match="not found"):
        slice_pointing(clots, network, metadata, TerritorySource(), [("features.9",)])


def test_the_chosen_layers_are_recorded_and_read_back(clots: Path, classifier: Path, tmp_path: Path) -> None:
    weights = (classifier / "model.pt").read_bytes()
    out = tmp_path / "pointing.json"
    assert main(["--model", str(classifier), "--cohort", str(clots), "--layers", "default", "features.1.5",
                 "--limit", "1", "--json", str(out), "--write", "features.1.5,features.3.3"]) == 0
    assert [r["layers"] for r in json.loads(out.read_text())] == ["default", "features.1.5"]
    network, metadata = load_model(classifier)  # the weights' recorded sha256 still holds
    assert metadata["explanation"] == {"target_layers": ["features.1.5", "features.3.3"]}
    assert explainer_for_model("gradcam", metadata).target_layers == ("features.1.5", "features.3.3")
    assert (classifier / "model.pt").read_bytes() == weights
    assert main(["--model", str(classifier), "--cohort", str(clots), "--limit", "1", "--explainer", "gradcampp",
                 "--layers", "features.1.5", "--write", "features.1.5"]) == 0
    _, metadata = load_model(classifier)
    assert metadata["explanation"] == {"target_layers": ["features.1.5", "features.3.3"],
                                       "gradcampp": {"target_layers": ["features.1.5"]}}
    assert explainer_for_model("gradcampp", metadata).target_layers == ("features.1.5",)
    for explainer in ("gradcampp", "gradcam"):
        assert main(["--model", str(classifier), "--cohort", str(clots), "--limit", "1", "--explainer", explainer,
                     "--write", "default"]) == 0
    assert "explanation" not in json.loads((classifier / "metadata.json").read_text())
    assert main(["--model", str(classifier), "--cohort", str(clots), "--layers", "a,,b"]) == 2
    assert main(["--model", str(classifier), "--cohort", str(clots), "--territory", "pred:nowhere"]) == 2
