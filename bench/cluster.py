"""Many processes, many hosts (issue 10): throughput, catch-up and cold start on PostgreSQL.

    nice -n 5 python bench/cluster.py --faces 100000 --clients 8 --duration 60 --catchup 10000 \\
        --cold-faces 1000000 --tail 1000

Needs PostgreSQL (``--postgres``, default 127.0.0.1:5432, a fresh database is created and dropped) and, for
the two-host case, Debian's nginx. Measured:

1. **Searches per second at ``--clients`` concurrent clients** on a gallery of ``--faces`` synthetic faces
   (plus three enrolled photos; bench/common.py embeddings inserted directly, as bench/http_search.py does):
   one host with one process, one host with two processes (``--processes 2``), and two hosts (separate data
   folders and ports, one process each) behind nginx configured as in tests/cluster (round robin).
2. **Catch-up on host B after host A enrols ``--catchup`` faces**: host B has the gallery's index loaded; the
   faces are committed through the database as an enrolment commits them (the triggers append the change
   log); then the time of host B's next ``get_gallery_index`` (what a search does first), against a full
   verify of the same gallery for comparison.
3. **Cold start on a ``--cold-faces`` gallery**: a process with an index snapshot plus ``--tail`` logged
   changes since, loading the gallery's index (snapshot + log tail), against a full rebuild from the database.

Results go to the "Cluster" section of docs/benchmarks.md (``--no-write`` to print only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))
from cluster_env import NGINX_CONF, free_port, nginx_binary  # the nginx configuration the tests run

from common import SyntheticFaces, load_note, machine_description, now_utc, write_doc_section
from facetrail.config import Settings
from facetrail.context import AppContext, open_context
from facetrail.gallery import index_sync
from facetrail.storage.models import Face, Gallery, Subject
from http_search import Tally, make_probe, populate_accounts_and_gallery, run_concurrent

GALLERY = "bookings"
ADMIN_FIRST_PASSWORD = "first-Start-password-1"


def pg_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    name = f"facetrail_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{admin_url.rsplit('/', 1)[0]}/{name}", drop


def settings_for(data_dir: Path, database_url: str) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url)  # type: ignore[call-arg]


def insert_synthetic(ctx: AppContext, gallery_id: int, n: int, seed: int, chunk: int = 10_000) -> float:
    """Commit ``n`` synthetic faces (two per subject) in batches, as enrolment commits them. Returns seconds."""
    start = time.perf_counter()
    with ctx.db.read() as s:
        model_id = s.execute(select(Gallery.model_id).where(Gallery.id == gallery_id)).scalar_one()
        real = s.execute(select(Face).where(Face.gallery_id == gallery_id).limit(1)).scalar_one_or_none()
        thumbnail = bytes(real.thumbnail) if real is not None else b"\xff\xd8\xff\xd9"
        subject_base = int(s.execute(select(func.max(Subject.id))).scalar() or 0) + 1
    faces = SyntheticFaces(samples_per_identity=2, seed=seed)
    now = dt.datetime.now(dt.UTC)
    for ids, vectors in faces.gallery_chunks(n, chunk):
        identities = np.unique(ids // 2)
        with ctx.db.transaction() as s:
            s.execute(
                insert(Subject),
                [
                    {
                        "id": subject_base + int(i),
                        "gallery_id": gallery_id,
                        "external_id": f"S{seed}-{int(i):07d}",
                        "name": None,
                        "notes": "",
                        "created_at": now,
                    }
                    for i in identities
                ],
            )
            s.execute(
                insert(Face),
                [
                    {
                        "gallery_id": gallery_id,
                        "subject_id": subject_base + int(i) // 2,
                        "image_sha256": hashlib.sha256(b"synthetic-%d-%d" % (seed, i)).hexdigest(),
                        "image_stored": False,
                        "source_system": "synthetic",
                        "enrolled_by": "bench",
                        "enrolled_at": now,
                        "box": {"x": 0},
                        "quality": {},
                        "model_id": model_id,
                        "embedding": v.astype("<f4").tobytes(),
                        "thumbnail": thumbnail,
                    }
                    for i, v in zip(ids, vectors, strict=True)
                ],
            )
        if ctx.db.engine.dialect.name == "postgresql":  # explicit ids: move the sequence past them
            with ctx.db.transaction() as s:
                s.execute(
                    text("SELECT setval(pg_get_serial_sequence('subjects', 'id'), (SELECT max(id) FROM subjects))")
                )
    return time.perf_counter() - start


def new_gallery(ctx: AppContext, name: str) -> int:
    with ctx.db.transaction() as s:
        gallery = Gallery(
            name=name, legal_basis="bench", source_system="bench", model_id=ctx.pipeline.model_id, created_by="bench"
        )
        s.add(gallery)
        s.flush()
        return gallery.id


# ---------------------------------------------------------------- servers and nginx


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_host(data_dir: Path, database_url: str, processes: int) -> tuple[Proc, str]:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "FACETRAIL_DATA_DIR": str(data_dir),
        "FACETRAIL_DATABASE_URL": database_url,
        "FACETRAIL_ADMIN_PASSWORD": ADMIN_FIRST_PASSWORD,
        "FACETRAIL_RETENTION__SCHEDULE_MINUTES": "0",
        # the benchmark measures searches, not sign-in or role grants
        "FACETRAIL_MFA__REQUIRED_ROLES": "[]",
        "FACETRAIL_GOVERNANCE__ROLE_GRANT_DELAY_HOURS": "0",
    }
    args = [sys.executable, "-c", "from facetrail.cli.main import app; app()", "serve", "--port", str(port)]
    proc = Proc([*args, "--processes", str(processes)], env, data_dir.parent / f"{data_dir.name}.log")
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


def wait_ready(url: str, proc: Proc | None = None, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.process.poll() is not None:
            raise RuntimeError(f"server exited: {proc.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/api/v1/ready", timeout=30).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready in {seconds} s")


def start_nginx(root: Path, port_a: int, port_b: int) -> tuple[Proc, str]:
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, root=root, port=port, port_a=port_a, port_b=port_b))
    proc = Proc([binary, "-p", str(root), "-e", str(root / "nginx-error.log"), "-c", str(conf)], {}, root / "out.log")
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, None, 30)
    return proc, url


def throughput(url: str, token: str, probe: bytes, clients: int, duration: float) -> dict[str, Any]:
    run_concurrent(url, token, probe, 2, min(5.0, duration))  # warm-up: indexes, connections
    tally: Tally
    tally, wall = run_concurrent(url, token, probe, clients, duration)
    return {"searches": len(tally.seconds), "per_s": len(tally.seconds) / wall, "errors": len(tally.errors)}


# ---------------------------------------------------------------- the three measurements


def measure_throughput(args: argparse.Namespace, work: Path, database_url: str) -> tuple[list[tuple[str, dict]], str]:
    host_a, url_a = start_host(work / "a", database_url, 1)
    try:
        token = populate_accounts_and_gallery(url_a)
    finally:
        host_a.stop()
    ctx = open_context(settings_for(work / "a", database_url))
    try:
        with ctx.db.read() as s:
            gallery_id = s.execute(select(Gallery.id).where(Gallery.name == GALLERY)).scalar_one()
        insert_synthetic(ctx, gallery_id, args.faces, seed=1)
        check = index_sync.rebuild_index(ctx, gallery_id, actor="bench")  # host A's snapshot
        size = check.db_count
    finally:
        ctx.close()
    probe, _ = make_probe()
    rows: list[tuple[str, dict]] = []
    for label, processes in (("1 host, 1 process", 1), ("1 host, 2 processes", 2)):
        proc, url = start_host(work / "a", database_url, processes)
        try:
            rows.append((label, throughput(url, token, probe, args.clients, args.duration)))
            print(label, rows[-1][1], flush=True)
        finally:
            proc.stop()
    host_a, url_a = start_host(work / "a", database_url, 1)
    host_b, url_b = start_host(work / "b", database_url, 1)  # no snapshot: builds from the database
    try:
        nginx, url = start_nginx(work / "nginx", int(url_a.rsplit(":", 1)[1]), int(url_b.rsplit(":", 1)[1]))
        try:
            rows.append(("2 hosts behind nginx", throughput(url, token, probe, args.clients, args.duration)))
            print(rows[-1], flush=True)
        finally:
            nginx.stop()
    finally:
        host_a.stop()
        host_b.stop()
    return rows, f"{size:,}"


def measure_catch_up(args: argparse.Namespace, work: Path, database_url: str) -> dict[str, float]:
    host_a = open_context(settings_for(work / "catchup-a", database_url))
    host_b = open_context(settings_for(work / "catchup-b", database_url))
    try:
        gallery_id = new_gallery(host_a, "catch-up")
        insert_synthetic(host_a, gallery_id, args.faces, seed=2)
        t = time.perf_counter()
        index_sync.get_gallery_index(host_b, gallery_id)  # B loads (first time: from the database)
        first_load = time.perf_counter() - t
        enrol_s = insert_synthetic(host_a, gallery_id, args.catchup, seed=3)
        t = time.perf_counter()
        gi = index_sync.get_gallery_index(host_b, gallery_id)  # what B's next search does first
        catch_up = time.perf_counter() - t
        assert gi.count == args.faces + args.catchup, gi.count
        t = time.perf_counter()
        assert index_sync.check_index(host_b, gallery_id, repair=False).consistent
        full = time.perf_counter() - t
    finally:
        host_a.close()
        host_b.close()
    return {"first_load": first_load, "enrol": enrol_s, "catch_up": catch_up, "full_verify": full}


def measure_cold_start(args: argparse.Namespace, work: Path, database_url: str) -> dict[str, float]:
    settings = settings_for(work / "cold", database_url)
    ctx = open_context(settings)
    try:
        gallery_id = new_gallery(ctx, "cold")
        insert_s = insert_synthetic(ctx, gallery_id, args.cold_faces, seed=4, chunk=20_000)
        t = time.perf_counter()
        index_sync.rebuild_index(ctx, gallery_id, actor="bench")  # the snapshot
        rebuild = time.perf_counter() - t
        insert_synthetic(ctx, gallery_id, args.tail, seed=5)  # changes after the snapshot: the log tail
    finally:
        ctx.close()
    fresh = open_context(settings, migrate=False)  # a starting process
    try:
        t = time.perf_counter()
        gi = index_sync.get_gallery_index(fresh, gallery_id)
        snapshot_and_log = time.perf_counter() - t
        assert gi.count == args.cold_faces + args.tail, gi.count
    finally:
        fresh.close()
    shutil.rmtree(work / "cold" / "index")  # no snapshot: a full build from the database
    fresh = open_context(settings, migrate=False)
    try:
        t = time.perf_counter()
        index_sync.get_gallery_index(fresh, gallery_id)
        full = time.perf_counter() - t
    finally:
        fresh.close()
    return {"insert": insert_s, "rebuild": rebuild, "snapshot_and_log": snapshot_and_log, "full_build": full}


def markdown(
    args: argparse.Namespace, facts: dict[str, str], rows: list[tuple[str, dict]], catch: dict, cold: dict
) -> str:
    lines = [
        "## Cluster: processes, hosts, catch-up, cold start (PostgreSQL)",
        "",
        f"Command: `{facts['command']}`  ",
        f"Machine: {machine_description()}  ",
        f"Date: {facts['started']} to {now_utc()}; {facts['load_before']} at start, {facts['load_after']} at end.",
        "",
    ]
    if args.note:
        lines += [f"**{args.note}**", ""]
    lines += [
        f"Searches per second, {args.clients} concurrent clients for {args.duration:g} s, gallery of"
        f" {facts['gallery_size']} faces (`exact` index), the probe and request as in the HTTP search benchmark;"
        " all on one PostgreSQL. Two hosts: separate data folders and ports on this machine, nginx in front as"
        " in tests/cluster. On one machine the hosts share its cores: the two-host row shows the overhead of the"
        " balancer and of stateless requests, not the gain of a second machine.",
        "",
        "| layout | searches | searches/s | errors |",
        "|---|---:|---:|---:|",
        *[f"| {label} | {r['searches']} | {r['per_s']:.2f} | {r['errors']} |" for label, r in rows],
        "",
        f"Catch-up: host B has the index of a {args.faces:,}-face gallery loaded; host A commits {args.catchup:,}"
        f" faces ({catch['enrol']:.1f} s, directly through the database as enrolment commits them). Host B's"
        f" next search first applies the change log: **{catch['catch_up'] * 1e3:.0f} ms**; a full verify of the"
        f" same gallery takes {catch['full_verify'] * 1e3:.0f} ms; B's first load (no snapshot) took"
        f" {catch['first_load'] * 1e3:.0f} ms.",
        "",
        f"Cold start on a {args.cold_faces:,}-face gallery with {args.tail:,} changes logged after the snapshot"
        f" (rows inserted in {cold['insert']:.0f} s; snapshot by `index rebuild` in {cold['rebuild']:.1f} s): a"
        f" starting process loads the snapshot plus the log tail in **{cold['snapshot_and_log']:.1f} s**; without"
        f" a snapshot it builds the index from the database in {cold['full_build']:.1f} s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--faces", type=int, default=100_000, help="synthetic faces in the searched gallery")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--catchup", type=int, default=10_000, help="faces host A enrols while B has its index")
    parser.add_argument("--cold-faces", type=int, default=1_000_000, help="gallery size for the cold start")
    parser.add_argument("--tail", type=int, default=1_000, help="changes logged after the snapshot")
    parser.add_argument("--note", default="", help="a line printed above the figures (e.g. a small-scale run)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and database")
    args = parser.parse_args()
    facts = {
        "command": "python bench/cluster.py " + " ".join(a for a in sys.argv[1:] if a != "--note" and a != args.note),
        "started": now_utc(),
        "load_before": load_note(),
    }
    work = Path(tempfile.mkdtemp(prefix="facetrail-cluster-bench-"))
    database_url, drop = pg_database(args.postgres)
    try:
        rows, facts["gallery_size"] = measure_throughput(args, work, database_url)
        catch = measure_catch_up(args, work, database_url)
        print("catch-up", catch, flush=True)
        cold = measure_cold_start(args, work, database_url)
        print("cold start", cold, flush=True)
        facts["load_after"] = load_note()
        text = markdown(args, facts, rows, catch, cold)
        print(text)
        if not args.no_write:
            write_doc_section("cluster", text)
    finally:
        if not args.keep:
            drop()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
