"""Steps of an examination in the browser (the /examinations pages), shared by test_examination_pages.py and
test_browser.py: analyse the probe alone, open a candidate, fill the FISWG checklist, record a conclusion (with
the step-up a releasing conclusion asks for)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any


def analyse_probe(page: Any, task_id: str, *, suitable: bool = True, notes: str = "Clear frontal face.") -> None:
    """On the task's first page: rate every quality factor, say whether the probe is suitable, record (locks)."""
    page.goto(f"/examinations/{task_id}")
    for select in page.locator("[data-testid=analysis-form] select").all():
        select.select_option("good" if suitable else "poor")
    page.check("#suitable-yes" if suitable else "#suitable-no")
    page.fill("#analysis-notes", notes)
    page.click("button:has-text('Record the analysis')")
    page.wait_for_url(re.compile(r".*\?done=analysis$"))


def open_candidate(page: Any, task_id: str, index: int = 0) -> str:
    """Open the candidate listed at ``index`` (their order means nothing); returns its handle."""
    page.goto(f"/examinations/{task_id}/candidates")
    page.get_by_test_id("exam-candidate").nth(index).locator("a").click()
    page.wait_for_url(re.compile(r".*/candidates/[^/?#]+$"))
    return str(page.url.rsplit("/", 1)[1])


def mark_checklist(page: Any, value: str = "similar", dissimilar: dict[str, str] | None = None) -> None:
    """Every characteristic marked ``value``; those in ``dissimilar`` (component__characteristic → explanation)
    dissimilar with their explanation; then saved."""
    for radio in page.locator(f"input[data-mark][value={value}]").all():
        radio.check()
    for key, explanation in (dissimilar or {}).items():
        page.check(f"#mark-{key}-dissimilar")
        page.fill(f"#comment-{key}", explanation)
    page.click("button:has-text('Save the checklist')")
    page.wait_for_url(re.compile(r".*\?done=checklist.*"))


def conclude(
    page: Any,
    level: str,
    code: Callable[[], str],
    *,
    reasoning: str = "Hairline, eyebrows, nose and ears correspond in form; no unexplained difference.",
    limitations: str = "One probe image, moderate compression.",
) -> None:
    """Record a conclusion on the open candidate; a conclusion that can release asks for a fresh code."""
    page.check(f"#conclusion-{level}")
    page.fill("#reasoning", reasoning)
    page.fill("#limitations", limitations)
    page.click("button:has-text('Record my conclusion')")
    page.wait_for_load_state()
    if page.get_by_test_id("second-factor-form").count():
        page.fill("#code", code())
        page.click("button:has-text('Confirm and continue')")
    page.wait_for_url(re.compile(r".*\?done=concluded.*"))


def handle_of_rank(data_dir: Path, task_id: str, rank: int) -> str:
    """The test's oracle, read from the system of record (never shown to the examiner): the handle that the task
    gives the candidate the search ranked ``rank``."""
    with sqlite3.connect(f"file:{data_dir / 'facetrail.db'}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT c.handle FROM examined_candidates c JOIN examination_tasks t ON t.id = c.task_id"
            " WHERE t.public_id = ? AND c.rank = ?",
            (task_id, rank),
        ).fetchone()
    assert row is not None, f"no candidate of rank {rank} in task {task_id}"
    return str(row[0])


def task_complete(data_dir: Path, task_id: str) -> bool:
    """The test's oracle: whether every candidate of the task is concluded (the other examiner's conclusion and
    the case story are shown only then)."""
    with sqlite3.connect(f"file:{data_dir / 'facetrail.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT completed_at FROM examination_tasks WHERE public_id = ?", (task_id,)).fetchone()
    assert row is not None, f"no task {task_id}"
    return row[0] is not None
