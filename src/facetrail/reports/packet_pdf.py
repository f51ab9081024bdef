"""The disclosure packet as a PDF (reportlab): a cover, then one section per search, then refused attempts.

Text is set in DejaVu Sans (shipped with matplotlib, a dependency) so that every character a case record may
hold (accents, ≈, ≥, dashes) prints as itself, and so that the text can be extracted again from the PDF.

Any text a user can enter renders (tests/adversarial/test_packet_render.py fuzzes it): control and invisible
formatting characters print as visible ``\\uXXXX`` escapes, long words are split, and a table cell holds at most
CELL_MAX_CHARS characters; the rest of a longer text is printed in full in the appendix "Full text of long
entries", in paragraphs that flow across pages (a table row taller than a page is what made reportlab raise
LayoutError).
"""

from __future__ import annotations

import base64
import io
import json
import os
import unicodedata
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from facetrail.reports.common import chain_sentence
from facetrail.reports.packet import NOT_RECORDED, Packet

FONT, FONT_BOLD = "FaceTrailSans", "FaceTrailSans-Bold"
PAGE_WIDTH = A4[0] - 36 * mm  # usable width between the margins
GRID = colors.HexColor("#999999")
HEADER_FILL = colors.HexColor("#e8e8e8")


@lru_cache(maxsize=1)
def _register_fonts() -> None:
    import matplotlib

    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    pdfmetrics.registerFont(TTFont(FONT, os.path.join(folder, "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, os.path.join(folder, "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)


@lru_cache(maxsize=1)
def _styles() -> dict[str, ParagraphStyle]:
    _register_fonts()
    base = getSampleStyleSheet()
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontName=FONT_BOLD, fontSize=22, leading=28),
        "h1": ParagraphStyle("h1", parent=base["Heading1"], fontName=FONT_BOLD, fontSize=15, leading=19),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontName=FONT_BOLD, fontSize=11.5, leading=15),
        "body": ParagraphStyle("body", parent=base["BodyText"], fontName=FONT, fontSize=9.5, leading=12.5),
        "cell": ParagraphStyle(
            "cell", parent=base["BodyText"], fontName=FONT, fontSize=7.5, leading=9.5, splitLongWords=True
        ),
        "cell_bold": ParagraphStyle(
            "cell_bold", parent=base["BodyText"], fontName=FONT_BOLD, fontSize=7.5, leading=9.5, splitLongWords=True
        ),
        "long": ParagraphStyle(
            "long", parent=base["BodyText"], fontName=FONT, fontSize=8, leading=10.5, splitLongWords=True
        ),
        "notice": ParagraphStyle(
            "notice",
            parent=base["BodyText"],
            fontName=FONT_BOLD,
            fontSize=10,
            leading=13,
            textColor=colors.HexColor("#7a0000"),
        ),
    }


CELL_MAX_CHARS = 600  # longer cell texts continue in the appendix
CELL_MAX_LINES = 24  # a cell never grows taller than this many lines (a page holds about 70)
CELL_EM = 8.0  # points: the widest glyph of the 7.5 pt cell font, as the limit assumes
APPENDIX_CHUNK = 1500  # characters per appendix paragraph (each flows across pages on its own)
_overflow: ContextVar[list[str] | None] = ContextVar("packet_overflow", default=None)


def printable(text: str) -> str:
    """Control, format and separator characters as visible escapes; line breaks kept as spaces."""
    out = []
    for char in text:
        if char in "\n\t":
            out.append(" ")
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"):
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def _cell_limit(width: float | None) -> int:
    """Characters a cell of this width holds in at most CELL_MAX_LINES lines, even of glyphs one em wide."""
    if width is None:
        return CELL_MAX_CHARS
    per_line = max(1, int((width - 6) / CELL_EM))  # 6: the cell's left and right padding
    return max(8, min(CELL_MAX_CHARS, per_line * CELL_MAX_LINES))


def _p(text: Any, style: str = "cell", width: float | None = None) -> Paragraph:
    value = printable("" if text is None else str(text))
    overflow = _overflow.get()
    limit = _cell_limit(width)
    if len(value) > limit and overflow is not None:
        overflow.append(value)
        value = f"{value[:limit]} … [appendix, entry {len(overflow)}]"
    return Paragraph(escape(value), _styles()[style])


