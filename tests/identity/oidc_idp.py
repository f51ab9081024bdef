"""The real OpenID Provider for the SSO tests: Node's certified ``oidc-provider`` (tests/identity/idp, installed
with ``npm ci --prefix tests/identity/idp``; .ci/run does it) on a free loopback port, and a browser-like driver
of its login and consent pages over httpx."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

IDP_DIR = Path(__file__).parent / "idp"
CLIENT_ID = "facetrail"
CLIENT_SECRET = "facetrail-test-client-secret-0123456789"


@dataclass
class Idp:
    issuer: str
    accounts_file: Path
    process: subprocess.Popen[bytes]
    log: Path

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        self.accounts_file.write_text(json.dumps(accounts))


def start_idp(folder: Path, port: int, redirect_uri: str, accounts: dict[str, dict[str, Any]], **env: str) -> Idp:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("the SSO tests need node and npm (Debian: apt-get install nodejs npm)")
    if not (IDP_DIR / "node_modules" / "oidc-provider").exists():  # a fresh clone: what .ci/run does
        subprocess.run([npm, "ci", "--prefix", str(IDP_DIR), "--no-audit", "--no-fund"], check=True, timeout=600)
    folder.mkdir(parents=True, exist_ok=True)
    accounts_file = folder / "accounts.json"
    accounts_file.write_text(json.dumps(accounts))
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [redirect_uri],
        "post_logout_redirect_uris": [redirect_uri.rsplit("/sso/", 1)[0] + "/login"],
    }
    log = folder / "idp.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [node, str(IDP_DIR / "server.js")],
            cwd=IDP_DIR,
            env={
                "PATH": "/usr/bin:/bin",
                "IDP_PORT": str(port),
                "IDP_CLIENT": json.dumps(client),
                "IDP_ACCOUNTS_FILE": str(accounts_file),
                **env,
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    issuer = f"http://127.0.0.1:{port}"
    for _ in range(150):
        if process.poll() is not None:
            raise RuntimeError(f"oidc-provider exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                return Idp(issuer, accounts_file, process, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"oidc-provider did not start:\n{log.read_text()}")


def stop_idp(idp: Idp) -> None:
    idp.process.terminate()
    try:
        idp.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        idp.process.kill()


def _form(html: str, base: str) -> tuple[str, dict[str, str]]:
    action = re.search(r'<form[^>]*action="([^"]+)"', html)
    assert action, html[:2000]
    fields = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', html))
    return urljoin(base, unescape(action.group(1))), fields


def sign_in_at_idp(client: httpx.Client, authorize_url: str, account: str, stop_at: str) -> httpx.Response:
    """Follow the provider's redirects, fill its login form (account id) and consent form, until a redirect
    points at ``stop_at`` (the relying party's callback). Returns that redirect, not followed."""
    response = client.get(authorize_url)
    for _ in range(20):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(stop_at):
                return response
            response = client.get(location)
            continue
        assert response.status_code == 200, response.text[:2000]
        action, fields = _form(response.text, str(response.url))
        if fields.get("prompt") == "login":
            fields.update({"login": account, "password": "any"})
        response = client.post(action, data=fields)
    raise AssertionError("the provider never redirected back")
