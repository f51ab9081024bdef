"""Many processes, many hosts (issue 10): throughput, catch-up and cold start on PostgreSQL.

    nice -n 5 python bench/cluster.py --faces 100000 --clients 8 --duration 60 --rounds 3 --catchup 10000 \\
        --cold-faces 1000000 --tail 1000

Needs PostgreSQL (``--postgres``, default 127.0.0.1:5432, a fresh database is created and dropped) and, for
the two-host case, Debian's nginx. Galleries are synthetic faces (bench/common.py embeddings, a placeholder
or copied thumbnail) written through the bulk loader (gallery/bulk_load.py), whose faces go through the same
triggers, change log and audit records as enrolment. Measured, each comparison's sides in the same run and
taking turns (``--rounds``), with the load average recorded beside each figure:

1. **Searches per second at ``--clients`` concurrent clients** on a gallery of ``--faces`` synthetic faces
   (plus three enrolled photos): one host with one process, one host with two processes (``--processes 2``),
   and two hosts (separate data folders and ports, one process each) behind nginx configured as in
   tests/cluster (round robin). All three run at once and take turns of ``--duration / --rounds`` seconds.
2. **Catch-up on host B after host A enrols ``--catchup`` faces**: host B has the gallery's index loaded; the
   time of B's next ``get_gallery_index`` (what a search does first: the change log applied), against a full
   verify of the same gallery on B (``index check``).
3. **Cold start on a ``--cold-faces`` gallery**: a starting process loads snapshot + ``--tail`` logged changes,
   against a starting process without a snapshot that builds the index from the database.

Results go to the "Cluster" section of docs/benchmarks.md (``--no-write`` to print only).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # server_process, for cluster_env
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))
from cluster_env import NGINX_CONF, free_port, nginx_binary  # the nginx configuration the tests run

from common import SyntheticFaces, load_note, machine_description, now_utc, write_doc_section
from facetrail.config import Settings
from facetrail.context import AppContext, open_context
from facetrail.gallery import index_sync
from facetrail.gallery.bulk_load import FaceRows, bulk_load_embeddings
from facetrail.storage.models import Face, Gallery
from http_search import Tally, make_probe, populate_accounts_and_gallery, run_concurrent

GALLERY = "bookings"
ADMIN_FIRST_PASSWORD = "first-Start-password-1"
PLACEHOLDER_JPEG = b"\xff\xd8\xff\xd9"  # synthetic faces have no photo: an empty JPEG


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


def insert_synthetic(
    ctx: AppContext, gallery_id: int, n: int, seed: int, chunk: int = 50_000, load_index: bool = False
) -> float:
    """Load ``n`` synthetic faces (two per subject) through the bulk loader (gallery/bulk_load.py: batches of
    1,000 faces per transaction, change log by the triggers, an audit record per batch). Returns seconds."""
    start = time.perf_counter()
    with ctx.db.read() as s:
        gallery = s.execute(select(Gallery).where(Gallery.id == gallery_id)).scalar_one()
        name, model_id = gallery.name, gallery.model_id
        real = s.execute(select(Face.thumbnail).where(Face.gallery_id == gallery_id).limit(1)).scalar()
    thumbnail = bytes(real) if real is not None else PLACEHOLDER_JPEG
    faces = SyntheticFaces(samples_per_identity=2, seed=seed)

    def chunks() -> Iterator[FaceRows]:
        for ids, vectors in faces.gallery_chunks(n, chunk):
            yield FaceRows(
                external_ids=[f"S{seed}-{int(i) // 2:07d}" for i in ids],
                image_sha256=[hashlib.sha256(b"synthetic-%d-%d" % (seed, i)).hexdigest() for i in ids],
                embeddings=vectors,
            )

    bulk_load_embeddings(
        ctx,
        name,
        chunks(),
        actor="bench",
        model_id=model_id,
        source_system="synthetic",
        placeholder_thumbnail=thumbnail,
        update_index=load_index,  # the loading process searches nothing; the hosts follow the change log
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
    tally: Tally
    tally, wall = run_concurrent(url, token, probe, clients, duration)
    return {
        "searches": len(tally.seconds),
        "wall": wall,
        "errors": len(tally.errors),
        "load": os.getloadavg()[0],
        "sizes": sorted(tally.gallery_sizes),
    }


# ---------------------------------------------------------------- the three measurements


LAYOUTS = ("1 host, 1 process", "1 host, 2 processes", "2 hosts behind nginx")


def measure_throughput(args: argparse.Namespace, work: Path, database_url: str) -> tuple[dict[str, list[dict]], str]:
    """All three layouts run at once (idle between their turns) and take turns: ``--rounds`` rounds of
    ``--duration / --rounds`` seconds each, so a change in the machine's other load hits every layout alike."""
    host_a, url_a = start_host(work / "a", database_url, 1)
    try:
        token = populate_accounts_and_gallery(url_a)
    finally:
        host_a.stop()
    ctx = open_context(settings_for(work / "a", database_url))
    try:
        with ctx.db.read() as s:
            gallery_id = s.execute(select(Gallery.id).where(Gallery.name == GALLERY)).scalar_one()
        load_s = insert_synthetic(ctx, gallery_id, args.faces, seed=1)
        print(f"{args.faces:,} faces loaded in {load_s:.0f} s", flush=True)
        check = index_sync.rebuild_index(ctx, gallery_id, actor="bench")  # host A's snapshot
        size = check.db_count
    finally:
        ctx.close()
    for folder in ("a2", "b"):  # the other hosts start from a copy of the snapshot (as a restored host would)
        shutil.copytree(work / "a" / "index", work / folder / "index")
    probe, _ = make_probe()
    procs: list[Proc] = []
    rows: dict[str, list[dict]] = {label: [] for label in LAYOUTS}
    try:
        host_a, url_a = start_host(work / "a", database_url, 1)
        procs.append(host_a)
        host_a2, url_a2 = start_host(work / "a2", database_url, 2)
        procs.append(host_a2)
        host_b, url_b = start_host(work / "b", database_url, 1)
        procs.append(host_b)
        nginx, url_lb = start_nginx(work / "nginx", int(url_a.rsplit(":", 1)[1]), int(url_b.rsplit(":", 1)[1]))
        procs.append(nginx)
        urls = dict(zip(LAYOUTS, (url_a, url_a2, url_lb), strict=True))
        for url in urls.values():  # warm-up: indexes, connections, every process of every layout
            run_concurrent(url, token, probe, args.clients, 4.0)
        turn = args.duration / args.rounds
        for round_no in range(args.rounds):
            for label, url in urls.items():
                rows[label].append(throughput(url, token, probe, args.clients, turn))
                print(round_no, label, rows[label][-1], flush=True)
    finally:
        for proc in reversed(procs):
            proc.stop()
    return rows, f"{size:,}"