def _appendix(texts: list[str]) -> list[Flowable]:
    if not texts:
        return []
    story: list[Flowable] = [PageBreak(), Paragraph("Full text of long entries", _styles()["h1"])]
    for number, text in enumerate(texts, start=1):
        story.append(Paragraph(escape(f"Long entry {number} ({len(text):,} characters)"), _styles()["h2"]))
        for start in range(0, len(text), APPENDIX_CHUNK):
            story.append(Paragraph(escape(text[start : start + APPENDIX_CHUNK]), _styles()["long"]))
    return story


def _table(header: list[str], rows: list[list[Any]], widths: list[float]) -> Table:
    """A grid with a bold header row repeated on every page; every cell wraps."""
    cols = [w * PAGE_WIDTH for w in widths]
    data = [[_p(h, "cell_bold", c) for h, c in zip(header, cols, strict=True)]] + [
        [_p(v, "cell", c) for v, c in zip(row, cols, strict=True)] for row in rows
    ]
    table = Table(data, colWidths=cols, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, GRID),
                ("BACKGROUND", (0, 0), (-1, 0), HEADER_FILL),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    return table


def _fields(rows: list[tuple[str, Any]]) -> Table:
    """Label / value pairs as a two-column table."""
    data = [[_p(label, "cell_bold", 0.27 * PAGE_WIDTH), _p(value, "cell", 0.73 * PAGE_WIDTH)] for label, value in rows]
    table = Table(data, colWidths=[0.27 * PAGE_WIDTH, 0.73 * PAGE_WIDTH])
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, GRID),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BACKGROUND", (0, 0), (0, -1), HEADER_FILL),
            ]
        )
    )
    return table


def _when(ts: str) -> str:
    """'2026-01-02T03:04:05.678+00:00' -> '2026-01-02 03:04:05' (every time in the packet is UTC)."""
    return ts[:19].replace("T", " ")


def _fmr(value: float) -> str:
    return f"{value:.1e}"


def _person(person: dict[str, Any]) -> str:
    if person.get("username"):
        unit = f", unit {person['unit']}" if person.get("unit") else ""
        return f"{person['display_name']} ({person['username']}, {person['role']}{unit})"
    return f"{person['actor']} (no user account: command line)"


def _hooked(value: Any, what: str) -> str:
    if value is None:  # no approval needed / not an emergency search / a search older than policy versions
        return f"none ({what}: none for this search)" if what != "policy versions" else NOT_RECORDED
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _cover(packet: Packet) -> list[Flowable]:
    d = packet.data
    summary = d["summary"]
    story: list[Flowable] = [
        Spacer(1, 30 * mm),
        Paragraph("Disclosure packet", _styles()["title"]),
        Paragraph(escape(printable(f"Case {d['case_number']}")), _styles()["title"]),
        Spacer(1, 10 * mm),
        _fields(
            [
                ("Case number", d["case_number"]),
                ("Generated at (UTC)", d["generated_at"]),
                ("Generated by", d["generated_by"]),
                ("Scope", d["scope"]),
                ("Audit chain", chain_sentence(d["audit_chain"])),
                ("This packet's audit record", f"record {d['audit_seq']} (action case.packet)"),
                ("Searches in the case", summary["searches"]),
                ("First / last search", f"{summary['first_search_at']} / {summary['last_search_at']}"),
                ("Searches with released leads", summary["searches_with_released_leads"]),
                ("Searches with no candidate shown", summary["searches_without_candidates_shown"]),
                ("Review decisions recorded", summary["review_decisions"]),
                ("Refused search attempts", summary["refused_attempts"]),
            ]
        ),
        Spacer(1, 8 * mm),
        Paragraph(escape(d["notice"]), _styles()["notice"]),
        Spacer(1, 4 * mm),
        Paragraph(
            escape(
                "This packet lists every face search FaceTrail recorded for the case, including searches that found "
                "nothing and searches whose candidates were all rejected. Each candidate is a subject, listed once "
                "and shown by its best-matching face; its score is over all of its enrolled faces (cosine "
                "similarities of the named model) and its estimated false-match rate (FMR) is the share of "
                "different people with as many enrolled faces that score at least as high. Candidates under the "
                "similarity floor were never shown to anyone and are not listed; a candidate that two reviewers "
                "did not release is listed by rank only, its identity and score withheld."
            ),
            _styles()["body"],
        ),
    ]
    if d["searches"]:
        story += [
            Spacer(1, 6 * mm),
            Paragraph("Searches", _styles()["h2"]),
            _table(
                ["Search", "Run at (UTC)", "Run by", "Gallery", "Outcome"],
                [
                    [
                        s["search_id"],
                        _when(s["run_at"]),
                        s["run_by"]["username"] or s["run_by"]["actor"],
                        s["gallery"],
                        s["outcome"],
                    ]
                    for s in d["searches"]
                ],
                [0.09, 0.2, 0.17, 0.17, 0.37],
            ),
        ]
    return [*story, PageBreak()]


