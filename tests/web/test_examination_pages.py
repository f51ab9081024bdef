"""A full examination in a real browser against a real server (docs/examination.md, docs/web-ui.md): an
investigator's search; the system assigns two of the unit's three reviewers; each, in Chromium, analyses the probe
alone (the record locks), opens the candidates (opaque, in no meaningful order, with all the subject's enrolled
photos and their capture dates), uses the comparison tools (zoom, synchronised pan, rotate, mirror, alignment on
the eyes, overlay, wipe), pins a note to an image region, fills the FISWG checklist (a dissimilarity needs its
explanation), enhances a copy of the probe (logged, replayed on the server to the identical hash), and records a
conclusion on the symmetric scale, after which — and only after which — the page shows score, rank, estimated
false-match rate and the subject (the other examiner's conclusion once the whole task is complete). Before that,
none of them is in any page's HTML nor in any XHR/fetch response the pages make. Two conclusions at the release
level release the lead; the investigator then sees it. No page reports a CSP violation.

The tests run in file order and build on each other (one server, one examination).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from exam_steps import conclude, handle_of_rank, mark_checklist
from PIL import Image
from web_helpers import CHROMIUM, UNDER_CI

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))

from live_server import (
    ADMIN_FIRST_PASSWORD,
    AUTHENTICATORS,
    PASSWORD,
    LiveServer,
    enrol_totp,
    login,
    make_user,
    second_factor,
    start_server,
    stop_server,
)

from face_fixtures import BIDEN, OBAMA, OBAMA2

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not UNDER_CI,
    reason="Debian's chromium is not installed (/usr/bin/chromium); CI installs it",
)

WIDE = {"width": 1280, "height": 900}
REVIEWERS = ("rhea", "remy", "rosa")
CASE = "2026-EX-0815"
STATE: dict[str, Any] = {}


class Exam:
    def __init__(self, server: LiveServer, admin: httpx.Client, tokens: dict[str, str]) -> None:
        self.server = server
        self.admin = admin
        self.tokens = tokens

    def api(self, username: str) -> httpx.Client:
        return self.server.client(self.tokens[username])


def release_under_review() -> str:
    from facetrail.governance.release import UNDER_REVIEW

    return UNDER_REVIEW


def _probe_bytes() -> bytes:
    """The probe: obama2.jpg cropped to the head and shoulders and re-encoded (other bytes than the enrolled one)."""
    with Image.open(OBAMA2) as im:
        rgb = im.convert("RGB")
        w, h = rgb.size
        crop = rgb.crop((w // 8, 0, w - w // 8, h * 3 // 4))
        out = io.BytesIO()
        crop.save(out, "JPEG", quality=88)
        return out.getvalue()


@pytest.fixture(scope="module")
def exam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exam]:
    server = start_server(tmp_path_factory.mktemp("exam") / "data", {"FACETRAIL_KEEP_PROBE_IMAGES": "true"})
    admin, _ = login(server, "admin", ADMIN_FIRST_PASSWORD)
    try:
        r = admin.post(
            "/api/v1/auth/password", json={"current_password": ADMIN_FIRST_PASSWORD, "new_password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        enrol_totp(admin, server, "admin")
        # Live work only in these queues: known-answer tests (mixed in at the policy's rate, indistinguishable)
        # are exam-core's API tests; here the examination of one search is followed from end to end.
        assert second_factor(admin, server, "admin").status_code == 200
        text = admin.get("/api/v1/policy").json()["text"]
        assert re.search(r"\nknown_answer_rate = [0-9.]+\n", text), "the policy has no examination.known_answer_rate"
        text = re.sub(r"\nknown_answer_rate = [0-9.]+\n", "\nknown_answer_rate = 0.0\n", text, count=1)
        r = admin.put("/api/v1/policy", json={"text": text})
        assert r.status_code in (200, 201), r.text
        assert admin.post("/api/v1/units", json={"name": "north", "agency": "Example Police"}).status_code == 201
        tokens = {"ivan": make_user(admin, server, "ivan", "investigator", "north")}
        for name in REVIEWERS:
            tokens[name] = make_user(admin, server, name, "reviewer", "north")
        r = admin.post("/api/v1/users/ivan/training", json={"completed_on": str(dt.date.today()), "course": "FR-101"})
        assert r.status_code == 201, r.text
        r = admin.post(
            "/api/v1/galleries",
            json={"name": "bookings", "legal_basis": "Booking photos, statute 12-3", "source_system": "county-rms"},
        )
        assert r.status_code == 201, r.text
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in (OBAMA, OBAMA2, BIDEN)]
        r = admin.post(
            "/api/v1/galleries/bookings/enroll",
            files=files,
            data={
                "subject_ids": ["P-100", "P-100", "P-200"],
                "source_record_ids": ["r1", "r2", "r3"],
                "capture_dates": ["2019-05-01", "2021-08-15", "2020-01-10"],
            },
        )
        assert r.status_code == 200, r.text
        assert [f["status"] for f in r.json()["files"]] == ["enrolled"] * 3, r.text
        yield Exam(server, admin, tokens)
    finally:
        admin.close()
        stop_server(server)


def new_page(browser: Any, exam: Exam) -> Any:
    context = browser.new_context(viewport=WIDE, base_url=exam.server.base_url)
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.seen = []  # (url, text) of every page and every XHR/fetch response, to search for what must stay hidden
    page.on("response", lambda r: _keep(page, r))
    return page


def _keep(page: Any, response: Any) -> None:
    kind = response.request.resource_type
    if kind in ("document", "xhr", "fetch"):
        try:
            page.seen.append((kind, response.url, response.text()))
        except Exception:  # a redirect has no body
            page.seen.append((kind, response.url, ""))


def sign_in(page: Any, exam: Exam, username: str) -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r".*/mfa.*"))
    page.fill("#code", AUTHENTICATORS.code(exam.server.base_url, username))
    page.click("button:has-text('Continue')")
    page.wait_for_url(lambda url: "/mfa" not in url)


def no_csp_violations(page: Any) -> None:
    assert not [e for e in page.console_errors if "Content Security Policy" in e], page.console_errors


def canvas(page: Any, name: str) -> Any:
    return page.get_by_test_id(f"canvas-{name}")


def pixels(page: Any, name: str) -> str:
    page.wait_for_timeout(150)  # one animation frame renders the change
    return str(canvas(page, name).evaluate("c => c.toDataURL()"))


def view(page: Any, name: str) -> dict[str, str]:
    page.wait_for_timeout(150)
    return dict(canvas(page, name).evaluate("c => ({...c.dataset})"))


def click_canvas(page: Any, name: str, fx: float, fy: float) -> None:
    box = canvas(page, name).bounding_box()
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)


def test_investigator_searches_and_the_system_assigns_two_reviewers(exam: Exam) -> None:
    with exam.api("ivan") as ivan:
        r = ivan.post(
            "/api/v1/searches",
            files={"probe": ("probe.jpg", _probe_bytes(), "image/jpeg")},
            data={
                "gallery": "bookings",
                "case_number": CASE,
                "offense": "robbery",
                "legal_basis": "warrant",
                "justification": "Pharmacy robbery; the suspect was filmed by the shop camera.",
                "candidates": "2",
            },
        )
        assert r.status_code in (200, 201), r.text
        STATE["search_id"] = r.json()["search_id"]
    queues = {}
    for name in REVIEWERS:  # asking for work fills the open examiner places: the system picks, nobody chooses
        with exam.api(name) as client:
            r = client.get("/api/v1/examinations")
            assert r.status_code == 200, r.text
            queues[name] = r.json()
    assigned = [n for n in REVIEWERS if queues[n]]
    assert len(assigned) == 2, queues  # two of the unit's three reviewers, chosen by the system
    assert all(len(queues[n]) == 1 for n in assigned)
    STATE["examiners"] = assigned
    STATE["tasks"] = {n: queues[n][0]["task_id"] for n in assigned}
    STATE["bystander"] = next(n for n in REVIEWERS if n not in assigned)


def _analyse_probe(page: Any, task_id: str) -> None:
    page.goto("/examinations")
    assert page.get_by_test_id("exam-task").count() == 1
    assert "choose" not in page.get_by_test_id("exam-queue").inner_text().lower()  # no verifier to pick
    page.click(f"a[href='/examinations/{task_id}']")
    page.wait_for_url(f"**/examinations/{task_id}")
    img = page.get_by_test_id("probe-image")
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
    assert page.get_by_test_id("exam-candidate").count() == 0 and "/candidates" not in page.content()
    # before the analysis, the candidates are refused (sequential unmasking)
    assert page.request.get(f"/examinations/{task_id}/candidates").status == 409
    for select in page.locator("[data-testid=analysis-form] select").all():
        select.select_option("good")
    page.fill("#factor-comment-pose", "frontal, slight tilt")
    page.check("#suitable-yes")
    page.fill("#analysis-notes", "Clear frontal face, even lighting.")
    page.click("button:has-text('Record the analysis')")
    page.wait_for_url(re.compile(r".*\?done=analysis$"))
    assert page.get_by_test_id("analysis-locked").is_visible()
    assert page.get_by_test_id("analysis-form").count() == 0
    assert page.get_by_test_id("quality-pose").inner_text() == "good: frontal, slight tilt"
    # the record is locked: a second analysis is refused, and the first stands
    csrf = page.locator("input[name=csrf_token]").first.input_value()
    again = page.request.post(
        f"/examinations/{task_id}/probe-analysis",
        form={"csrf_token": csrf, "suitable": "no", "notes": "changed my mind"},
    )
    assert again.status in (409, 422)
    page.reload()
    assert page.get_by_test_id("analysis-suitable").inner_text() == "Yes"


def _mark_checklist(page: Any, dissimilar: str) -> None:
    """Every characteristic similar, one dissimilar (needing its explanation)."""
    for radio in page.locator("input[data-mark][value=similar]").all():
        radio.check()
    page.check(f"#mark-{dissimilar}-dissimilar")


def test_first_examiner_analyses_compares_and_concludes(browser: Any, exam: Exam) -> None:
    name = STATE["examiners"][0]
    task_id = STATE["tasks"][name]
    page = new_page(browser, exam)
    sign_in(page, exam, name)
    _analyse_probe(page, task_id)

    page.click("[data-testid=to-candidates]")
    page.wait_for_url(f"**/examinations/{task_id}/candidates")
    listed = page.get_by_test_id("exam-candidate")
    assert listed.count() >= 1
    labels = [c.locator("a").inner_text() for c in listed.all()]
    assert labels == [f"Candidate {chr(65 + i)}" for i in range(len(labels))]  # letters, not ranks
    STATE["candidate_count"] = listed.count()
    # The test's oracle (never the examiner's): the handle of the candidate the search ranked first, P-100.
    handle = handle_of_rank(exam.server.data_dir, task_id, 1)
    page.click(f"a[href$='/candidates/{handle}']")
    page.wait_for_url(re.compile(r".*/candidates/[^/]+$"))
    STATE["first_handle"] = handle

    # Plain side by side by default: both panes drawn, nothing superimposed, no gridlines offered at all.
    page.wait_for_function(
        "() => ['probe', 'candidate'].every(n => document.querySelector(`[data-pane=${n}]`).dataset.state === 'ready')"
    )
    assert page.locator("[data-comparison]").get_attribute("data-display-mode") == "side"
    assert page.get_by_test_id("pane-composite").is_hidden()
    assert page.locator("#mode-overlay").is_disabled() and page.locator("#mode-wipe").is_disabled()
    assert "grid" not in page.locator("[data-comparison]").inner_text().lower()
    # Full available resolution: the probe is drawn from the stored original, not a thumbnail.
    size = page.get_by_test_id("pane-probe").get_attribute("data-natural-size")
    probe_w, probe_h = Image.open(io.BytesIO(_probe_bytes())).size
    assert size == f"{probe_w}x{probe_h}"
    # All the subject's enrolled photos, with their capture dates.
    photos = page.get_by_test_id("photo")
    assert photos.count() == 2
    dates = sorted(d.inner_text() for d in page.get_by_test_id("capture-date").all())
    assert dates == ["captured 2019-05-01", "captured 2021-08-15"]

    # Zoom, synchronised pan and zoom, rotation and mirroring change the rendering.
    before = pixels(page, "probe")
    page.click("[data-view-action=zoom-in][data-for=probe]")
    assert view(page, "probe")["zoom"] == "1.2500" and pixels(page, "probe") != before
    assert view(page, "candidate")["zoom"] == "1.0000"  # independent by default
    page.check("#sync-views")
    page.click("[data-view-action=zoom-in][data-for=probe]")
    assert view(page, "candidate")["zoom"] == view(page, "probe")["zoom"] == "1.5625"
    canvas(page, "probe").focus()
    page.keyboard.press("ArrowLeft")
    assert view(page, "probe")["pan"] == view(page, "candidate")["pan"] == "40,0"
    page.uncheck("#sync-views")
    page.click("[data-view-action=actual][data-for=candidate]")  # 1:1, the real pixels
    assert view(page, "candidate")["zoom"] != view(page, "probe")["zoom"]
    before = pixels(page, "candidate")
    page.click("[data-view-action=rotate-right][data-for=candidate]")
    assert view(page, "candidate")["rotation"] == "90" and pixels(page, "candidate") != before
    before = pixels(page, "candidate")
    page.click("[data-view-action=mirror][data-for=candidate]")
    assert view(page, "candidate")["mirror"] == "true" and pixels(page, "candidate") != before
    for pane in ("probe", "candidate"):
        page.click(f"[data-view-action=reset][data-for={pane}]")
    page.get_by_test_id("photo").nth(1).click()  # the other enrolled photo
    page.wait_for_function("() => document.querySelector('[data-pane=candidate]').dataset.state === 'ready'")
    page.get_by_test_id("photo").nth(0).click()
    page.wait_for_timeout(300)

    # Alignment on the eyes: both eyes on each image, then overlay (opacity) and wipe (curtain).
    page.click("[data-align]")
    for pane, points in (("probe", ((0.45, 0.38), (0.55, 0.38))), ("candidate", ((0.44, 0.36), (0.56, 0.37)))):
        for fx, fy in points:
            click_canvas(page, pane, fx, fy)
    assert page.get_by_test_id("align-status").inner_text().startswith("Aligned on the eyes")
    # the distance between the eye marks on each image, recorded as an observation (never a score)
    page.click("[data-measure-eyes]")
    recorded = page.get_by_test_id("measurements").locator("li").all_inner_texts()
    assert len(recorded) == 2 and all("distance between the eye marks" in m and " px" in m for m in recorded)
    page.check("#mode-overlay")
    assert page.get_by_test_id("pane-composite").is_visible() and page.get_by_test_id("pane-probe").is_hidden()
    half = pixels(page, "composite")
    page.fill("#overlay-opacity", "90")
    page.dispatch_event("#overlay-opacity", "input")
    assert pixels(page, "composite") != half
    page.check("#mode-wipe")
    wiped = pixels(page, "composite")
    page.fill("#wipe-position", "25")
    page.dispatch_event("#wipe-position", "input")
    assert pixels(page, "composite") != wiped
    page.check("#mode-side")
    assert page.get_by_test_id("pane-probe").is_visible()

    # A note pinned to a region of the candidate photo.
    page.click("[data-pin]")
    click_canvas(page, "candidate", 0.5, 0.55)
    page.select_option("#annotation-component", "facial_marks")
    page.fill("#annotation-note", "small mark left of the nose on both images")
    page.click("[data-annotation-add]")
    assert page.get_by_test_id("annotations").locator("li").count() == 1

    # The enhancement panel: a logged step on a copy of the probe, the original one click away.
    page.select_option("#enhance-target", "probe")
    page.select_option("#enhance-operation", "brightness")
    page.fill("#enhance-purpose", "dark shadow over the left eye")
    page.click("button:has-text('Apply to a copy')")
    status = page.get_by_test_id("enhance-status")
    page.wait_for_function("s => s.textContent && !s.textContent.startsWith('Applying')", arg=status.element_handle())
    assert status.inner_text().startswith("Applied to a copy"), status.inner_text()
    page.wait_for_function("() => document.querySelector('[data-pane=probe]').dataset.enhancedSha256")
    assert page.get_by_test_id("enhanced-badge-probe").is_visible()
    first_step = page.get_by_test_id("pane-probe").get_attribute("data-enhanced-sha256")
    # a second step, chained on the first (its parent is the first's hash; the log is the whole chain)
    page.select_option("#enhance-operation", "gamma")
    page.fill("#enhance-purpose", "lift the mid-tones around the eyes")
    page.click("button:has-text('Apply to a copy')")
    page.wait_for_function(
        "h => document.querySelector('[data-pane=probe]').dataset.enhancedSha256 !== h", arg=first_step
    )
    log = page.get_by_test_id("enhance-log-probe").locator("li").all_inner_texts()
    assert len(log) == 2 and log[0].startswith("brightness") and log[1].startswith("gamma"), log
    assert "dark shadow over the left eye" in log[0]
    page.wait_for_function("() => document.querySelector('[data-pane=probe]').dataset.state === 'ready'")
    enhanced_pixels = pixels(page, "probe")
    STATE["enhanced"] = page.get_by_test_id("pane-probe").get_attribute("data-enhanced-sha256")
    page.get_by_test_id("show-original-probe").click()
    page.wait_for_function("() => document.querySelector('[data-pane=probe]').dataset.showing === 'original'")
    assert page.get_by_test_id("enhanced-badge-probe").is_hidden()
    page.wait_for_timeout(300)  # the original decodes
    assert pixels(page, "probe") != enhanced_pixels
    page.get_by_test_id("show-original-probe").click()  # and back
    page.wait_for_function("() => document.querySelector('[data-pane=probe]').dataset.showing === 'enhanced'")

    # The checklist: a dissimilarity without its explanation is refused by the browser and by the server.
    _mark_checklist(page, "facial_marks__size")
    comment = page.locator("#comment-facial_marks__size")
    assert comment.evaluate("t => t.required")
    page.click("button:has-text('Save the checklist')")
    assert "?done=checklist" not in page.url  # the browser keeps the form: the explanation is required
    comment.evaluate("t => { t.required = false; }")  # a crafted submission without it
    page.click("button:has-text('Save the checklist')")
    page.wait_for_load_state()
    assert "explained" in page.locator(".error-box").inner_text()
    assert page.locator("#mark-facial_marks__size-dissimilar").is_checked()  # what was entered is kept
    page.fill("#comment-facial_marks__size", "the mark looks larger on the probe: compression blur around it")
    page.click("button:has-text('Save the checklist')")
    page.wait_for_url(re.compile(r".*\?done=checklist.*"))
    assert page.locator("#mark-facial_marks__size-dissimilar").is_checked()
    assert page.get_by_test_id("annotations").locator("li").count() == 1  # the pinned note was saved
    assert page.get_by_test_id("measurements").locator("li").count() == 2  # and the measurements

    _conclude(page, exam, name, "moderate_support_same_source")
    reveal = page.get_by_test_id("reveal").inner_text()
    STATE["reveal"] = {
        "rank": page.get_by_test_id("reveal-rank").inner_text(),
        "score": page.get_by_test_id("reveal-score").inner_text(),
        "fmr": page.get_by_test_id("reveal-fmr").inner_text(),
    }
    assert re.fullmatch(r"\d+", STATE["reveal"]["rank"]) and re.fullmatch(r"0\.\d{3}", STATE["reveal"]["score"])
    assert "P-100" in reveal
    assert page.get_by_test_id("reveal-other").count() == 0  # the other examiner: only once the task is complete
    assert page.get_by_test_id("conclusion-form").count() == 0  # final
    no_csp_violations(page)
    _conclude_the_rest(page, exam, name, task_id)
    STATE["seen_first"] = page.seen
    page.context.close()


def _conclude(page: Any, exam: Exam, name: str, level: str) -> None:
    conclude(page, level, lambda: AUTHENTICATORS.code(exam.server.base_url, name))


def _conclude_the_rest(page: Any, exam: Exam, name: str, task_id: str) -> None:
    """The task's other candidates (other people): compared and concluded too, so the task completes."""
    page.goto(f"/examinations/{task_id}/candidates")
    for i in range(page.get_by_test_id("exam-candidate").count()):
        item = page.get_by_test_id("exam-candidate").nth(i)
        if "to examine" not in item.inner_text() and "opened" not in item.inner_text():
            continue
        item.locator("a").click()
        page.wait_for_url(re.compile(r".*/candidates/[^/]+$"))
        mark_checklist(page, dissimilar={"nose__width": "a wider nose, not explained by pose or lighting"})
        _conclude(page, exam, name, "moderate_support_different_sources")
        page.goto(f"/examinations/{task_id}/candidates")