def measure_catch_up(args: argparse.Namespace, work: Path, database_url: str) -> list[dict[str, float]]:
    """Host B has the gallery's index loaded; host A enrols ``--catchup`` faces; B's next search applies the
    change log; then the full verify of the same gallery on B. ``--rounds`` times, each with new faces."""
    host_a = open_context(settings_for(work / "catchup-a", database_url))
    host_b = open_context(settings_for(work / "catchup-b", database_url))
    out = []
    try:
        gallery_id = new_gallery(host_a, "catch-up")
        insert_synthetic(host_a, gallery_id, args.faces, seed=2)
        t = time.perf_counter()
        index_sync.get_gallery_index(host_b, gallery_id)  # B loads (first time: from the database)
        first_load = time.perf_counter() - t
        for round_no in range(args.rounds):
            enrol_s = insert_synthetic(host_a, gallery_id, args.catchup, seed=30 + round_no)
            t = time.perf_counter()
            gi = index_sync.get_gallery_index(host_b, gallery_id)  # what B's next search does first
            catch_up = time.perf_counter() - t
            load_catch = os.getloadavg()[0]
            assert gi.count == args.faces + (round_no + 1) * args.catchup, gi.count
            t = time.perf_counter()
            check = index_sync.check_index(host_b, gallery_id, repair=False)
            full = time.perf_counter() - t
            assert check.consistent, check.problems
            out.append(
                {
                    "first_load": first_load,
                    "enrol": enrol_s,
                    "catch_up": catch_up,
                    "full_verify": full,
                    "load_catch_up": load_catch,
                    "load_full": os.getloadavg()[0],
                    "gallery": gi.count,
                }
            )
            print("catch-up", out[-1], flush=True)
    finally:
        host_a.close()
        host_b.close()
    return out


