"""The model registry: bundled folders, versions beside them and in the user folder, overrides, clear misses.

Model folders here hold real metadata.json files (weights are not read by the registry), written like
``save_model_folder`` writes them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from analysis_helpers import REPO_ROOT

from PELabelUpLib.errors import InputError
from PELabelUpLib.models.registry import (
    MODEL_TASKS,
    MODELS_DIR_ENV,
    USER_MODELS_DIR_ENV,
    ModelNotFoundError,
    bundled_models_dir,
    find_model,
    find_models,
    list_model_versions,
    models_search_path,
    version_key,
)


def a_model_folder(root: Path, folder: str, *, name: str = "pelabelup-segmenter", task: str = "segmenter",
                   version: str = "1.0.0") -> Path:
    path = root / folder
    path.mkdir(parents=True)
    meta = {"name": name, "version": version, "task": task, "network": {"name": "DynUNet"}, "preprocessing": {},
            "weights": "model.pt", "sha256": "0" * 64}
    (path / "metadata.json").write_text(json.dumps(meta))
    return path


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Bundled and user folders in tmp_path, set through the environment."""
    bundled, user = tmp_path / "bundled", tmp_path / "user"
    bundled.mkdir()
    monkeypatch.setenv(MODELS_DIR_ENV, str(bundled))
    monkeypatch.setenv(USER_MODELS_DIR_ENV, str(user))
    return bundled, user


def test_versions_beside_the_bundled_one_and_in_the_user_folder(isolated):
    bundled, user = isolated
    a_model_folder(bundled, "pelabelup-segmenter", version="1.0.0")
    a_model_folder(bundled, "pelabelup-segmenter@1.10.0", version="1.10.0")
    a_model_folder(user, "my-finetune", version="1.9.2")  # any folder name: the metadata identifies the model
    a_model_folder(user, "other", name="pelabelup-classifier", task="classifier", version="9.0.0")
    (user / "notes").mkdir()
    versions = list_model_versions("segmenter")
    assert [(v.version, v.path.name, v.bundled) for v in versions] == [
        ("1.0.0", "pelabelup-segmenter", True), ("1.9.2", "my-finetune", False),
        ("1.10.0", "pelabelup-segmenter@1.10.0", False)]
    assert find_model("segmenter").version == "1.0.0", "the bundled folder by default"
    assert find_model("segmenter", version="latest").version == "1.10.0"
    assert find_model("segmenter", version="1.9.2").path == user / "my-finetune"
    assert models_search_path() == [bundled, user]


def test_an_explicit_models_dir_is_the_only_one_searched(isolated, tmp_path):
    bundled, _ = isolated
    a_model_folder(bundled, "pelabelup-segmenter", version="1.0.0")
    explicit = tmp_path / "explicit"
    a_model_folder(explicit, "pelabelup-segmenter@2.0.0", version="2.0.0")
    assert models_search_path(explicit) == [explicit]
    found = find_model("segmenter", models_dir=explicit)
    assert (found.version, found.bundled) == ("2.0.0", False), "no bundled folder there: the newest version"


def test_a_missing_model_names_the_folder_it_expected(isolated):
    bundled, user = isolated
    with pytest.raises(ModelNotFoundError) as info:
        find_model("classifier")
    message = str(info.value)
    assert message.startswith(f"{bundled / 'pelabelup-classifier'}: PE slice classifier model")
    assert str(user) in message and "\n" not in message
    a_model_folder(bundled, "pelabelup-segmenter", version="1.0.0")
    with pytest.raises(ModelNotFoundError, match="version 3.0 not found"):
        find_model("segmenter", version="3.0")
    chosen = find_models(tasks=("segmenter",))
    assert chosen["segmenter"].version == "1.0.0"


def test_the_optional_segmenter_may_be_absent_but_not_broken(isolated):
    bundled, _ = isolated
    a_model_folder(bundled, "pelabelup-arteries", name="pelabelup-arteries", task="artery")
    a_model_folder(bundled, "pelabelup-classifier", name="pelabelup-classifier", task="classifier")
    chosen = find_models()
    assert chosen["segmenter"] is None and chosen["artery"].task == "artery"
    with pytest.raises(ModelNotFoundError):
        find_models(versions={"segmenter": "latest"})
    broken = bundled / "pelabelup-segmenter"
    broken.mkdir()
    (broken / "metadata.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable metadata"):
        find_models()
    with pytest.raises(ValueError, match="unknown model task"):
        find_models(versions={"segmentor": "1.0"})


def test_a_bundled_folder_holding_another_model_is_refused(isolated):
    bundled, _ = isolated
    a_model_folder(bundled, "pelabelup-classifier", name="pelabelup-arteries", task="artery")
    with pytest.raises(InputError, match="holds model 'pelabelup-arteries'"):
        find_model("classifier")


def test_without_override_the_bundled_folder_is_found_above_the_package(monkeypatch):
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)
    assert bundled_models_dir() == REPO_ROOT / "Resources" / "Models"


def test_version_order_is_numeric():
    assert sorted(["1.10.0", "1.9.2", "1.0.0", "1.9.10"], key=version_key) == ["1.0.0", "1.9.2", "1.9.10", "1.10.0"]
    assert set(MODEL_TASKS) == {"artery", "classifier", "segmenter"}


def test_the_registry_imports_no_torch():
    code = ("import sys; import PELabelUpLib.models.registry, PELabelUpLib.analysis.progress, "
            "PELabelUpLib.analysis.segments, PELabelUpLib.analysis.interrupt; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "False"
