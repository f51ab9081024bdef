"""The FISWG morphological checklist (FISWG "Facial Image Comparison Feature List for Morphological Analysis").

Guaranteed: a fixed list of facial components, each with its characteristics; every characteristic of a
checklist is marked ``similar``, ``dissimilar`` or ``not_visible``, with an optional comment; a ``dissimilar``
mark must be explained (a comment saying why it is, or why it is not, a difference between sources, e.g.
ageing, pose, lighting, expression). Annotations are pinned to a region of one image (coordinates as fractions of
its width and height). Measurements are recorded as observations (a name, a value and its unit, with the image)
and are never combined into a score: nothing in FaceTrail computes anything from them.
Pure data and validation (only facetrail.text), so any module may import it.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from facetrail.text import check_text

MAX_COMMENT = 2000
MAX_ANNOTATIONS = 200
MAX_MEASUREMENTS = 100


class Mark(StrEnum):
    SIMILAR = "similar"
    DISSIMILAR = "dissimilar"
    NOT_VISIBLE = "not_visible"


# component -> (label, characteristics); the order is the FISWG feature list's.
COMPONENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "skin": ("Skin", ("tone", "texture", "lines_and_wrinkles")),
    "face_head_outline": ("Face/head outline", ("shape", "symmetry", "head_top")),
    "face_head_composition": ("Face/head composition", ("proportions", "feature_positions")),
    "hair": ("Hair", ("hairline", "colour", "density", "style", "baldness_pattern")),
    "forehead": ("Forehead", ("height", "width", "slope", "bony_prominence")),
    "eyebrows": ("Eyebrows", ("shape", "thickness", "density", "position", "symmetry", "medial_end")),
    "eyes": (
        "Eyes",
        ("inter_eye_distance", "fissure_shape", "upper_eyelid", "lower_eyelid", "eye_angle", "iris", "canthi"),
    ),
    "cheeks": ("Cheeks", ("cheekbone_prominence", "fullness", "nasolabial_folds")),
    "nose": ("Nose", ("nasal_root", "bridge", "tip", "alae", "nostrils", "width", "length", "septum")),
    "ears": ("Ears", ("shape", "protrusion", "helix", "antihelix", "tragus", "lobe", "lobe_attachment")),
    "mouth": ("Mouth", ("width", "upper_lip", "lower_lip", "philtrum", "corners", "vermilion_border")),
    "chin_jawline": ("Chin/jawline", ("chin_shape", "chin_prominence", "cleft", "jawline", "gonial_angle")),
    "neck": ("Neck", ("length", "width", "laryngeal_prominence")),
    "facial_hair": ("Facial hair", ("moustache", "beard", "sideburns", "pattern")),
    "facial_lines": ("Facial lines", ("forehead_lines", "crows_feet", "nasolabial_lines", "other_lines")),
    "scars": ("Scars", ("location", "shape", "size")),
    "facial_marks": ("Facial marks (moles, freckles, blemishes)", ("location", "shape", "colour", "size")),
    "alterations": ("Alterations (tattoos, piercings, surgery)", ("tattoos", "piercings", "surgical_alterations")),
}

IMAGES = ("probe", "candidate")


class ChecklistError(ValueError):
    """A checklist that is not valid; ``field`` names where."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def definition() -> list[dict[str, Any]]:
    """The checklist as shown to an examiner: components with their characteristics, and the marks."""
    return [
        {
            "component": key,
            "label": label,
            "characteristics": list(chars),
            "marks": [m.value for m in Mark],
        }
        for key, (label, chars) in COMPONENTS.items()
    ]


