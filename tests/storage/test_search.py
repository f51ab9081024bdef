"""1:N search: candidate lists of investigative leads, recorded and audited in one transaction."""

from __future__ import annotations

import hashlib
import json

import pytest
from index_helpers import GALLERY_PHOTOS, EnrolledFace, create_gallery, enroll_photos
from sqlalchemy import func, select

from face_fixtures import FACEAPI, JOHNS, OBAMA2, TWO_PEOPLE
from facetrail.audit.log import verify_chain
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceIndexError, ModelMismatchError
from facetrail.gallery import search as search_module
from facetrail.gallery.search import LEADS_NOTICE, search_gallery
from facetrail.gallery.service import GalleryNotFoundError
from facetrail.storage.models import AuditRecord, Face, Gallery, SearchRecord

PURPOSE = {"case_number": "2026-000123", "offense": "PC 211", "reason": "Robbery at 5th St; probe from CCTV still"}

# a different photo of a person in the gallery -> that person's external id
MATED_PROBES = {
    OBAMA2: "OBAMA",
    FACEAPI / "amy" / "amy2.png": "AMY",
    FACEAPI / "raj" / "raj2.png": "RAJ",
    JOHNS / "John_Salley" / "000194_02159572.jpg": "SALLEY",
    JOHNS / "John_Simm" / "000300_00470148.jpg": "SIMM",
}


@pytest.fixture
def gallery(ctx: AppContext) -> list[EnrolledFace]:
    gallery_id = create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    return enroll_photos(ctx, ctx.pipeline, gallery_id, GALLERY_PHOTOS)


def count(ctx: AppContext, model: type) -> int:
    with ctx.db.read() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def audit_rows(ctx: AppContext, action: str = "search") -> list[tuple[str, dict]]:
    with ctx.db.read() as session:
        query = select(AuditRecord.outcome, AuditRecord.details).where(AuditRecord.action == action)
        rows = session.execute(query.order_by(AuditRecord.seq)).all()
    return [(outcome, json.loads(details)) for outcome, details in rows]


def test_a_second_photo_of_an_enrolled_person_ranks_them_first(ctx: AppContext, gallery: list[EnrolledFace]) -> None:
    for probe, expected in MATED_PROBES.items():
        result = search_gallery(ctx, probe, gallery="bookings", actor="t", candidates=5, **PURPOSE)
        assert result.candidates[0].subject_external_id == expected, probe
        assert [c.rank for c in result.candidates] == [1, 2, 3, 4, 5]
        sims = [c.similarity for c in result.candidates]
        assert sims == sorted(sims, reverse=True)
        fmrs = [c.estimated_fmr for c in result.candidates]
        assert fmrs == sorted(fmrs)  # higher similarity, rarer among different people
        assert 0 < fmrs[0] < fmrs[-1] <= 1
        top = result.candidates[0]
        assert top.thumbnail_path is not None and top.thumbnail_path.read_bytes() == top.thumbnail
        assert top.thumbnail_path.parent == ctx.data_dir / "results" / str(result.search_id)
        assert result.to_dict()["notice"] == LEADS_NOTICE and result.to_dict()["kind"] == "candidate_list"


def test_search_is_recorded_and_audited_with_its_details(ctx: AppContext, gallery: list[EnrolledFace]) -> None:
    result = search_gallery(ctx, OBAMA2, gallery="bookings", actor="analyst-7", candidates=3, **PURPOSE)
    probe_hash = hashlib.sha256(OBAMA2.read_bytes()).hexdigest()
    with ctx.db.read() as session:
        record = session.execute(select(SearchRecord)).scalar_one()
        assert (record.case_number, record.offense, record.reason) == tuple(PURPOSE.values())
        assert record.probe_sha256 == probe_hash and not record.probe_stored
        assert record.actor == "analyst-7" and record.candidates_requested == 3
        assert [c["face_id"] for c in record.candidates] == [c.face_id for c in result.candidates]
    [(outcome, details)] = audit_rows(ctx)
    assert outcome == "ok"
    assert details["search_id"] == result.search_id
    assert {k: details[k] for k in PURPOSE} == PURPOSE
    assert details["gallery"] == "bookings" and details["model_id"] == ctx.pipeline.model_id
    assert details["probe_sha256"] == probe_hash and details["face_index"] == 0
    assert "candidates" not in details  # a salted commitment instead: no candidate is named in the log
    assert len(details["candidates_commitment"]) == 64
    with ctx.db.read() as session:
        assert verify_chain(session).ok
    assert not (ctx.data_dir / "probes").exists()  # retention off: only the hash is kept


