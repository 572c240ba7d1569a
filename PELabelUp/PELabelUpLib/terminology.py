"""The segments PELabelUp writes and shows, with their DICOM/SNOMED CT terminology: the one source.

The analysis writes them into ``segmentation.seg.nrrd`` (:mod:`PELabelUpLib.analysis.segments`) and the Slicer
review creates them in the scene (:mod:`PELabelUpLib.mrml`), so a file loaded into the review matches the
segments it creates. No Slicer, VTK or numpy here.

Codes (SNOMED CT, scheme ``SCT``), checked against DICOM PS3.16 and 3D Slicer's terminology contexts
(``SegmentationCategoryTypeModifier-DICOM-Master.json``):

- 55584005 "Embolus": CID 7159 (Lesion Segmentation Type), category 49755003 "Morphologically Altered
  Structure" (CID 7150; also in Slicer's General Anatomy list); its anatomic region 81040000 "Pulmonary artery".
- 81040000 "Pulmonary artery": CID 12290 (pulmonary artery finding sites), category 123037004 "Anatomical
  Structure" (the code Slicer's own lists use). Slicer's General Anatomy list has no pulmonary artery, so both
  entries use the DICOM master list context, which has both.

An entry string is Slicer's 7-field form, ``context~category~type~typeModifier~anatomicContext~region~
regionModifier``, each code ``scheme^value^meaning``; :func:`parse_terminology` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

Code = tuple[str, str, str]  # (coding scheme, code value, code meaning)

MORPHOLOGICALLY_ALTERED: Code = ("SCT", "49755003", "Morphologically Altered Structure")
ANATOMICAL_STRUCTURE: Code = ("SCT", "123037004", "Anatomical Structure")
EMBOLUS: Code = ("SCT", "55584005", "Embolus")
PULMONARY_ARTERY: Code = ("SCT", "81040000", "Pulmonary artery")
NO_CODE: Code = ("", "", "")


def _code(code: Code) -> str:
    return "^".join(code)


def terminology_entry(category: Code, type_: Code, region: Code = NO_CODE) -> str:
    """Slicer's terminology entry string for a category, type and (optional) anatomic region."""
    fields = [CATEGORY_CONTEXT, _code(category), _code(type_), _code(NO_CODE),
              ANATOMIC_CONTEXT if region != NO_CODE else "", _code(region), _code(NO_CODE)]
    return "~".join(fields)


def parse_terminology(entry: str) -> dict[str, Code]:
    """The codes of an entry string: ``category``, ``type``, ``type_modifier``, ``region``, ``region_modifier``.

    Raises:
        ValueError: not the 7-field form.
    """
    fields = entry.split("~")
    if len(fields) != 7:
        raise ValueError(f"terminology entry must have 7 '~'-separated fields, got {len(fields)}: {entry!r}")
    keys = ("category", "type", "type_modifier", None, "region", "region_modifier")
    codes: dict[str, Code] = {}
    for key, text in zip(keys, fields[1:], strict=True):
        if key is None:
            continue
        parts = text.split("^")
        if len(parts) != 3:
            raise ValueError(f"code must be 'scheme^value^meaning', got {text!r} in {entry!r}")
        codes[key] = (parts[0], parts[1], parts[2])
    return codes


@dataclass(frozen=True)
class SegmentSpec:
    """A segment of the analysis file and of the review segmentation.

    Attributes:
        segment_id: stable ID inside the segmentation (used by the editor and the export).
        name: the name users see.
        color: RGB in [0, 1].
        terminology: Slicer terminology entry string.
        fill_opacity_2d: opacity of the segment's fill in slice views (its outline is always drawn).
        opacity_3d: opacity of the segment's surface in 3-D views (the arteries are see-through, so the emboli
            inside them show).
    """

    segment_id: str
    name: str
    color: tuple[float, float, float]
    terminology: str
    fill_opacity_2d: float = 0.35
    opacity_3d: float = 1.0


EMBOLUS_ENTRY = terminology_entry(MORPHOLOGICALLY_ALTERED, EMBOLUS, PULMONARY_ARTERY)
PULMONARY_ARTERY_ENTRY = terminology_entry(ANATOMICAL_STRUCTURE, PULMONARY_ARTERY)

PE_PSEUDOMASK = SegmentSpec("pe_pseudomask", "PE pseudo-mask", (0.0, 0.9, 1.0), EMBOLUS_ENTRY)
PE_SEGMENTER = SegmentSpec("pe_segmenter", "PE segmenter", (0.35, 1.0, 0.25), EMBOLUS_ENTRY)
PULMONARY_ARTERIES = SegmentSpec("pulmonary_arteries", "Pulmonary arteries", (0.85, 0.55, 0.95),
                                 PULMONARY_ARTERY_ENTRY, fill_opacity_2d=0.0, opacity_3d=0.3)
REVIEW_SEGMENTS: tuple[SegmentSpec, ...] = (PULMONARY_ARTERIES, PE_PSEUDOMASK, PE_SEGMENTER)
