"""The test users' authenticator apps (TOTP), shared by the server, identity, adversarial and browser tests."""

from __future__ import annotations

import time

import pyotp


class Authenticators:
    """The test users' authenticator apps: the TOTP secret each enrolment returned, and the newest 30 s step
    already used (the server accepts each step once, and one step either side of its clock)."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], str] = {}
        self.last_step: dict[tuple[str, str], int] = {}

    def code(self, server_url: str, username: str) -> str:
        """A code the server has not seen yet: the earliest unused step of (now - 30 s, now, now + 30 s), waiting
        for the clock when all three are used."""
        key = (server_url, username)
        totp = pyotp.TOTP(self.secrets[key])
        while True:
            current = int(time.time() // 30)
            for step in (current - 1, current, current + 1):
                if step > self.last_step.get(key, -1) and (step + 2) * 30 - time.time() > 2:  # accepted until then
                    self.last_step[key] = step
                    return totp.at(step * 30)
            time.sleep(max(0.2, (current + 1) * 30 - time.time() + 0.1))
