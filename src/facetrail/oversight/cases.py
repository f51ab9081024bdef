"""Case verification: a search must name a case that exists and is open (policy ``cases.verification``).

- ``allow_list``: the agency's list of open cases with their offense, synced with ``facetrail case import
  FILE.csv`` (columns case_number, offense[, status]). The file is the complete list: a case missing from it is
  closed. Each import is audited ('case.import') with the file's SHA-256 and the counts.
- ``records_system``: an HTTP GET to the agency's records system (settings oversight.records_url):
  ``URL?case_number=N`` answers JSON {"status": "open"|"closed", "offense": "..."}, 404 for no such case.
  Answers are cached briefly (records_cache_seconds). Unreachable, a timeout or a malformed answer refuses the
  search (fail closed) unless records_fail_open is set, in which case the search runs and is noted unverified.

Case numbers are compared after NFKC normalisation, trimming and upper-casing, so look-alike full-width digits
or a trailing space cannot make an unknown case look known (or a known one unknown).
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError
from facetrail.oversight.models import CaseEntry
from facetrail.storage.models import utcnow

OPEN, CLOSED = "open", "closed"
MAX_CASE_FILE_BYTES = 50 * 1024 * 1024
MAX_CASE_NUMBER = 100


class CaseNotFoundError(FaceTrailError):
    code = "case_not_found"
    http_status = 422
    exit_code = 6


class CaseClosedError(FaceTrailError):
    code = "case_closed"
    http_status = 422
    exit_code = 6


class CaseOffenseMismatchError(FaceTrailError):
    code = "case_offense_mismatch"
    http_status = 422
    exit_code = 6


class CaseCheckUnavailableError(FaceTrailError):
    """The records system could not answer and the settings fail closed."""

    code = "case_check_unavailable"
    http_status = 503
    exit_code = 6


class CaseFileError(BadInputError):
    code = "case_file_invalid"


def normalise_case_number(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().upper()


@dataclass(frozen=True)
class CaseStatus:
    case_number: str
    exists: bool
    status: str  # open | closed | unknown
    offense: str
    source: str  # allow_list | records_system
    verified: bool = True  # False: the records system was unreachable and the settings fail open


# ------------------------------------------------------------------ the allow-list


def parse_case_file(data: bytes) -> list[tuple[str, str, str]]:
    """(case_number, offense, status) rows, or a CaseFileError naming every bad line."""
    if len(data) > MAX_CASE_FILE_BYTES:
        raise CaseFileError(f"the case file is over {MAX_CASE_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CaseFileError("the case file is not UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "case_number" not in header or "offense" not in header:
        raise CaseFileError("the case file needs a header with case_number and offense (and optionally status)")
    reader.fieldnames = header
    rows: dict[str, tuple[str, str, str]] = {}
    problems: list[str] = []
    for line, raw in enumerate(reader, start=2):
        number = normalise_case_number(raw.get("case_number") or "")
        offense = (raw.get("offense") or "").strip()
        status = (raw.get("status") or OPEN).strip().lower() or OPEN
        if not number:
            problems.append(f"line {line}: empty case_number")
        elif len(number) > MAX_CASE_NUMBER or len(offense) > 100:
            problems.append(f"line {line}: case_number or offense too long")
        elif status not in (OPEN, CLOSED):
            problems.append(f"line {line}: status must be 'open' or 'closed' (got {status!r})")
        elif number in rows:
            problems.append(f"line {line}: case {number} listed twice")
        else:
            rows[number] = (number, offense, status)
    if problems:
        raise CaseFileError("the case file has errors: " + "; ".join(problems[:20]), problems=problems[:200])
    return list(rows.values())


def import_cases(
    ctx: AppContext, data: bytes, *, actor: str, audit_context: dict[str, Any] | None = None
) -> dict[str, int]:
    """Replace the case list with the file's (cases absent from it are closed). Audited ('case.import')."""
    try:
        rows = parse_case_file(data)
    except CaseFileError as exc:
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=actor,
                action="case.import",
                target="cases",
                outcome="refused",
                details={"sha256": hashlib.sha256(data).hexdigest(), "error": exc.to_dict(), **(audit_context or {})},
            )
        raise
    listed = {number for number, _, _ in rows}
    counts = {"listed": len(rows), "open": 0, "closed": 0, "added": 0, "changed": 0, "closed_missing": 0}
    now = utcnow()
    with ctx.db.transaction() as s:
        existing = {c.case_number: c for c in s.execute(select(CaseEntry)).scalars()}
        for number, offense, status in rows:
            counts[status] += 1
            entry = existing.get(number)
            if entry is None:
                s.add(CaseEntry(case_number=number, offense=offense, status=status, updated_at=now, updated_by=actor))
                counts["added"] += 1
            elif (entry.offense, entry.status) != (offense, status):
                entry.offense, entry.status, entry.updated_at, entry.updated_by = offense, status, now, actor
                counts["changed"] += 1
        for number, entry in existing.items():
            if number not in listed and entry.status != CLOSED:
                entry.status, entry.updated_at, entry.updated_by = CLOSED, now, actor
                counts["closed_missing"] += 1
        append_audit(
            s,
            actor=actor,
            action="case.import",
            target="cases",
            details={"sha256": hashlib.sha256(data).hexdigest(), **counts, **(audit_context or {})},
        )
    return counts


