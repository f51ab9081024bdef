"""Step-up in a real browser (Debian's Chromium, Playwright) against the identity test server, whose step-up window
is a few seconds: a sensitive form asks for a fresh code and then completes; a wrong code re-asks and changes
nothing; a download (the audit export) asks for the code and then downloads; the sessions pages list and end
sessions. No inline script is needed anywhere (the CSP forbids it)."""

from __future__ import annotations

import time
from typing import Any

from live_server import AUTHENTICATORS, PASSWORD

from conftest import STEP_UP_SECONDS, Site


def page_for(browser: Any, site: Site, host: str = "127.0.0.1") -> Any:
    context = browser.new_context(base_url=site.server.base_url.replace("127.0.0.1", host), accept_downloads=True)
    page = context.new_page()
    page.csp_errors = []
    page.on("console", lambda m: page.csp_errors.append(m.text) if m.type == "error" else None)
    return page


def sign_in(page: Any, site: Site, username: str) -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/mfa?**")
    page.fill("#code", AUTHENTICATORS.code(site.server.base_url, username))
    page.click("button:has-text('Continue')")
    page.wait_for_url(lambda url: "/mfa" not in url)


def test_a_sensitive_form_asks_for_a_fresh_code_then_completes(browser: Any, site: Site) -> None:
    site.user("web.target", "auditor")[0].close()
    page = page_for(browser, site)
    sign_in(page, site, "admin")
    time.sleep(STEP_UP_SECONDS + 1)  # the sign-in code is too old now for a sensitive act
    page.goto("/admin/users")
    row = page.get_by_test_id("user-web.target")
    # investigator: a role change that needs a fresh code but is not a privileged role grant (whether a grant
    # waits depends on how many administrators earlier tests in this session left)
    row.locator("select[name=role]").select_option("investigator")
    row.locator("select[name=unit]").select_option(label="north")
    row.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=Confirm it is you")
    assert "Changing a role needs a fresh code" in page.content()
    page.fill("#code", "000000")
    page.click("button:has-text('Confirm and continue')")
    page.wait_for_selector(".error-box")
    assert "wrong or already used code" in page.locator(".error-box").inner_text()
    assert site.admin.get("/api/v1/users/web.target").json()["role"] == "auditor"  # nothing changed
    page.fill("#code", AUTHENTICATORS.code(site.server.base_url, "admin"))
    page.click("button:has-text('Confirm and continue')")
    page.wait_for_url("**/admin/users?done=updated")  # the original form was posted again and done
    assert site.admin.get("/api/v1/users/web.target").json()["role"] == "investigator"
    assert not [e for e in page.csp_errors if "Content Security Policy" in e]
    page.context.close()


def test_a_download_asks_for_a_fresh_code_then_downloads(browser: Any, site: Site) -> None:
    site.user("web.auditor", "auditor")[0].close()
    page = page_for(browser, site)
    sign_in(page, site, "web.auditor")
    time.sleep(STEP_UP_SECONDS + 1)
    page.goto("/audit")
    page.click("button:has-text('Download export')")
    page.wait_for_selector("text=Confirm it is you")
    assert "Exporting the audit log needs a fresh code" in page.content()
    page.fill("#code", AUTHENTICATORS.code(site.server.base_url, "web.auditor"))
    with page.expect_download() as download:
        page.click("button:has-text('Confirm and continue')")
    assert download.value.suggested_filename.startswith("facetrail-audit")
    page.context.close()


def test_sessions_pages_list_and_end_sessions(browser: Any, site: Site) -> None:
    client, _ = site.user("web.sessions", "auditor")
    page = page_for(browser, site)
    sign_in(page, site, "web.sessions")
    page.goto("/sessions")
    rows = page.get_by_test_id("sessions").locator("tbody tr")
    assert rows.count() == 2 and "this session" in page.content()
    other = next(s for s in client.get("/api/v1/auth/sessions").json() if s["current"])
    page.get_by_test_id(f"session-{other['id']}").get_by_role("button", name="End").click()
    page.wait_for_url("**/sessions")
    assert "ended by its user" in page.get_by_test_id(f"session-{other['id']}").inner_text()
    assert client.get("/api/v1/auth/me").status_code == 401
    client.close()
    page.context.close()
