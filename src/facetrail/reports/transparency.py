"""The transparency report for a period: aggregate counts an agency can publish as its accountability report.

Only counts, unit names, offense codes, legal-basis types, gallery names, roles and the model are shown: no
probe, no enrolled subject, no case number and no person's name. Each section is a table (a CSV file) and,
where it helps, a chart (a PNG beside the HTML). Approvals, emergency searches and training are not stored
yet (issue 5): their sections say so, through the hooks below, instead of showing invented numbers.

Generating a report is audited ('report.transparency') in the same transaction as its reads.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError
from facetrail.governance.release import ReviewAdjudication
from facetrail.reports.charts import bar_chart
from facetrail.reports.common import (
    RELEASE_REVIEWERS,
    chain_sentence,
    chain_status,
    configured_model_id,
    group_decisions,
    release_levels,
    thresholds_for,
)
from facetrail.storage.models import AuditRecord, CandidateReview, SearchRecord, Unit, User

NO_UNIT = "(no unit: command line)"
NOT_STATED = "(not stated)"
MAX_DAYS = 3660  # ten years: a report is for a period, not for all time by accident
# Audit actions that enrol or delete gallery faces, and how many faces / subjects each record stands for.
# The retention feature (issue 5) adds its own deletion actions here.
ENROLL_ACTIONS: dict[str, Callable[[dict[str, Any]], int]] = {"enroll.batch": lambda d: int(d.get("enrolled", 0))}
FACE_DELETE_ACTIONS: dict[str, Callable[[dict[str, Any]], int]] = {
    "subject.delete": lambda d: len(d.get("face_ids", [])),
    "face.delete": lambda d: 1,
}
SUBJECT_DELETE_ACTIONS: dict[str, Callable[[dict[str, Any]], int]] = {"subject.delete": lambda d: 1}
OUTCOMES = (
    "released lead",
    "possible lead, not released",
    "reviewed, no lead",
    "not reviewed",
    "no candidate shown",
)


@dataclass
class Section:
    key: str  # file names: KEY.csv, KEY.png
    heading: str
    text: str  # plain language: what is counted and how
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    chart: bytes | None = None
    recorded: bool = True  # False: the data is not stored by this installation (hook)


@dataclass
class Report:
    period_from: dt.date
    period_to: dt.date  # inclusive
    generated_at: str
    generated_by: str
    sections: list[Section]
    audit_seq: int = 0

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)


def parse_period(date_from: str, date_to: str) -> tuple[dt.date, dt.date]:
    try:
        start, end = dt.date.fromisoformat(date_from.strip()), dt.date.fromisoformat(date_to.strip())
    except ValueError:
        raise BadInputError("dates must be YYYY-MM-DD", field="from/to") from None
    if end < start:
        raise BadInputError(f"the period ends ({end}) before it starts ({start})", field="to")
    if (end - start).days > MAX_DAYS:
        raise BadInputError(f"the period is longer than {MAX_DAYS} days", field="to")
    return start, end


def _bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start 00:00 UTC, the day after end 00:00 UTC)."""
    low = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    return low, dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


# ------------------------------------------------------------------ hooks for the governance features


def approval_rows(session: Session, low: dt.datetime, high: dt.datetime) -> list[list[Any]] | None:
    """Approval requests decided in the period, by unit: approved, denied."""
    from facetrail.governance.reporting import approval_counts

    return approval_counts(session, low, high)


def emergency_rows(session: Session, low: dt.datetime, high: dt.datetime) -> list[list[Any]] | None:
    """Emergency searches in the period by outcome: approved after the fact, denied, window passed, pending."""
    from facetrail.governance.reporting import emergency_counts

    return emergency_counts(session, low, high)


def trained_users(session: Session, at: dt.datetime) -> dict[int, bool] | None:
    """Whose search training is valid at the end of the period, by user id."""
    from facetrail.governance.reporting import trained_at

    return trained_at(session, at)


