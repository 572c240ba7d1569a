"""Model folders: metadata contract, sha256 check at load, never overwritten, weights-only loading."""

from __future__ import annotations

import json

import pytest
import torch

from PELabelUpLib.errors import InputError
from PELabelUpLib.models.folder import load_model, read_model_folder, save_model_folder, sha256_of
from PELabelUpLib.models.networks import NETWORKS, build_network

SPEC = {"name": "SliceClassifier", "kwargs": {"in_channels": 4, "widths": [4, 4, 8, 8]}}


@pytest.fixture
def a_model_folder(tmp_path):
    torch.manual_seed(0)
    network = build_network(SPEC)
    meta = {"name": "test-classifier", "version": "0.0.1", "task": "classifier", "network": SPEC,
            "preprocessing": {"pixel_mm": 1.5}}
    return save_model_folder(tmp_path / "model", network, meta), network


def test_round_trip_gives_identical_outputs(a_model_folder):
    folder, network = a_model_folder
    loaded, meta = load_model(folder.path)
    x = torch.rand(2, 4, 32, 32)
    network.eval()
    torch.testing.assert_close(loaded(x), network(x))
    assert meta["sha256"] == sha256_of(folder.weights_path)
    assert meta["intended_use"] == "research, not for clinical use"


def test_tampered_weights_are_refused(a_model_folder):
    folder, _ = a_model_folder
    data = bytearray(folder.weights_path.read_bytes())
    data[-20] ^= 0xFF
    folder.weights_path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256 mismatch") as info:
        load_model(folder.path)
    assert str(folder.weights_path) in str(info.value)
    assert "\n" not in str(info.value)


def test_existing_version_is_never_overwritten(a_model_folder):
    folder, network = a_model_folder
    before = folder.weights_path.read_bytes()
    with pytest.raises(FileExistsError):
        save_model_folder(folder.path, network, dict(folder.metadata))
    assert folder.weights_path.read_bytes() == before


def test_metadata_problems_are_clear(tmp_path, a_model_folder):
    with pytest.raises(InputError, match="no metadata.json"):
        read_model_folder(tmp_path)
    folder, _ = a_model_folder
    meta = json.loads((folder.path / "metadata.json").read_text())
    del meta["sha256"]
    (folder.path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="lacks sha256"):
        read_model_folder(folder.path)


def test_a_pickle_with_code_is_not_loaded(a_model_folder):
    folder, _ = a_model_folder

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"payload": Evil()}, folder.weights_path)
    meta = json.loads((folder.path / "metadata.json").read_text())
    meta["sha256"] = sha256_of(folder.weights_path)
    (folder.path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="do not load"):
        load_model(folder.path)


def test_unknown_network_names_the_choices():
    with pytest.raises(ValueError, match="known: " + ", ".join(NETWORKS)):
        build_network({"name": "ResNet999"})
