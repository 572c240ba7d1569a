"""Subject hierarchy: the review's nodes go under the input CT's study.

A CT loaded from DICOM in Slicer sits under its Patient > Study items; a CT loaded from a file sits at the
top. In the second case a Patient/Study pair is made (named after the CT) and the CT moved into it, so a study
always holds the CT and everything derived from it. Without Slicer's Qt plugins, nodes get no subject
hierarchy item on their own; :func:`item_of` creates the missing ones.
"""

from __future__ import annotations

import slicer

LEVEL_PATIENT = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelPatient()
LEVEL_STUDY = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy()


def _shn(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLSubjectHierarchyNode:
    node = scene.GetSubjectHierarchyNode()
    if node is None:
        raise RuntimeError("the scene has no subject hierarchy node (is the Subject Hierarchy logic registered?)")
    return node


def item_of(node: slicer.vtkMRMLNode) -> int:
    """The node's subject hierarchy item, created under the scene item when it has none."""
    shn = _shn(node.GetScene())
    item = shn.GetItemByDataNode(node)
    if not item:
        item = shn.CreateItem(shn.GetSceneItemID(), node)
    return int(item)


def study_of(node: slicer.vtkMRMLNode) -> int | None:
    """The Study item above the node's item, or ``None``."""
    shn = _shn(node.GetScene())
    item = shn.GetItemByDataNode(node)
    while item and item != shn.GetSceneItemID():
        if shn.GetItemLevel(item) == LEVEL_STUDY:
            return int(item)
        item = shn.GetItemParent(item)
    return None


def ensure_study(volume_node: slicer.vtkMRMLVolumeNode, study_name: str = "PELabelUp review") -> int:
    """The input volume's study item; made (Patient named after the volume, Study ``study_name``) when absent."""
    found = study_of(volume_node)
    if found is not None:
        return found
    shn = _shn(volume_node.GetScene())
    patient = shn.CreateSubjectItem(shn.GetSceneItemID(), volume_node.GetName())
    study = shn.CreateStudyItem(patient, study_name)
    shn.SetItemParent(item_of(volume_node), study)
    return int(study)


def place_under(study_item: int, nodes: list[slicer.vtkMRMLNode]) -> None:
    """Move the nodes' items under ``study_item`` (creating the items they lack)."""
    if not nodes:
        return
    shn = _shn(nodes[0].GetScene())
    for node in nodes:
        shn.SetItemParent(item_of(node), study_item)
