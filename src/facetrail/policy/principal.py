"""Who is acting, and what their role allows: the object every permission check and audit record starts from.

It sits with the roles (not with the accounts that create it) so that the audit log, the gallery and every
other package can take a Principal without depending on how users, sessions and tokens are stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facetrail.errors import PermissionDeniedError
from facetrail.policy.roles import Permission, allowed


@dataclass(frozen=True)
class Principal:
    """Who is acting: resolved from a session cookie, an API token, or the local CLI."""

    user_id: int | None
    username: str
    role: str
    unit_id: int | None
    unit_name: str | None
    must_change_password: bool = False
    via: str = "session"  # session | token | cli
    ip: str = ""
    user_agent: str = ""

    @property
    def actor(self) -> str:
        return f"user:{self.username}" if self.via != "cli" else self.username

    def can(self, permission: Permission) -> bool:
        return allowed(self.role, permission)

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise PermissionDeniedError(f"role '{self.role}' may not {permission.value}", permission=permission.value)

    def audit_context(self) -> dict[str, Any]:
        return {"via": self.via, "ip": self.ip, "user_agent": self.user_agent[:300], "role": self.role}