def _probe_image(probe: dict[str, Any]) -> Flowable | None:
    if not probe.get("thumbnail_jpeg_base64"):
        return None
    data = base64.b64decode(probe["thumbnail_jpeg_base64"])
    return Image(io.BytesIO(data), width=28 * mm, height=28 * mm)


def _search_section(s: dict[str, Any], number: int, total: int) -> list[Flowable]:
    model, probe = s["model"], s["probe"]
    threshold = model.get("decision_threshold")
    story: list[Flowable] = [
        Paragraph(escape(printable(f"Search {s['search_id']} ({number} of {total})")), _styles()["h1"]),
        _fields(
            [
                ("Run at (UTC)", s["run_at"]),
                ("Run by", _person(s["run_by"])),
                ("Approval", _hooked(s["approval"], "approvals")),
                ("Emergency search", _hooked(s["emergency"], "emergency searches")),
                ("Policy version", _hooked(s["policy_version"], "policy versions")),
                ("Gallery searched", s["gallery"]),
                ("Offense", s["offense"]),
                ("Legal basis", s["legal_basis"] or "not stated (searched from the command line)"),
                ("Justification", s["justification"]),
                ("Model", model["model_id"]),
                ("Similarity floor", f"{model['similarity_floor']} (candidates below it are never shown)"),
                (
                    "1:1 decision threshold",
                    f"{threshold} at FMR {model['target_fmr']:g}"
                    if threshold is not None
                    else f"unavailable: {model.get('calibration')}",
                ),
                ("Probe SHA-256", probe["sha256"]),
                ("Probe image", "kept" if probe["image_kept"] else "not kept"),
                ("Face searched", f"face {probe['face_index']} of {probe['faces_in_probe']} detected"),
                ("Candidates requested / shown", f"{s['candidates_requested']} / {s['candidates_shown']}"),
                ("Outcome", s["outcome"]),
                ("Audit record", s["audit_seq"] if s["audit_seq"] is not None else "not found in the audit log"),
            ]
        ),
    ]
    image = _probe_image(probe)
    if image is not None or probe.get("thumbnail_note"):
        block: list[Flowable] = [Spacer(1, 3 * mm), Paragraph("Probe", _styles()["h2"])]
        if image is not None:
            block.append(image)
        if probe.get("thumbnail_note"):
            block.append(_p(probe["thumbnail_note"], "body"))
        story.append(KeepTogether(block))
    story += [Spacer(1, 3 * mm), Paragraph("Candidate list", _styles()["h2"])]
    if s["candidates"]:
        story.append(
            _table(
                [
                    "Rank",
                    "Subject (external id)",
                    "Subject id",
                    "Best face",
                    "Faces ≥ floor / enrolled",
                    "Similarity",
                    "Est. FMR",
                    "Shown",
                    "Lead votes",
                    "Released",
                ],
                [
                    [
                        c["rank"],
                        c["subject_external_id"],
                        "" if c["subject_id"] is None else c["subject_id"],
                        "" if c["face_id"] is None else c["face_id"],
                        ""
                        if c.get("faces_enrolled") is None
                        else f"{c.get('faces_above_floor')} / {c['faces_enrolled']}",
                        "withheld" if c["similarity"] is None else f"{c['similarity']:.4f}",
                        "" if c["estimated_fmr"] is None else _fmr(c["estimated_fmr"]),
                        "yes" if c["shown"] else "no (under floor)",
                        c["possible_lead_votes"],
                        "yes" if c["released"] else "no",
                    ]
                    for c in s["candidates"]
                ],
                [0.06, 0.16, 0.08, 0.07, 0.1, 0.1, 0.1, 0.12, 0.09, 0.12],
            )
        )
    else:
        story.append(_p("The search returned no candidates.", "body"))
    story += [Spacer(1, 3 * mm), Paragraph("Review decisions in force", _styles()["h2"])]
    decisions = [r for c in s["candidates"] for r in c["decisions"]]
    if decisions:
        story.append(
            _table(
                ["Rank", "Reviewer", "Name", "Decision", "Decided at (UTC)", "Notes"],
                [
                    [r["rank"], r["reviewer"], r["reviewer_name"], r["decision"], _when(r["decided_at"]), r["notes"]]
                    for r in decisions
                ],
                [0.07, 0.14, 0.17, 0.13, 0.17, 0.32],
            )
        )
    else:
        story.append(_p("No reviewer has decided on any candidate of this search.", "body"))
    if s["review_history"]:
        story += [
            Spacer(1, 3 * mm),
            Paragraph("Every review decision, from the audit log", _styles()["h2"]),
            _table(
                ["Audit record", "At (UTC)", "Reviewer", "Rank", "Decision", "Replaced", "Notes"],
                [
                    [
                        h["audit_seq"],
                        _when(h["at"]),
                        h["reviewer"],
                        h["rank"],
                        h["decision"],
                        h["previous_decision"] or "",
                        h["notes"],
                    ]
                    for h in s["review_history"]
                ],
                [0.09, 0.17, 0.15, 0.07, 0.13, 0.13, 0.26],
            ),
        ]
    return [*story, PageBreak()]