def oversight_alert_rows(session: Session, low: dt.datetime, high: dt.datetime) -> list[list[Any]] | None:
    """Anomaly alerts raised in the period, by rule: raised, acknowledged (counted, never named)."""
    from facetrail.oversight.reporting import alert_counts

    return alert_counts(session, low, high)


def oversight_sample_rows(session: Session, low: dt.datetime, high: dt.datetime) -> list[list[Any]] | None:
    """Random audit samples of the period and the auditors' findings."""
    from facetrail.oversight.reporting import sample_counts

    return sample_counts(session, low, high)


# ------------------------------------------------------------------ collecting


def _counted(counter: Counter[str]) -> list[list[Any]]:
    return [[name, n] for name, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]


def _search_sections(ctx: AppContext, s: Session, low: dt.datetime, high: dt.datetime) -> list[Section]:
    searches = list(
        s.execute(select(SearchRecord).where(SearchRecord.created_at >= low, SearchRecord.created_at < high)).scalars()
    )
    units = {u.id: u.name for u in s.execute(select(Unit)).scalars()}
    unit_of = {r.id: units.get(r.unit_id, NO_UNIT) if r.unit_id is not None else NO_UNIT for r in searches}
    by_unit = Counter(unit_of.values())
    by_offense = Counter(r.offense for r in searches)
    by_basis = Counter(r.legal_basis or NOT_STATED for r in searches)
    ids = [r.id for r in searches]
    reviews = list(s.execute(select(CandidateReview).where(CandidateReview.search_id.in_(ids))).scalars())
    settled = list(s.execute(select(ReviewAdjudication).where(ReviewAdjudication.search_id.in_(ids))).scalars())
    grouped = group_decisions(reviews, settled, release_levels(ctx, searches))
    floor = ctx.settings.server.similarity_floor
    outcomes: Counter[str] = Counter()
    for r in searches:
        shown = {int(c["face_id"]) for c in r.candidates if float(c["similarity"]) >= floor}
        mine = [g for (sid, face), g in grouped.items() if sid == r.id and face in shown]
        if not shown:
            outcomes["no candidate shown"] += 1
        elif any(g.released(r.user_id) for g in mine):
            outcomes["released lead"] += 1
        elif any(g.leads_from(r.user_id) for g in mine):
            outcomes["possible lead, not released"] += 1
        elif mine:
            outcomes["reviewed, no lead"] += 1
        else:
            outcomes["not reviewed"] += 1
    pairs: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (search_id, _face), g in grouped.items():
        if len(g.decisions) >= 2:
            pairs[unit_of[search_id]][0] += 1
            pairs[unit_of[search_id]][1] += int(g.disagreement)
    total = len(searches)
    return [
        Section(
            "searches_by_unit",
            "Searches by unit",
            f"{total} face searches were run in the period. Each search compares one probe photo with one "
            "gallery and lists candidates for human review; it never identifies anyone by itself.",
            ["unit", "searches"],
            _counted(by_unit),
            bar_chart("Searches by unit", list(by_unit), list(by_unit.values()), "searches") if total else None,
        ),
        Section(
            "searches_by_offense",
            "Searches by offense",
            "The offense each search was run for, as recorded with it.",
            ["offense", "searches"],
            _counted(by_offense),
            bar_chart("Searches by offense", *_split(_counted(by_offense)), "searches") if total else None,
        ),
        Section(
            "searches_by_legal_basis",
            "Searches by legal basis",
            "The legal authority each search cited. Searches run from the command line may cite none.",
            ["legal_basis", "searches"],
            _counted(by_basis),
            bar_chart("Searches by legal basis", *_split(_counted(by_basis)), "searches") if total else None,
        ),
        Section(
            "search_outcomes",
            "Searches with released leads and without",
            f"A candidate becomes a released lead when {RELEASE_REVIEWERS} different reviewers, neither of them "
            "the searcher, mark it a possible lead. Each search is counted once, under its furthest outcome; "
            f"'no candidate shown' means no candidate scored above the similarity floor ({floor}).",
            ["outcome", "searches"],
            [[o, outcomes.get(o, 0)] for o in OUTCOMES],
            bar_chart("Search outcomes", list(OUTCOMES), [outcomes.get(o, 0) for o in OUTCOMES], "searches")
            if total
            else None,
        ),
        Section(
            "reviewer_disagreements",
            "Reviewer disagreements",
            "Candidates that two or more reviewers decided on, and how many of them got different decisions "
            "(e.g. one 'possible lead', another 'not a match'), by the unit of the search.",
            ["unit", "candidates_reviewed_by_two_or_more", "disagreements"],
            [[unit, n, d] for unit, (n, d) in sorted(pairs.items())],
        ),
    ]


