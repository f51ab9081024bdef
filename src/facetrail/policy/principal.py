"""Who is acting, and what their role allows: the object every permission check and audit record starts from.

It sits with the roles (not with the accounts that create it) so that the audit log, the gallery and every
other package can take a Principal without depending on how users, sessions and tokens are stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facetrail.errors import PermissionDeniedError
from facetrail.policy.roles import Permission, TokenScope, allowed, scope_allows


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
    scope: str = TokenScope.FULL.value  # an API token's scope; sessions and the CLI act in full
    session_id: int | None = None  # the browser session this principal came from, if any
    credential_id: int | None = None  # the WebSession or ApiToken row (second factor, step-up, session lists)

    @property
    def actor(self) -> str:
        return f"user:{self.username}" if self.via != "cli" else self.username

    def can(self, permission: Permission) -> bool:
        return allowed(self.role, permission) and scope_allows(self.scope, permission)

    def refusal_reason(self, permission: Permission) -> str:
        if not allowed(self.role, permission):
            return f"role '{self.role}' may not {permission.value}"
        return f"this API token's scope '{self.scope}' does not allow {permission.value}"

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise PermissionDeniedError(self.refusal_reason(permission), permission=permission.value)

    def audit_context(self) -> dict[str, Any]:
        context = {"via": self.via, "ip": self.ip, "user_agent": self.user_agent[:300], "role": self.role}
        if self.via == "token":
            context["scope"] = self.scope
        return context
