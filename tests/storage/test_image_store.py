"""The image store's two backends (cluster.image_store): local folders and PostgreSQL rows, so that hosts need
nothing but the database. Enrolment (in worker processes), verifiable deletion and `facetrail store copy`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from facetrail.config import ClusterSettings, Settings
from facetrail.context import AppContext, open_context
from facetrail.gallery.enroll import EnrollOptions, enroll
from facetrail.gallery.imagestore import (
    DatabaseImageStore,
    ImageStore,
    ImageStoreConfigError,
    open_image_store,
    store_from_spec,
    store_spec,
)
from facetrail.gallery.manifest import items_from_paths
from facetrail.gallery.service import create_gallery, get_subject
from facetrail.gallery.store_copy import copy_to_database
from facetrail.retention.deletion import delete_subject
from facetrail.storage.cluster_models import StoredImage
from facetrail.storage.models import AuditRecord

FACEAPI = Path(__file__).parents[1] / "fixtures" / "faceapi"
PEOPLE = [FACEAPI / p for p in ("amy", "raj")]
CHUNK = 32


def with_store(ctx: AppContext, backend: str) -> AppContext:
    settings = ctx.settings.model_copy(update={"cluster": ClusterSettings(image_store=backend)})  # type: ignore[arg-type]
    return open_context(settings)


def enrol(ctx: AppContext, workers: int = 0) -> None:
    create_gallery(ctx, "bookings", legal_basis="Statute 12(3)", source_system="county-rms", actor="tester")
    summary = enroll(
        ctx, "bookings", items_from_paths(PEOPLE, "parent"), actor="tester", options=EnrollOptions(workers=workers)
    )
    assert summary.enrolled == 4 and not summary.rejected


def image_sha(ctx: AppContext, subject: str) -> str:
    return str(get_subject(ctx, "bookings", subject)["faces"][0]["image_sha256"])


def test_sqlite_refuses_the_postgres_image_store(ctx: AppContext) -> None:
    if not ctx.db.is_sqlite:
        pytest.skip("the refusal is SQLite's")
    other = with_store(ctx, "postgres")
    try:
        with pytest.raises(ImageStoreConfigError) as info:
            open_image_store(other, "images")
        assert info.value.code == "image_store_needs_postgres"
        with pytest.raises(ImageStoreConfigError):
            copy_to_database(other, actor="t")
    finally:
        other.close()


def test_both_backends_keep_the_same_contract(ctx: AppContext) -> None:
    stores = [ImageStore(ctx.data_dir / "images")]
    if not ctx.db.is_sqlite:
        stores.append(DatabaseImageStore(ctx.db, "images"))
    a, b = "a" * 64, "b" * 64
    for store in stores:
        assert store.get(a) is None and not store.exists(a) and store.stored_hashes() == set()
        store.put(a, b"first")
        store.put(a, b"first")  # idempotent
        store.put(b, b"second")
        assert store.get(a) == b"first" and store.exists(b) and store.stored_hashes() == {a, b}
        with store.exclusive_lock_if_free() as locked:
            assert locked
        with store.shared_lock(), store.exclusive_lock_if_free() as locked:  # an enrolment is running
            assert not locked
        assert store.sweep({a}) == 1 and store.stored_hashes() == {a}
        assert store.remove(a) and not store.remove(a) and store.stored_hashes() == set()
        with pytest.raises(ValueError):
            store.get("../etc/passwd")
        reopened = store_from_spec(store_spec(store))
        assert type(reopened) is type(store)


def _pages_holding(ctx: AppContext, chunks: list[bytes]) -> list[str]:
    """Raw pages of stored_images and its TOAST table (dead tuples and free space included)."""
    found = []
    with ctx.db.engine.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
        conn.commit()
        toast = conn.execute(
            text("SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'stored_images'")
        ).scalar_one()
        for rel in ("stored_images", toast):
            blocks = conn.execute(text("SELECT pg_relation_size(CAST(:r AS regclass)) / 8192"), {"r": rel}).scalar_one()
            for block in range(int(blocks)):
                page = bytes(conn.execute(text("SELECT get_raw_page(:r, :b)"), {"r": rel, "b": block}).scalar_one())
                if any(chunk in page for chunk in chunks):
                    found.append(f"{rel}#{block}")
    return found


def test_postgres_store_enrols_in_workers_and_deletes_verifiably(ctx: AppContext) -> None:
    if ctx.db.is_sqlite:
        pytest.skip("the PostgreSQL image store")
    db_ctx = with_store(ctx, "postgres")
    try:
        enrol(db_ctx, workers=1)  # a worker process writes the images through its own connection
        store = open_image_store(db_ctx, "images")
        assert isinstance(store, DatabaseImageStore) and len(store.stored_hashes()) == 4
        assert not (ctx.data_dir / "images").exists() or not list(ImageStore(ctx.data_dir / "images").iter_files())
        sha = image_sha(db_ctx, "amy")
        image = store.get(sha)
        assert image is not None
        chunks = [image[i : i + CHUNK] for i in range(1024, len(image) - CHUNK, CHUNK)]
        assert _pages_holding(db_ctx, chunks)  # the search finds the bytes where they are
        result = delete_subject(db_ctx, "bookings", "amy", actor="tester", reason="court order 42")
        assert store.get(sha) is None
        assert _pages_holding(db_ctx, chunks) == [], result
        with db_ctx.db.read() as s:
            assert s.execute(select(StoredImage.sha256).where(StoredImage.sha256 == sha)).first() is None
    finally:
        db_ctx.close()


def test_store_copy_moves_an_installation_to_postgres(ctx: AppContext) -> None:
    if ctx.db.is_sqlite:
        pytest.skip("the PostgreSQL image store")
    enrol(ctx)  # the local default
    local = ImageStore(ctx.data_dir / "images")
    hashes = local.stored_hashes()
    assert len(hashes) == 4
    tampered = local.path_for(sorted(hashes)[0])
    tampered.write_bytes(tampered.read_bytes() + b"x")  # content no longer matches its name
    result = copy_to_database(ctx, actor="operator")
    assert result.copied["images"] == 3 and result.mismatched == [f"images/{tampered.name}"]
    again = copy_to_database(ctx, actor="operator")  # rerunnable
    assert again.copied["images"] == 0 and again.already["images"] == 3
    db_ctx = with_store(ctx, "postgres")
    try:
        sha = image_sha(db_ctx, "raj")
        if sha != tampered.name:
            assert open_image_store(db_ctx, "images").get(sha) == local.path_for(sha).read_bytes()
        with db_ctx.db.read() as s:
            actions = s.execute(select(AuditRecord.action).where(AuditRecord.action == "store.copy")).scalars().all()
        assert len(actions) == 2
    finally:
        db_ctx.close()


def test_settings_name_the_backend() -> None:
    assert Settings().cluster.image_store == "local"  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        ClusterSettings(image_store="s3")  # type: ignore[arg-type]
