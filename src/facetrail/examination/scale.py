"""The conclusion scale of a facial examination (docs/examination.md): a symmetric support scale, plus
"not suitable".

Guaranteed: seven levels, symmetric around ``neutral`` (strong / moderate / limited support for the same source,
neutral, limited / moderate / strong support for different sources), and ``not_suitable`` (the images do not
allow a comparison), which is off the scale. ``strength`` orders the levels (+3 … -3); ``not_suitable`` has none.
A conclusion is an examiner's opinion with its reasoning and limitations, never a probability or a score.
Pure: imports nothing from FaceTrail, so any module may import it.
"""

from __future__ import annotations

from enum import StrEnum


class Conclusion(StrEnum):
    STRONG_SUPPORT_SAME_SOURCE = "strong_support_same_source"
    MODERATE_SUPPORT_SAME_SOURCE = "moderate_support_same_source"
    LIMITED_SUPPORT_SAME_SOURCE = "limited_support_same_source"
    NEUTRAL = "neutral"
    LIMITED_SUPPORT_DIFFERENT_SOURCES = "limited_support_different_sources"
    MODERATE_SUPPORT_DIFFERENT_SOURCES = "moderate_support_different_sources"
    STRONG_SUPPORT_DIFFERENT_SOURCES = "strong_support_different_sources"
    NOT_SUITABLE = "not_suitable"


STRENGTH: dict[Conclusion, int] = {
    Conclusion.STRONG_SUPPORT_SAME_SOURCE: 3,
    Conclusion.MODERATE_SUPPORT_SAME_SOURCE: 2,
    Conclusion.LIMITED_SUPPORT_SAME_SOURCE: 1,
    Conclusion.NEUTRAL: 0,
    Conclusion.LIMITED_SUPPORT_DIFFERENT_SOURCES: -1,
    Conclusion.MODERATE_SUPPORT_DIFFERENT_SOURCES: -2,
    Conclusion.STRONG_SUPPORT_DIFFERENT_SOURCES: -3,
}

LABELS: dict[Conclusion, str] = {
    Conclusion.STRONG_SUPPORT_SAME_SOURCE: "Strong support for same source",
    Conclusion.MODERATE_SUPPORT_SAME_SOURCE: "Moderate support for same source",
    Conclusion.LIMITED_SUPPORT_SAME_SOURCE: "Limited support for same source",
    Conclusion.NEUTRAL: "Neutral (neither supported)",
    Conclusion.LIMITED_SUPPORT_DIFFERENT_SOURCES: "Limited support for different sources",
    Conclusion.MODERATE_SUPPORT_DIFFERENT_SOURCES: "Moderate support for different sources",
    Conclusion.STRONG_SUPPORT_DIFFERENT_SOURCES: "Strong support for different sources",
    Conclusion.NOT_SUITABLE: "Not suitable for comparison",
}

# The levels a release rule may name (the same-source side only: a lead is never released on neutral).
RELEASE_LEVELS = (
    Conclusion.STRONG_SUPPORT_SAME_SOURCE.value,
    Conclusion.MODERATE_SUPPORT_SAME_SOURCE.value,
    Conclusion.LIMITED_SUPPORT_SAME_SOURCE.value,
)
DEFAULT_RELEASE_LEVEL = Conclusion.MODERATE_SUPPORT_SAME_SOURCE.value


def parse(value: str) -> Conclusion | None:
    """The conclusion named by ``value``, or None when it names none."""
    try:
        return Conclusion(value)
    except ValueError:
        return None


def strength(value: str) -> int | None:
    """+3 (strong support, same source) … -3 (strong support, different sources); None: not suitable or unknown."""
    conclusion = parse(value)
    return None if conclusion is None else STRENGTH.get(conclusion)


def supports_same_source(value: str, level: str = DEFAULT_RELEASE_LEVEL) -> bool:
    """Whether ``value`` is at or above ``level`` on the same-source side."""
    have, need = strength(value), strength(level)
    return have is not None and need is not None and need > 0 and have >= need


def side(value: str) -> str:
    """'same_source', 'different_sources', 'neutral' or 'not_suitable' (also for an unknown value)."""
    s = strength(value)
    if s is None:
        return "not_suitable"
    return "same_source" if s > 0 else "different_sources" if s < 0 else "neutral"
