"""The records FaceTrail keeps. Alembic migrations (storage/migrations) create and evolve them.

Embeddings are stored here (the system of record) as little-endian float32 bytes; the vector index is a
derived, rebuildable copy.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[dict[str, Any]]: JSON,
        dt.datetime: DateTime(timezone=True),
    }


class Gallery(Base):
    __tablename__ = "galleries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    legal_basis: Mapped[str] = mapped_column(Text)
    source_system: Mapped[str] = mapped_column(String(200))
    retention_rule: Mapped[str] = mapped_column(Text, default="")
    model_id: Mapped[str] = mapped_column(String(200))  # fixed for the gallery's life
    keep_images: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    # Bumped by database triggers on every insert, delete or re-embedding of one of its faces (0006), so a
    # loaded index can tell cheaply whether it still mirrors the database. Never set by the application.
    faces_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    subjects: Mapped[list[Subject]] = relationship(back_populates="gallery", passive_deletes=True)


class Subject(Base):
    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("gallery_id", "external_id", name="uq_subject_external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(200))  # e.g. a booking number
    name: Mapped[str | None] = mapped_column(String(300))
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    gallery: Mapped[Gallery] = relationship(back_populates="subjects")
    faces: Mapped[list[Face]] = relationship(back_populates="subject", passive_deletes=True)


class Face(Base):
    __tablename__ = "faces"
    __table_args__ = (UniqueConstraint("gallery_id", "image_sha256", name="uq_face_image_in_gallery"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    image_sha256: Mapped[str] = mapped_column(String(64))
    image_stored: Mapped[bool] = mapped_column(default=False)  # original kept in the content-addressed store
    source_system: Mapped[str] = mapped_column(String(200))
    source_record_id: Mapped[str | None] = mapped_column(String(200))
    capture_date: Mapped[dt.date | None] = mapped_column(Date)
    enrolled_by: Mapped[str] = mapped_column(String(200))
    enrolled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    box: Mapped[dict[str, Any]] = mapped_column(JSON)
    quality: Mapped[dict[str, Any]] = mapped_column(JSON)
    model_id: Mapped[str] = mapped_column(String(200))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian, L2-normalised
    thumbnail: Mapped[bytes] = mapped_column(LargeBinary)  # aligned face, JPEG

    subject: Mapped[Subject] = relationship(back_populates="faces")


class SearchRecord(Base):
    """One 1:N search. The probe is never enrolled; its hash is always kept, the image only by policy."""

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    gallery_id: Mapped[int | None] = mapped_column(ForeignKey("galleries.id", ondelete="SET NULL"))
    gallery_name: Mapped[str] = mapped_column(String(200))
    case_number: Mapped[str] = mapped_column(String(100), index=True)
    offense: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(String(100), default="")  # server searches cite one; CLI may not
    probe_sha256: Mapped[str] = mapped_column(String(64))
    probe_stored: Mapped[bool] = mapped_column(default=False)
    # 0017: what the searcher declared the probe to be: original | edited | composite_sketch
    probe_declaration: Mapped[str] = mapped_column(String(20), default="original", server_default="original")
    face_index: Mapped[int] = mapped_column(Integer)
    faces_in_probe: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(200))
    candidates_requested: Mapped[int] = mapped_column(Integer)
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # rank, face_id, subject, score, fmr
    policy_version: Mapped[int | None] = mapped_column(Integer)  # in force when it ran (governance, 0005)
    # 0014: 'search' (1:N) or 'verify_subject' (a 1:1 check of a named subject, gated and reviewed the same way)
    kind: Mapped[str] = mapped_column(String(20), default="search", server_default="search")
    subject_requested: Mapped[str | None] = mapped_column(String(200))  # the subject a verify_subject named
    # 0014: random per search; its audit record holds SHA-256(salt ‖ canonical candidate list), never the list
    candidates_salt: Mapped[str | None] = mapped_column(String(64))


class AuditRecord(Base):
    """Append-only, hash-chained. Database triggers refuse UPDATE and DELETE on this table."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    ts: Mapped[str] = mapped_column(String(40))  # ISO-8601 UTC, exactly as hashed
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(40))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON, exactly as hashed
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """One row: the chain's head. Appenders lock it (SELECT … FOR UPDATE) so the chain stays gapless."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


Index("ix_faces_subject_gallery", Face.gallery_id, Face.subject_id)


# --- Accounts (server issue): units, users, API tokens, browser sessions, candidate reviews ---------------


class Unit(Base):
    """An agency or unit. Investigators never see another unit's cases or results."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    agency: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(40))  # investigator | reviewer | auditor | administrator
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    password_hash: Mapped[str] = mapped_column(String(300))  # argon2id
    must_change_password: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column()
    disabled: Mapped[bool] = mapped_column(default=False)
    external_subject: Mapped[str | None] = mapped_column(String(300), unique=True)  # OIDC 'sub', when SSO is used
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    password_changed_at: Mapped[dt.datetime | None] = mapped_column()

    unit: Mapped[Unit | None] = relationship()


class ApiToken(Base):
    """A machine client's token. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a token in lists
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
    scope: Mapped[str] = mapped_column(String(20), default="full", server_default="full")  # read | search | full
    # The last second factor presented with this token (step-up, identity issue, 0013).
    second_factor_at: Mapped[dt.datetime | None] = mapped_column()

    user: Mapped[User] = relationship()


class WebSession(Base):
    """A browser session. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    # Identity issue (0013): when the second factor was last presented in this session (None: not yet), the
    # last request (idle timeout), how it was opened, and from where.
    second_factor_at: Mapped[dt.datetime | None] = mapped_column()
    last_seen_at: Mapped[dt.datetime | None] = mapped_column()
    method: Mapped[str] = mapped_column(String(40), default="password", server_default="password")
    ip: Mapped[str] = mapped_column(String(100), default="", server_default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="", server_default="")
    end_reason: Mapped[str | None] = mapped_column(String(100))

    user: Mapped[User] = relationship()


class TotpEnrolment(Base):
    """A user's TOTP secret. Unconfirmed until the first code is entered; ``last_step`` refuses replays."""

    __tablename__ = "mfa_totp"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(64))  # base32
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column()
    last_step: Mapped[int | None] = mapped_column(BigInteger)  # the newest 30 s step whose code was accepted


class RecoveryCode(Base):
    """One-time recovery codes: only a SHA-256 of each is stored."""

    __tablename__ = "mfa_recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column()


class PasskeyCredential(Base):
    """A WebAuthn credential (passkey) of a user: named, revocable; the private key never leaves the device."""

    __tablename__ = "webauthn_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)  # base64url
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()


class WebAuthnChallenge(Base):
    """A WebAuthn challenge handed to a browser: single use, short-lived, bound to a user (or none: passwordless)."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    challenge: Mapped[str] = mapped_column(String(200), unique=True)  # base64url
    purpose: Mapped[str] = mapped_column(String(20))  # register | second_factor | sign_in
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column()


class CandidateReview(Base):
    """A reviewer's decision on one candidate of a search."""

    __tablename__ = "candidate_reviews"
    __table_args__ = (UniqueConstraint("search_id", "face_id", "reviewer_id", name="uq_review_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True)
    face_id: Mapped[int] = mapped_column(Integer)  # the candidate's face id as listed in the search
    rank: Mapped[int] = mapped_column(Integer)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    decision: Mapped[str] = mapped_column(String(40))  # possible_lead | not_a_match | inconclusive
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