def test_the_probe_is_never_added_to_the_gallery(ctx: AppContext, gallery: list[EnrolledFace]) -> None:
    faces_before = count(ctx, Face)
    for _ in range(2):
        search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", **PURPOSE)
    assert count(ctx, Face) == faces_before
    with ctx.db.read() as session:
        gallery_id = session.execute(select(Gallery.id)).scalar_one()
    from facetrail.gallery.index_sync import get_gallery_index

    assert get_gallery_index(ctx, gallery_id).count == faces_before
    probe_hash = hashlib.sha256(OBAMA2.read_bytes()).hexdigest()
    with ctx.db.read() as session:
        assert session.execute(select(Face).where(Face.image_sha256 == probe_hash)).first() is None


def test_probe_is_kept_only_when_configured(ctx: AppContext, gallery: list[EnrolledFace]) -> None:
    ctx.settings.keep_probe_images = True
    result = search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", **PURPOSE)
    assert result.probe_stored
    stored = search_module.probe_store(ctx).path_for(result.probe_sha256)
    assert stored.read_bytes() == OBAMA2.read_bytes()


def test_if_the_audit_record_fails_nothing_is_recorded_or_returned(
    ctx: AppContext, gallery: list[EnrolledFace], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_audit(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(search_module, "append_audit", broken_audit)
    ctx.settings.keep_probe_images = True
    with pytest.raises(RuntimeError, match="audit store unavailable"):
        search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", **PURPOSE)
    assert count(ctx, SearchRecord) == 0
    results = ctx.data_dir / "results"
    assert not results.exists() or not any(results.iterdir())  # no thumbnails left behind
    probes = ctx.data_dir / "probes"
    assert not probes.exists() or not any(p.is_file() for p in probes.rglob("*"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("case_number", "", "case_number is required"),
        ("case_number", None, "case_number is required"),
        ("offense", "   ", "offense is required"),
        ("reason", "\t\n", "reason is required"),
        ("reason", "x" * 2001, "reason is 2001 characters"),
        ("case_number", "12\n34", "case_number contains a control character"),
        ("offense", "PC\u202e211", "offense contains a control character"),
    ],
)
def test_missing_blank_or_bad_fields_are_refused_and_audited(
    ctx: AppContext, gallery: list[EnrolledFace], field: str, value: str | None, message: str
) -> None:
    with pytest.raises(BadInputError, match=message) as info:
        search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", **{**PURPOSE, field: value})
    assert info.value.details["field"] == field
    assert count(ctx, SearchRecord) == 0
    [(outcome, details)] = audit_rows(ctx)
    assert outcome == "refused" and details["error"]["details"]["field"] == field


def test_fields_are_trimmed(ctx: AppContext, gallery: list[EnrolledFace]) -> None:
    result = search_gallery(
        ctx, OBAMA2, gallery="bookings", actor="t", case_number="  2026-9 ", offense=" 187 ", reason=" lead "
    )
    assert (result.purpose.case_number, result.purpose.offense, result.purpose.reason) == ("2026-9", "187", "lead")


@pytest.mark.parametrize("n", [1, 51, 0, -3])
def test_candidate_count_out_of_bounds_is_refused(ctx: AppContext, gallery: list[EnrolledFace], n: int) -> None:
    with pytest.raises(BadInputError, match="between 2 and 50"):
        search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", candidates=n, **PURPOSE)
    assert count(ctx, SearchRecord) == 0


def test_candidate_count_bounds_and_default(ctx: AppContext, gallery: list[EnrolledFace]) -> None:
    assert len(search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", candidates=2, **PURPOSE).candidates) == 2
    default = search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", **PURPOSE)
    assert default.candidates_requested == 20
    assert len(default.candidates) == len(GALLERY_PHOTOS)  # fewer faces enrolled than asked for
    assert len(search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", candidates=50, **PURPOSE).candidates) == 8


def test_multi_face_probe_default_largest_and_choice_recorded(ctx: AppContext, gallery: list[EnrolledFace]) -> None:
    largest = search_gallery(ctx, TWO_PEOPLE, gallery="bookings", actor="t", candidates=3, **PURPOSE)
    other = search_gallery(ctx, TWO_PEOPLE, gallery="bookings", actor="t", candidates=3, face_index=1, **PURPOSE)
    assert largest.faces_in_probe == other.faces_in_probe == 2
    assert (largest.face_index, other.face_index) == (0, 1)
    top = {largest.candidates[0].subject_external_id, other.candidates[0].subject_external_id}
    assert top == {"OBAMA", "BIDEN"}
    with ctx.db.read() as session:
        recorded = session.execute(
            select(SearchRecord.face_index, SearchRecord.faces_in_probe).order_by(SearchRecord.id)
        ).all()
    assert [tuple(r) for r in recorded] == [(0, 2), (1, 2)]
    assert [d["face_index"] for _, d in audit_rows(ctx)] == [0, 1]
    with pytest.raises(FaceIndexError, match="has 2 face"):
        search_gallery(ctx, TWO_PEOPLE, gallery="bookings", actor="t", face_index=2, **PURPOSE)
    assert audit_rows(ctx)[-1][0] == "refused"


def test_unknown_gallery_is_refused(ctx: AppContext, gallery: list[EnrolledFace]) -> None:
    with pytest.raises(GalleryNotFoundError, match="no gallery named 'nope'"):
        search_gallery(ctx, OBAMA2, gallery="nope", actor="t", **PURPOSE)
    assert audit_rows(ctx)[-1][0] == "refused"


def test_gallery_of_another_model_is_a_clear_error(ctx: AppContext) -> None:
    create_gallery(ctx, "old", "sface-2019@0000")
    with pytest.raises(ModelMismatchError, match="sface-2019@0000"):
        search_gallery(ctx, OBAMA2, gallery="old", actor="t", **PURPOSE)
    assert count(ctx, SearchRecord) == 0
    assert audit_rows(ctx)[-1][0] == "refused"


def test_a_deleted_face_is_never_a_candidate(ctx: AppContext, gallery: list[EnrolledFace]) -> None:
    from facetrail.retention.deletion import delete_subject

    delete_subject(ctx, "bookings", "OBAMA", actor="t", reason="expunged")
    result = search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", **PURPOSE)
    assert "OBAMA" not in [c.subject_external_id for c in result.candidates]
    assert len(result.candidates) == len(GALLERY_PHOTOS) - 1


@pytest.fixture
def cli(ctx: AppContext, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run ``facetrail ...`` in-process against this test's database."""
    from typer.testing import CliRunner

    from facetrail.cli.main import app
    from facetrail.config import get_settings

    monkeypatch.setenv("FACETRAIL_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.setenv("FACETRAIL_DATABASE_URL", ctx.settings.resolved_database_url)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, [str(a) for a in args])
    get_settings.cache_clear()


def investigator_token(ctx: AppContext, *, trained: bool = True) -> str:
    """An API token of a unit's investigator (the CLI searches as a signed-in user, like the web UI and API)."""
    import datetime as dt

    from facetrail.accounts.service import create_api_token, create_unit, create_user, principal_for
    from facetrail.governance.training import record_training
    from facetrail.policy.principal import Principal
    from facetrail.storage.models import User

    admin = Principal(user_id=None, username="admin", role="administrator", unit_id=None, unit_name=None, via="cli")
    create_unit(ctx, admin, "Robbery")
    create_user(ctx, admin, username="ivy.inv", role="investigator", unit="Robbery")
    if trained:
        record_training(ctx, "ivy.inv", dt.date.today() - dt.timedelta(days=3), "FR-101", actor="admin")
    with ctx.db.read() as session:
        user = session.execute(select(User).where(User.username == "ivy.inv")).scalar_one()
        who = principal_for(user, "token")
    return create_api_token(ctx, who, "cli", scope="full")[1]


CLI_PURPOSE = ["--case", "C-1", "--offense", "robbery", "--legal-basis", "warrant", "--reason", "CCTV still, 5th St"]


def test_cli_search_text_and_json(ctx: AppContext, gallery: list[EnrolledFace], cli) -> None:  # type: ignore[no-untyped-def]
    token = investigator_token(ctx)
    args = ["search", OBAMA2, "--gallery", "bookings", *CLI_PURPOSE, "--token", token]
    text = cli(*args, "--candidates", "3")
    assert text.exit_code == 0, text.output
    assert "Investigative leads only — not an identification" in text.output
    assert "under review" in text.output  # not released as leads until two reviewers agree
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and data["kind"] == "candidate_list" and data["notice"] == LEADS_NOTICE
    assert 0 < len(data["candidates"]) <= len(GALLERY_PHOTOS)
    first = data["candidates"][0]
    assert set(first) >= {"rank", "similarity", "estimated_fmr", "subject_external_id", "face_id"}
    with ctx.db.read() as session:
        record = session.get(SearchRecord, data["search_id"])
        assert record is not None and record.actor == "user:ivy.inv" and record.legal_basis == "warrant"
        assert record.candidates[0]["subject_external_id"] == "OBAMA"  # the true mate ranks first
    assert audit_rows(ctx)[-1][1]["search_id"] == data["search_id"]


def test_cli_search_needs_a_signed_in_trained_user(ctx: AppContext, gallery: list[EnrolledFace], cli) -> None:  # type: ignore[no-untyped-def]
    """No operator bypass: without a token, or as an untrained investigator, the CLI refuses like the API."""
    anonymous = cli("search", OBAMA2, "--gallery", "bookings", *CLI_PURPOSE, "--json")
    assert anonymous.exit_code == 6
    assert json.loads(anonymous.output)["error"]["code"] == "unauthenticated"
    untrained = cli(
        "search",
        OBAMA2,
        "--gallery",
        "bookings",
        *CLI_PURPOSE,
        "--json",
        "--token",
        investigator_token(ctx, trained=False),
    )
    assert untrained.exit_code != 0
    assert json.loads(untrained.output)["error"]["code"] == "training_required"
    assert count(ctx, SearchRecord) == 0
    assert audit_rows(ctx)[-1][0] == "refused"


def test_cli_search_blank_field_is_a_clear_error(ctx: AppContext, gallery: list[EnrolledFace], cli) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "search",
        OBAMA2,
        "--gallery",
        "bookings",
        "--case",
        " ",
        "--offense",
        "robbery",
        "--legal-basis",
        "warrant",
        "--reason",
        "r",
        "--json",
        "--token",
        investigator_token(ctx),
    )
    assert result.exit_code == 3
    error = json.loads(result.output)["error"]
    assert error["code"] == "bad_input" and error["details"]["field"] == "case_number"
    assert count(ctx, SearchRecord) == 0


def test_cli_index_check_reports_and_repairs(ctx: AppContext, gallery: list[EnrolledFace], cli) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import delete

    with ctx.db.transaction() as session:
        session.execute(delete(Face).where(Face.id == gallery[1].face_id))
    first = cli("index", "check", "--json")
    assert first.exit_code == 1
    [report] = json.loads(first.output)["galleries"]
    assert report["repaired"] and report["db_count"] == len(GALLERY_PHOTOS) - 1
    second = cli("index", "check", "--json")
    assert second.exit_code == 0 and json.loads(second.output)["galleries"][0]["consistent"]
    rebuilt = cli("index", "rebuild", "--gallery", "bookings", "--json")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert json.loads(rebuilt.output)["rebuilt"][0]["index_count"] == len(GALLERY_PHOTOS) - 1
    assert [d["count"] for _, d in audit_rows(ctx, "index.rebuild")] == [len(GALLERY_PHOTOS) - 1]


def test_end_to_end_with_the_enrolment_service(ctx: AppContext) -> None:
    """Faces enrolled by ``facetrail enroll``'s service are searchable at once, and deleting them removes them."""
    from facetrail.gallery.enroll import EnrollOptions, enroll
    from facetrail.gallery.manifest import EnrollItem
    from facetrail.gallery.service import create_gallery as create_real_gallery
    from facetrail.retention.deletion import delete_subject

    create_real_gallery(ctx, "e2e", legal_basis="test", source_system="tests", actor="t")
    items = [EnrollItem(path=path, subject_id=external_id) for external_id, path in GALLERY_PHOTOS.items()]
    summary = enroll(ctx, "e2e", items, actor="t", options=EnrollOptions(workers=0))
    assert summary.enrolled == len(GALLERY_PHOTOS)
    for probe, expected in MATED_PROBES.items():
        result = search_gallery(ctx, probe, gallery="e2e", actor="t", candidates=3, **PURPOSE)
        assert result.candidates[0].subject_external_id == expected
    delete_subject(ctx, "e2e", "AMY", actor="t", reason="test")
    result = search_gallery(ctx, FACEAPI / "amy" / "amy2.png", gallery="e2e", actor="t", **PURPOSE)
    assert "AMY" not in [c.subject_external_id for c in result.candidates]


def test_the_audit_record_commits_to_the_candidates_without_naming_them(
    ctx: AppContext, gallery: list[EnrolledFace]
) -> None:
    """A database administrator who rewrites a stored candidate list is caught by the salted commitment in the
    search's audit record, which itself names nobody (issue 8)."""
    from sqlalchemy import text as sql

    from facetrail.gallery.search import check_commitment

    result = search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", candidates=3, **PURPOSE)
    [(_, details)] = audit_rows(ctx)
    assert "candidates" not in details and len(details["candidates_commitment"]) == 64
    assert not any(c.subject_external_id in json.dumps(details) for c in result.candidates)
    assert check_commitment(ctx, result.search_id)["matches"] is True
    with ctx.db.read() as session:
        stored = session.execute(select(SearchRecord)).scalar_one().candidates
    swapped = [{**stored[0], "subject_external_id": "SOMEONE-ELSE"}, *stored[1:]]
    with ctx.db.transaction() as session:  # the rewrite, as raw SQL
        session.execute(
            sql("UPDATE searches SET candidates = :c WHERE id = :i"), {"c": json.dumps(swapped), "i": result.search_id}
        )
    assert check_commitment(ctx, result.search_id)["matches"] is False


def test_an_empty_gallery_gives_an_empty_list_still_recorded(ctx: AppContext) -> None:
    create_gallery(ctx, "empty", ctx.pipeline.model_id)
    result = search_gallery(ctx, OBAMA2, gallery="empty", actor="t", **PURPOSE)
    assert result.candidates == [] and result.gallery_size == 0 and result.results_dir is None
    assert count(ctx, SearchRecord) == 1
    [(outcome, details)] = audit_rows(ctx)
    assert outcome == "ok" and len(details["candidates_commitment"]) == 64


def test_cli_init_creates_the_data_dir_schema_and_key(ctx: AppContext, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "fresh-data"
    result = cli("init", "--data-dir", target, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    key = target / "audit-checkpoint.key"
    assert info["audit_key"] == str(key.resolve()) and info["audit_key_created"]
    assert key.stat().st_mode & 0o777 == 0o600
    assert info["index_dir"] == str((target / "index").resolve())
    again = json.loads(cli("init", "--data-dir", target, "--json").output)
    assert not again["audit_key_created"]  # an existing key is never replaced
    assert [o for o, _ in audit_rows(ctx, "system.init")] == ["ok", "ok"]
