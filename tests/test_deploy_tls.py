"""The production stack on one box, without Docker: gunicorn (several workers and threads)
on the test database behind Debian's Caddy with its own local CA (`tls internal`), spoken to
with curl over HTTPS. Django trusts the proxy's scheme (BEHIND_TLS_PROXY), so it sends HSTS,
Secure cookies, and accepts a login form posted from the HTTPS origin.

gunicorn starts as the reliability suite starts it (testkit/servers.py). Caddy runs the
committed deploy/Caddyfile.local-test (which imports deploy/app.caddy, the site block
deploy/Caddyfile uses for a real domain), with HOME and XDG_* in tmp so that its CA,
certificates and state belong to the test."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from testkit.http import wait_until
from testkit.processes import REPO_ROOT, database_url, free_port, start_process, stop_group
from testkit.servers import collect_static, server_env, start_gunicorn
from tests.factories import UserFactory

pytestmark = pytest.mark.e2e

SECRET_KEY = "deploy-tls-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "a-long-tls-test-password-42"


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name.lower()), None)

    def cookie(self, name: str) -> str:
        """The Set-Cookie header that sets `name`."""
        cookies = [value for key, value in self.headers if key == "set-cookie" and value.startswith(f"{name}=")]
        assert cookies, f"no {name} cookie set; headers: {self.headers}"
        return cookies[-1]


class Curl:
    """curl with a cookie jar, verifying the server against `cacert` (None: the system's CAs)."""

    def __init__(self, tmp: Path, cacert: Path | None):
        self.tmp, self.cacert = tmp, cacert
        self.jar = tmp / "cookies.txt"

    def run(self, url: str, *args: str) -> subprocess.CompletedProcess:
        tls = ["--cacert", str(self.cacert)] if self.cacert else []
        head, body = self.tmp / "head.txt", self.tmp / "body.txt"
        for path in (head, body):
            path.unlink(missing_ok=True)
        command = ["curl", "-sS", "--noproxy", "*", "--max-time", "30", *tls, "-b", str(self.jar), "-c", str(self.jar)]
        command += ["-D", str(head), "-o", str(body), "-w", "%{http_code}", *args, url]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    def __call__(self, url: str, *args: str) -> Reply:
        result = self.run(url, *args)
        assert result.returncode == 0, f"curl {url} failed ({result.returncode}): {result.stderr}"
        headers = []
        for line in (self.tmp / "head.txt").read_text().splitlines()[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers.append((name.strip().lower(), value.strip()))
        return Reply(int(result.stdout), headers, (self.tmp / "body.txt").read_text(errors="replace"))


@dataclass
class Stack:
    base_url: str  # https://localhost:<port>, through Caddy
    gunicorn_url: str  # http://127.0.0.1:<port>, gunicorn itself
    curl: Curl


@pytest.fixture(scope="module")
def static_root(tmp_path_factory) -> Path:
    """collectstatic once for the module: DEBUG=0 serves the manifest's hashed files."""
    root = tmp_path_factory.mktemp("staticfiles")
    collect_static(root, server_env(DEBUG="0", SECRET_KEY=SECRET_KEY))
    return root


@pytest.fixture
def tls_stack(transactional_db, static_root, tmp_path):
    gunicorn_port, https_port, http_port = free_port(), free_port(), free_port()
    base_url = f"https://localhost:{https_port}"
    logs = {"gunicorn": tmp_path / "gunicorn.log", "caddy": tmp_path / "caddy.log"}
    processes: list[subprocess.Popen] = []
    try:
        processes.append(
            start_gunicorn(
                port=gunicorn_port,
                env=server_env(
                    DATABASE_URL=database_url(),
                    DEBUG="0",
                    SECRET_KEY=SECRET_KEY,
                    ALLOWED_HOSTS="localhost",
                    BEHIND_TLS_PROXY="1",
                    CSRF_TRUSTED_ORIGINS=base_url,
                    NUM_PROXIES="1",
                    STATIC_ROOT=str(static_root),
                    DATA_DIR=str(tmp_path / "data"),
                    MEDIA_ROOT=str(tmp_path / "media"),
                    DEMUCS_MODEL_REPO=str(tmp_path / "models"),
                ),
                log_path=logs["gunicorn"],
                workers=2,
                threads=4,
                extra_args=("--access-logfile", "-"),
            )
        )
        caddy_home = tmp_path / "caddy"
        processes.append(
            start_process(
                ["caddy", "run", "--config", str(REPO_ROOT / "deploy/Caddyfile.local-test"), "--adapter", "caddyfile"],
                {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "HOME": str(caddy_home / "home"),
                    "XDG_DATA_HOME": str(caddy_home / "data"),
                    "XDG_CONFIG_HOME": str(caddy_home / "config"),
                    "HTTPS_PORT": str(https_port),
                    "HTTP_PORT": str(http_port),
                    "UPSTREAM": f"127.0.0.1:{gunicorn_port}",
                },
                logs["caddy"],
            )
        )
        root_ca = caddy_home / "data/caddy/pki/authorities/local/root.crt"
        curl = Curl(tmp_path, root_ca)
        stack = Stack(base_url, f"http://127.0.0.1:{gunicorn_port}", curl)

        def up() -> bool:
            for process, name in zip(processes, logs, strict=True):
                assert process.poll() is None, f"{name} exited:\n{logs[name].read_text(errors='replace')}"
            return root_ca.exists() and curl.run(f"{base_url}/healthz").stdout == "200"

        wait_until(up, timeout=90, interval=0.3, message="gunicorn behind caddy to answer over HTTPS")
        yield stack
    finally:
        for process in reversed(processes):
            stop_group(process)  # SIGTERM the process group, SIGKILL what is left
        for name, path in logs.items():
            if path.exists():
                print(f"\n--- {name} ---\n{path.read_text(errors='replace')[-3000:]}")


@pytest.mark.django_db(transaction=True)
def test_https_through_caddy(tls_stack):
    stack, curl = tls_stack, tls_stack.curl

    # The certificate is signed by Caddy's local CA: verified with it, refused without it.
    assert Curl(tls_stack.curl.tmp, cacert=None).run(f"{stack.base_url}/healthz").returncode == 60

    health = curl(f"{stack.base_url}/healthz")
    assert health.status == 200 and '"ok"' in health.body
    api = curl(f"{stack.base_url}/api/")
    assert api.status == 200, api.body

    # Django sees HTTPS (X-Forwarded-Proto from Caddy): HSTS on pages.
    home = curl(f"{stack.base_url}/")
    assert home.status == 200
    assert home.header("strict-transport-security") == "max-age=31536000; includeSubDomains"

    # Straight to gunicorn over plain HTTP the request is not secure: no HSTS.
    direct = Curl(tls_stack.curl.tmp, cacert=None)(f"{stack.gunicorn_url}/", "-H", "Host: localhost")
    assert direct.status == 200
    assert direct.header("strict-transport-security") is None


@pytest.mark.django_db(transaction=True)
def test_login_through_caddy_sets_secure_cookies(tls_stack):
    stack, curl = tls_stack, tls_stack.curl
    user = UserFactory(username="tlsuser")
    # gunicorn hashes with the production hashers, not the tests' fast MD5.
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt())
    user.save(update_fields=["password"])

    login_url = f"{stack.base_url}/accounts/login/"
    page = curl(login_url)
    assert page.status == 200
    csrf_cookie = page.cookie("csrftoken")
    assert "; Secure" in csrf_cookie, csrf_cookie
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1)

    # A form posted from the HTTPS origin (CSRF_TRUSTED_ORIGINS) logs in.
    fields = (f"csrfmiddlewaretoken={token}", "login=tlsuser", f"password={PASSWORD}")
    login_form = [part for field in fields for part in ("--data-urlencode", field)]
    reply = curl(
        login_url,
        "-H",
        f"Origin: {stack.base_url}",
        "-H",
        f"Referer: {login_url}",
        *login_form,
    )
    assert reply.status == 302, reply.body[-2000:]
    session = reply.cookie("sessionid")
    assert "; Secure" in session and "; HttpOnly" in session, session
    assert "SameSite=Lax" in session

    location = reply.header("location")
    dashboard = curl(location if location.startswith("https://") else f"{stack.base_url}{location}")
    assert dashboard.status == 200
    assert "tlsuser" in dashboard.body

    # The same form from another origin is refused.
    forged = curl(
        login_url,
        "-H",
        "Origin: https://evil.example",
        *login_form,
    )
    assert forged.status == 403


def test_production_caddyfile(tmp_path):
    """deploy/Caddyfile (a real domain, public certificates) adapts and proxies to UPSTREAM."""
    result = subprocess.run(
        ["caddy", "adapt", "--config", str(REPO_ROOT / "deploy/Caddyfile"), "--adapter", "caddyfile"],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "DOMAIN": "stems.example.com",
            "UPSTREAM": "web:8000",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    (server,) = config["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"]
    (route,) = server["routes"]
    assert route["match"] == [{"host": ["stems.example.com"]}]
    assert '"dial":"web:8000"' in result.stdout.replace(" ", "")
    assert "tls" not in config["apps"]  # no internal issuer: ACME, Caddy's default
