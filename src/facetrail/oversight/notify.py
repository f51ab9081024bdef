"""Oversight e-mail: alerts and audit-sample draws, sent over SMTP (settings oversight.smtp_*).

An e-mail is queued (oversight_notifications) in the same transaction as the alert or draw it announces, so
none is lost and none is sent for something rolled back. Sending happens later, off any request: a background
thread kicked after detection, the server's schedule, or ``facetrail oversight notify``. A failed send is
retried after notify_retry_seconds, doubling each time, until notify_max_attempts (then 'failed', shown in
the web UI). Each e-mail is claimed before it is sent, so two servers do not both send it. The SMTP password
is never logged or stored in the queue.

Recipients: oversight.notify_recipients get everything; oversight.unit_recipients[unit] get their unit's
alerts. With no recipient configured nothing is queued (the Oversight page still shows every alert).
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import ssl
import threading
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from facetrail.context import AppContext
from facetrail.oversight.models import Alert, Notification, SampleDraw
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import utcnow

log = logging.getLogger(__name__)
PENDING, SENT, FAILED = "pending", "sent", "failed"
CLAIM_SECONDS = 300  # a claimed e-mail whose sender died is retried after this


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _link(ctx: AppContext) -> str:
    base = ctx.settings.oversight.public_url.rstrip("/")
    return f"{base}/oversight" if base else "the Oversight page of FaceTrail"


def _queue(
    session: Session, kind: str, ref: str, unit_id: int | None, recipients: list[str], subject: str, body: str
) -> None:
    for address in dict.fromkeys(a.strip() for a in recipients if a.strip()):
        session.add(
            Notification(
                kind=kind,
                ref=ref,
                unit_id=unit_id,
                recipient=address[:300],
                subject=subject[:300],
                body=body,
                status=PENDING,
                attempts=0,
                last_error="",
                next_attempt_at=utcnow(),
                created_at=utcnow(),
            )
        )


def queue_alert(ctx: AppContext, session: Session, alert: Alert, username: str, unit: str | None) -> None:
    cfg = ctx.settings.oversight
    recipients = [*cfg.notify_recipients, *cfg.unit_recipients.get(unit or "", [])]
    figures = "\n".join(f"  {k}: {v}" for k, v in sorted(alert.figures.items()))
    body = (
        f"FaceTrail oversight alert {alert.id}: rule '{alert.rule}' for user {username} (unit {unit or '-'}).\n\n"
        f"Figures:\n{figures}\n\nReview and acknowledge it on {_link(ctx)}.\n"
        f"Audit record {alert.audit_seq} ('oversight.alert') holds the same figures.\n"
    )
    _queue(
        session,
        "alert",
        f"alert:{alert.id}",
        alert.unit_id,
        recipients,
        f"[FaceTrail] oversight alert: {alert.rule}",
        body,
    )


def queue_draw(ctx: AppContext, session: Session, draw: SampleDraw, search_ids: list[int]) -> None:
    body = (
        f"FaceTrail audit sample for {draw.period}: {len(search_ids)} of {draw.population} searches are due for "
        f"an auditor's check (seed: audit record {draw.seed_seq}).\n\nSearches: "
        + ", ".join(str(i) for i in search_ids)
        + f"\n\nRecord the findings on {_link(ctx)}.\n"
    )
    _queue(
        session,
        "sample",
        f"draw:{draw.id}",
        None,
        list(ctx.settings.oversight.notify_recipients),
        f"[FaceTrail] audit sample {draw.period}: {len(search_ids)} searches to check",
        body,
    )


# ------------------------------------------------------------------ sending


def _send(ctx: AppContext, note: Notification) -> None:
    cfg = ctx.settings.oversight
    message = EmailMessage()
    message["From"] = cfg.smtp_sender
    message["To"] = note.recipient
    message["Subject"] = note.subject
    message.set_content(note.body)
    timeout = cfg.smtp_timeout_seconds
    if cfg.smtp_tls == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            cfg.smtp_host, cfg.smtp_port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=timeout)
    with client:
        if cfg.smtp_tls == "starttls":
            client.starttls(context=ssl.create_default_context())
        if cfg.smtp_username:
            client.login(cfg.smtp_username, cfg.smtp_password)
        client.send_message(message)


def _claim(ctx: AppContext, note_id: int, now: dt.datetime) -> bool:
    """Push the next attempt out first: another sender's claim of the same e-mail then matches nothing."""
    with ctx.db.transaction() as s:
        result = s.execute(
            update(Notification)
            .where(Notification.id == note_id, Notification.status == PENDING, Notification.next_attempt_at <= now)
            .values(next_attempt_at=now + dt.timedelta(seconds=CLAIM_SECONDS))
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def flush(ctx: AppContext, now: dt.datetime | None = None) -> dict[str, int]:
    """Send every due e-mail once; returns counts. Never raises for a failed send (it is retried later)."""
    cfg = ctx.settings.oversight
    counts = {"sent": 0, "retry": 0, "failed": 0}
    if not cfg.smtp_host:
        return counts
    moment = now or utcnow()
    with ctx.db.read() as s:
        due = list(
            s.execute(
                select(Notification.id)
                .where(Notification.status == PENDING, Notification.next_attempt_at <= moment)
                .order_by(Notification.id)
                .limit(500)
            ).scalars()
        )
    for note_id in due:
        if not _claim(ctx, note_id, moment):
            continue
        with ctx.db.read() as s:
            note = s.get(Notification, note_id)
            assert note is not None
            s.expunge(note)
        error = ""
        try:
            _send(ctx, note)
        except (OSError, smtplib.SMTPException) as exc:
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
        with ctx.db.transaction() as s:
            row = s.get(Notification, note_id)
            assert row is not None
            row.attempts += 1
            if not error:
                row.status, row.sent_at, row.last_error = SENT, utcnow(), ""
                counts["sent"] += 1
            elif row.attempts >= cfg.notify_max_attempts:
                row.status, row.last_error = FAILED, error
                counts["failed"] += 1
            else:
                row.last_error = error
                row.next_attempt_at = moment + dt.timedelta(seconds=cfg.notify_retry_seconds * 2 ** (row.attempts - 1))
                counts["retry"] += 1
        if error:
            log.warning("oversight e-mail %s to %s not sent: %s", note_id, note.recipient, error)
    return counts


_kick_lock = threading.Lock()
_running: set[str] = set()


def kick(ctx: AppContext) -> None:
    """Send due e-mails on a background thread (at most one per database per process); returns at once."""
    if not ctx.settings.oversight.smtp_host:
        return
    with _kick_lock:
        if ctx.db.url in _running:
            return
        _running.add(ctx.db.url)

    def run() -> None:
        try:
            flush(ctx)
        except Exception:
            log.exception("oversight e-mail sending failed")
        finally:
            with _kick_lock:
                _running.discard(ctx.db.url)

    threading.Thread(target=run, name="facetrail-oversight-mail", daemon=True).start()


def notification_dict(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "kind": n.kind,
        "ref": n.ref,
        "recipient": n.recipient,
        "subject": n.subject,
        "status": n.status,
        "attempts": n.attempts,
        "last_error": n.last_error,
        "created_at": _aware(n.created_at),
        "sent_at": _aware(n.sent_at) if n.sent_at else None,
    }


def list_notifications(ctx: AppContext, who: Principal, limit: int = 100) -> list[dict[str, Any]]:
    """E-mails in the caller's scope: auditors all; a unit's reviewers those about their unit's alerts."""
    query = select(Notification)
    if who.can(Permission.OVERSIGHT_VIEW_ALL):
        pass
    elif who.can(Permission.OVERSIGHT_VIEW_UNIT) and who.unit_id is not None:
        query = query.where(Notification.unit_id == who.unit_id)
    else:
        return []
    with ctx.db.read() as s:
        return [notification_dict(n) for n in s.execute(query.order_by(Notification.id.desc()).limit(limit)).scalars()]