def _examination_sections(ctx: AppContext, s: Session, low: dt.datetime, high: dt.datetime) -> list[Section]:
    """Issue 15: the examiners' disagreement, neutral (inconclusive) and not-suitable rates, and the searches
    that produced no lead (reports/examination_rates.py)."""
    from facetrail.governance.release import released_faces
    from facetrail.reports import examination_rates as rates

    searches = list(
        s.execute(select(SearchRecord).where(SearchRecord.created_at >= low, SearchRecord.created_at < high)).scalars()
    )
    without = sum(1 for r in searches if not released_faces(ctx, r))
    return [
        Section(
            "examination_rates",
            rates.HEADING,
            rates.TEXT,
            rates.COLUMNS,
            rates.examination_rows(s, low, high),
        ),
        Section(
            "searches_without_lead",
            "Searches that produced no lead",
            rates.NO_LEAD_TEXT,
            ["searches", "without_a_released_lead", "share"],
            [[len(searches), without, rates.rate(without, len(searches))]],
        ),
    ]


def _split(rows: list[list[Any]]) -> tuple[list[str], list[int]]:
    return [str(r[0]) for r in rows], [int(r[1]) for r in rows]


def _gallery_section(s: Session, low: dt.datetime, high: dt.datetime) -> Section:
    actions = set(ENROLL_ACTIONS) | set(FACE_DELETE_ACTIONS) | set(SUBJECT_DELETE_ACTIONS)
    records = s.execute(
        select(AuditRecord.action, AuditRecord.target, AuditRecord.details).where(
            AuditRecord.action.in_(actions),
            AuditRecord.outcome.in_(["ok", "interrupted"]),
            AuditRecord.ts >= low.isoformat(timespec="microseconds"),
            AuditRecord.ts < high.isoformat(timespec="microseconds"),
        )
    ).all()
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for action, target, details in records:
        gallery = target.removeprefix("gallery:")
        d = json.loads(details)
        counts[gallery][0] += ENROLL_ACTIONS.get(action, lambda _: 0)(d)
        counts[gallery][1] += SUBJECT_DELETE_ACTIONS.get(action, lambda _: 0)(d)
        counts[gallery][2] += FACE_DELETE_ACTIONS.get(action, lambda _: 0)(d)
    rows: list[list[Any]] = [[g, *c] for g, c in sorted(counts.items())]
    chart = None
    if counts:
        labels = [f"{g}: {kind}" for g in sorted(counts) for kind in ("enrolled", "deleted")]
        chart = bar_chart(
            "Faces enrolled and deleted, by gallery",
            labels,
            [v for g in sorted(counts) for v in (counts[g][0], counts[g][2])],
            "faces",
        )
    return Section(
        "gallery_changes",
        "Enrollments and deletions by gallery",
        "Faces added to each gallery and subjects and faces removed from it in the period, from the audit "
        "log (the record of every enrolment and deletion).",
        ["gallery", "faces_enrolled", "subjects_deleted", "faces_deleted"],
        rows,
        chart,
    )