def measure_cold_start(args: argparse.Namespace, work: Path, database_url: str) -> tuple[dict[str, float], list[dict]]:
    """A ``--cold-faces`` gallery with its snapshot; then ``--rounds`` times: ``--tail`` more faces logged after
    the snapshot, a fresh process loads snapshot + log tail (timed), then a fresh process without a snapshot
    builds the index from the database (timed; it saves a new snapshot, the next round's base)."""
    settings = settings_for(work / "cold", database_url)
    ctx = open_context(settings)
    try:
        gallery_id = new_gallery(ctx, "cold")
        insert_s = insert_synthetic(ctx, gallery_id, args.cold_faces, seed=4)
        setup = {"insert": insert_s, "insert_load": os.getloadavg()[0]}
        print("cold gallery loaded", setup, flush=True)
        t = time.perf_counter()
        index_sync.rebuild_index(ctx, gallery_id, actor="bench")  # the snapshot
        setup["rebuild"] = time.perf_counter() - t
    finally:
        ctx.close()
    rounds = []
    for round_no in range(args.rounds):
        ctx = open_context(settings, migrate=False)
        try:  # changes after the snapshot: the log tail (this process does not load the gallery's index)
            insert_synthetic(ctx, gallery_id, args.tail, seed=50 + round_no)
        finally:
            ctx.close()
        fresh = open_context(settings, migrate=False)  # a starting process
        try:
            t = time.perf_counter()
            gi = index_sync.get_gallery_index(fresh, gallery_id)
            snapshot_and_log = time.perf_counter() - t
            load_snap = os.getloadavg()[0]
            count = gi.count
        finally:
            fresh.close()
        shutil.rmtree(work / "cold" / "index")  # no snapshot: a full build from the database
        fresh = open_context(settings, migrate=False)
        try:
            t = time.perf_counter()
            gi = index_sync.get_gallery_index(fresh, gallery_id)
            full = time.perf_counter() - t
            assert gi.count == count, (gi.count, count)
        finally:
            fresh.close()
        rounds.append(
            {
                "snapshot_and_log": snapshot_and_log,
                "full_build": full,
                "load_snapshot": load_snap,
                "load_full": os.getloadavg()[0],
                "gallery": count,
            }
        )
        print("cold start", rounds[-1], flush=True)
    return setup, rounds


