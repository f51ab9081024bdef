"""The web UI in a real browser against a real server: first login and forced password change, units and users, search
training recorded, gallery creation and upload (photos and a manifest), browsing and deleting a subject, a search
with a two-face probe (the second face), candidates "under review" until two examiners, assigned by the system,
release a lead through the examination pages (blind: tests/web/test_examination_pages.py walks every tool), an
investigator of another unit refused, an untrained investigator refused, a prior-approval request approved by a
reviewer of the unit (never by the requester), an emergency search denied and locked, the audit page showing those
actions, reports and the case packet, the policy page and legal holds. Every page is saved as a screenshot at 1280
px and 390 px.

The tests run in file order and build on each other (one server, one story), like an investigation does.
"""

from __future__ import annotations

import base64
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from exam_steps import analyse_probe, conclude, handle_of_rank, mark_checklist, task_complete
from PIL import Image, ImageFilter
from web_helpers import ADMIN_PASSWORD, CHROMIUM, UNDER_CI, Server

from authenticators import Authenticators
from face_fixtures import BIDEN, BLANK_WHITE, FACEAPI, OBAMA, OBAMA2, TWO_PEOPLE, calibration_tables

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not UNDER_CI,
    reason="Debian's chromium is not installed (/usr/bin/chromium); CI installs it",
)

WIDE, NARROW = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
PASSWORDS: dict[str, str] = {"admin": ADMIN_PASSWORD}
STATE: dict[str, Any] = {}
AUTHENTICATORS = Authenticators()


def loaded(img: Any, timeout_s: float = 30.0) -> bool:
    """True once the image has finished loading with real pixels (on a busy machine that takes a moment)."""
    try:
        img.page.wait_for_function("i => i.complete", arg=img.element_handle(), timeout=timeout_s * 1000)
    except Exception:
        return False
    return bool(img.evaluate("i => i.naturalWidth > 0"))


