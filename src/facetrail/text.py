"""Free text as FaceTrail accepts it: every field a user can type (review notes, justifications, reasons,
names, descriptions) passes ``check_text`` before it is stored, so that nothing recorded can disguise itself.

Guaranteed for accepted text:
- no control characters (NUL, ESC, DEL, C1 …); single-line fields hold no line break at all, multi-line
  fields only ``\\n`` (``\\r\\n`` and ``\\r`` become ``\\n``) and ``\\t``;
- no invisible format characters: bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069, RLM,
  LRM, ALM), zero-width spaces, word joiners, BOMs, soft hyphens; only ZWNJ and ZWJ (U+200C/U+200D, needed
  to write Persian, Hindi and emoji sequences) are kept, and only in multi-line text;
- no line or paragraph separators (U+2028/U+2029) and no lone surrogates;
- surrounding whitespace trimmed, the length bounded.
Refusals raise ``ControlCharacterError`` (code ``control_character``) naming the field, the character and its
position; other problems raise ``BadInputError``.

Case numbers (``normalize_case_number``) are NFKC-normalised too, so that full-width or compatibility forms
of the same characters name the same case; the policy's ``case_number_pattern`` then refuses look-alikes from
other scripts (Cyrillic "А-2026-001").
"""

from __future__ import annotations

import unicodedata

from facetrail.errors import BadInputError

_KEPT_JOINERS = frozenset("\u200c\u200d")


class ControlCharacterError(BadInputError):
    """A field holds a control, format or separator character that could disguise what is recorded."""

    code = "control_character"


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def find_forbidden(text: str, *, multiline: bool = False) -> tuple[int, str] | None:
    """The first character ``check_text`` refuses, with its position, or None."""
    for pos, char in enumerate(text):
        if multiline and char in "\n\t":
            continue
        if multiline and char in _KEPT_JOINERS:
            continue
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return pos, char
    return None


def check_text(field: str, value: str | None, *, max_len: int, required: bool = True, multiline: bool = False) -> str:
    """``value`` trimmed, or a clear refusal: required and blank, too long, or a forbidden character."""
    text = value or ""
    if multiline:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.strip()
    if required and not text:
        raise BadInputError(f"{field} is required and must not be blank", field=field)
    if len(text) > max_len:
        raise BadInputError(f"{field} is {len(text)} characters, over the limit of {max_len}", field=field)
    bad = find_forbidden(text, multiline=multiline)
    if bad is not None:
        pos, char = bad
        kind = ", a line break" if char in "\n\r\u2028\u2029" else ""
        raise ControlCharacterError(
            f"{field} contains a control character ({_describe(char)}{kind}) at position {pos}; "
            + ("only tabs and line breaks are allowed" if multiline else "it must be a single line of visible text"),
            field=field,
            position=pos,
            character=f"U+{ord(char):04X}",
        )
    return text


def normalize_case_number(value: str | None) -> str:
    """NFKC, trimmed: full-width and compatibility forms name the same case (the pattern check is the policy's)."""
    return unicodedata.normalize("NFKC", value or "").strip()