def markdown(
    args: argparse.Namespace,
    facts: dict[str, str],
    rows: dict[str, list[dict]],
    catch: list[dict],
    cold_setup: dict[str, float],
    cold: list[dict],
) -> str:
    lines = [
        "## Cluster: processes, hosts, catch-up, cold start (PostgreSQL)",
        "",
        f"Command: `{facts['command']}`  ",
        f"Machine: {machine_description()}, shared with other work while it ran (the load average, 1 min, is"
        " given beside each figure).  ",
        f"Date: {facts['started']} to {now_utc()}; {facts['load_before']} at start, {facts['load_after']} at end.",
        "",
    ]
    if args.note:
        lines += [f"**{args.note}**", ""]
    turn = args.duration / args.rounds
    lines += [
        "Galleries: synthetic faces (identity-structured 128-d unit vectors from bench/common.py, two per subject,"
        " not photos), written through the bulk loader (gallery/bulk_load.py: 1,000 faces per transaction, the"
        " change log by the face triggers, an audit record per batch), plus the three really enrolled photos of"
        " the HTTP benchmark in the searched gallery.",
        "",
        f"**Searches per second**, {args.clients} concurrent clients, gallery of {facts['gallery_size']} faces"
        " (`exact` index), the probe and request as in the HTTP search benchmark; all on one PostgreSQL. The"
        " three layouts run at the same time (idle between turns) and take turns:"
        f" {args.rounds} rounds of {turn:g} s each. Two hosts: separate data folders and ports on this machine,"
        " nginx in front as in tests/cluster (round robin). On one machine every layout shares the same 2 cores:"
        " the rows show the overhead of more processes, the balancer and stateless requests, not the gain of a"
        " second machine.",
        "",
        "| layout | searches | searches/s | errors | per round: searches/s (load average) |",
        "|---|---:|---:|---:|---|",
    ]
    for label, runs in rows.items():
        searches = sum(r["searches"] for r in runs)
        wall = sum(r["wall"] for r in runs)
        errors = sum(r["errors"] for r in runs)
        per_round = ", ".join(f"{r['searches'] / r['wall']:.2f} ({r['load']:.1f})" for r in runs)
        lines.append(f"| {label} | {searches} | {searches / wall:.2f} | {errors} | {per_round} |")
    lines += [
        "",
        f"**Catch-up**: host B (its own process and data folder) has the index of a {args.faces:,}-face gallery"
        f" loaded (its first load, without a snapshot, took {catch[0]['first_load']:.1f} s); host A then commits"
        f" {args.catchup:,} faces through the bulk loader; B's next search first applies the change log. Against"
        " it, in the same round, B's full verify of the same gallery (`facetrail index check`: snapshot, log tail,"
        " every face id and embedding compared with the database).",
        "",
        "| round | gallery after | A enrols (s) | B catches up | load avg | full verify on B | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {i + 1} | {c['gallery']:,} | {c['enrol']:.1f} | **{c['catch_up'] * 1e3:.0f} ms** |"
            f" {c['load_catch_up']:.1f} | {c['full_verify'] * 1e3:.0f} ms | {c['load_full']:.1f} |"
            for i, c in enumerate(catch)
        ],
        "",
        f"**Cold start** on a {args.cold_faces:,}-face gallery (loaded in {cold_setup['insert']:.0f} s,"
        f" {args.cold_faces / cold_setup['insert']:,.0f} faces/s, load average {cold_setup['insert_load']:.1f};"
        f" snapshot by `index rebuild` in {cold_setup['rebuild']:.0f} s). Each round first logs {args.tail:,} more"
        " faces after the snapshot; then a starting process loads its index from the snapshot plus that log tail,"
        " and then a starting process without a snapshot builds it from the database (which saves the next"
        " round's snapshot).",
        "",
        "| round | gallery | snapshot + log tail | load avg | full build from the database | load avg |",
        "|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {i + 1} | {c['gallery']:,} | **{c['snapshot_and_log']:.1f} s** | {c['load_snapshot']:.1f} |"
            f" {c['full_build']:.1f} s | {c['load_full']:.1f} |"
            for i, c in enumerate(cold)
        ],
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--faces", type=int, default=100_000, help="synthetic faces in the searched gallery")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of searches per layout, in all")
    parser.add_argument("--rounds", type=int, default=3, help="turns per layout, and rounds of the other two")
    parser.add_argument("--catchup", type=int, default=10_000, help="faces host A enrols while B has its index")
    parser.add_argument("--cold-faces", type=int, default=1_000_000, help="gallery size for the cold start")
    parser.add_argument("--tail", type=int, default=1_000, help="changes logged after the snapshot")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "catchup", "cold"])
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
        rows: dict[str, list[dict]] = {}
        facts["gallery_size"] = "0"
        if "throughput" not in args.skip:
            rows, facts["gallery_size"] = measure_throughput(args, work, database_url)
        catch = measure_catch_up(args, work, database_url) if "catchup" not in args.skip else []
        cold_setup, cold = (
            measure_cold_start(args, work, database_url)
            if "cold" not in args.skip
            else ({"insert": 1.0, "insert_load": 0.0, "rebuild": 0.0}, [])
        )
        facts["load_after"] = load_note()
        text = markdown(args, facts, rows, catch, cold_setup, cold)
        print(text)
        if not args.no_write:
            write_doc_section("cluster", text)
    finally:
        if not args.keep:
            drop()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
