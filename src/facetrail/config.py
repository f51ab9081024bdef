"""All settings in one place: defaults < config file (``FACETRAIL_CONFIG``, TOML) < environment (``FACETRAIL_*``).

See docs/configuration.md for every field.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class ImageLimits(BaseModel):
    max_bytes: int = Field(40 * 1024 * 1024, description="Largest accepted image file, in bytes.")
    max_pixels: int = Field(
        50_000_000, description="Largest accepted width×height, checked from the header before decoding."
    )
    decode_max_pixels: int = Field(
        25_000_000,
        description="Images with more pixels are decoded at reduced size (JPEG: 1/2, 1/4 or 1/8 while decoding, "
        "never at full size; other formats: reduced right after decoding).",
    )
    max_concurrent_decodes: int = Field(
        2, ge=1, description="At most this many images are decoded at once in one process (bounds memory)."
    )
    min_side: int = Field(16, description="Smallest accepted width or height, in pixels.")


class DetectionSettings(BaseModel):
    detector: str = Field("yunet", description="'yunet' (default) or 'retinaface'.")
    score_threshold: float = Field(0.6, description="Minimum detector confidence for a face.")
    nms_threshold: float = Field(0.3, description="IoU above which overlapping detections are merged.")
    base_max_side: int = Field(640, description="Long side of the bounded copy used for the first pass.")
    min_eye_distance_px: float = Field(
        20.0, description="Smallest inter-eye distance (original pixels) the detector must still find."
    )
    small_face_eye_px: float = Field(
        10.0, description="Inter-eye distance the detector needs after rescaling; sets the second pass's scale."
    )
    tile_size: int = Field(1280, description="Tile side for the small-face pass on large images.")
    tile_overlap: int = Field(160, description="Overlap between tiles, in pixels of the rescaled image.")
    upright_roll_deg: float = Field(
        8.0,
        ge=0.0,
        description="Re-detect a face whose eye line is tilted more than this many degrees on a copy of it turned "
        "upright, for landmarks that follow the head (0: off; docs/accuracy.md has the measurements).",
    )
    upright_estimator: Literal["retinaface", "yunet"] = Field(
        "retinaface",
        description="What reads the tilt: RetinaFace on a small copy of every face (its landmarks follow a tilted "
        "head: median error 3 degrees on LFW faces turned 30; about 4 ms a face), or YuNet's own landmarks "
        "(free, but they turn about half as much as the head, and less on some faces), times ``upright_gain``.",
    )
    upright_gain: float = Field(
        2.0, description="With the YuNet estimator: turn the copy by this multiple of YuNet's roll."
    )
    small_face_upscale_eye_px: float = Field(
        0.0,
        description="Re-detect a face with fewer pixels than this between the eyes on an enlarged copy of it "
        "(0: off; docs/accuracy.md has the measurements).",
    )


class QualitySettings(BaseModel):
    min_eye_distance_fail: float = Field(12.0, description="Inter-eye px below which a face fails.")
    min_eye_distance_warn: float = Field(
        14.0,
        description="Inter-eye px below which a face is warned: the largest bin edge below which LFW probes lost "
        "accuracy at the operational threshold (faces/calibration/quality-*.json; docs/accuracy.md).",
    )
    min_sharpness_fail: float = Field(15.0, description="Laplacian variance of the aligned crop: fail below.")
    min_sharpness_warn: float = Field(
        40.0,
        description="Laplacian variance of the aligned crop: warn below (measured as for min_eye_distance_warn).",
    )
    min_brightness: float = Field(40.0, description="Mean luminance (0-255) of the crop: warn below.")
    max_brightness: float = Field(215.0, description="Mean luminance (0-255) of the crop: warn above.")
    max_clipped_fraction: float = Field(0.25, description="Fraction of under/over-exposed pixels: warn above.")
    max_yaw_warn: float = Field(30.0, description="Estimated |yaw| in degrees: warn above.")
    max_yaw_fail: float = Field(55.0, description="Estimated |yaw| in degrees: fail above.")
    max_pitch_warn: float = Field(25.0, description="Estimated |pitch| in degrees: warn above.")
    max_roll_warn: float = Field(30.0, description="|roll| in degrees: warn above (alignment corrects roll).")
    min_detection_score_warn: float = Field(0.8, description="Detector confidence: warn below.")


class EmbeddingSettings(BaseModel):
    embedder: str = Field("sface", description="'sface' (default), 'dlib', 'fusion' or 'onnx:/path/to/model.onnx'.")
    flip_augment: bool = Field(
        True, description="Average the embedding of the face and its mirror image (measured: see docs/accuracy.md)."
    )
    onnx_threads: int = Field(1, description="Threads per ONNX session (parallelism comes from processes).")
    batch_faces: int = Field(
        16,
        ge=1,
        description="Most faces per embedder forward pass when several images are analysed together (bulk "
        "enrolment, evaluation); with flip averaging the pass holds twice as many crops.",
    )
    backend: str = Field(
        "openvino",
        description="Runtime for ONNX embedders on the CPU: 'openvino' (default; with bf16 1.6× faster than "
        "OpenCV for SFace here), 'opencv' (OpenCV DNN, fp32) or 'onnxruntime' (fp32). --device cuda always "
        "uses ONNX Runtime.",
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="Arithmetic of the 'openvino' backend: 'auto' (bf16 where the CPU computes bfloat16 natively, "
        "AVX512-BF16 or AMX, else fp32), 'bf16' (refused on other CPUs) or 'fp32'. bf16 vectors are within cosine "
        "0.9987 of fp32 (median 0.99996 on LFW; pair scores move by at most 0.009), so the model id is the same. "
        "The other backends are always fp32.",
    )


class ComputeSettings(BaseModel):
    device: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="Where the detector and embedder run: 'cpu' (default) or 'cuda' (ONNX Runtime's CUDA "
        "execution provider; needs onnxruntime-gpu and an NVIDIA GPU, else every analysis fails with "
        "device_unavailable). Same weights and model id either way. `index rebuild --device cuda` also trains "
        "approximate indexes' coarse quantiser on the GPU (needs faiss with GPU support).",
    )
    cuda_device_id: int = Field(0, ge=0, description="Which GPU, when device is 'cuda'.")


class VerifySettings(BaseModel):
    target_fmr: float = Field(
        1e-3, description="The decision threshold is the calibrated score whose false-match rate is this."
    )


class AccuracySettings(BaseModel):
    differentials_report: str = Field(
        "",
        description="Path of the latest 'facetrail eval identify --groups' result (groups-<model>.json); the "
        "transparency report includes it. Empty: the report says no differentials run is on file.",
    )


class IndexSettings(BaseModel):
    kind: str = Field("exact", description="Vector index per gallery: 'exact' (default) or 'approximate'.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Index parameters, e.g. for 'approximate': nlist, nprobe, rerank, codec, pq_subquantizers,"
        " quantizer ('flat' or 'hnsw'), scan_implem, spill (1 or 2), spill_lambda (see ApproximateIndex).",
    )


class AuthSettings(BaseModel):
    session_hours: float = Field(
        12.0, description="Absolute lifetime: a browser session ends this many hours after sign-in, active or not."
    )
    session_idle_minutes: float = Field(
        30.0, description="Idle timeout: a browser session ends after this many minutes without a request."
    )
    max_failed_logins: int = Field(5, description="Failed logins in a row before the account is locked.")
    lockout_minutes: float = Field(15.0, description="How long a locked account stays locked.")
    ip_failures_per_window: int = Field(20, description="Failed logins from one address before it is throttled.")
    ip_window_seconds: float = Field(300.0, description="The window for the per-address throttle.")
    default_token_days: int = Field(30, description="API token lifetime when none is given.")
    max_token_days: int = Field(90, description="Longest API token lifetime allowed.")
    default_token_scope: str = Field(
        "read", description="Scope of a new API token when none is given: 'read', 'search' or 'full'."
    )
    cookie_secure: bool | None = Field(
        None, description="Secure flag on cookies. Default: set when the request came over HTTPS."
    )
    bootstrap_admin_username: str = Field("admin", description="The administrator created on first start.")


class MfaSettings(BaseModel):
    required_roles: list[str] = Field(
        default_factory=lambda: ["investigator", "reviewer", "auditor", "administrator"],
        description="Roles that must use a second factor (TOTP or a passkey) at every sign-in. Default: all. "
        "An empty list turns MFA off (only for tests of unrelated behaviour; see docs/authentication.md).",
    )
    issuer: str = Field("FaceTrail", description="The issuer name authenticator apps show next to the account.")
    step_up_minutes: float = Field(
        5.0, description="Sensitive acts need a second factor presented at most this many minutes ago (step-up)."
    )
    recovery_codes: int = Field(10, ge=1, le=50, description="One-time recovery codes issued at enrolment.")
    passkey_rp_id: str | None = Field(
        None, description="WebAuthn relying-party id (a domain). Default: the host name the browser used."
    )
    passkey_origin: str | None = Field(
        None, description="The origin passkey answers must come from. Default: the origin of the request."
    )


class OidcRoleMapping(BaseModel):
    claim: str = Field("groups", description="ID-token claim to look at (a string or a list of strings).")
    value: str = Field(description="The value (e.g. a group name or id) that grants this mapping.")
    role: str = Field(description="The FaceTrail role it grants.")
    unit: str | None = Field(None, description="The unit it places the user in (investigators and reviewers).")


class OidcSettings(BaseModel):
    enabled: bool = Field(False, description="Offer sign-in through the agency's OpenID Provider.")
    issuer: str = Field("", description="The provider's issuer URL (its discovery document is ISSUER/.well-known/…).")
    client_id: str = Field("", description="FaceTrail's client id at the provider.")
    client_secret: str = Field("", description="FaceTrail's client secret (confidential client).")
    redirect_uri: str | None = Field(
        None, description="The callback URL registered at the provider. Default: this server's /sso/callback."
    )
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"], description="Scopes asked.")
    username_claim: str = Field("preferred_username", description="Claim that names the FaceTrail username.")
    mappings: list[OidcRoleMapping] = Field(
        default_factory=list,
        description="Claim values → role and unit, first match wins. Users no mapping matches are refused.",
    )
    local_passwords: bool = Field(
        True, description="Allow password sign-in. False: only the break-glass users may sign in with a password."
    )
    break_glass_users: list[str] = Field(
        default_factory=lambda: ["admin"],
        description="Local administrators who keep password (+ second factor) sign-in when local_passwords is off.",
    )
    display_name: str = Field("Agency sign-in", description="The label of the SSO button.")
    clock_skew_seconds: int = Field(
        60, ge=0, le=300, description="Leeway for the ID token's expiry and issue time (clocks differ)."
    )


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, description="Port to listen on.")
    max_upload_bytes: int = Field(
        20 * 1024 * 1024, description="Largest request body accepted, enforced before the body is read."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of load balancers whose X-Forwarded-For / X-Forwarded-Proto are believed (the "
        "client address then feeds the login throttle and the audit log). Empty: the connecting address is used.",
    )
    offenses: list[str] = Field(
        default_factory=lambda: [
            "homicide",
            "robbery",
            "sexual-assault",
            "aggravated-assault",
            "kidnapping",
            "human-trafficking",
            "child-exploitation",
            "burglary",
            "arson",
            "fraud",
            "missing-person",
        ],
        description="Offense codes a search may name (the governance issue moves this into the policy document).",
    )
    legal_bases: list[str] = Field(
        default_factory=lambda: ["warrant", "court-order", "exigent-circumstances", "consent", "statutory-authority"],
        description="Legal bases a search may cite.",
    )
    similarity_floor: float = Field(
        0.30, description="Candidates scoring below this are never shown (SFace cosine; ~FMR 1e-2 on LFW)."
    )


class RetentionSettings(BaseModel):
    schedule_minutes: float = Field(
        60.0, description="The server applies retention rules this often (minutes); 0 turns the schedule off."
    )
    first_run_delay_seconds: float = Field(300.0, description="Wait after server start before the first run.")
    probe_retention_days: int = Field(
        30, ge=0, description="Stored probe images older than this are deleted (their hash is kept)."
    )
    postgres_vacuum_full: bool = Field(
        True,
        description="After deletions on PostgreSQL, VACUUM FULL the face tables so no dead tuple keeps "
        "deleted bytes (locks those tables while it runs; see docs/retention.md).",
    )


class GovernanceSettings(BaseModel):
    role_grant_delay_hours: float = Field(
        72.0,
        ge=0,
        description="Where only one administrator exists, a grant of the reviewer or administrator role takes "
        "effect this many hours after it is made (shown meanwhile to every reviewer and auditor). With a second "
        "administrator, that administrator's approval is needed instead.",
    )


class ClusterSettings(BaseModel):
    processes: int | None = Field(
        None,
        ge=1,
        description="Server processes for `facetrail serve` (`--processes`). Default: one per core on PostgreSQL; "
        "SQLite runs one process and refuses more.",
    )
    graceful_shutdown_seconds: float = Field(
        30.0, description="On SIGTERM, how long in-flight requests may take to finish before the process exits."
    )
    image_store: Literal["local", "postgres"] = Field(
        "local",
        description="Where original gallery images and kept probes live: 'local' (content-addressed folders in "
        "the data folder) or 'postgres' (rows in the database, for hosts that share nothing else; "
        "`facetrail store copy --to postgres` moves an installation).",
    )
    index_sync_seconds: float = Field(
        5.0,
        description="A server brings its loaded indexes up to date with the change log this often even without "
        "searches (a search always does first); 0 turns it off.",
    )
    index_check_hours: float = Field(
        24.0,
        ge=0,
        description="Each server process compares every gallery's index with the database in full (count and "
        "checksum of every face id and embedding) and repairs a mismatch this often, as `facetrail index check` "
        "does on demand; 0 turns the schedule off.",
    )
    change_log_days: float = Field(
        7.0,
        description="Gallery change-log entries older than this are deleted by retention runs; a process whose "
        "index snapshot is older verifies it in full once.",
    )


class OversightSettings(BaseModel):
    records_url: str = Field(
        "",
        description="The agency's records system, for case verification (policy cases.verification = "
        '\'records_system\'): FaceTrail GETs URL?case_number=N and expects JSON {"status": "open"|"closed", '
        '"offense": "..."}; 404 means no such case.',
    )
    records_timeout_seconds: float = Field(3.0, gt=0, description="Timeout of one records-system request.")
    records_fail_open: bool = Field(
        False,
        description="When the records system cannot be reached: False (default) refuses the search "
        "(fail closed); True lets it run, audited as unverified.",
    )
    records_cache_seconds: float = Field(
        60.0, ge=0, description="How long a records-system answer is reused for the same case number."
    )
    detect_after_search: bool = Field(
        True, description="Run the (incremental) anomaly rules for the searcher after each search, off the request."
    )
    schedule_minutes: float = Field(
        15.0, description="The server scans for anomalies and sends pending notifications this often; 0: off."
    )
    smtp_host: str = Field("", description="SMTP server for oversight e-mails; empty: no e-mail (web UI only).")
    smtp_port: int = Field(587, description="SMTP port.")
    smtp_tls: str = Field("starttls", description="'starttls' (default), 'ssl' (implicit TLS) or 'none'.")
    smtp_username: str = Field("", description="SMTP login, if the server needs one.")
    smtp_password: str = Field("", description="SMTP password (never logged).")
    smtp_sender: str = Field("facetrail@localhost", description="The From address of oversight e-mails.")
    smtp_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one SMTP conversation.")
    notify_recipients: list[str] = Field(
        default_factory=list,
        description="Addresses that get every alert and every sample draw (e.g. an oversight mailbox).",
    )
    unit_recipients: dict[str, list[str]] = Field(
        default_factory=dict, description="Per unit name: the addresses of its reviewers/supervisors for its alerts."
    )
    notify_retry_seconds: float = Field(
        60.0, ge=0, description="Wait before retrying a failed e-mail (doubles each try)."
    )
    notify_max_attempts: int = Field(8, ge=1, description="Attempts before an e-mail is marked failed for good.")
    public_url: str = Field(
        "", description="This server's address, for links in e-mails (e.g. https://facetrail.example)."
    )


class AuditSettings(BaseModel):
    signing_key_path: Path | None = Field(
        None,
        description="Ed25519 private key (PEM) that signs audit checkpoints; keep it outside the data folder and off "
        "the database host. Default: DATA_DIR/audit-signing.key (created 0600, public key beside it as .pub).",
    )
    signing_key: SecretStr | None = Field(
        None, description="The Ed25519 private key itself (PEM text), e.g. from a secrets manager; wins over the path."
    )
    public_key_path: Path | None = Field(
        None,
        description="Public key used to verify checkpoints when 'audit verify' is given none. Default: the signing "
        "key's path + '.pub'. Verifiers should pass a copy held elsewhere (--public-key).",
    )
    checkpoints_path: Path | None = Field(
        None, description="The checkpoints file (JSON lines). Default: DATA_DIR/audit-checkpoints.jsonl."
    )
    checkpoint_every_records: int = Field(
        1000, ge=1, description="The server signs a checkpoint once this many records came after the last one."
    )
    checkpoint_every_minutes: float = Field(
        60.0, ge=0, description="...and at least this often while records arrive (0 turns automatic checkpoints off)."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACETRAIL_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(Path("./facetrail-data"), description="Where the database, index and images live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL. Default: SQLite (WAL) at DATA_DIR/facetrail.db."
    )
    audit_key_path: Path | None = Field(
        None,
        description="HMAC key of the checkpoints older installations signed (still verified). New checkpoints are "
        "Ed25519-signed (audit.signing_key_path). Default: DATA_DIR/audit-checkpoint.key.",
    )
    keep_probe_images: bool = Field(False, description="Keep searched probe images (their hash is always kept).")
    auth: AuthSettings = AuthSettings()
    mfa: MfaSettings = MfaSettings()
    oidc: OidcSettings = OidcSettings()
    server: ServerSettings = ServerSettings()
    images: ImageLimits = ImageLimits()
    detection: DetectionSettings = DetectionSettings()
    quality: QualitySettings = QualitySettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    compute: ComputeSettings = ComputeSettings()
    verify: VerifySettings = VerifySettings()
    accuracy: AccuracySettings = AccuracySettings()
    index: IndexSettings = IndexSettings()
    retention: RetentionSettings = RetentionSettings()
    governance: GovernanceSettings = GovernanceSettings()
    audit: AuditSettings = AuditSettings()
    cluster: ClusterSettings = ClusterSettings()
    oversight: OversightSettings = OversightSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'facetrail.db').resolve()}"


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by FACETRAIL_CONFIG, if any."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("FACETRAIL_CONFIG")
        if not path:
            return {}
        with open(path, "rb") as fh:
            return tomllib.load(fh)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