def new_page(browser: Any, server: Server) -> Any:
    context = browser.new_context(viewport=WIDE, base_url=server.url)
    context.set_default_timeout(60_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.csp_errors = errors  # CSP violations are reported on the console
    return page


UNLABELLED_FIELDS = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
    .map(el => el.name || el.id || el.outerHTML)"""


def shoot(page: Any, folder: Path, name: str) -> None:
    """The page as it is, at 1280 px and at 390 px; and every form field on it has a label."""
    assert page.evaluate(UNLABELLED_FIELDS) == [], f"unlabelled fields on {name}"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}-1280.png"), full_page=True)
    page.set_viewport_size(NARROW)
    page.screenshot(path=str(folder / f"{name}-390.png"), full_page=True)
    page.set_viewport_size(WIDE)


def sign_in(page: Any, username: str, password: str) -> None:
    """Password, then (MFA is on for every role) the code of the user's authenticator where it has one."""
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_load_state()
    if "/mfa" in page.url and "/mfa/enrol" not in page.url and (page_server(page), username) in AUTHENTICATORS.secrets:
        page.fill("#code", AUTHENTICATORS.code(page_server(page), username))
        page.click("button:has-text('Continue')")
        page.wait_for_url(lambda url: "/mfa" not in url)


def page_server(page: Any) -> str:
    return "/".join(page.url.split("/")[:3])


def enrol_in_browser(page: Any, username: str, screenshots: Path | None = None) -> list[str]:
    """On the enrolment page: read the key shown beside the QR code, as a user typing it into an app would,
    confirm with a code, keep the recovery codes, continue."""
    page.wait_for_url("**/mfa/enrol")
    assert loaded(page.get_by_test_id("mfa-qr"))  # the QR code, drawn on the server, shows
    key = page.get_by_test_id("mfa-secret").inner_text().strip()
    AUTHENTICATORS.secrets[(page_server(page), username)] = key
    if screenshots is not None:
        shoot(page, screenshots, "03-mfa-enrolment")
    page.fill("#code", AUTHENTICATORS.code(page_server(page), username))
    page.click("button:has-text('Confirm')")
    codes = [c.strip() for c in page.get_by_test_id("recovery-codes").locator("code").all_inner_texts()]
    assert len(codes) == 10
    if screenshots is not None:
        shoot(page, screenshots, "04-recovery-codes")
    page.click("text=I have kept them: continue")
    page.wait_for_url(lambda url: "/mfa" not in url)
    return codes


def first_sign_in(page: Any, username: str, one_time: str) -> None:
    """Sign in with a one-time password; FaceTrail insists on a new one, then on a second factor, before
    anything else."""
    sign_in(page, username, one_time)
    page.wait_for_url("**/password")
    new = "Chosen-Pass-" + secrets.token_urlsafe(9)
    page.fill("#current_password", one_time)
    page.fill("#new_password", new)
    page.fill("#confirm_password", new)
    page.click("button:has-text('Change password')")
    page.wait_for_url(lambda url: not url.endswith("/password"))
    PASSWORDS[username] = new
    enrol_in_browser(page, username)


def drop_file(page: Any, selector: str, path: Path) -> None:
    """Drop a file on an element as a user dragging it from their desktop would."""
    transfer = page.evaluate_handle(
        """([b64, name]) => { const dt = new DataTransfer();
             const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
             dt.items.add(new File([bytes], name, {type: 'image/jpeg'})); return dt; }""",
        [base64.b64encode(path.read_bytes()).decode(), path.name],
    )
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def no_csp_violations(page: Any) -> None:
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors


def test_first_login_forces_a_password_change(browser: Any, server: Server, screenshots: Path) -> None:
    page = new_page(browser, server)
    page.goto("/")
    assert "/login" in page.url  # not signed in: sent to sign in
    shoot(page, screenshots, "01-login")

    sign_in(page, "admin", "not-the-password")
    assert page.locator(".error-box").inner_text().startswith("sign-in failed: wrong username or password")

    # By keyboard alone: the username field has the focus, Tab moves on, Enter submits.
    page.goto("/login")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'username'")  # autofocus
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/password")
    assert "You must choose a new password" in page.content()
    shoot(page, screenshots, "02-forced-password-change")
    page.goto("/galleries")  # nothing else is reachable before the change
    assert page.url.endswith("/password")

    page.fill("#current_password", ADMIN_PASSWORD)
    page.fill("#new_password", "short")
    page.fill("#confirm_password", "short")
    page.click("button:has-text('Change password')")
    assert "at least 12 characters" in page.locator(".error-box").inner_text()

    first_sign_in_done = "Chosen-Pass-For-Root-2026"
    page.fill("#current_password", ADMIN_PASSWORD)
    page.fill("#new_password", first_sign_in_done)
    page.fill("#confirm_password", first_sign_in_done)
    page.click("button:has-text('Change password')")
    PASSWORDS["admin"] = first_sign_in_done
    page.goto("/galleries")  # nothing is reachable before the second factor is enrolled either
    assert page.url.endswith("/mfa/enrol")
    enrol_in_browser(page, "admin", screenshots)
    page.wait_for_url("**/galleries")
    header = page.get_by_test_id("who").inner_text()
    assert "admin" in header and "administrator" in header and "Sign out" in header
    # The first Tab reaches the skip link, and the focus is visible.
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => [document.activeElement.textContent.trim(), getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert focused == ["Skip to content", "solid"]
    no_csp_violations(page)
    page.context.close()


def test_administrator_creates_units_users_and_tokens(browser: Any, server: Server, screenshots: Path) -> None:
    page = new_page(browser, server)
    sign_in(page, "admin", PASSWORDS["admin"])
    for unit in ("Robbery North", "Fraud South"):
        page.goto("/admin/units")
        page.fill("#unit-name", unit)
        page.fill("#unit-agency", "City Police")
        page.click("button:has-text('Create unit')")
        assert page.get_by_role("cell", name=unit).count() == 1
    shoot(page, screenshots, "10-units")

    accounts = [
        ("alice", "investigator", "Robbery North"),
        ("bob", "reviewer", "Robbery North"),
        ("frank", "reviewer", "Robbery North"),
        ("carol", "investigator", "Fraud South"),
        ("dave", "auditor", ""),
        ("erin", "auditor", ""),
    ]
    for username, role, unit in accounts:
        page.goto("/admin/users")
        page.fill("#new-username", username)
        page.select_option("#new-role", role)
        page.select_option("#new-unit", label=unit if unit else "— none (auditors, administrators) —")
        page.click("button:has-text('Create user')")
        secret = page.get_by_test_id("secret").inner_text().strip()
        assert len(secret) >= 12
        STATE[f"one_time:{username}"] = secret
        if username == "alice":
            shoot(page, screenshots, "11-one-time-password")
    page.goto("/admin/users")
    assert "investigator" in page.get_by_test_id("user-alice").inner_text()
    assert "must change password" in page.get_by_test_id("user-alice").inner_text()
    assert "none: may not search" in page.get_by_test_id("training-alice").inner_text()
    # Searching needs recorded training: alice gets it; carol (another unit) is left without it.
    alice = page.get_by_test_id("user-alice")
    alice.get_by_label("Course completed by alice").fill("Face search and its limits (8 h)")
    alice.get_by_role("button", name="Record training").click()
    page.wait_for_url("**/admin/users?done=training")
    assert "valid" in page.get_by_test_id("training-alice").inner_text()
    assert "Face search and its limits" in page.get_by_test_id("training-alice").inner_text()
    shoot(page, screenshots, "12-users")

    page.goto("/tokens")
    page.fill("#token-name", "nightly report")
    page.click("button:has-text('Create token')")
    token = page.get_by_test_id("secret").inner_text().strip()
    assert token.startswith("ft_")
    page.goto("/tokens")
    page.once("dialog", lambda d: d.accept())
    page.click("button:has-text('Revoke')")
    assert page.locator(".badge.bad", has_text="revoked").count() == 1
    shoot(page, screenshots, "13-tokens")
    # Known-answer tests are mixed into reviewers' queues at the policy's rate, indistinguishable from live work
    # (tested at the API); this story follows live searches only, so the rate is 0 here (policy version 2).
    page.goto("/policy")
    text = page.input_value("#policy-text")
    assert "\nknown_answer_rate = 0.1\n" in text
    page.fill("#policy-text", text.replace("\nknown_answer_rate = 0.1\n", "\nknown_answer_rate = 0.0\n"))
    page.click("button:has-text('Apply as the next version')")
    page.wait_for_url("**/policy?done=applied")
    no_csp_violations(page)
    page.context.close()


def test_repeated_failures_lock_the_account(browser: Any, server: Server, screenshots: Path) -> None:
    page = new_page(browser, server)
    for _ in range(5):  # the default lockout threshold
        sign_in(page, "erin", "a wrong password")
    # The locked account gets the one answer an unknown name gets too (no account enumeration).
    locked_answer = page.locator(".error-box").inner_text()
    assert locked_answer.startswith("sign-in failed:")
    sign_in(page, "erin", STATE["one_time:erin"])  # even the right password is refused while locked
    assert page.locator(".error-box").inner_text() == locked_answer
    sign_in(page, "nobody-at-all", "a wrong password")
    assert page.locator(".error-box").inner_text() == locked_answer
    shoot(page, screenshots, "14-locked")
    page.context.close()


def test_gallery_creation_upload_browse_and_delete(
    browser: Any, server: Server, screenshots: Path, tmp_path: Path
) -> None:
    page = new_page(browser, server)
    sign_in(page, "admin", PASSWORDS["admin"])
    page.goto("/galleries")
    page.fill("#g-name", "bookings")
    page.fill("#g-source", "county booking system")
    page.fill("#g-legal", "State statute 12-345: booking photographs of arrested persons")
    page.click("button:has-text('Create gallery')")
    page.wait_for_url("**/galleries/bookings")
    shoot(page, screenshots, "20-gallery-empty")

    # A manifest names each photo's subject: two photos of one man, one of another.
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,subject_id,name\nobama.jpg,P-100,Person One\nobama2.jpg,P-100,Person One\nbiden.jpg,P-200,Person Two\n"
    )
    page.set_input_files("#photos", [str(OBAMA), str(OBAMA2), str(BIDEN)])
    page.set_input_files("#manifest", str(manifest))
    page.click("button:has-text('Upload and enroll')")
    summary = page.get_by_test_id("upload-summary").inner_text()
    assert summary.startswith("3 enrolled, 0 duplicate(s), 0 rejected, of 3 file(s)"), summary
    shoot(page, screenshots, "21-upload-manifest-results")

    # Photos named after their subjects, one already enrolled, one with no face.
    page.goto("/galleries/bookings")
    photos = [
        FACEAPI / "amy" / "amy1.png",
        FACEAPI / "raj" / "raj1.png",
        FACEAPI / "sheldon" / "sheldon1.png",
        OBAMA,
        BLANK_WHITE,
    ]
    page.set_input_files("#photos", [str(p) for p in photos])
    page.click("button:has-text('Upload and enroll')")
    rows = {
        r.locator("td").nth(0).inner_text(): r.locator("td").nth(2).inner_text()
        for r in page.get_by_test_id("upload-results").locator("tbody tr").all()
    }
    assert rows["amy1.png"].startswith("enrolled") and rows["raj1.png"].startswith("enrolled")
    assert rows["obama.jpg"].startswith("duplicate")
    assert rows["blank_white.png"].startswith("rejected")
    shoot(page, screenshots, "22-upload-photos-results")

    page.goto("/galleries/bookings")
    assert page.get_by_test_id("subject-count").inner_text() == "5"
    shoot(page, screenshots, "23-gallery")
    page.click("a:has-text('P-100')")
    images = page.locator(".face-grid img")
    assert images.count() == 2
    assert all(loaded(img) for img in images.all())
    shoot(page, screenshots, "24-subject")

    page.goto("/galleries/bookings/subjects/raj1")
    page.click("a:has-text('Delete this subject')")
    shoot(page, screenshots, "25-delete-confirmation")
    page.fill("#reason", "enrolled by mistake (test photo)")
    page.click("button:has-text('Delete subject')")
    page.wait_for_url("**/galleries/bookings?done=deleted")
    assert page.get_by_test_id("subject-count").inner_text() == "4"
    no_csp_violations(page)
    page.context.close()


@pytest.fixture()
def calibrated() -> None:
    """Searching needs the calibration table that ships with the package; skip only while none ships at all."""
    if not calibration_tables():
        pytest.skip("no calibration table ships yet: searches cannot report false-match rates")


def _expected_top_subject() -> str:
    """Which enrolled person the probe's second face resembles most, by the pipeline itself (not hard-coded)."""
    from facetrail.config import Settings
    from facetrail.faces.pipeline import get_pipeline

    pipeline = get_pipeline(Settings())
    probe, _ = pipeline.analyze_one(pipeline.decode_path(TWO_PEOPLE), 1)
    scores = {}
    for subject, path in (("P-100", OBAMA), ("P-100", OBAMA2), ("P-200", BIDEN)):
        face, _ = pipeline.analyze_one(pipeline.decode_path(path))
        assert face.embedding is not None and probe.embedding is not None
        scores[subject] = max(scores.get(subject, -1.0), float(np.dot(face.embedding.vector, probe.embedding.vector)))
    return max(scores, key=lambda s: scores[s])


def test_investigator_searches_with_the_second_face(
    browser: Any, server: Server, screenshots: Path, calibrated: None, tmp_path: Path
) -> None:
    page = new_page(browser, server)
    first_sign_in(page, "alice", STATE["one_time:alice"])
    page.wait_for_url("**/search/new")
    header = page.get_by_test_id("who").inner_text()
    assert "alice" in header and "investigator" in header and "Robbery North" in header
    assert page.locator(".leads-banner").count() == 1 and page.locator(".notice").count() == 0
    shoot(page, screenshots, "30-new-search")

    # A photo without a face is refused before anything is searched.
    page.set_input_files("#probe", str(BLANK_WHITE))
    page.fill("#case_number", "2026-RB-0042")
    page.select_option("#offense", "robbery")
    page.select_option("#legal_basis", "warrant")
    page.fill("#justification", "Armed robbery at a pharmacy; the suspect was filmed by the shop camera.")
    page.click("button:has-text('Find faces in the photo')")
    assert "No face was found" in page.locator(".error-box").inner_text()
    shoot(page, screenshots, "31-refused-no-face")

    # A blurred photo: its face is shown with the reasons it fails, and nothing can be searched.
    blurred = tmp_path / "blurred.jpg"
    with Image.open(OBAMA) as im:
        small = im.convert("RGB").resize((300, round(im.height * 300 / im.width)))
        small.filter(ImageFilter.GaussianBlur(4)).save(blurred, "JPEG")
    page.set_input_files("#probe", str(blurred))
    page.click("button:has-text('Find faces in the photo')")
    refusal = page.get_by_test_id("quality-refusal").inner_text()
    assert refusal.startswith("Refused: no face in this photo passes the quality checks")
    assert "too blurred" in page.get_by_test_id("face-1").inner_text()
    assert page.get_by_test_id("face-1").locator("input").is_disabled()
    assert page.locator("button:has-text('Search with the chosen face')").count() == 0
    shoot(page, screenshots, "32-refused-quality")

    page.goto("/search/new")
    drop_file(page, "[data-dropzone=probe]", TWO_PEOPLE)  # dragged onto the page, not chosen
    assert page.evaluate("() => document.getElementById('probe').files.length") == 1
    assert page.locator(".drop-preview").evaluate("i => !i.hidden")
    page.fill("#case_number", "2026-RB-0042")
    page.select_option("#offense", "robbery")
    page.select_option("#legal_basis", "warrant")
    page.fill("#justification", "Armed robbery at a pharmacy; the suspect was filmed by the shop camera.")
    page.click("button:has-text('Find faces in the photo')")
    page.wait_for_url("**/search/new")
    assert page.locator(".face-choice").count() == 2
    shoot(page, screenshots, "33-pick-face")
    page.get_by_test_id("face-2").locator("label").click()
    page.click("button:has-text('Search with the chosen face')")
    page.wait_for_url(re.compile(r".*/searches/\d+$"))
    STATE["search_url"] = page.url
    STATE["search_id"] = int(page.url.rsplit("/", 1)[1])

    banner = page.get_by_test_id("leads-banner").inner_text()
    assert banner.startswith("Investigative leads only — not an identification")
    assert page.get_by_test_id("probe-face").evaluate("i => i.naturalWidth > 0")
    candidates = page.get_by_test_id("candidate")
    assert candidates.count() >= 1
    assert "face 2 of 2" in page.content()
    ranks = [int(c.locator(".rank").inner_text()) for c in candidates.all()]
    assert ranks == list(range(1, len(ranks) + 1))
    # Until two reviewers release a candidate, the investigator sees neither its identity nor its face.
    assert {c.get_by_test_id("subject-id").inner_text() for c in candidates.all()} == {"under review"}
    assert page.get_by_test_id("under-review").count() == candidates.count()
    assert page.locator(".candidate img").count() == 0
    assert page.request.get(f"/searches/{STATE['search_id']}/candidates/1/thumbnail.jpg").status == 403
    STATE["candidates"] = candidates.count()
    shoot(page, screenshots, "34-results")

    page.goto("/searches")
    assert "2026-RB-0042" in page.get_by_test_id("search-history").inner_text()
    shoot(page, screenshots, "35-search-history")
    no_csp_violations(page)
    page.context.close()


def _live_task(page: Any) -> str:
    """The one task of the queue still at the probe analysis (the newest live search of the unit)."""
    page.goto("/examinations")
    rows = page.get_by_test_id("exam-task").filter(has_text="analyse the probe")
    assert rows.count() == 1, page.get_by_test_id("exam-queue").inner_text()
    return str(rows.first.locator("a").get_attribute("href")).rsplit("/", 1)[1]


def _examine_rank_one(page: Any, server: Server, username: str, level: str, dissimilar: dict[str, str]) -> str:
    """Analyse the probe of the newest task, then compare the candidate the search ranked first (the examiner does
    not know it is: the test finds its handle in the database) and conclude; returns the task id."""
    task_id = _live_task(page)
    analyse_probe(page, task_id)
    handle = handle_of_rank(server.data_dir, task_id, 1)
    page.goto(f"/examinations/{task_id}/candidates/{handle}")
    assert page.get_by_test_id("reveal").count() == 0  # blind: nothing of the search, nor the other examiner
    mark_checklist(page, dissimilar=dissimilar)
    conclude(page, level, lambda: AUTHENTICATORS.code(page_server(page), username))
    return task_id


def test_reviewer_of_the_unit_examines_a_candidate(
    browser: Any, server: Server, screenshots: Path, calibrated: None
) -> None:
    page = new_page(browser, server)
    first_sign_in(page, "bob", STATE["one_time:bob"])
    page.wait_for_url("**/examinations")  # a reviewer's start page: the examinations the system assigned
    shoot(page, screenshots, "40-examination-queue")
    task_id = _examine_rank_one(
        page, server, "bob", "moderate_support_same_source", {"ears__lobe": "lobe partly hidden by hair on the probe"}
    )
    # the search shows one candidate: bob's task is complete, so the other examiner's status (and the search
    # itself) is his to see now; before that neither would be
    assert task_complete(server.data_dir, task_id)
    assert page.get_by_test_id("reveal-rank").inner_text() == "1"
    assert page.get_by_test_id("reveal").inner_text().count(_expected_top_subject()) == 1
    assert page.get_by_test_id("reveal-other").inner_text() == "not yet concluded"
    shoot(page, screenshots, "41-conclusion-revealed")
    page.goto(f"/searches/{STATE['search_id']}")
    first = page.get_by_test_id("candidate").first
    assert "Moderate support for same source by bob" in first.locator(".reviews").inner_text()
    # A candidate is a subject: P-100's two booking photos are one candidate, its best face shown, and the
    # reviewer can expand it into both faces (issue 11: they used to fill ranks 1 and 2).
    ids = [c.get_by_test_id("subject-id").inner_text() for c in page.get_by_test_id("candidate").all()]
    assert ids.count("P-100") == 1 and len(ids) == len(set(ids))
    p100 = page.get_by_test_id("candidate").filter(has=page.get_by_test_id("subject-id").get_by_text("P-100"))
    assert p100.get_by_test_id("subject-faces").inner_text().startswith("2 enrolled, 2 at or above the floor")
    expand = p100.get_by_test_id("expand-faces")
    assert not expand.get_by_test_id("candidate-face").first.is_visible()  # folded until asked for
    expand.locator("summary").click()
    faces = expand.get_by_test_id("candidate-face")
    assert faces.count() == 2 and all(loaded(f.locator("img")) for f in faces.all())
    shoot(page, screenshots, "41b-candidate-faces")
    assert first.get_by_test_id("release-state").inner_text() == "awaiting a second reviewer"
    no_csp_violations(page)
    page.context.close()


def test_second_reviewer_concludes_blind_and_releases_the_lead(
    browser: Any, server: Server, screenshots: Path, calibrated: None
) -> None:
    page = new_page(browser, server)
    first_sign_in(page, "frank", STATE["one_time:frank"])
    page.goto(f"/searches/{STATE['search_id']}")
    # Sequential unmasking and blind verification: until frank has concluded, the results page shows him no
    # candidate (no score, no rank) and nothing of bob's conclusion.
    assert page.get_by_test_id("candidate").count() == 0 and "bob" not in page.inner_text("main")
    shoot(page, screenshots, "42-blind-review")
    task_id = _examine_rank_one(
        page, server, "frank", "strong_support_same_source", {"hair__style": "shorter on the probe: a haircut"}
    )
    assert task_complete(server.data_dir, task_id)  # one candidate: the whole task, so bob's conclusion shows
    assert page.get_by_test_id("reveal-other").inner_text() == "Moderate support for same source by the other examiner"
    page.goto(f"/searches/{STATE['search_id']}")
    first = page.get_by_test_id("candidate").first
    reviews = first.locator(".reviews").inner_text()
    assert "Moderate support for same source by another reviewer" in reviews  # never who the other was
    assert "Strong support for same source by frank" in reviews and "bob" not in reviews
    assert first.get_by_test_id("release-state").inner_text().startswith("released lead")
    assert "conclusions are final" in first.inner_text()
    shoot(page, screenshots, "43-lead-released")
    no_csp_violations(page)
    page.context.close()


def test_investigator_sees_the_released_lead(browser: Any, server: Server, screenshots: Path, calibrated: None) -> None:
    page = new_page(browser, server)
    sign_in(page, "alice", PASSWORDS["alice"])
    page.goto(f"/searches/{STATE['search_id']}")
    candidates = page.get_by_test_id("candidate")
    first = candidates.first
    assert first.get_by_test_id("subject-id").inner_text() == _expected_top_subject()
    assert first.get_by_test_id("release-state").inner_text().startswith("released lead")
    assert loaded(first.locator(".pair img").last)
    assert "Strong support for same source by frank" in first.locator(".reviews").inner_text()
    assert page.get_by_test_id("under-review").count() == STATE["candidates"] - 1  # the others are not released
    if first.get_by_test_id("expand-faces").count():  # a released subject with several photos: its faces too
        first.get_by_test_id("expand-faces").locator("summary").click()
        assert all(loaded(f.locator("img")) for f in first.get_by_test_id("candidate-face").all())
    shoot(page, screenshots, "44-investigator-released-lead")
    no_csp_violations(page)
    page.context.close()


def test_investigator_of_another_unit_is_refused(
    browser: Any, server: Server, screenshots: Path, calibrated: None
) -> None:
    page = new_page(browser, server)
    first_sign_in(page, "carol", STATE["one_time:carol"])
    page.goto("/searches")
    assert "2026-RB-0042" not in page.content()
    response = page.goto(f"/searches/{STATE['search_id']}")
    assert response.status == 404
    assert f"no search {STATE['search_id']}" in page.get_by_test_id("error-message").inner_text()
    shoot(page, screenshots, "50-other-unit-refused")
    thumb = page.request.get(f"/searches/{STATE['search_id']}/candidates/1/thumbnail.jpg")
    assert thumb.status == 404
    page.goto("/galleries")  # investigators do not manage galleries
    assert page.get_by_test_id("error-message").is_visible()
    page.context.close()


def _fill_search(page: Any, case_number: str, offense: str, legal_basis: str, probe: Path = OBAMA) -> None:
    page.goto("/search/new")
    page.set_input_files("#probe", str(probe))
    page.fill("#case_number", case_number)
    page.select_option("#offense", offense)
    page.select_option("#legal_basis", legal_basis)
    page.fill("#justification", f"{offense} investigation; the suspect was photographed at the scene.")
    page.click("button:has-text('Find faces in the photo')")
    page.wait_for_selector(".face-choice")


def test_investigator_without_training_is_refused(
    browser: Any, server: Server, screenshots: Path, calibrated: None
) -> None:
    page = new_page(browser, server)
    sign_in(page, "carol", PASSWORDS["carol"])
    page.goto("/search/new")
    assert "no search training on record" in page.get_by_test_id("training-problem").inner_text()
    _fill_search(page, "2026-FR-0100", "robbery", "warrant")
    page.click("button:has-text('Search with the chosen face')")
    refusal = page.locator(".error-box").first.inner_text()
    assert "Refused: carol has no search training on record" in refusal, refusal
    shoot(page, screenshots, "51-refused-no-training")
    page.goto("/searches")
    assert "2026-FR-0100" not in page.content()  # nothing was searched
    page.context.close()


def test_prior_approval_request_is_approved_by_a_unit_reviewer(
    browser: Any, server: Server, screenshots: Path, calibrated: None
) -> None:
    page = new_page(browser, server)
    sign_in(page, "alice", PASSWORDS["alice"])
    page.goto("/search/new")
    assert "burglary" in page.get_by_test_id("approval-rules").inner_text()  # the default policy's list
    _fill_search(page, "2026-BU-0007", "burglary", "warrant")
    assert page.get_by_test_id("request-explained").is_visible()
    shoot(page, screenshots, "70-request-explained")
    page.click("button:has-text('Submit the request for approval')")
    page.wait_for_url("**/requests?done=submitted*")
    request = page.locator("section[data-testid^=request-]", has_text="2026-BU-0007").first
    request_id = int((request.get_attribute("id") or "").removeprefix("request-"))
    assert request.get_by_test_id("request-status").inner_text() == "pending"
    # The requester has no control to approve it, and a hand-made approval is refused.
    assert page.locator("button:has-text('Approve')").count() == 0
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    crafted = page.request.post(f"/requests/{request_id}/approve", form={"csrf_token": csrf or "", "reason": "me"})
    assert crafted.status == 403
    shoot(page, screenshots, "71-request-pending")
    page.context.close()

    page = new_page(browser, server)
    sign_in(page, "bob", PASSWORDS["bob"])
    page.goto("/requests")
    shoot(page, screenshots, "72-reviewer-pending-requests")
    mine = page.get_by_test_id(f"request-{request_id}")
    mine.get_by_label("Note (optional)").fill("Warrant seen; scope matches the case.")
    mine.get_by_role("button", name="Approve and run the search").click()
    page.wait_for_url("**/requests?done=approved*")
    mine = page.get_by_test_id(f"request-{request_id}")
    assert mine.get_by_test_id("request-status").inner_text() == "approved"
    assert "approved by bob" in mine.get_by_test_id("request-decision").inner_text()
    page.context.close()

    page = new_page(browser, server)
    sign_in(page, "alice", PASSWORDS["alice"])
    page.goto("/requests")
    mine = page.get_by_test_id(f"request-{request_id}")
    assert mine.get_by_test_id("request-status").inner_text() == "approved"
    mine.locator("a:has-text('Search')").click()
    page.wait_for_url(re.compile(r".*/searches/\d+$"))
    assert "2026-BU-0007" in page.locator("h1").inner_text()
    assert page.get_by_test_id("candidate").count() >= 1
    assert "approved" in page.get_by_test_id("approval-state").inner_text()
    STATE["approved_search"] = page.url.replace(server.url, "")
    shoot(page, screenshots, "73-approved-search-results")
    no_csp_violations(page)
    page.context.close()


def test_reviewers_who_disagree_see_both_decisions(
    browser: Any, server: Server, screenshots: Path, calibrated: None
) -> None:
    levels = (("bob", "moderate_support_different_sources"), ("frank", "moderate_support_same_source"))
    for reviewer, level in levels:
        page = new_page(browser, server)
        sign_in(page, reviewer, PASSWORDS[reviewer])
        page.goto(STATE["approved_search"])
        assert page.get_by_test_id("candidate").count() == 0  # nothing shown until this reviewer concludes
        _examine_rank_one(page, server, reviewer, level, {"nose__tip": "the tip looks wider on the probe: lens"})
        page.goto(STATE["approved_search"])
        if reviewer == "bob":
            page.context.close()
    first = page.get_by_test_id("candidate").first
    reviews = first.locator(".reviews").inner_text()
    assert "Moderate support for different sources by another reviewer" in reviews
    assert "Moderate support for same source by frank" in reviews
    assert first.get_by_test_id("release-state").inner_text().startswith("reviewers disagreed")
    shoot(page, screenshots, "76-reviewers-disagree")
    page.context.close()

    page = new_page(browser, server)  # the investigator: still under review, nothing released
    sign_in(page, "alice", PASSWORDS["alice"])
    page.goto(STATE["approved_search"])
    assert page.get_by_test_id("candidate").first.get_by_test_id("subject-id").inner_text() == "under review"
    page.context.close()


def test_emergency_search_denied_after_the_fact_is_locked(
    browser: Any, server: Server, screenshots: Path, calibrated: None
) -> None:
    page = new_page(browser, server)
    sign_in(page, "alice", PASSWORDS["alice"])
    page.goto("/search/new")
    page.set_input_files("#probe", str(OBAMA))
    page.fill("#case_number", "2026-RB-0911")
    page.select_option("#offense", "robbery")
    page.select_option("#legal_basis", "exigent-circumstances")
    page.fill("#justification", "Armed robbery in progress; the suspect holds a hostage.")
    page.check("#emergency")
    page.click("button:has-text('Find faces in the photo')")
    assert page.get_by_test_id("emergency-explained").is_visible()
    page.click("button:has-text('Run the emergency search')")
    page.wait_for_url(re.compile(r".*/searches/\d+$"))
    search_path = page.url.replace(server.url, "")
    assert "a reviewer must approve it by" in page.get_by_test_id("approval-state").inner_text()
    shoot(page, screenshots, "74-emergency-search")
    page.context.close()

    page = new_page(browser, server)
    sign_in(page, "bob", PASSWORDS["bob"])
    page.goto("/requests")
    emergency = page.locator("section[data-testid^=request-]", has_text="2026-RB-0911").first
    emergency.get_by_role("button", name="Deny").click()  # the reason is required: the browser keeps the form
    assert "/requests/" not in page.url and "done=denied" not in page.url
    emergency.get_by_label("Reason for denying").fill("No exigency: the hostage report was false.")
    emergency.get_by_role("button", name="Deny").click()
    page.wait_for_url("**/requests?done=denied*")
    page.context.close()

    page = new_page(browser, server)
    sign_in(page, "alice", PASSWORDS["alice"])
    response = page.goto(search_path)
    assert response.status == 403
    assert "results are locked" in page.get_by_test_id("locked-notice").inner_text()
    shoot(page, screenshots, "75-locked-results")
    page.context.close()


def test_auditor_sees_the_actions_verifies_and_exports(
    browser: Any, server: Server, screenshots: Path, calibrated: None
) -> None:
    page = new_page(browser, server)
    first_sign_in(page, "dave", STATE["one_time:dave"])
    page.goto("/audit?limit=1000")
    actions = set(page.locator(".audit-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.action)"))
    expected = {
        "user.bootstrap",
        "auth.login",
        "user.password_change",
        "unit.create",
        "user.create",
        "gallery.create",
        "subject.delete",
        "search",
        "search.view",
        "examination.assign",
        "examination.probe_analysis",
        "examination.checklist",
        "examination.conclude",
        "token.create",
        "token.revoke",
        "training.record",
        "lead.released",
        "search.request",
        "search.approve",
        "search.emergency",
        "search.deny",
        "review.disagreement",
    }
    assert expected <= actions, expected - actions
    shoot(page, screenshots, "60-audit")

    page.fill("#f-action", "search.view")
    page.select_option("#f-outcome", "not_found")
    page.click("button:has-text('Show')")
    rows = page.locator(".audit-table tbody tr")
    # the refused look at another unit (the other rows: examiners who opened a search their task on is open)
    assert rows.filter(has_text="user:carol").count() == 1
    shoot(page, screenshots, "61-audit-filtered")

    page.click("button:has-text('Verify the hash chain')")
    assert page.get_by_test_id("verify-result").inner_text().startswith("The chain verifies")
    shoot(page, screenshots, "62-audit-verified")

    page.goto("/audit")
    with page.expect_download() as info:
        page.click("button:has-text('Download export')")
    exported = Path(info.value.path()).read_text()
    assert '"action": "examination.conclude"' in exported and '"action": "search"' in exported

    # Auditors see every search's metadata, never faces.
    page.goto(STATE["search_url"].replace(server.url, ""))
    assert "metadata only" in page.content()
    assert page.get_by_test_id("candidate").count() == 0
    no_csp_violations(page)
    page.context.close()


def test_reports_page_and_case_packet(browser: Any, server: Server, screenshots: Path, calibrated: None) -> None:
    page = new_page(browser, server)
    sign_in(page, "dave", PASSWORDS["dave"])
    page.goto("/reports")
    page.click("button:has-text('Show the report')")
    report = page.get_by_test_id("transparency-report")
    assert report.is_visible()
    charts = page.locator(".report img.chart")
    assert charts.count() >= 1
    assert all(loaded(c) for c in charts.all())
    shoot(page, screenshots, "80-transparency-report")
    with page.expect_download() as info:
        page.locator("a:has-text('Download CSV')").first.click()
    assert Path(info.value.path()).read_text().count("\n") >= 1

    page.fill("#packet-case", "2026-RB-0042")
    with page.expect_download() as info:
        page.click("button:has-text('Download packet')")
    assert Path(info.value.path()).read_bytes().startswith(b"%PDF")
    no_csp_violations(page)
    page.context.close()


def test_policy_page_validates_and_applies(browser: Any, server: Server, screenshots: Path) -> None:
    page = new_page(browser, server)
    sign_in(page, "admin", PASSWORDS["admin"])
    page.goto("/policy")
    assert "burglary" in page.get_by_test_id("policy-approval").inner_text()
    original = page.input_value("#policy-text")
    page.fill("#policy-text", original.replace("min_candidates = 2", "min_candidates = 1"))
    page.click("button:has-text('Apply as the next version')")
    assert "min_candidates" in page.get_by_test_id("policy-problems").inner_text()
    shoot(page, screenshots, "90-policy-invalid")
    page.fill("#policy-text", original.replace('offenses = ["burglary", "fraud"]', 'offenses = ["fraud"]'))
    page.click("button:has-text('Apply as the next version')")
    page.wait_for_url("**/policy?done=applied")
    assert page.get_by_test_id("policy-version").inner_text().startswith("Version 3")  # 2: no known-answer tests
    assert "burglary" not in page.get_by_test_id("policy-approval").inner_text()
    page.get_by_test_id("policy-v3").locator("summary").click()
    assert '+offenses = ["fraud"]' in page.get_by_test_id("policy-v3").locator(".diff").inner_text()
    shoot(page, screenshots, "91-policy-applied")
    no_csp_violations(page)
    page.context.close()


def test_legal_holds_are_placed_and_lifted(browser: Any, server: Server, screenshots: Path) -> None:
    page = new_page(browser, server)
    sign_in(page, "admin", PASSWORDS["admin"])
    page.goto("/holds")
    page.fill("#hold-case", "2026-RB-0042")
    page.fill("#hold-reason", "Pending trial: preserve every record of the case.")
    page.click("button:has-text('Place hold')")
    page.wait_for_url("**/holds?done=added")
    row = page.locator("tr[data-testid^=hold-]", has_text="2026-RB-0042").first
    assert "in force" in row.inner_text()
    shoot(page, screenshots, "95-legal-holds")
    row.get_by_label("Reason for lifting").fill("Trial concluded.")
    row.get_by_role("button", name="Lift").click()
    page.wait_for_url("**/holds?done=lifted")
    assert "lifted by user:admin" in page.locator("tr[data-testid^=hold-]", has_text="2026-RB-0042").first.inner_text()
    no_csp_violations(page)
    page.context.close()


def test_a_held_subject_cannot_be_deleted_from_the_ui(browser: Any, server: Server, screenshots: Path) -> None:
    """Legal holds bind the web UI too: the delete form is refused with the reason, the subject stays."""
    page = new_page(browser, server)
    sign_in(page, "admin", PASSWORDS["admin"])
    page.goto("/holds")
    page.fill("#hold-gallery", "bookings")
    page.fill("#hold-subject", "amy1")
    page.fill("#hold-reason", "Civil suit: preserve the booking photo.")
    page.click("button:has-text('Place hold')")
    page.wait_for_url("**/holds?done=added")

    page.goto("/galleries/bookings/subjects/amy1")
    page.click("a:has-text('Delete this subject')")
    page.fill("#reason", "trying to delete a held subject")
    page.click("button:has-text('Delete subject')")
    assert "legal hold" in page.content()
    shoot(page, screenshots, "96-held-subject-refused")
    page.goto("/galleries/bookings/subjects/amy1")
    assert page.locator(".face-grid img").count() >= 1  # still there
    no_csp_violations(page)
    page.context.close()


def test_oversight_alert_is_acknowledged_and_a_sample_finding_recorded(
    browser: Any, server: Server, screenshots: Path, calibrated: None
) -> None:
    """The same photo searched under three case numbers raises an alert (detection runs on the server after each
    search); bob, a reviewer of the unit, sees it with alice's timeline chart and acknowledges it with a note; an
    audit sample is drawn from the chain and dave, an auditor, records a finding on a drawn search."""
    import datetime as dt

    from facetrail.audit.service import checkpoint_now
    from facetrail.config import Settings
    from facetrail.context import open_context
    from facetrail.governance.oversight_rules import SamplingRules
    from facetrail.oversight import sampling

    page = new_page(browser, server)
    sign_in(page, "alice", PASSWORDS["alice"])
    for case in ("2026-OV-0001", "2026-OV-0002", "2026-OV-0003"):
        _fill_search(page, case, "robbery", "warrant", probe=BIDEN)
        page.click("button:has-text('Search with the chosen face')")
        page.wait_for_url(re.compile(r".*/searches/\d+$"))
    assert page.locator("a[href='/oversight']").count() == 0  # investigators have no Oversight page
    assert page.request.get("/oversight").status == 403
    page.context.close()

    page = new_page(browser, server)
    sign_in(page, "bob", PASSWORDS["bob"])
    page.goto("/oversight")
    alert = page.locator("section[data-testid^=alert-]", has_text="probe_reused_across_cases").first
    for _ in range(50):  # detection runs off the request, on the server's worker
        if alert.count():
            break
        page.wait_for_timeout(200)
        page.goto("/oversight")
        alert = page.locator("section[data-testid^=alert-]", has_text="probe_reused_across_cases").first
    assert "alice" in alert.inner_text() and alert.get_by_test_id("alert-status").inner_text() == "open"
    assert loaded(page.get_by_test_id("timeline-alice"))
    shoot(page, screenshots, "90-oversight-alert")
    alert.get_by_label("Note (what you found or did)").fill("Three robberies with one suspect photo; cases checked.")
    alert.get_by_role("button", name="Acknowledge").click()
    page.wait_for_url("**/oversight?done=acked*")
    alert = page.locator("section[data-testid^=alert-]", has_text="probe_reused_across_cases").first
    assert alert.get_by_test_id("alert-status").inner_text() == "acknowledged"
    assert "by user:bob" in alert.get_by_test_id("alert-ack").inner_text()
    assert page.locator("[data-testid=samples]").count() == 0  # the audit sample is for auditors
    shoot(page, screenshots, "91-oversight-acknowledged")
    no_csp_violations(page)
    page.context.close()

    # The period ends now; a checkpoint after it seeds the draw (what the server's schedule does each period).
    ctx = open_context(Settings(data_dir=server.data_dir), migrate=False)  # type: ignore[call-arg]
    try:
        end = dt.datetime.now(dt.UTC)
        checkpoint_now(ctx, "cli:browser-test")  # signed like the server's automatic checkpoints (Ed25519)
        draw = sampling.draw_period(
            ctx, "browser:1", end - dt.timedelta(days=1), end, SamplingRules(share=0.5, minimum=1), actor="cli:test"
        )
    finally:
        ctx.close()
    assert draw["search_ids"]

    page = new_page(browser, server)
    sign_in(page, "dave", PASSWORDS["dave"])
    page.goto("/oversight")
    assert "acknowledged" in page.get_by_test_id("alerts").inner_text()  # auditors see every unit's alerts
    item = page.locator("section[data-testid^=sample-]", has_text=f"search {draw['search_ids'][0]}").first
    assert item.get_by_test_id("sample-verdict").inner_text() == "to check"
    shoot(page, screenshots, "92-oversight-sample")
    item.get_by_label("case real").check()
    item.get_by_label("offense right").check()
    item.get_by_label("Note (required when a check fails)").fill("Justification does not say why this suspect.")
    item.get_by_role("button", name="Record finding").click()
    page.wait_for_url("**/oversight?done=found*")
    item = page.locator("section[data-testid^=sample-]", has_text=f"search {draw['search_ids'][0]}").first
    assert item.get_by_test_id("sample-verdict").inner_text() == "inadequate"
    assert "by user:dave" in item.get_by_test_id("sample-finding").inner_text()
    shoot(page, screenshots, "93-oversight-finding")
    no_csp_violations(page)
    page.context.close()