def _refused(packet: Packet) -> list[Flowable]:
    attempts = packet.data["refused_attempts"]
    story: list[Flowable] = [Paragraph("Refused search attempts", _styles()["h1"])]
    if not attempts:
        return [*story, _p("No search attempt for this case was refused.", "body")]
    return [
        *story,
        _p("Attempts that were refused before a search ran (nothing was compared).", "body"),
        Spacer(1, 2 * mm),
        _table(
            ["Audit record", "At (UTC)", "Actor", "Gallery", "Offense", "Refused because"],
            [
                [
                    a["audit_seq"],
                    _when(a["at"]),
                    a["actor"],
                    a["gallery"],
                    a["offense"],
                    f"{a['error_code']}: {a['error']}",
                ]
                for a in attempts
            ],
            [0.1, 0.17, 0.15, 0.14, 0.12, 0.32],
        ),
    ]


def _page_canvas(case_number: str, document: str = "Disclosure packet") -> type[Canvas]:
    """A canvas that writes the document's name, the case number and 'page N of M' at the foot of every page (two
    passes)."""

    class NumberedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # reportlab calls it by this name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self.setFont(FONT, 8)
                self.setFillColor(colors.HexColor("#444444"))
                self.drawString(18 * mm, 10 * mm, f"{document} — case {case_number}")
                self.drawRightString(A4[0] - 18 * mm, 10 * mm, f"page {self._pageNumber} of {total}")
                super().showPage()
            super().save()

    return NumberedCanvas


def render_pdf(packet: Packet) -> bytes:
    """The packet as PDF bytes. Raises only on a fault of its own (audited as a failed render by the caller)."""
    _register_fonts()
    overflow: list[str] = []
    token = _overflow.set(overflow)
    try:
        return _render(packet, overflow)
    finally:
        _overflow.reset(token)


def _render(packet: Packet, overflow: list[str]) -> bytes:
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=printable(f"Disclosure packet, case {packet.case_number}"),
        author=printable(str(packet.data["generated_by"])),
        subject="FaceTrail disclosure packet",
    )
    story = _cover(packet)
    searches = packet.data["searches"]
    for number, search in enumerate(searches, start=1):
        story += _search_section(search, number, len(searches))
    for lead in packet.data.get("lead_reports", []):  # one investigative lead report per released lead
        story += lead_story(lead)
    story += _refused(packet)
    story += _appendix(overflow)  # filled while the story above was built
    doc.build(story, canvasmaker=_page_canvas(printable(packet.case_number)[:120]))
    return buffer.getvalue()