def _user_section(s: Session, low: dt.datetime, high: dt.datetime) -> Section:
    users = list(s.execute(select(User).where(User.created_at < high)).scalars())
    actors = set(
        s.execute(
            select(AuditRecord.actor).where(
                AuditRecord.outcome == "ok",
                AuditRecord.ts >= low.isoformat(timespec="microseconds"),
                AuditRecord.ts < high.isoformat(timespec="microseconds"),
            )
        ).scalars()
    )
    searchers = set(
        s.execute(
            select(SearchRecord.user_id).where(SearchRecord.created_at >= low, SearchRecord.created_at < high)
        ).scalars()
    )
    trained = trained_users(s, high)
    rows = []
    for role in sorted({u.role for u in users}):
        members = [u for u in users if u.role == role]
        rows.append(
            [
                role,
                sum(1 for u in members if not u.disabled),
                sum(1 for u in members if f"user:{u.username}" in actors),
                sum(1 for u in members if u.id in searchers),
                "not recorded" if trained is None else sum(1 for u in members if trained.get(u.id)),
            ]
        )
    return Section(
        "users",
        "Users: accounts, activity and training",
        "Accounts by role at the end of the period; 'active' users did anything recorded in the audit log "
        "during the period; 'searched' users ran at least one search. Search training is not recorded "
        "by this installation yet."
        if trained is None
        else "Accounts by role, activity and training.",
        ["role", "enabled_accounts", "active", "searched", "trained"],
        rows,
    )


def _hook_section(key: str, heading: str, what: str, rows: list[list[Any]] | None, columns: list[str]) -> Section:
    if rows is None:
        return Section(
            key,
            heading,
            f"Not recorded: this installation does not store {what} yet, so no figure "
            "is given (rather than a zero that could be mistaken for none).",
            recorded=False,
        )
    return Section(key, heading, f"{what.capitalize()} in the period.", columns, rows)


def _role_grant_section(s: Session, low: dt.datetime, high: dt.datetime) -> Section:
    """Separation of duties made visible: every grant of the reviewer or administrator role in the period."""
    from facetrail.accounts.grants import grants_between

    rows = [
        [
            g["id"],
            g["username"],
            g["role"],
            g["previous_role"] or "new account",
            g["requested_by"],
            g["requested_at"].isoformat(timespec="seconds"),
            "second administrator's approval" if g["path"] == "second_administrator" else "delay",
            g["status"],
            g["decided_by"] or "",
        ]
        for g in grants_between(s, low, high)
    ]
    return Section(
        "role_grants",
        "Grants of the reviewer and administrator roles",
        "Every grant of a role that can release leads or make reviewers, requested or decided in the period: who "
        "asked, how it took effect (a second administrator's approval, or a waiting period shown to every reviewer "
        "and auditor) and its state.",
        ["grant", "user", "role", "previous_role", "requested_by", "requested_at", "path", "status", "decided_by"],
        rows,
    )


def _model_section(ctx: AppContext, s: Session, low: dt.datetime, high: dt.datetime) -> Section:
    used = Counter(
        s.execute(
            select(SearchRecord.model_id).where(SearchRecord.created_at >= low, SearchRecord.created_at < high)
        ).scalars()
    )
    configured = configured_model_id(ctx)
    rows = []
    for model in [configured, *sorted(m for m in used if m != configured)]:
        t = thresholds_for(ctx, model)
        rows.append(
            [
                model,
                "yes" if model == configured else "no",
                used.get(model, 0),
                t["similarity_floor"],
                t["decision_threshold"] if t["decision_threshold"] is not None else "unavailable",
                t["target_fmr"],
            ]
        )
    return Section(
        "model",
        "Model and thresholds in force",
        "The face model searches use, and the scores that matter: candidates under the similarity floor "
        "are never shown; the 1:1 decision threshold is the score reached by different people at the "
        "stated false-match rate.",
        ["model_id", "in_force", "searches_in_period", "similarity_floor", "decision_threshold", "target_fmr"],
        rows,
    )


