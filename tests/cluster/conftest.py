"""One cluster per test module: two hosts (separate data folders and ports, one PostgreSQL database), nginx
in front, and a small world: the administrator, a unit, a trained investigator, a reviewer and an auditor with
API tokens, and a gallery with two enrolled people. Needs PostgreSQL and nginx; under CI both must be there."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import closing

import pytest
from cluster_env import (
    ADMIN_FIRST_PASSWORD,
    FR,
    PASSWORD,
    UNDER_CI,
    Cluster,
    login,
    make_user,
    nginx_binary,
    start_host,
    start_nginx,
    stop_host,
    stop_nginx,
)

from databases import PG_ADMIN_URL, database_url_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if PG_ADMIN_URL is None or nginx_binary() is None:
        if UNDER_CI:
            raise RuntimeError("CI runs the cluster tests: PostgreSQL on 127.0.0.1:5432 and nginx are needed")
        pytest.skip("the cluster tests need PostgreSQL on 127.0.0.1:5432 and nginx")
    root = tmp_path_factory.mktemp("cluster")
    with database_url_for("postgres", root, prefix="facetrail_cluster") as database_url:
        hosts = {}
        try:
            hosts["a"] = start_host("a", root, database_url)  # migrates and creates the administrator
            hosts["b"] = start_host("b", root, database_url)
            nginx = start_nginx(root / "nginx", hosts["a"].port, hosts["b"].port)
            try:
                c = Cluster(database_url, hosts, nginx, root)
                _populate(c)
                yield c
            finally:
                stop_nginx(nginx)
        finally:
            for host in hosts.values():
                stop_host(host)


def _populate(c: Cluster) -> None:
    url = c.nginx.url
    with closing(login(url, "admin", ADMIN_FIRST_PASSWORD)) as admin:
        r = admin.post(
            "/api/v1/auth/password", json={"current_password": ADMIN_FIRST_PASSWORD, "new_password": PASSWORD}
        )
        assert r.status_code == 200, r.text
    admin = login(url, "admin", PASSWORD)
    try:
        assert admin.post("/api/v1/units", json={"name": "north", "agency": "Example Police"}).status_code == 201
        for username, role, unit in (
            ("inv.north", "investigator", "north"),
            ("rev.north", "reviewer", "north"),
            ("aud.hq", "auditor", None),
        ):
            c.tokens[username] = make_user(admin, url, username, role, unit)
        r = admin.post(
            "/api/v1/users/inv.north/training", json={"completed_on": str(dt.date.today()), "course": "FR-101"}
        )
        assert r.status_code == 201, r.text
        r = admin.post(
            "/api/v1/galleries",
            json={"name": c.gallery, "legal_basis": "Booking photos, statute 12-3", "source_system": "county-rms"},
        )
        assert r.status_code == 201, r.text
        files = [("files", (name, (FR / name).read_bytes(), "image/jpeg")) for name in ("obama.jpg", "biden.jpg")]
        r = admin.post(
            f"/api/v1/galleries/{c.gallery}/enroll", files=files, data={"subject_ids": ["B-OBAMA", "B-BIDEN"]}
        )
        assert r.status_code == 200, r.text
        assert [f["status"] for f in r.json()["files"]] == ["enrolled", "enrolled"]
        r = admin.post("/api/v1/auth/tokens", json={"name": "admin tests", "days": 1, "scope": "full"})
        assert r.status_code == 201, r.text
        c.tokens["admin"] = str(r.json()["secret"])
    finally:
        admin.close()