def test_nothing_was_revealed_before_the_conclusion(exam: Exam) -> None:
    """Score, rank, FMR, subject and case: absent from every page and XHR/fetch answer before the conclusion."""
    seen = STATE["seen_first"]
    cut = next(i for i, (_, url, _) in enumerate(seen) if "done=concluded" in url)
    before = seen[:cut]
    assert any("/candidates/" in url for _, url, _ in before)  # the comparison page itself is among them
    secrets_ = [STATE["reveal"]["score"], STATE["reveal"]["fmr"], "P-100", CASE, "robbery", "Pharmacy"]
    for kind, url, text in before:
        for secret in secrets_:
            assert secret not in text, f"{secret!r} in {kind} {url} before the conclusion"
        if kind in ("xhr", "fetch"):
            for key in ('"similarity"', '"estimated_fmr"', '"rank"', '"subject_external_id"'):
                assert key not in text, f"{key} in {url} before the conclusion"
    # and the reviewer who was not assigned has nothing to examine
    with exam.api(STATE["bystander"]) as client:
        assert client.get("/api/v1/examinations").json() == []
        assert client.get(f"/api/v1/examinations/{STATE['tasks'][STATE['examiners'][0]]}").status_code == 404


def test_enhancement_replays_on_the_server_to_the_identical_hash(exam: Exam) -> None:
    assert "enhanced" in STATE, "the enhancement step in the browser did not run"
    with exam.api(STATE["examiners"][0]) as client:
        task_id = STATE["tasks"][STATE["examiners"][0]]
        r = client.get(f"/api/v1/examinations/{task_id}/enhancements/{STATE['enhanced']}/replay")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["identical"] is True and body["replayed_sha256"] == STATE["enhanced"] == body["sha256"]