def _differentials_section(ctx: AppContext) -> Section:
    """The latest demographic-differentials run on file (``accuracy.differentials_report``), as measured."""
    heading = "Demographic differentials (latest measurement on file)"
    path = ctx.settings.accuracy.differentials_report
    if not path:
        return Section(
            "demographic_differentials",
            heading,
            "Not on file: no 'facetrail eval identify --groups' result is configured "
            "(accuracy.differentials_report), so no figure is given.",
            recorded=False,
        )
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = [
            [attribute, group, g["images"], g["mated_searches"], g["fnir"], g["fmr_within"], g["impostor_pairs_within"]]
            for attribute, part in data["attributes"].items()
            for group, g in part["groups"].items()
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return Section(
            "demographic_differentials",
            heading,
            f"Not readable: the configured differentials result ({Path(path).name}) could not be read as an "
            "'eval identify --groups' result, so no figure is given.",
            recorded=False,
        )
    return Section(
        "demographic_differentials",
        heading,
        f"Measured by 'facetrail eval identify --groups' with model {data.get('model_id')} at the operational "
        f"threshold {data.get('threshold')} ({data.get('threshold_source')}), on group labels the agency supplied "
        f"({Path(str(data.get('manifest', path))).name}). FNIR: the share of mated searches whose mate was not "
        "the top candidate above the threshold; FMR within: the share of impostor pairs inside the group scoring "
        "above it. A measurement of the model on that data, not of this period's searches.",
        ["attribute", "group", "images", "mated_searches", "fnir", "fmr_within", "impostor_pairs_within"],
        rows,
    )


def _chain_section(chain: dict[str, Any]) -> Section:
    return Section(
        "audit_chain",
        "Audit log verification",
        f"Every action in FaceTrail is written to a hash-chained audit log. When this report was made the "
        f"chain was {chain_sentence(chain)}.",
        [
            "ok",
            "records",
            "head_seq",
            "checkpoints_checked",
            "problem",
            "checkpoint_seq",
            "checkpoint_hash",
            "checkpoint_signature",
        ],
        [
            [
                chain["ok"],
                chain["records"],
                chain["head_seq"],
                chain["checkpoints_checked"],
                chain["problem"] or "",
                *_checkpoint_cells(chain.get("checkpoint")),
            ]
        ],
    )


def _checkpoint_cells(cp: dict[str, Any] | None) -> list[Any]:
    """The newest signed checkpoint, printed so that every copy of the report witnesses it: a later rewrite of
    the log (even one re-signed with another key) contradicts copies held elsewhere."""
    if not cp:
        return ["", "", ""]
    return [cp["seq"], cp["hash"], cp.get("signature") or f"hmac:{cp.get('hmac', '')}"]


def collect_report(
    ctx: AppContext, date_from: str, date_to: str, *, actor: str, audit_context: dict[str, Any] | None = None
) -> Report:
    """Every section's counts for the period, read and audited in one transaction."""
    start, end = parse_period(date_from, date_to)
    low, high = _bounds(start, end)
    chain = chain_status(ctx)  # its own snapshot, before the report's audit record
    generated_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with ctx.db.transaction() as s:
        sections = [
            *_search_sections(ctx, s, low, high),
            *_examination_sections(ctx, s, low, high),
            _hook_section(
                "approvals",
                "Approvals and denials",
                "approval requests and their decisions",
                approval_rows(s, low, high),
                ["unit", "approved", "denied"],
            ),
            _hook_section(
                "emergency_searches",
                "Emergency searches and their outcome",
                "emergency searches and their after-the-fact approvals",
                emergency_rows(s, low, high),
                ["outcome", "searches"],
            ),
            _hook_section(
                "oversight_alerts",
                "Oversight alerts",
                "anomaly alerts raised (by rule) and how many a supervisor or auditor has acknowledged",
                oversight_alert_rows(s, low, high),
                ["rule", "raised", "acknowledged"],
            ),
            _hook_section(
                "audit_sample",
                "Random audit sample and findings",
                "searches drawn at random for an auditor's check, and the findings",
                oversight_sample_rows(s, low, high),
                ["item", "count"],
            ),
            _gallery_section(s, low, high),
            _user_section(s, low, high),
            _role_grant_section(s, low, high),
            _model_section(ctx, s, low, high),
            _differentials_section(ctx),
            _chain_section(chain),
        ]
        totals = {
            sec.key: sum(int(r[1]) for r in sec.rows)
            for sec in sections
            if sec.key.startswith("searches_by_") or sec.key == "search_outcomes"
        }
        seq = append_audit(
            s,
            actor=actor,
            action="report.transparency",
            target=f"period:{start}..{end}",
            details={
                "from": str(start),
                "to": str(end),
                "totals": totals,
                "audit_chain_ok": chain["ok"],
                **(audit_context or {}),
            },
        ).seq
    return Report(start, end, generated_at, actor, sections, seq)


# ------------------------------------------------------------------ writing


def section_csv(section: Section) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(section.columns)
    writer.writerows(section.rows)
    return buffer.getvalue()


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1d;
       line-height: 1.45; }
