"""The extension's build files: the module's CMake lists every script and resource (and only existing ones), the
real CMakeLists configure against a stand-in Slicer package, the catalog entry and the icon are well formed."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess

import pytest
from slicer_module_helpers import REPO_ROOT

MODULE_CMAKE = REPO_ROOT / "PELabelUp" / "CMakeLists.txt"
TOP_CMAKE = REPO_ROOT / "CMakeLists.txt"
RESOURCES = REPO_ROOT / "Resources"
CATALOG = REPO_ROOT / "PELabelUp.json"
SCHEMA_URL = ("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
              "slicer-extension-catalog-entry-schema-v1.0.1.json#")
SCRIPTED_MODULES_DIR = "lib/Slicer-5.8/qt-scripted-modules"


def cmake_list(text: str, name: str) -> list[str]:
    """The items of ``set(NAME ...)`` in a CMake file (comments dropped, ``${MODULE_NAME}`` expanded)."""
    match = re.search(rf"set\({name}\s(.*?)\)", text, flags=re.S)
    assert match, f"no set({name} ...)"
    body = re.sub(r"#.*", "", match.group(1)).replace("${MODULE_NAME}", "PELabelUp")
    return body.split()


def package_scripts() -> list[str]:
    """Every .py file of the core package (``PELabelUpLib``) and of the module's Qt helpers (``PELabelUpQt``)."""
    package = REPO_ROOT / "PELabelUp"
    return sorted(p.relative_to(package).as_posix() for name in ("PELabelUpLib", "PELabelUpQt")
                  for p in (package / name).rglob("*.py") if "__pycache__" not in p.parts)


def test_the_scripts_list_is_the_module_and_every_file_of_its_packages():
    listed = cmake_list(MODULE_CMAKE.read_text(), "MODULE_PYTHON_SCRIPTS")
    assert listed[0] == "PELabelUp.py"
    assert len(listed) == len(set(listed)), "a script is listed twice"
    missing, extra = set(package_scripts()) - set(listed), set(listed[1:]) - set(package_scripts())
    assert not missing, f"add to {MODULE_CMAKE.name}: {sorted(missing)}"
    assert not extra, f"listed but not in the tree: {sorted(extra)}"
    assert listed[1:] == sorted(listed[1:]), "kept sorted"


def test_the_resources_list_names_every_icon_and_ui_file_and_globs_the_models():
    text = MODULE_CMAKE.read_text()
    listed = set(cmake_list(text, "MODULE_PYTHON_RESOURCES"))
    on_disk = {p.relative_to(RESOURCES).as_posix() for folder in ("Icons", "UI") for p in (RESOURCES / folder).iterdir()}
    assert listed == on_disk
    assert re.search(r"file\(GLOB_RECURSE MODULE_MODEL_FILES RELATIVE \$\{MODULE_RESOURCES_DIR\} CONFIGURE_DEPENDS\s+"
                     r"\$\{MODULE_RESOURCES_DIR\}/Models/\*\)", text)
    assert re.search(r"if\(BUILD_TESTING\)\s+(#.*\s+)*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)", text)


def test_the_top_level_adds_the_module_unconditionally():
    text = TOP_CMAKE.read_text()
    assert re.search(r"^add_subdirectory\(PELabelUp\)$", text, flags=re.M)
    assert "if(EXISTS" not in text


FAKE_SLICER = """
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
"""
# the stand-ins check what Slicer's macro checks (known keywords, existing scripts) and record their arguments
USE_FAKE_SLICER = f"set(Slicer_QTSCRIPTEDMODULES_LIB_DIR {SCRIPTED_MODULES_DIR})" + """
set(BUILD_TESTING ON)
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords: ${MY_SLICER_UNPARSED_ARGUMENTS}")
  endif()
  foreach(value ${MY_SLICER_SCRIPTS} ${MY_SLICER_RESOURCES})
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${value})
      message(FATAL_ERROR "slicerMacroBuildScriptedModule given nonexistent file '${value}'")
    endif()
  endforeach()
  file(WRITE ${CMAKE_BINARY_DIR}/module.txt "${MY_SLICER_NAME}")
  file(WRITE ${CMAKE_BINARY_DIR}/scripts.txt "${MY_SLICER_SCRIPTS}")
endmacro()
function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT" "" ${ARGN})
  file(WRITE ${CMAKE_BINARY_DIR}/unittest.txt "${MY_SCRIPT}")
endfunction()
"""


@pytest.mark.slow
def test_the_extension_configures_against_a_stand_in_slicer(tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None or shutil.which("c++") is None:
        pytest.skip("cmake and a C++ compiler are needed to configure the extension")
    fake = tmp_path / "fake-slicer"
    fake.mkdir()
    (fake / "SlicerConfig.cmake").write_text(FAKE_SLICER)
    (fake / "UseSlicer.cmake").write_text(USE_FAKE_SLICER)
    (fake / "Empty.cmake").write_text("")
    build = tmp_path / "build"
    done = subprocess.run([cmake, "-S", str(REPO_ROOT), "-B", str(build), f"-DSlicer_DIR={fake}"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (build / "module.txt").read_text() == "PELabelUp"
    assert (build / "scripts.txt").read_text().split(";") == ["PELabelUp.py", *package_scripts()]
    assert (build / "unittest.txt").read_text() == "PELabelUp.py"
    copied = build / SCRIPTED_MODULES_DIR / "Resources"
    sources = [p for p in RESOURCES.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ui" for p in sources)
    for source in sources:
        target = copied / source.relative_to(RESOURCES)
        assert target.read_bytes() == source.read_bytes(), f"{source.relative_to(RESOURCES)} not copied beside the module"


def test_the_catalog_entry_follows_the_schema_and_the_extension_metadata():
    entry = json.loads(CATALOG.read_text())
    properties = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                  "build_dependencies": list, "build_subdirectory": str, "enabled": bool, "tier": int}
    assert {"$schema", "category", "scm_url"} <= set(entry) <= set(properties)
    assert all(isinstance(entry[key], properties[key]) for key in entry)
    assert entry["$schema"] == SCHEMA_URL
    assert 1 <= entry["tier"] <= 5 and entry.get("scm_type", "git") in ("git", "local")
    metadata = dict(re.findall(r'set\((EXTENSION_\w+) "([^"]*)"\)', TOP_CMAKE.read_text()))
    assert entry["category"] == metadata["EXTENSION_CATEGORY"] == "Segmentation"
    assert entry["build_dependencies"] == metadata["EXTENSION_DEPENDS"].split() == ["PyTorch"]
    assert entry["build_subdirectory"] == "."


def test_the_icon_is_a_128_pixel_png():
    data = (RESOURCES / "Icons" / "PELabelUp.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (128, 128)
