"""The module file, its Qt helpers (``PELabelUpQt``) and its Qt Designer file agree, read without Slicer: they
compile, every ``SlicerParameterName`` is a parameter-node field on a widget that Slicer can bind to its type, every
widget the code names exists, every name imported from the helpers is defined there, user-visible strings go
through ``_()``, and the GUI process imports no torch."""

from __future__ import annotations

import ast
import os
import py_compile
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import pytest
from slicer_module_helpers import GUI_FILES, MODULE_FILE, QT_PACKAGE, REPO_ROOT, UI_FILE

from PELabelUpLib.slicer_process import PACKAGE_ROOT

# Slicer's parameterNodeWrapper GUI connectors (slicer/parameterNodeWrapper/guiConnectors.py): widget class ->
# the field types it can represent ("enum": an enum.Enum subclass; "node": a vtkMRML*Node class)
CONNECTORS: dict[str, set[str]] = {
    "QCheckBox": {"bool"}, "ctkCheckBox": {"bool"}, "QPushButton": {"bool"}, "ctkCheckablePushButton": {"bool"},
    "QSlider": {"int"}, "QSpinBox": {"int"},
    **{w: {"int", "float"} for w in ("QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider",
                                     "ctkDoubleSpinBox", "qMRMLSpinBox")},
    "QLineEdit": {"str"}, "QLabel": {"str"}, "QTextEdit": {"str"},
    "QComboBox": {"enum", "choice"}, "ctkComboBox": {"enum", "choice"},
    "ctkPathLineEdit": {"Path"}, "ctkDirectoryButton": {"Path"},
    "qMRMLNodeComboBox": {"node"},
}


@cache
def tree_of(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def module_tree() -> ast.Module:
    return tree_of(MODULE_FILE)


def short_name(path: Path) -> str:
    return path.relative_to(MODULE_FILE.parent).as_posix()


@cache
def ui_widgets() -> dict[str, ET.Element]:
    widgets = {}
    for element in ET.parse(UI_FILE).getroot().iter("widget"):
        assert element.get("name") not in widgets, f"widget name {element.get('name')} used twice"
        widgets[element.get("name")] = element
    return widgets


def string_property(widget: ET.Element, name: str) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop.findtext("string")
    return None


def class_named(name: str) -> ast.ClassDef:
    return next(n for n in module_tree().body if isinstance(n, ast.ClassDef) and n.name == name)


def enum_names() -> set[str]:
    """Enum classes of the module and its helpers, and names bound to calls of them (the functional enum API)."""
    names: set[str] = set()
    for node in (n for path in GUI_FILES for n in tree_of(path).body):
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b) in {"enum.Enum", *names} for b in node.bases):
            names.add(node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and ast.unparse(node.value.func) in names:
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def parameter_fields() -> dict[str, str]:
    """Field name -> kind (``bool``, ``float``, ``str``, ``Path``, ``enum``, ``node``...) of the wrapper class."""
    (wrapped,) = [n for n in module_tree().body if isinstance(n, ast.ClassDef)
                  and any(ast.unparse(d) == "parameterNodeWrapper" for d in n.decorator_list)]
    assert wrapped.name == "PELabelUpParameterNode"
    fields = {}
    for statement in wrapped.body:
        if isinstance(statement, ast.AnnAssign):
            annotation = statement.annotation
            if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Annotated":
                base, *extras = annotation.slice.elts
                kind = "choice" if any("Choice(" in ast.unparse(e) for e in extras) else ast.unparse(base)
            else:
                kind = ast.unparse(annotation)
            kind = "enum" if kind in enum_names() else "node" if re.fullmatch(r"vtkMRML\w+Node", kind) else kind
            fields[statement.target.id] = kind
    return fields


@pytest.mark.parametrize("path", GUI_FILES, ids=short_name)
def test_the_module_file_and_its_helpers_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "compiled.pyc"), doraise=True)


