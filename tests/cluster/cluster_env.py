"""Two FaceTrail hosts sharing nothing but a PostgreSQL database, behind Debian's nginx (round robin).

Each host is a real ``facetrail serve`` process with its own data folder and port; nginx runs in the
foreground with its own configuration, pid, logs and temporary folders under the test's tmp folder. The test
nginx adds two things the production configuration in docs/deployment.md does not have: an ``X-Upstream``
response header naming the host that answered, and an ``X-Test-Pin: a|b`` request header that sends a
request to one host (so a test can make two steps land on different hosts on purpose).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from server_process import free_port

ADMIN_FIRST_PASSWORD = "first-Start-password-1"
PASSWORD = "Correct-horse-battery-9"
UNDER_CI = os.environ.get("CI") == "true"
FIXTURES = Path(__file__).parent.parent / "fixtures"
FR = FIXTURES / "face_recognition"


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None


def login(base_url: str, username: str, password: str, pin: str | None = None) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=120, headers={"x-test-pin": pin} if pin else {})
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    client.headers["x-csrf-token"] = r.json()["csrf_token"]
    return client


def make_user(admin: httpx.Client, base_url: str, username: str, role: str, unit: str | None) -> str:
    r = admin.post("/api/v1/users", json={"username": username, "role": role, "unit": unit})
    assert r.status_code == 201, r.text
    one_time = r.json()["one_time_password"]
    with closing(login(base_url, username, one_time)) as client:
        r = client.post("/api/v1/auth/password", json={"current_password": one_time, "new_password": PASSWORD})
        assert r.status_code == 200, r.text
        r = client.post("/api/v1/auth/tokens", json={"name": f"{username} tests", "days": 1, "scope": "full"})
        assert r.status_code == 201, r.text
        return str(r.json()["secret"])


@dataclass
class Host:
    name: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


SERVE = [sys.executable, "-c", "from facetrail.cli.main import app; app()", "serve"]


def start_host(name: str, root: Path, database_url: str, extra_env: dict[str, str] | None = None) -> Host:
    port = free_port()
    data_dir = root / f"host-{name}"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "FACETRAIL_DATA_DIR": str(data_dir),
        "FACETRAIL_DATABASE_URL": database_url,
        "FACETRAIL_ADMIN_PASSWORD": ADMIN_FIRST_PASSWORD,
        "FACETRAIL_EMBEDDING__ONNX_THREADS": "1",
        "FACETRAIL_SERVER__TRUSTED_PROXIES": '["127.0.0.1"]',
        "FACETRAIL_RETENTION__SCHEDULE_MINUTES": "0",
        "FACETRAIL_CLUSTER__IMAGE_STORE": "postgres",  # the hosts share nothing but the database
        # MFA off: these tests are about hosts and processes, MFA has its own (docs/authentication.md)
        "FACETRAIL_MFA__REQUIRED_ROLES": "[]",
        "FACETRAIL_GOVERNANCE__ROLE_GRANT_DELAY_HOURS": "0",  # one administrator makes the reviewer at once
        **(extra_env or {}),
    }
    log_path = root / f"host-{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*SERVE, "--port", str(port), "--processes", "1", "--workers", "4"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # kill -9 of the host is its own process group only
        )
    host = Host(name, port, data_dir, log_path, process)
    wait_until(lambda: _ready(host), 180, f"host {name} ready", host)
    return host


def _ready(host: Host) -> bool:
    if not host.alive():
        raise RuntimeError(f"host {host.name} exited with {host.process.returncode}:\n{host.log()}")
    try:
        return httpx.get(f"{host.url}/api/v1/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def stop_host(host: Host) -> None:
    if host.alive():
        host.process.send_signal(signal.SIGTERM)
        try:
            host.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            host.process.kill()
            host.process.wait()


def wait_until(check, seconds: float, what: str, host: Host | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise RuntimeError(f"timed out waiting for {what}" + (f":\n{host.log()[-3000:]}" if host else ""))


NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log info;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    log_format upstreams '$remote_addr "$request" $status upstream=$upstream_addr/$upstream_status '
                         'time=$request_time';
    access_log {root}/nginx-access.log upstreams;
    client_max_body_size 25m;

    upstream facetrail {{
        server 127.0.0.1:{port_a} max_fails=1 fail_timeout=30s;
        server 127.0.0.1:{port_b} max_fails=1 fail_timeout=30s;
        keepalive 16;
    }}
    upstream host_a {{ server 127.0.0.1:{port_a}; }}
    upstream host_b {{ server 127.0.0.1:{port_b}; }}
    map $http_x_test_pin $facetrail_pool {{ default facetrail; a host_a; b host_b; }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://$facetrail_pool;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout http_502 http_504;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 2s;
            proxy_send_timeout 300s;
            proxy_read_timeout 300s;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    port: int
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> str:
        return (self.root / "nginx-access.log").read_text(errors="replace")


def start_nginx(root: Path, port_a: int, port_b: int) -> Nginx:
    binary = nginx_binary()
    assert binary, "nginx is not installed (.ci/run installs it)"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root nginx would otherwise drop to 'nobody'
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, root=root, port=port, port_a=port_a, port_b=port_b))
    process = subprocess.Popen(
        [binary, "-p", str(root), "-e", str(root / "nginx-error.log"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "nginx-stderr.log", "wb"),  # noqa: SIM115 - lives as long as the process
    )
    nginx = Nginx(port, root, process)

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(root / 'nginx-stderr.log').read_text()}")
        try:
            return httpx.get(f"{nginx.url}/api/v1/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, 30, "nginx")
    return nginx


def stop_nginx(nginx: Nginx) -> None:
    if nginx.process.poll() is None:
        nginx.process.send_signal(signal.SIGQUIT)  # graceful
        try:
            nginx.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            nginx.process.kill()
            nginx.process.wait()


@dataclass
class Cluster:
    database_url: str
    hosts: dict[str, Host]
    nginx: Nginx
    root: Path
    tokens: dict[str, str] = field(default_factory=dict)  # username -> API token
    gallery: str = "bookings"

    def client(self, token: str | None = None, pin: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        if pin:
            headers["x-test-pin"] = pin
        return httpx.Client(base_url=self.nginx.url, headers=headers, timeout=300)

    def port_of(self, name: str) -> str:
        return f"127.0.0.1:{self.hosts[name].port}"