def test_second_examiner_concludes_blind_and_the_lead_is_released(browser: Any, exam: Exam) -> None:
    name = STATE["examiners"][1]
    task_id = STATE["tasks"][name]
    page = new_page(browser, exam)
    sign_in(page, exam, name)
    _analyse_probe(page, task_id)
    handle = handle_of_rank(exam.server.data_dir, task_id, 1)
    page.goto(f"/examinations/{task_id}/candidates")
    page.click(f"a[href$='/candidates/{handle}']")
    page.wait_for_url(re.compile(r".*/candidates/[^/]+$"))
    assert handle != STATE["first_handle"]  # handles are per examiner: nothing to correlate
    assert page.get_by_test_id("reveal").count() == 0 and "the other examiner" not in page.content()
    mark_checklist(page, dissimilar={"hair__style": "shorter hair on the probe; hair style changes between photos"})
    _conclude(page, exam, name, "strong_support_same_source")
    assert page.get_by_test_id("reveal-rank").inner_text().isdigit()
    assert page.get_by_test_id("reveal-other").count() == 0  # not while the task is open (nor for a test)
    no_csp_violations(page)
    _conclude_the_rest(page, exam, name, task_id)
    page.goto(f"/examinations/{task_id}/candidates/{handle}")
    other = page.get_by_test_id("reveal-other").inner_text()
    assert other == "Moderate support for same source by the other examiner"  # shown once the task is complete
    # Every candidate concluded: the task is complete, and the case story is shown now.
    page.goto("/examinations")
    assert CASE in page.get_by_test_id("exam-queue").inner_text()
    no_csp_violations(page)
    page.context.close()

    # Release on the scale: two conclusions at or above the policy's level (moderate) on the same candidate.
    with exam.api("ivan") as ivan:
        shown = ivan.get(f"/api/v1/searches/{STATE['search_id']}").json()
    released = [c for c in shown["candidates"] if c["subject_external_id"] == "P-100"]
    assert released, shown["candidates"]
    assert all(c["subject_external_id"] in ("P-100", release_under_review()) for c in shown["candidates"])


