"""Passkeys in a real browser: Debian's Chromium under Playwright with the DevTools virtual authenticator
(WebAuthn.enable + WebAuthn.addVirtualAuthenticator, user verification on), against the identity test server.
Two passkeys are registered (named), one revoked; the other signs in without a password and serves as the second
factor after a password; a revoked one and an answer made for another origin are refused."""

from __future__ import annotations

import base64
import json
from contextlib import closing
from typing import Any

import httpx
from live_server import AUTHENTICATORS, PASSWORD
from test_web_mfa import page_for, sign_in

from conftest import Site

AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


def passkey_page(browser: Any, site: Site) -> Any:
    """WebAuthn needs a domain as relying-party id, never an IP address: the browser uses "localhost"."""
    return page_for(browser, site, host="localhost")


def _authenticator(page: Any) -> tuple[Any, str]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    return cdp, str(added["authenticatorId"])


def _add_passkey(page: Any, site: Site, username: str, name: str) -> None:
    """Adding a passkey is a step-up act (the test server's window is seconds): a fresh TOTP code first."""
    page.goto("/passkeys")
    csrf = page.get_attribute("[data-passkey=register]", "data-csrf")
    status = page.evaluate(
        """([csrf, code]) => fetch('/api/v1/auth/mfa/verify', {method: 'POST', headers: {'content-type':
             'application/json', 'x-csrf-token': csrf}, body: JSON.stringify({code})}).then(r => r.status)""",
        [csrf, AUTHENTICATORS.code(site.server.base_url, username)],
    )
    assert status == 200
    page.fill("#passkey-name", name)
    page.click("button:has-text('Add a passkey')")
    page.wait_for_url("**/passkeys?done=added")
    assert page.get_by_test_id(f"passkey-{name}").count() == 1


def _passwordless(page: Any) -> None:
    page.goto("/login")
    page.click("button:has-text('Sign in with a passkey')")


def test_passkeys_register_revoke_sign_in_and_second_factor(browser: Any, site: Site) -> None:
    client, _ = site.user("pat.passkey", "auditor")
    client.close()
    page = passkey_page(browser, site)
    cdp, laptop = _authenticator(page)
    sign_in(page, site, "pat.passkey")
    _add_passkey(page, site, "pat.passkey", "laptop")
    laptop_credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": laptop})["credentials"]
    assert len(laptop_credentials) == 1 and laptop_credentials[0]["isResidentCredential"]
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": laptop})
    _cdp, key = _authenticator(page)  # a second device: several passkeys per user
    _add_passkey(page, site, "pat.passkey", "security key")
    page.once("dialog", lambda d: d.accept())
    page.get_by_test_id("passkey-security key").get_by_role("button", name="Revoke").click()
    page.wait_for_url("**/passkeys?done=revoked")
    assert "revoked" in page.get_by_test_id("passkey-security key").inner_text()
    assert "revoked" not in page.get_by_test_id("passkey-laptop").inner_text()
    page.context.clear_cookies()

    _passwordless(page)  # the revoked key is refused
    page.wait_for_selector("#passkey-status:not([hidden])")
    assert "unknown or revoked passkey" in page.locator("#passkey-status").inner_text()

    _cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": key})
    cdp2, laptop_again = _authenticator(page)
    cdp2.send("WebAuthn.addCredential", {"authenticatorId": laptop_again, "credential": laptop_credentials[0]})
    _passwordless(page)  # no password: the laptop's passkey with user verification is both factors
    page.wait_for_url(lambda url: "/login" not in url)
    me = page.evaluate("() => fetch('/api/v1/auth/me').then(r => r.json())")
    assert me["username"] == "pat.passkey"
    assert page.evaluate("() => fetch('/api/v1/audit/records?limit=1').then(r => r.status)") == 200

    page.context.clear_cookies()  # a password, then the passkey as the second factor
    page.goto("/login")
    page.fill("#username", "pat.passkey")
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/mfa?**")
    page.click("button:has-text('Use a passkey instead')")
    page.wait_for_url(lambda url: "/mfa" not in url)
    assert page.evaluate("() => fetch('/api/v1/audit/records?limit=1').then(r => r.status)") == 200
    records = page.evaluate("() => fetch('/api/v1/audit/records?action=auth.passkey&limit=50').then(r => r.json())")
    outcomes = [r["outcome"] for r in records["records"] if r["actor"] in ("user:pat.passkey", "anonymous")]
    assert outcomes.count("ok") >= 2 and "refused" in outcomes
    page.context.close()


def test_an_assertion_made_for_another_origin_is_refused(browser: Any, site: Site) -> None:
    client, _ = site.user("oscar.origin", "auditor")
    client.close()
    page = passkey_page(browser, site)
    _authenticator(page)
    sign_in(page, site, "oscar.origin")
    _add_passkey(page, site, "oscar.origin", "laptop")
    page.context.clear_cookies()
    page.goto("/login")
    # The browser answers a real challenge; the answer is then presented as if it had been made on another site
    # (a phishing page relaying it): its clientDataJSON names that site's origin.
    credential = page.evaluate(
        """async () => {
          const r = await fetch('/api/v1/auth/passkeys/login/options', {method: 'POST',
            headers: {'content-type': 'application/json'}, body: '{}'});
          const o = await r.json();
          const dec = s => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')
            + '==='.slice((s.length + 3) % 4)), c => c.charCodeAt(0)).buffer;
          const enc = b => btoa(String.fromCharCode(...new Uint8Array(b)))
            .replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
          o.challenge = dec(o.challenge);
          const c = await navigator.credentials.get({publicKey: o});
          return {id: c.id, rawId: enc(c.rawId), type: c.type, clientExtensionResults: {}, response: {
            clientDataJSON: enc(c.response.clientDataJSON), authenticatorData: enc(c.response.authenticatorData),
            signature: enc(c.response.signature), userHandle: enc(c.response.userHandle)}};
        }"""
    )
    raw = credential["response"]["clientDataJSON"]
    client_data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    assert client_data["origin"] == site.server.base_url.replace("127.0.0.1", "localhost")
    client_data["origin"] = "https://facetrail.example.evil"
    forged = base64.urlsafe_b64encode(json.dumps(client_data).encode()).rstrip(b"=").decode()
    wrong_origin = {**credential, "response": {**credential["response"], "clientDataJSON": forged}}
    with closing(httpx.Client(base_url=site.server.base_url.replace("127.0.0.1", "localhost"))) as anonymous:
        r = anonymous.post("/api/v1/auth/passkeys/login", json={"credential": wrong_origin})
        assert r.status_code == 401 and r.json()["error"]["code"] == "passkey_refused", r.text
        assert "facetrail_session" not in anonymous.cookies
        r = anonymous.post("/api/v1/auth/passkeys/login", json={"credential": credential})
        assert r.status_code == 401  # the challenge was used by the refused attempt: no second try with it
    page.context.close()