def write_packet_files(packet: Packet, pdf_path: Path) -> tuple[Path, Path]:
    """The PDF at ``pdf_path`` and the same data as JSON beside it (same name, .json); each written whole
    (to a temporary name, then renamed) so that a failure never leaves half a packet."""
    json_path = pdf_path.with_suffix(".json")
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    pdf = packet.rendered if packet.rendered is not None else render_pdf(packet)
    for path, content in ((pdf_path, pdf), (json_path, packet.to_json().encode("utf-8"))):
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(content)
        os.replace(tmp, path)
    return pdf_path, json_path


# ------------------------------------------------------------------ investigative lead reports (issue 15)
# One section per released lead (reports/lead_report.py collects it); also the whole of a lead report on its
# own (lead_report_pdf.py). Images are display copies; the SHA-256 beside each names the original file (or the
# enhanced PNG) it was made from.

LEAD_IMAGE_BOX = 60 * mm


def _lead_image(b64: str | None, note: str) -> list[Flowable]:
    if not b64:
        return [_p(note, "body")]
    reader = Image(io.BytesIO(base64.b64decode(b64)))
    width, height = reader.imageWidth, reader.imageHeight
    scale = min(LEAD_IMAGE_BOX / width, LEAD_IMAGE_BOX / height)
    return [Image(io.BytesIO(base64.b64decode(b64)), width=width * scale, height=height * scale)]


def _lead_heading(text: str, style: str = "h2") -> Paragraph:
    return Paragraph(escape(printable(text)), _styles()[style])


def _json_params(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(", ", ": "))