def test_insiders_cannot_reach_or_redo_an_examination_from_the_browser(browser: Any, exam: Exam) -> None:
    """The reviewer the system did not assign gets "not found" for the task's pages and a crafted conclusion; the
    assigned examiner cannot change a recorded conclusion or a locked analysis."""
    first = STATE["examiners"][0]
    task_id, handle = STATE["tasks"][first], STATE["first_handle"]
    page = new_page(browser, exam)
    sign_in(page, exam, STATE["bystander"])
    assert page.get_by_test_id("exam-task").count() == 0
    csrf = page.locator("input[name=csrf_token]").first.input_value()
    assert page.request.get(f"/examinations/{task_id}").status == 404
    assert page.request.get(f"/examinations/{task_id}/candidates/{handle}").status == 404
    crafted = page.request.post(
        f"/examinations/{task_id}/candidates/{handle}/conclusion",
        form={
            "csrf_token": csrf,
            "conclusion": "strong_support_different_sources",
            "reasoning": "x",
            "limitations": "y",
        },
    )
    assert crafted.status == 404
    page.context.close()

    page = new_page(browser, exam)
    sign_in(page, exam, first)
    page.goto(f"/examinations/{task_id}/candidates/{handle}")
    csrf = page.locator("input[name=csrf_token]").first.input_value()
    again = page.request.post(
        f"/examinations/{task_id}/candidates/{handle}/conclusion",
        form={"csrf_token": csrf, "conclusion": "neutral", "reasoning": "second thoughts", "limitations": "none"},
    )
    assert again.status in (409, 422)
    page.reload()
    assert page.get_by_test_id("my-conclusion").inner_text().count("Moderate support for same source") == 1
    no_csrf = page.request.post(f"/examinations/{task_id}/probe-analysis", form={"suitable": "no", "notes": "x"})
    assert no_csrf.status in (400, 403)
    no_csp_violations(page)
    page.context.close()
