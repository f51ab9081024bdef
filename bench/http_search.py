"""End-to-end HTTP search: a real ``facetrail serve`` process, a 1 MP probe uploaded, the candidate list back.

    nice -n 5 python bench/http_search.py --faces 100000 --duration 60

World: a temporary data directory; the bootstrap administrator, a unit, a trained investigator with an API
token (all through the API); a gallery with three really enrolled photos (so the probe, another photo of one
of them, has a true mate) plus ``--faces`` synthetic faces inserted directly into the database (identity
structured embeddings from bench/common.py, a real thumbnail each), and its index rebuilt by index_sync.
The server is then restarted so it loads that index as in production.

Measured: one client (``--single`` sequential searches after ``--warmup``), then ``--clients`` concurrent
clients for ``--duration`` seconds: p50 / p99 latency, searches per second and errors (any status but 201,
any transport error). Results go to the "HTTP search" section of docs/benchmarks.md (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the one way to run a server
from common import SyntheticFaces, load_note, machine_description, now_utc, percentile_ms, write_doc_section
from facetrail.config import Settings
from facetrail.context import open_context
from facetrail.gallery.bulk_load import FaceRows, bulk_load_embeddings
from facetrail.gallery.index_sync import rebuild_index
from facetrail.storage.models import Face, Gallery, SearchRecord
from server_process import ServerProcess, free_port, start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
FR = FIXTURES / "face_recognition"
ADMIN_FIRST_PASSWORD = "first-Start-password-1"
PASSWORD = "Correct-horse-battery-9"
GALLERY = "bookings"
INVESTIGATOR = "inves.bench"
MATE = "B-OBAMA"  # the probe is obama2.jpg; obama.jpg is enrolled under this id
SERVE_WORKERS = 8  # facetrail serve's default
SEARCH_FIELDS = {
    "gallery": GALLERY,
    "offense": "robbery",
    "legal_basis": "warrant",
    "justification": "HTTP search benchmark",
    "candidates": "20",
}
# the benchmark measures searches, not sign-in: no second factor to enrol, role grants at once
SERVER_ENV = {
    "FACETRAIL_ADMIN_PASSWORD": ADMIN_FIRST_PASSWORD,
    "FACETRAIL_MFA__REQUIRED_ROLES": "[]",
    "FACETRAIL_GOVERNANCE__ROLE_GRANT_DELAY_HOURS": "0",
}


def expect(response: httpx.Response, status: int) -> httpx.Response:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return response


def login(base_url: str, username: str, password: str) -> httpx.Client:
    """A session-cookie client that sends its CSRF token."""
    client = httpx.Client(base_url=base_url, timeout=120)
    r = expect(client.post("/api/v1/auth/login", json={"username": username, "password": password}), 200)
    client.headers["x-csrf-token"] = r.json()["csrf_token"]
    return client


def populate_accounts_and_gallery(base_url: str) -> str:
    """Administrator's first login, a unit, a trained investigator (returns their API token), the gallery with
    three really enrolled photos."""
    admin = login(base_url, "admin", ADMIN_FIRST_PASSWORD)
    expect(
        admin.post("/api/v1/auth/password", json={"current_password": ADMIN_FIRST_PASSWORD, "new_password": PASSWORD}),
        200,
    )
    expect(admin.post("/api/v1/units", json={"name": "north", "agency": "Example Police"}), 201)
    r = expect(
        admin.post("/api/v1/users", json={"username": INVESTIGATOR, "role": "investigator", "unit": "north"}), 201
    )
    one_time = r.json()["one_time_password"]
    # Governance: nobody searches without recorded training (where the server has that gate).
    r = admin.post(
        f"/api/v1/users/{INVESTIGATOR}/training",
        json={"completed_on": dt.date.today().isoformat(), "course": "FaceTrail search training"},
    )
    if r.status_code not in (201, 404, 405):
        raise RuntimeError(f"recording training: {r.status_code} {r.text}")
    investigator = login(base_url, INVESTIGATOR, one_time)
    expect(
        investigator.post("/api/v1/auth/password", json={"current_password": one_time, "new_password": PASSWORD}), 200
    )
    token = str(
        expect(
            investigator.post("/api/v1/auth/tokens", json={"name": "bench", "days": 1, "scope": "search"}), 201
        ).json()["secret"]
    )
    investigator.close()
    expect(
        admin.post(
            "/api/v1/galleries",
            json={"name": GALLERY, "legal_basis": "Booking photos, statute 12-3", "source_system": "county-rms"},
        ),
        201,
    )
    files = [("files", (name, (FR / name).read_bytes(), "image/jpeg")) for name in ("obama.jpg", "biden.jpg")]
    files.append(("files", ("amy1.png", (FIXTURES / "faceapi" / "amy" / "amy1.png").read_bytes(), "image/png")))
    r = expect(
        admin.post(
            f"/api/v1/galleries/{GALLERY}/enroll",
            files=files,
            data={"subject_ids": [MATE, "B-BIDEN", "B-AMY"], "source_record_ids": ["r1", "r2", "r3"]},
        ),
        200,
    )
    if any(f["status"] != "enrolled" for f in r.json()["files"]):
        raise RuntimeError(f"enrolment: {r.text}")
    admin.close()
    return token


def add_synthetic_faces(data_dir: Path, n: int, chunk: int = 50_000) -> tuple[int, float]:
    """Load ``n`` synthetic faces (two per subject) into the gallery through the bulk loader (gallery/bulk_load.py:
    batches with their change-log entries and audit records), each with the thumbnail of an enrolled photo,
    then rebuild its index through index_sync. Returns (gallery size, seconds)."""
    start = time.perf_counter()
    ctx = open_context(Settings(data_dir=data_dir))
    try:
        with ctx.db.read() as s:
            gallery = s.execute(select(Gallery).where(Gallery.name == GALLERY)).scalar_one()
            gallery_id, model_id = gallery.id, gallery.model_id
            thumbnail = bytes(
                s.execute(select(Face.thumbnail).where(Face.gallery_id == gallery_id).limit(1)).scalar_one()
            )
        faces = SyntheticFaces(samples_per_identity=2)

        def chunks() -> Iterator[FaceRows]:
            for ids, vectors in faces.gallery_chunks(n, chunk):
                yield FaceRows(
                    external_ids=[f"S-{int(i) // faces.samples_per_identity:07d}" for i in ids],
                    image_sha256=[hashlib.sha256(b"synthetic-%d" % i).hexdigest() for i in ids],
                    embeddings=vectors,
                )

        bulk_load_embeddings(
            ctx,
            GALLERY,
            chunks(),
            actor="bench",
            model_id=model_id,
            source_system="synthetic",
            placeholder_thumbnail=thumbnail,
            update_index=False,  # rebuilt below, as before
        )
        check = rebuild_index(ctx, gallery_id, actor="bench")
        return check.db_count, time.perf_counter() - start
    finally:
        ctx.close()


def make_probe(megapixels: float = 1.0) -> tuple[bytes, str]:
    """obama2.jpg (another photo than the enrolled obama.jpg) scaled to about ``megapixels``, as JPEG."""
    image = cv2.imread(str(FR / "obama2.jpg"))
    assert image is not None
    scale = (megapixels * 1e6 / (image.shape[0] * image.shape[1])) ** 0.5
    resized = cv2.resize(
        image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_CUBIC
    )
    ok, jpeg = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return jpeg.tobytes(), f"{resized.shape[1]}×{resized.shape[0]} JPEG, {len(jpeg) / 1e3:.0f} kB"


@dataclass
class Tally:
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    gallery_sizes: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def search_once(client: httpx.Client, probe: bytes, case_number: str, tally: Tally) -> None:
    start = time.perf_counter()
    try:
        r = client.post(
            "/api/v1/searches",
            files={"probe": ("probe.jpg", probe, "image/jpeg")},
            data={**SEARCH_FIELDS, "case_number": case_number},
        )
    except httpx.HTTPError as exc:
        with tally.lock:
            tally.errors.append(f"{type(exc).__name__}: {exc}")
        return
    elapsed = time.perf_counter() - start
    with tally.lock:
        if r.status_code != 201:
            tally.errors.append(f"{r.status_code}: {r.text[:200]}")
            return
        tally.seconds.append(elapsed)
        tally.gallery_sizes.add(int(r.json()["gallery_size"]))


def case_number(clients: int) -> str:
    return f"BENCH-{clients}-CLIENTS"


def client_for(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=120)


def run_single(
    base_url: str, token: str, probe: bytes, warmup: int, count: int, profile: contextlib.AbstractContextManager[None]
) -> tuple[Tally, float]:
    """Sequential searches on one connection; ``profile`` wraps the timed ones (not the warm-up)."""
    with client_for(base_url, token) as client:
        warm = Tally()
        for _ in range(warmup):
            search_once(client, probe, "BENCH-WARMUP", warm)
        if warm.errors:
            raise RuntimeError(f"warm-up searches failed: {warm.errors[:3]}")
        tally = Tally()
        with profile:
            start = time.perf_counter()
            for _ in range(count):
                search_once(client, probe, case_number(1), tally)
            return tally, time.perf_counter() - start


def run_concurrent(base_url: str, token: str, probe: bytes, clients: int, duration: float) -> tuple[Tally, float]:
    tally = Tally()
    start = time.perf_counter()
    deadline = start + duration

    def work() -> None:
        with client_for(base_url, token) as client:
            while time.perf_counter() < deadline:
                search_once(client, probe, case_number(clients), tally)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.perf_counter() - start  # the last requests finish after the deadline


@contextlib.contextmanager
def profiling(server: ServerProcess, out: Path | None) -> Iterator[None]:
    """py-spy sampling the server process (sampling from outside: the server runs unmodified)."""
    if out is None:
        yield
        return
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(server.process.pid),
            "--rate",
            "250",
            "--idle",
            "--format",
            "raw",
            "--output",
            str(out),
        ]
    )
    time.sleep(2)  # attached before the first timed request
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on interrupt
        spy.wait(timeout=60)


@dataclass(frozen=True)
class Row:
    clients: int
    searches: int
    wall_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    mate_rank1: float


def mate_rank1(data_dir: Path, clients: int) -> float:
    """Share of the run's recorded searches with the probe's mate at rank 1 (the investigator's own response
    withholds identities until two reviewers release a lead, so the search records are read)."""
    ctx = open_context(Settings(data_dir=data_dir), migrate=False)
    try:
        with ctx.db.read() as s:
            lists = (
                s.execute(select(SearchRecord.candidates).where(SearchRecord.case_number == case_number(clients)))
                .scalars()
                .all()
            )
    finally:
        ctx.close()
    return float(np.mean([bool(c) and c[0]["subject_external_id"] == MATE for c in lists])) if lists else float("nan")


def summarise(clients: int, tally: Tally, wall_s: float, data_dir: Path) -> Row:
    rank1 = mate_rank1(data_dir, clients)
    p50 = percentile_ms(tally.seconds, 50) if tally.seconds else float("nan")
    p99 = percentile_ms(tally.seconds, 99) if tally.seconds else float("nan")
    row = Row(clients, len(tally.seconds), wall_s, p50, p99, len(tally.errors), rank1)
    print(row, *tally.errors[:5], sep="\n  ", flush=True)
    return row


def markdown(rows: list[Row], args: argparse.Namespace, facts: dict[str, str]) -> str:
    lines = [
        "## HTTP search (end to end)",
        "",
        f"Command: `{facts['command']}`  ",
        f"Machine: {machine_description()}  ",
        f"Date: {facts['started']} to {now_utc()}; {facts['load_before']} at start, {facts['load_after']} at end"
        " (other engineers' jobs share the 2 cores: latencies are upper bounds).",
        "",
        f"A real `facetrail serve` process (SQLite, `{facts['index_kind']}` index, defaults otherwise) on"
        f" localhost; gallery of {facts['gallery_size']} faces: {args.faces:,} synthetic (bench/common.py"
        " embeddings written through the bulk loader, index rebuilt by index_sync) plus 3 enrolled photos."
        " Sign-in second factors and the role-grant delay are off for the benchmark's accounts (it measures"
        " searches; the token has the `search` scope). Each request"
        f" uploads the same probe ({facts['probe']}, obama2.jpg scaled; its mate obama.jpg is enrolled) with"
        " case number, offense, legal basis and justification, as a trained investigator's API token, and"
        " receives the candidate list (20 candidates): decode, detection, quality, embedding, index search, the"
        " search record and its audit record. Latency is measured by the client (httpx, one connection per"
        " client thread). Errors: any status but 201 or a transport error.",
        "",
        "| concurrent clients | searches | p50 ms | p99 ms | searches/s | errors | mate at rank 1 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.clients} | {r.searches} | {r.p50_ms:.0f} | {r.p99_ms:.0f} |"
            f" {r.searches / r.wall_s:.2f} | {r.errors} | {r.mate_rank1:.2f} |"
        )
    lines += [
        "",
        f"Setup: {facts['setup']}. Goal (issue 4): p50 ≤ 250 ms with one client; no error under 8"
        " concurrent clients for 60 s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000, help="synthetic faces in the gallery")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the concurrent run")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--single", type=int, default=60, help="sequential searches with one client")
    parser.add_argument("--warmup", type=int, default=5, help="searches before timing starts")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--notes", type=Path, help="markdown appended to the section (e.g. profile findings)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument(
        "--profile",
        type=Path,
        help="record the server with py-spy during the one-client run"
        " (collapsed stacks, idle time included) into this file",
    )
    args = parser.parse_args()
    notes = args.notes.read_text().strip() if args.notes else ""  # read now: a missing file fails early
    facts = {
        "command": "python bench/http_search.py " + " ".join(sys.argv[1:]),
        "started": now_utc(),
        "load_before": load_note(),
    }
    workdir = Path(tempfile.mkdtemp(prefix="facetrail-http-bench-"))
    data_dir = workdir / "data"
    data_dir.mkdir()
    port = free_port()
    try:
        t0 = time.perf_counter()
        server = start_server(
            data_dir,
            SERVER_ENV,
            port=port,
            workers=SERVE_WORKERS,
            timeout_s=180,
            log_path=data_dir.parent / "server.log",
        )
        try:
            token = populate_accounts_and_gallery(server.base_url)
        finally:
            stop_server(server)
        size, insert_s = add_synthetic_faces(data_dir, args.faces)
        server = start_server(
            data_dir,
            SERVER_ENV,
            port=port,
            workers=SERVE_WORKERS,
            timeout_s=180,
            log_path=data_dir.parent / "server.log",
        )
        facts["setup"] = (
            f"world and gallery of {size:,} faces built in {time.perf_counter() - t0:.0f} s"
            f" (synthetic rows + index {insert_s:.0f} s)"
        )
        facts["gallery_size"] = f"{size:,}"
        facts["index_kind"] = Settings(data_dir=data_dir).index.kind
        probe, facts["probe"] = make_probe()
        print(facts, flush=True)
        try:
            single = run_single(
                server.base_url, token, probe, args.warmup, args.single, profiling(server, args.profile)
            )
            rows = [summarise(1, *single, data_dir)]
            rows.append(
                summarise(
                    args.clients, *run_concurrent(server.base_url, token, probe, args.clients, args.duration), data_dir
                )
            )
        finally:
            stop_server(server)
    finally:
        if args.keep:
            print(f"data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    facts["load_after"] = load_note()
    text = markdown(rows, args, facts)
    if notes:
        text += "\n\n" + notes
    print(text)
    if not args.no_write:
        write_doc_section("http", text, args.out)


if __name__ == "__main__":
    main()