def _text(value: Any, field: str, max_len: int = MAX_COMMENT) -> str:
    """Free text of a checklist: multi-line, no control, bidi or zero-width characters (facetrail.text; its
    ControlCharacterError, code control_character, passes through)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ChecklistError("must be text", field)
    return check_text(field, value, max_len=max_len, required=False, multiline=True)


def _fraction(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ChecklistError("must be a number", field)
    if not 0.0 <= float(value) <= 1.0:
        raise ChecklistError("must be a fraction of the image (0 to 1)", field)
    return float(value)


def clean_marks(marks: Any) -> dict[str, dict[str, dict[str, str]]]:
    """{component: {characteristic: {"mark": …, "comment": …}}} validated: known names only, a mark each,
    a dissimilar mark explained. A partial checklist is allowed (it is saved as the examiner works)."""
    if not isinstance(marks, dict):
        raise ChecklistError("must be an object of components", "marks")
    out: dict[str, dict[str, dict[str, str]]] = {}
    for component, chars in marks.items():
        if component not in COMPONENTS:
            raise ChecklistError(f"unknown component {str(component)[:60]!r}", "marks")
        if not isinstance(chars, dict):
            raise ChecklistError("must be an object of characteristics", f"marks.{component}")
        known = COMPONENTS[component][1]
        for name, entry in chars.items():
            where = f"marks.{component}.{str(name)[:60]}"
            if name not in known:
                raise ChecklistError(f"unknown characteristic of {component}", where)
            if not isinstance(entry, dict) or set(entry) - {"mark", "comment"}:
                raise ChecklistError('must be {"mark": …, "comment": …}', where)
            try:
                mark = Mark(str(entry.get("mark")))
            except ValueError:
                raise ChecklistError(f"mark must be one of {', '.join(m.value for m in Mark)}", where) from None
            comment = _text(entry.get("comment"), where + ".comment")
            if mark is Mark.DISSIMILAR and not comment:
                raise ChecklistError("a dissimilarity must be explained in a comment", where + ".comment")
            out.setdefault(component, {})[name] = {"mark": mark.value, "comment": comment}
    return out


def clean_annotations(annotations: Any) -> list[dict[str, Any]]:
    """Notes pinned to a region of the probe or the candidate image: {image, photo, component, region, note}."""
    if annotations is None:
        return []
    if not isinstance(annotations, list) or len(annotations) > MAX_ANNOTATIONS:
        raise ChecklistError(f"must be a list of at most {MAX_ANNOTATIONS} annotations", "annotations")
    out = []
    for i, a in enumerate(annotations):
        where = f"annotations.{i}"
        if not isinstance(a, dict) or set(a) - {"image", "photo", "component", "region", "note"}:
            raise ChecklistError("must be {image, photo, component, region, note}", where)
        if a.get("image") not in IMAGES:
            raise ChecklistError("image must be 'probe' or 'candidate'", where + ".image")
        photo = a.get("photo", 0)
        if isinstance(photo, bool) or not isinstance(photo, int) or not 0 <= photo < 1000:
            raise ChecklistError("photo must be the index of one of the candidate's photos", where + ".photo")
        component = a.get("component")
        if component is not None and component not in COMPONENTS:
            raise ChecklistError("unknown component", where + ".component")
        region = a.get("region")
        if not isinstance(region, dict) or set(region) != {"x", "y", "width", "height"}:
            raise ChecklistError("region must be {x, y, width, height} as fractions of the image", where + ".region")
        box = {k: _fraction(region[k], f"{where}.region.{k}") for k in ("x", "y", "width", "height")}
        if box["x"] + box["width"] > 1.0 + 1e-9 or box["y"] + box["height"] > 1.0 + 1e-9:
            raise ChecklistError("region must lie within the image", where + ".region")
        out.append(
            {
                "image": a["image"],
                "photo": photo,
                "component": component,
                "region": box,
                "note": _text(a.get("note"), where + ".note"),
            }
        )
    return out


def clean_measurements(measurements: Any) -> list[dict[str, Any]]:
    """Observations {image, name, value, unit, note}; recorded as observed, never scored or combined."""
    if measurements is None:
        return []
    if not isinstance(measurements, list) or len(measurements) > MAX_MEASUREMENTS:
        raise ChecklistError(f"must be a list of at most {MAX_MEASUREMENTS} observations", "measurements")
    out = []
    for i, m in enumerate(measurements):
        where = f"measurements.{i}"
        if not isinstance(m, dict) or set(m) - {"image", "name", "value", "unit", "note"}:
            raise ChecklistError("must be {image, name, value, unit, note}", where)
        if m.get("image") not in (*IMAGES, "both"):
            raise ChecklistError("image must be 'probe', 'candidate' or 'both'", where + ".image")
        value = m.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ChecklistError("value must be a number", where + ".value")
        name = _text(m.get("name"), where + ".name", 200)
        if not name:
            raise ChecklistError("a measurement needs a name", where + ".name")
        out.append(
            {
                "image": m["image"],
                "name": name,
                "value": float(value),
                "unit": _text(m.get("unit"), where + ".unit", 40),
                "note": _text(m.get("note"), where + ".note"),
            }
        )
    return out


def unmarked(marks: dict[str, dict[str, dict[str, str]]]) -> list[str]:
    """'component.characteristic' of every characteristic not yet marked."""
    return [f"{c}.{ch}" for c, (_, chars) in COMPONENTS.items() for ch in chars if ch not in marks.get(c, {})]


# The analysis of the probe alone (ACE-V "A"): each factor rated before any candidate is seen.
QUALITY_FACTORS: dict[str, str] = {
    "resolution": "Resolution (pixels across the face)",
    "focus": "Focus and motion blur",
    "lighting": "Lighting and exposure",
    "pose": "Pose (angle of the head)",
    "occlusion": "Occlusion (glasses, mask, hair, hands)",
    "expression": "Expression",
    "compression": "Compression and noise",
    "distortion": "Lens or perspective distortion",
}
QUALITY_RATINGS = ("good", "limited", "poor")


def clean_quality(quality: Any) -> dict[str, dict[str, str]]:
    """{factor: {"rating": good|limited|poor, "comment": …}}: every factor rated."""
    if not isinstance(quality, dict):
        raise ChecklistError("must be an object of quality factors", "quality")
    unknown = sorted(str(k)[:60] for k in quality if k not in QUALITY_FACTORS)
    if unknown:
        raise ChecklistError(f"unknown quality factor(s) {unknown}", "quality")
    out = {}
    for factor in QUALITY_FACTORS:
        entry = quality.get(factor)
        where = f"quality.{factor}"
        if not isinstance(entry, dict) or set(entry) - {"rating", "comment"}:
            raise ChecklistError('every factor needs {"rating": good|limited|poor, "comment": …}', where)
        if entry.get("rating") not in QUALITY_RATINGS:
            raise ChecklistError(f"rating must be one of {', '.join(QUALITY_RATINGS)}", where + ".rating")
        out[factor] = {"rating": str(entry["rating"]), "comment": _text(entry.get("comment"), where + ".comment")}
    return out
