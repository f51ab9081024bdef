"""The investigative lead report as a PDF document of its own (reports/lead_report.py collects it). Its pages
are the ones the disclosure packet carries for each released lead (packet_pdf.lead_story).
"""

from __future__ import annotations

import io
from typing import Any

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import SimpleDocTemplate

from facetrail.reports.packet_pdf import (
    _appendix,
    _overflow,
    _p,
    _page_canvas,
    _register_fonts,
    lead_story,
    printable,
)


def render_lead_report(lead: dict[str, Any]) -> bytes:
    """One lead report as a PDF document of its own."""
    _register_fonts()
    overflow: list[str] = []
    token = _overflow.set(overflow)
    try:
        buffer = io.BytesIO()
        title = f"Investigative lead report, case {lead['case_number']}, search {lead['search_id']}"
        doc = SimpleDocTemplate(
            buffer,
            pagesize=A4,
            leftMargin=18 * mm,
            rightMargin=18 * mm,
            topMargin=16 * mm,
            bottomMargin=18 * mm,
            title=printable(title),
            author=printable(str(lead.get("generated_by", ""))),
            subject="FaceTrail investigative lead report",
        )
        story = [
            *lead_story(lead),
            _p(f"Generated {lead.get('generated_at', '')} by {lead.get('generated_by', '')}.", "body"),
            *_appendix(overflow),
        ]
        doc.build(
            story,
            canvasmaker=_page_canvas(printable(str(lead["case_number"]))[:120], "Investigative lead report"),
        )
        return buffer.getvalue()
    finally:
        _overflow.reset(token)