def lead_story(lead: dict[str, Any]) -> list[Flowable]:
    """One lead's pages (a heading per lead; ends with a page break)."""
    c, probe, cand = lead["lead"], lead["probe"], lead["candidate"]
    story: list[Flowable] = [
        _lead_heading(
            f"Investigative lead report — case {lead['case_number']}, search {lead['search_id']}, rank {c['rank']}",
            "h1",
        ),
        Paragraph(escape(lead["notice"]), _styles()["notice"]),
        Spacer(1, 3 * mm),
        _fields(
            [
                ("Case number", lead["case_number"]),
                ("Search", f"{lead['search_id']}, run {lead['run_at']} by {lead['run_by']} (unit {lead['unit']})"),
                ("Offense / legal basis", f"{lead['offense']} / {lead['legal_basis'] or 'not stated'}"),
                ("Gallery / model", f"{lead['gallery']} / {lead['model_id']}"),
                ("Released lead", f"{c['subject_external_id']} (subject {c['subject_id']}, face {c['face_id']})"),
                ("Rank, similarity, est. FMR", f"{c['rank']}, {c['similarity']:.4f}, {c['estimated_fmr']:.1e}"),
                ("Probe SHA-256 (original)", probe["sha256"]),
                ("Probe declared as", probe["declaration"].replace("_", " ")),
                ("Candidate image SHA-256 (original)", cand["image_sha256"] or "unknown"),
                ("Candidate photo capture date", cand["capture_date"] or "not recorded"),
            ]
        ),
    ]
    if probe.get("declaration_caveat"):
        story += [Spacer(1, 2 * mm), Paragraph(escape(probe["declaration_caveat"]), _styles()["notice"])]
    no_images = "not included (hashes only: this reader may not see faces)" if not lead["images_included"] else ""
    story += [
        Spacer(1, 3 * mm),
        KeepTogether(
            [
                _lead_heading("Probe (original)"),
                *_lead_image(probe["jpeg_base64"], no_images or "the probe image is not kept (only its SHA-256)"),
                _p(f"SHA-256 {probe['sha256']}", "cell"),
            ]
        ),
        Spacer(1, 2 * mm),
        KeepTogether(
            [
                _lead_heading("Candidate (original enrolled photo)"),
                *_lead_image(cand["jpeg_base64"], no_images or "the candidate's enrolled image is not kept"),
                _p(f"SHA-256 {cand['image_sha256']}", "cell"),
            ]
        ),
        Spacer(1, 3 * mm),
        _lead_heading("Enhancements (copies; the originals are unchanged)"),
    ]
    enhancements = lead["enhancements"]
    if enhancements:
        story.append(
            _p(
                "Every enhancement either examiner made of the probe or of the candidate's photos. Each is a copy, "
                "made by the server from the original and the logged steps; replaying the steps on the original "
                "gives the identical SHA-256 (docs/examination.md).",
                "body",
            )
        )
        story.append(
            _table(
                ["Image", "Step", "Operation", "Parameters", "Purpose", "By / at (UTC)", "Parent → result SHA-256"],
                [
                    [
                        e["image"],
                        e["step"],
                        e["operation"],
                        _json_params(e["parameters"]),
                        e["purpose"],
                        f"{e['by']} {_when(e['at'])}",
                        f"{e['parent_sha256']} → {e['sha256']}",
                    ]
                    for e in enhancements
                ],
                [0.09, 0.06, 0.1, 0.15, 0.2, 0.15, 0.25],
            )
        )
        for e in enhancements:
            if e.get("jpeg_base64"):
                story.append(
                    KeepTogether(
                        [
                            _lead_heading(f"ENHANCED {e['image']} — step {e['step']}: {e['operation']}", "h2"),
                            *_lead_image(e["jpeg_base64"], ""),
                            _p(f"enhanced copy, SHA-256 {e['sha256']}; parent {e['parent_sha256']}", "cell"),
                        ]
                    )
                )
    else:
        story.append(_p("No enhancement was made: the examiners compared the original images.", "body"))
    for ex in lead["examinations"]:
        story += [
            Spacer(1, 4 * mm),
            _lead_heading(f"Examiner {ex['examiner']}: {ex['reviewer_name']} ({ex['reviewer']})"),
        ]
        analysis = ex["probe_analysis"]
        story.append(
            _fields(
                [
                    ("Assigned / completed", f"{ex['assigned_at']} / {ex['completed_at'] or 'open'}"),
                    (
                        "Probe analysis",
                        "not recorded"
                        if analysis is None
                        else f"{'suitable' if analysis['suitable'] else 'NOT suitable'} for comparison; "
                        f"quality {_json_params(analysis['quality'])}; notes: {analysis['notes'] or '—'}",
                    ),
                    ("Conclusion", ex["conclusion_label"]),
                    ("Reasoning", ex["reasoning"] or "—"),
                    ("Limitations", ex["limitations"] or "—"),
                    ("Concluded at (UTC)", ex["concluded_at"] or "—"),
                    ("Order seen", ex["seen_order"] if ex["seen_order"] is not None else "—"),
                ]
            )
        )
        if ex["checklist"]:
            story += [
                Spacer(1, 2 * mm),
                _p("FISWG morphological checklist", "cell_bold"),
                _table(
                    ["Component", "Characteristic", "Mark", "Comment"],
                    [[r["component"], r["characteristic"], r["mark"], r["comment"]] for r in ex["checklist"]],
                    [0.22, 0.22, 0.14, 0.42],
                ),
            ]
        if ex["annotations"] or ex["measurements"]:
            story.append(
                _p(
                    f"{len(ex['annotations'])} annotation(s) pinned to image regions; measurements (observations, "
                    f"never a score): {_json_params({'measurements': ex['measurements']})}",
                    "body",
                )
            )
    story += [Spacer(1, 4 * mm), _lead_heading("Differences the examiners recorded")]
    if lead["differences"]:
        story.append(
            _table(
                ["Examiner", "Component", "Characteristic", "Explanation"],
                [[d["examiner"], d["component"], d["characteristic"], d["comment"]] for d in lead["differences"]],
                [0.12, 0.22, 0.22, 0.44],
            )
        )
    else:
        story.append(_p("No characteristic was marked dissimilar.", "body"))
    story += [
        Spacer(1, 4 * mm),
        _lead_heading("What must still be corroborated"),
        *[_p(f"• {item}", "body") for item in lead["corroboration"]],
        Spacer(1, 3 * mm),
        Paragraph(escape(lead["notice"]), _styles()["notice"]),
        PageBreak(),
    ]
    return story