def test_the_module_imports_its_helpers_by_names_they_define():
    """Each ``from PELabelUpQt.x import a`` (or ``from .x import a`` inside the package) names a top-level
    definition of ``PELabelUpQt/x.py``: without Slicer nothing imports these files, so the names are checked here."""
    assert len(GUI_FILES) > 2 and (QT_PACKAGE / "__init__.py") in GUI_FILES
    imported = 0
    for path in GUI_FILES:
        for node in ast.walk(tree_of(path)):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 1 and path.parent == QT_PACKAGE:
                module = node.module
            elif node.level == 0 and (node.module or "").startswith("PELabelUpQt."):
                module = node.module.removeprefix("PELabelUpQt.")
            else:
                continue
            defined = set()
            for top in tree_of(QT_PACKAGE / f"{module}.py").body:
                if isinstance(top, ast.FunctionDef | ast.ClassDef):
                    defined.add(top.name)
                elif isinstance(top, ast.Assign | ast.AnnAssign):
                    targets = top.targets if isinstance(top, ast.Assign) else [top.target]
                    defined.update(t.id for t in targets if isinstance(t, ast.Name))
            missing = {a.name for a in node.names} - defined
            assert not missing, f"{short_name(path)} imports {sorted(missing)} from PELabelUpQt/{module}.py"
            imported += 1
    assert imported, "the module imports its helpers"


def test_the_module_keeps_the_template_order():
    classes = [n.name for n in module_tree().body if isinstance(n, ast.ClassDef) and n.name.startswith("PELabelUp")]
    assert classes == ["PELabelUp", "PELabelUpParameterNode", "PELabelUpWidget", "PELabelUpLogic", "PELabelUpTest"]


def test_every_slicer_parameter_name_is_a_field_on_a_widget_that_can_show_it():
    fields = parameter_fields()
    bound = {}
    for name, widget in ui_widgets().items():
        parameter = string_property(widget, "SlicerParameterName")
        if parameter is None:
            continue
        assert parameter in fields, f"{name}: SlicerParameterName {parameter!r} is not a parameter-node field"
        assert fields[parameter] in CONNECTORS.get(widget.get("class"), set()), \
            f"{name} ({widget.get('class')}) cannot represent {parameter}: {fields[parameter]}"
        assert parameter not in bound, f"{parameter} is bound to {bound[parameter]} and {name}"
        bound[parameter] = name
    unbound = set(fields) - set(bound)
    assert unbound == {"segmenterVersion", "correctedSegmentId", "arterySegmentation", "arterySegmentId"}, \
        "choices read from disk or from the review, and the segment selector (no connector)"


def test_the_input_selector_offers_scalar_volumes():
    selector = ui_widgets()["inputVolumeSelector"]
    assert selector.get("class") == "qMRMLNodeComboBox"
    assert string_property(selector, "SlicerParameterName") == "inputVolume"
    node_types = [s.text for p in selector.findall("property") if p.get("name") == "nodeTypes"
                  for s in p.iter("string")]
    assert node_types == ["vtkMRMLScalarVolumeNode"]
    assert parameter_fields()["inputVolume"] == "node"


@pytest.mark.parametrize("path", GUI_FILES, ids=short_name)
def test_every_widget_the_code_names_exists_in_the_ui(path):
    """The module and its helpers reach widgets as ``ui.<name>`` (``self.ui`` or the ``ui`` handed to a helper)."""
    named = set(re.findall(r"\bui\.(\w+)", path.read_text()))
    missing = named - set(ui_widgets())
    assert not missing, f"{short_name(path)}: not in {UI_FILE.name}: {sorted(missing)}"


def test_the_module_and_its_helpers_name_widgets_through_ui():
    named = {path.name for path in GUI_FILES if re.search(r"\bui\.\w+", path.read_text())}
    assert {"PELabelUp.py", "review_panel.py", "choices.py"} <= named