def _from_allow_list(ctx: AppContext, number: str) -> CaseStatus:
    with ctx.db.read() as s:
        entry = s.get(CaseEntry, number)
        if entry is None:
            return CaseStatus(number, False, "unknown", "", "allow_list")
        return CaseStatus(number, True, entry.status, entry.offense, "allow_list")


# ------------------------------------------------------------------ the records system


_cache: dict[tuple[str, str], tuple[float, CaseStatus]] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _from_records_system(ctx: AppContext, number: str) -> CaseStatus:
    cfg = ctx.settings.oversight
    if not cfg.records_url:
        raise CaseCheckUnavailableError(
            "case verification uses the records system, but oversight.records_url is not set"
        )
    key = (cfg.records_url, number)
    with _cache_lock:
        hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < cfg.records_cache_seconds:
        return hit[1]
    try:
        response = httpx.get(
            cfg.records_url, params={"case_number": number}, timeout=cfg.records_timeout_seconds, follow_redirects=False
        )
        if response.status_code == 404:
            answer = CaseStatus(number, False, "unknown", "", "records_system")
        elif response.status_code == 200:
            body = response.json()
            status = str(body.get("status", "")).lower() if isinstance(body, dict) else ""
            if status not in (OPEN, CLOSED):
                raise ValueError(f"no valid status in the answer: {str(body)[:200]}")
            answer = CaseStatus(number, True, status, str(body.get("offense") or "")[:100], "records_system")
        else:
            raise ValueError(f"HTTP {response.status_code}")
    except (httpx.HTTPError, ValueError) as exc:
        if cfg.records_fail_open:
            return CaseStatus(number, True, "unknown", "", "records_system", verified=False)
        raise CaseCheckUnavailableError(
            f"the records system could not verify case {number}: {type(exc).__name__}: {str(exc)[:200]}",
            case_number=number,
        ) from None
    with _cache_lock:
        _cache[key] = (time.monotonic(), answer)
    return answer


# ------------------------------------------------------------------ the check


def lookup_case(ctx: AppContext, case_number: str, source: str) -> CaseStatus:
    number = normalise_case_number(case_number)
    return _from_allow_list(ctx, number) if source == "allow_list" else _from_records_system(ctx, number)


def verify_case(ctx: AppContext, case_number: str, offense: str, *, source: str, check_offense: bool) -> CaseStatus:
    """The case's status, or the refusal: no such case, closed, or (check_offense) another offense."""
    found = lookup_case(ctx, case_number, source)
    if not found.verified:
        return found
    if not found.exists:
        raise CaseNotFoundError(
            f"case {found.case_number} is not a known case ({source})", case_number=found.case_number
        )
    if found.status != OPEN:
        raise CaseClosedError(f"case {found.case_number} is closed ({source})", case_number=found.case_number)
    if check_offense and found.offense and found.offense != offense.strip():
        raise CaseOffenseMismatchError(
            f"case {found.case_number} is recorded for offense {found.offense!r}, not {offense!r}",
            case_number=found.case_number,
            offense=found.offense,
        )
    return found
