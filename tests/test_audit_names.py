"""Audit actions and outcomes are names with one home (facetrail.audit.actions) and one description
(docs/audit.md): every action the code writes is an AuditAction member, and every member is documented."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from facetrail.audit.actions import AuditAction, Outcome

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "facetrail"
# Calls that take an action, and the position of the action among their positional arguments (None: keyword).
ACTION_ARGS = {"append_audit": None, "refuse": 2, "audit_refusal": 2, "deny": 2, "load_in_scope": 3}


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    if isinstance(node, ast.JoinedStr):
        return ["<an f-string: name the action with AuditAction>"]
    return []


def written_actions() -> dict[str, list[str]]:
    """Every action given as text in the source: ``action=...``, the action argument of the refusal helpers,
    and constants named ``action`` / ``*_ACTION``."""
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            values: list[ast.AST] = []
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                values += [kw.value for kw in node.keywords if kw.arg == "action"]
                position = ACTION_ARGS.get(name)
                if position is not None and len(node.args) > position:
                    values.append(node.args[position])
            elif isinstance(node, ast.Assign):
                named = [t.id for t in node.targets if isinstance(t, ast.Name)]
                if any(n == "action" or n.endswith("_ACTION") for n in named):
                    values.append(node.value)
            for value in values:
                for text in _strings(value):
                    if text.startswith("/"):
                        continue  # a form's action (a URL), not an audit action
                    found.setdefault(text, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")  # type: ignore[attr-defined]
    return found


def test_the_scan_finds_actions() -> None:
    found = written_actions()
    assert {"search", "review.decide", "token.revoke", "auth.login"} <= set(found)


def test_every_action_written_is_an_audit_action() -> None:
    members = {a.value for a in AuditAction}
    unknown = {text: where for text, where in written_actions().items() if text not in members}
    assert not unknown, f"add these to facetrail.audit.actions.AuditAction and docs/audit.md: {unknown}"


def test_every_action_and_outcome_is_documented() -> None:
    documented = set(re.findall(r"`([a-z_.]+)`", (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")))
    missing = sorted({a.value for a in AuditAction} - documented)
    assert not missing, f"actions not described in docs/audit.md: {missing}"
    assert not {o.value for o in Outcome} - documented