h1 { font-size: 1.8rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6rem 0; } th, td { border: 1px solid #bbb; padding: .25rem .6rem; }
th { background: #eee; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; } .meta { color: #555; } .missing { color: #7a0000; }
"""


def render_html(report: Report, image_src: Callable[[Section], str]) -> str:
    """The report as one HTML page with no script. ``image_src`` says where a section's chart is (a file name
    beside the page, or a data: URL for a single-file download)."""
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Face search transparency report {report.period_from} to {report.period_to}</title>",
        f"<style>{STYLE}</style></head><body>",
        f'<h1>Face search transparency report</h1><p class="meta">Period: {report.period_from} to '
        f"{report.period_to} (inclusive, UTC). Generated {e(report.generated_at)} by {e(report.generated_by)}; "
        f"audit record {report.audit_seq}.</p>",
        "<p>This report gives aggregate counts only: it names no person searched for, no enrolled person and no "
        "case. Face search results are investigative leads, never identifications; every candidate is reviewed "
        "by people before anything is done with it.</p>",
    ]
    for sec in report.sections:
        parts.append(f'<section id="{e(sec.key)}"><h2>{e(sec.heading)}</h2>')
        parts.append(f'<p class="{"" if sec.recorded else "missing"}">{e(sec.text)}</p>')
        if sec.chart is not None:
            parts.append(f'<img src="{e(image_src(sec))}" alt="{e(sec.heading)} (chart of the table below)">')
        if sec.columns:
            head = "".join(f"<th>{e(c.replace('_', ' '))}</th>" for c in sec.columns)
            body = "".join(
                "<tr>"
                + "".join(
                    f'<td class="n">{v}</td>'
                    if isinstance(v, int | float) and not isinstance(v, bool)
                    else f"<td>{e(str(v))}</td>"
                    for v in row
                )
                + "</tr>"
                for row in sec.rows
            )
            empty = "" if sec.rows else f'<tr><td colspan="{len(sec.columns)}">none in the period</td></tr>'
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}{empty}</tbody></table>")
            parts.append(f'<p class="meta">Data: <a href="{e(sec.key)}.csv">{e(sec.key)}.csv</a></p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def data_url(section: Section) -> str:
    return "data:image/png;base64," + base64.b64encode(section.chart or b"").decode("ascii")


def write_report(report: Report, out_dir: Path) -> list[Path]:
    """index.html, one CSV per table and one PNG per chart, in ``out_dir``. Returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    for sec in report.sections:
        if sec.columns:
            files[f"{sec.key}.csv"] = section_csv(sec).encode("utf-8")
        if sec.chart is not None:
            files[f"{sec.key}.png"] = sec.chart
    files["index.html"] = render_html(report, lambda sec: f"{sec.key}.png").encode("utf-8")
    written = []
    for name, content in files.items():
        path = out_dir / name
        tmp = path.with_name(name + ".part")
        tmp.write_bytes(content)
        os.replace(tmp, path)
        written.append(path)
    return written