def test_custom_widgets_are_declared_and_mrml_widgets_get_the_scene():
    root = ET.parse(UI_FILE).getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in ui_widgets().values()}
    assert {c for c in used if c.startswith(("q", "ctk"))} <= declared
    connected = {(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                 for c in root.iter("connection")}
    top = root.find("widget").get("name")
    for name, widget in ui_widgets().items():
        if widget.get("class").startswith("qMRML") and name != top:
            assert (top, "mrmlSceneChanged(vtkMRMLScene*)", name, "setMRMLScene(vtkMRMLScene*)") in connected, name


def _literal_words(node: ast.AST) -> bool:
    """A str literal (or an f-string's literal parts) holding a word: text a user would read."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(re.search(r"[A-Za-z]{2}", node.value))
    if isinstance(node, ast.JoinedStr):
        return any(_literal_words(v) for v in node.values if isinstance(v, ast.Constant))
    return False


#: helpers of the Logic: like the Logic, they speak to scripts and tests, in English
LOGIC_HELPERS = {"analysis_runner.py"}


def test_user_visible_strings_go_through_the_translation_function():
    """In the descriptor, the Widget and the Widget's helpers (every function of ``PELabelUpQt`` but the Logic's)."""
    shown_by = {"addItem", "confirmOkCancelDisplay", "errorDisplay", "tryWithErrorDisplay", "ValueError",
                "RuntimeError", "format", "showStatus"}
    scopes = [(MODULE_FILE.name, class_named(cls)) for cls in ("PELabelUp", "PELabelUpWidget")]
    scopes += [(path.name, tree_of(path)) for path in GUI_FILES[1:] if path.name not in LOGIC_HELPERS]
    assert {name for name, _scope in scopes} >= {"review_panel.py", "choices.py", "requirements.py"}
    untranslated = []
    for file_name, scope in scopes:
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr in
                                                    {"text", "toolTip", "title", "helpText", "acknowledgementText"}
                                                    for t in node.targets):
                values = [node.value]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in shown_by:
                values = node.args[:1] if ast.unparse(node.func) != "_" else []
            else:
                continue
            untranslated += [f"{file_name} line {v.lineno}: {ast.unparse(v)[:60]}" for v in values
                             if _literal_words(v)]
    assert not untranslated, "wrap in _(): " + "; ".join(untranslated)


def test_the_descriptor_says_research_not_for_clinical_use():
    source = ast.unparse(class_named("PELabelUp"))
    assert "not for clinical use" in source and "Research" in source
    assert "translate('qSlicerAbstractCoreModule', 'Segmentation')" in source
    assert "self.parent.contributors" in source and "self.parent.acknowledgementText" in source


def test_the_gui_process_imports_no_torch():
    """Every PELabelUpLib module the module file and its helpers import (and the review session its Logic imports),
    in a real interpreter: neither torch nor MONAI is loaded; the module-level ones load without numpy-heavy
    packages."""
    imported = {n.module for path in GUI_FILES for n in ast.walk(tree_of(path)) if isinstance(n, ast.ImportFrom)
                and (n.module or "").startswith("PELabelUpLib")} | {"PELabelUpLib.slicer_review"}
    top_level = {n.module for path in GUI_FILES for n in tree_of(path).body if isinstance(n, ast.ImportFrom)
                 and (n.module or "").startswith("PELabelUpLib")}
    assert top_level == {"PELabelUpLib.explain.registry", "PELabelUpLib.models.registry",
                         "PELabelUpLib.slicer_process", "PELabelUpLib.slicer_worker"}
    code = (f"import importlib, sys\nfor m in {sorted(top_level)!r}: importlib.import_module(m)\n"
            "print(sorted(k for k in ('torch', 'monai', 'scipy', 'numpy') if k in sys.modules))\n"
            f"for m in {sorted(imported)!r}: importlib.import_module(m)\n"
            "print(sorted(k for k in ('torch', 'monai') if k in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                          env=dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT)), cwd=REPO_ROOT)
    assert done.stdout.split("\n")[:2] == ["[]", "[]"], done.stdout + done.stderr
