"""Single sign-on against a real OpenID Provider (Node's certified ``oidc-provider``, tests/identity/idp) and a
real FaceTrail server configured for "SSO + MFA for everyone": local passwords off except the break-glass
administrator, groups mapped to roles and units. The browser is played by httpx (cookies, redirects, the
provider's login and consent forms); ID-token validation is also checked in-process against the provider's
real keys, with tokens the provider really issued, tampered with or expired."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp
import pytest
from authlib.jose import JsonWebKey, jwt
from live_server import ADMIN_FIRST_PASSWORD, PASSWORD, LiveServer, enrol_totp, free_port, login, start_server
from live_server import stop_server as stop_facetrail
from oidc_idp import CLIENT_ID, CLIENT_SECRET, Idp, sign_in_at_idp, start_idp, stop_idp

from facetrail.accounts import oidc
from facetrail.config import Settings
from facetrail.context import AppContext, open_context

ID_TOKEN_TTL = 4
MAPPINGS = [
    {"claim": "groups", "value": "fr-investigators-north", "role": "investigator", "unit": "north"},
    {"claim": "groups", "value": "fr-auditors", "role": "auditor"},
]
ACCOUNTS = {
    "ivy": {"preferred_username": "ivy", "name": "Ivy Investigator", "groups": ["staff", "fr-investigators-north"]},
    "audrey": {"preferred_username": "audrey", "name": "Audrey Auditor", "groups": ["fr-auditors"]},
    "mallory": {"preferred_username": "mallory", "name": "Mallory", "groups": ["cafeteria"]},
    "admin": {"preferred_username": "admin", "groups": ["fr-auditors"]},
}


@dataclass
class SsoSite:
    server: LiveServer
    idp: Idp
    admin: httpx.Client

    @property
    def callback(self) -> str:
        return f"{self.server.base_url}/sso/callback"

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.server.data_dir / "facetrail.db")


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SsoSite]:
    root = tmp_path_factory.mktemp("sso")
    idp_port = free_port()
    server = start_server(
        root / "data",
        {
            "FACETRAIL_OIDC__ENABLED": "true",
            "FACETRAIL_OIDC__ISSUER": f"http://127.0.0.1:{idp_port}",
            "FACETRAIL_OIDC__CLIENT_ID": CLIENT_ID,
            "FACETRAIL_OIDC__CLIENT_SECRET": CLIENT_SECRET,
            "FACETRAIL_OIDC__SCOPES": json.dumps(["openid", "profile", "groups"]),
            "FACETRAIL_OIDC__MAPPINGS": json.dumps(MAPPINGS),
            "FACETRAIL_OIDC__LOCAL_PASSWORDS": "false",
            "FACETRAIL_OIDC__BREAK_GLASS_USERS": json.dumps(["admin"]),
        },
    )
    idp = start_idp(
        root / "idp",
        idp_port,
        f"{server.base_url}/sso/callback",
        ACCOUNTS,
        IDP_ID_TOKEN_TTL=str(ID_TOKEN_TTL),
    )
    admin, _ = login(server, "admin", ADMIN_FIRST_PASSWORD)  # the break-glass administrator keeps a password
    r = admin.post("/api/v1/auth/password", json={"current_password": ADMIN_FIRST_PASSWORD, "new_password": PASSWORD})
    assert r.status_code == 200, r.text
    enrol_totp(admin, server, "admin")
    assert admin.post("/api/v1/units", json={"name": "north"}).status_code == 201
    try:
        yield SsoSite(server, idp, admin)
    finally:
        admin.close()
        stop_idp(idp)
        stop_facetrail(server)


def _browser(site: SsoSite) -> httpx.Client:
    return httpx.Client(base_url=site.server.base_url, timeout=30, follow_redirects=False)


def _to_callback(site: SsoSite, browser: httpx.Client, account: str) -> str:
    """From FaceTrail's SSO button through the provider's pages: the callback URL the provider redirects to."""
    r = browser.get("/sso/login")
    assert r.status_code == 303 and r.headers["location"].startswith(f"{site.idp.issuer}/auth?"), r.text
    query = r.headers["location"]
    assert "code_challenge_method=S256" in query and "nonce=" in query and "state=" in query
    back = sign_in_at_idp(browser, r.headers["location"], account, site.callback)
    return str(back.headers["location"])


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:2000]
    return found.group(1)


def _sso_sign_in(site: SsoSite, account: str) -> tuple[httpx.Client, httpx.Response]:
    browser = _browser(site)
    callback = _to_callback(site, browser, account)
    return browser, browser.get(callback)


def _enrol_in_pages(site: SsoSite, browser: httpx.Client) -> None:
    page = browser.get("/mfa/enrol").text
    secret = re.search(r'data-testid="mfa-secret" id="mfa-secret">([A-Z2-7]+)<', page)
    assert secret, page[:2000]
    r = browser.post("/mfa/enrol", data={"csrf_token": _csrf(page), "code": pyotp.TOTP(secret.group(1)).now()})
    assert r.status_code == 200 and "Your recovery codes" in r.text, r.text[:2000]


def test_sso_sign_in_maps_groups_to_role_and_unit_then_asks_for_the_second_factor(sso: SsoSite) -> None:
    browser, r = _sso_sign_in(sso, "ivy")
    with closing(browser):
        assert r.status_code == 303 and r.headers["location"] == "/mfa/enrol", r.text[:500]  # MFA for SSO users too
        assert browser.get("/api/v1/galleries").json()["error"]["code"] == "mfa_enrolment_required"
        _enrol_in_pages(sso, browser)
        me = browser.get("/api/v1/auth/me").json()
        assert (me["username"], me["role"], me["unit"]) == ("ivy", "investigator", "north")
        assert browser.get("/api/v1/galleries").status_code == 200
        mine = browser.get("/api/v1/auth/sessions").json()
        assert mine[0]["method"] == "oidc" and mine[0]["second_factor"] is True
    with closing(sso.db()) as db:
        row = db.execute(
            "SELECT external_subject, password_hash, created_by FROM users WHERE username='ivy'"
        ).fetchone()
    assert row == ("ivy", oidc.UNUSABLE_PASSWORD, "sso")
    with sso.server.client() as anonymous:  # no password sign-in for an SSO account
        r = anonymous.post("/api/v1/auth/login", json={"username": "ivy", "password": oidc.UNUSABLE_PASSWORD})
        assert r.status_code == 401


def test_a_second_mapping_gives_another_role(sso: SsoSite) -> None:
    browser, r = _sso_sign_in(sso, "audrey")
    with closing(browser):
        assert r.headers["location"] == "/mfa/enrol"
        _enrol_in_pages(sso, browser)
        me = browser.get("/api/v1/auth/me").json()
        assert (me["role"], me["unit"]) == ("auditor", None)
        logins = browser.get("/api/v1/audit/records", params={"action": "auth.sso_login", "limit": 100}).json()
        ok = [x for x in logins["records"] if x["outcome"] == "ok" and x["actor"] == "user:audrey"]
        assert ok and ok[0]["details"]["request"]["ip"] == "127.0.0.1" and ok[0]["details"]["subject"] == "audrey"


def test_a_user_without_a_mapping_is_refused_and_not_created(sso: SsoSite) -> None:
    browser, r = _sso_sign_in(sso, "mallory")
    with closing(browser):
        assert r.status_code == 401 and "grants no access" in r.text
        assert "facetrail_session" not in browser.cookies
    with closing(sso.db()) as db:
        assert db.execute("SELECT count(*) FROM users WHERE username='mallory'").fetchone() == (0,)


def test_a_user_whose_mapping_disappears_loses_access_at_next_sign_in(sso: SsoSite) -> None:
    first, r = _sso_sign_in(sso, "ivy")
    with closing(first):
        assert r.headers["location"].startswith("/mfa?")  # enrolled already: the code, not enrolment
        page = first.get(r.headers["location"]).text
        with closing(sso.db()) as db:
            secret = db.execute(
                "SELECT secret FROM mfa_totp JOIN users ON users.id = mfa_totp.user_id WHERE username='ivy'"
            ).fetchone()[0]
        code = pyotp.TOTP(secret).at(time.time() + 30)  # the next step: the enrolment used the current one
        r = first.post("/mfa", data={"csrf_token": _csrf(page), "code": code, "next": "/"})
        assert r.status_code == 303, r.text[:1000]
        assert first.get("/api/v1/auth/me").status_code == 200
        sso.idp.set_accounts({**ACCOUNTS, "ivy": {**ACCOUNTS["ivy"], "groups": ["staff"]}})
        try:
            second, r = _sso_sign_in(sso, "ivy")
            with closing(second):
                assert r.status_code == 401 and "grants no access" in r.text
            assert first.get("/api/v1/auth/me").status_code == 401  # the open session ended with the mapping
        finally:
            sso.idp.set_accounts(ACCOUNTS)


def test_a_wrong_state_is_refused(sso: SsoSite) -> None:
    browser = _browser(sso)
    with closing(browser):
        callback = _to_callback(sso, browser, "audrey")
        forged = re.sub(r"state=[^&]+", "state=forged-state-value", callback)
        r = browser.get(forged)
        assert r.status_code == 401 and "state" in r.text
        assert "facetrail_session" not in browser.cookies
        r = browser.get(callback)  # the flow cookie is gone too: the genuine answer cannot be replayed after
        assert r.status_code == 401
    other = _browser(sso)  # an answer started in another browser (login CSRF) is refused
    with closing(other), closing(_browser(sso)) as victim:
        assert victim.get(_to_callback(sso, other, "audrey")).status_code == 401


def test_sign_out_ends_the_sso_session(sso: SsoSite) -> None:
    browser, r = _sso_sign_in(sso, "audrey")
    with closing(browser):
        page = browser.get(r.headers["location"]).text  # the code page
        with closing(sso.db()) as db:
            secret = db.execute(
                "SELECT secret FROM mfa_totp JOIN users ON users.id = mfa_totp.user_id WHERE username='audrey'"
            ).fetchone()[0]
        r = browser.post("/mfa", data={"csrf_token": _csrf(page), "code": pyotp.TOTP(secret).at(time.time() + 30)})
        assert r.status_code == 303
        page = browser.get("/sessions").text
        r = browser.post("/logout", data={"csrf_token": _csrf(page)})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert browser.get("/api/v1/auth/me").status_code == 401


def test_local_passwords_are_off_except_for_break_glass(sso: SsoSite) -> None:
    r = sso.admin.post("/api/v1/users", json={"username": "local.user", "role": "auditor"})
    one_time = r.json()["one_time_password"]
    with sso.server.client() as anonymous:
        assert (
            anonymous.post("/api/v1/auth/login", json={"username": "local.user", "password": one_time}).status_code
            == 401
        )
    login(sso.server, "admin", PASSWORD)[0].close()  # the break-glass administrator still signs in


# --- ID-token validation against the provider's real keys --------------------------------------------------


@pytest.fixture(scope="module")
def validator(sso: SsoSite, tmp_path_factory: pytest.TempPathFactory) -> AppContext:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("validator"),
        oidc={"enabled": True, "issuer": sso.idp.issuer, "client_id": CLIENT_ID, "clock_skew_seconds": 0},
    )
    return open_context(settings)


def _real_id_token(sso: SsoSite, account: str) -> tuple[str, str]:
    """An ID token the provider really issued to FaceTrail's client, and its nonce: the test plays the browser
    and then redeems the code itself (with the PKCE verifier from FaceTrail's flow cookie)."""
    browser = _browser(sso)
    with closing(browser):
        callback = _to_callback(sso, browser, account)
        flow = oidc.Flow.parse(browser.cookies.get("facetrail_sso_flow", path="/sso/") or "")
        assert flow is not None
        code = re.search(r"code=([^&]+)", callback).group(1)  # type: ignore[union-attr]
        meta = httpx.get(f"{sso.idp.issuer}/.well-known/openid-configuration").json()
        r = httpx.post(
            meta["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": sso.callback,
                "code_verifier": flow.verifier,
            },
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        assert r.status_code == 200, r.text
        return str(r.json()["id_token"]), flow.nonce


def _parts(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _payload(token: str) -> dict[str, Any]:
    part = _parts(token)[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def test_forged_wrong_nonce_and_expired_id_tokens_are_refused(sso: SsoSite, validator: AppContext) -> None:
    token, nonce = _real_id_token(sso, "audrey")
    claims = oidc.validate_id_token(validator, token, nonce)  # the genuine token passes
    assert claims["sub"] == "audrey" and claims["groups"] == ["fr-auditors"]

    header, _payload_part, signature = _parts(token)
    elevated = {**_payload(token), "groups": ["fr-investigators-north"]}  # payload changed, signature kept
    with pytest.raises(oidc.SsoTokenError):
        oidc.validate_id_token(validator, f"{header}.{_b64(elevated)}.{signature}", nonce)

    attacker = JsonWebKey.generate_key("RSA", 2048, is_private=True)
    kid = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    forged = jwt.encode({"alg": "RS256", "kid": kid}, elevated, attacker).decode()  # signed with another key
    with pytest.raises(oidc.SsoTokenError):
        oidc.validate_id_token(validator, forged, nonce)
    unsigned = f"{_b64({'alg': 'none'})}.{_b64(elevated)}."
    with pytest.raises(oidc.SsoTokenError):
        oidc.validate_id_token(validator, unsigned, nonce)

    with pytest.raises(oidc.SsoTokenError):
        oidc.validate_id_token(validator, token, "another-sign-in's-nonce")  # a replayed token

    time.sleep(max(0.0, _payload(token)["exp"] - time.time() + 1.5))
    with pytest.raises(oidc.SsoTokenError, match="expired"):
        oidc.validate_id_token(validator, token, nonce)  # genuine, but expired
