"""docker-compose.yml and the GPU override validate with `docker-compose config` (Debian's
docker-compose 1.29, which needs no Docker engine for it) and describe the production stack."""

import subprocess

import pytest
import yaml

from testkit.processes import REPO_ROOT

pytestmark = pytest.mark.e2e

GPU_OVERRIDE = "deploy/docker-compose.gpu.yml"


def compose_config(tmp_path, *files: str, **env: str) -> subprocess.CompletedProcess:
    """`docker-compose config` in a bare environment (only `env`), reading no .env file."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    command = ["docker-compose", "--env-file", str(empty_env_file), "--project-directory", str(REPO_ROOT)]
    for name in ("docker-compose.yml", *files):
        command += ["-f", str(REPO_ROOT / name)]
    return subprocess.run(
        [*command, "config"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def config(tmp_path, *files: str, **env: str) -> dict:
    env = {"SECRET_KEY": "compose-test-secret", "DOMAIN": "stems.example.com", **env}
    result = compose_config(tmp_path, *files, **env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_stack(tmp_path):
    stack = config(tmp_path)
    services = stack["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "maintenance", "caddy"}

    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "postgres-data:/var/lib/postgresql/data" in " ".join(services["postgres"]["volumes"])
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])

    for name in ("web", "worker", "maintenance"):
        service = services[name]
        env = service["environment"]
        assert env["SECRET_KEY"] == "compose-test-secret"
        assert env["DEBUG"] == "0"
        assert env["ALLOWED_HOSTS"] == "stems.example.com"
        assert env["CSRF_TRUSTED_ORIGINS"] == "https://stems.example.com"
        assert env["BEHIND_TLS_PROXY"] == "1"
        assert env["DATABASE_URL"].startswith("postgres://demucs:") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        volumes = " ".join(service["volumes"])
        assert "media:/data/media" in volumes and "models:/data/models" in volumes
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["build"]["args"]["TORCH_INDEX"].endswith("/whl/cpu")
        assert "deploy" not in service  # no GPU reservation without the override

    # web: the image's command (migrate, then gunicorn); the worker runs qcluster.
    assert "command" not in services["web"]
    assert services["worker"]["command"] == ["python", "manage.py", "qcluster"]
    # The maintenance cluster: the same command on the other queue, so upkeep never waits behind a job.
    assert services["maintenance"]["command"] == ["python", "manage.py", "qcluster"]
    assert services["maintenance"]["environment"]["Q_CLUSTER_NAME"] == "maintenance"
    assert "Q_CLUSTER_NAME" not in services["worker"]["environment"]

    caddy = services["caddy"]
    assert caddy["environment"] == {"DOMAIN": "stems.example.com", "UPSTREAM": "web:8000"}
    assert {port["published"] for port in caddy["ports"]} == {80, 443}
    mounts = " ".join(caddy["volumes"])
    assert "deploy/Caddyfile:/etc/caddy/Caddyfile" in mounts and "caddy-data:/data" in mounts
    assert caddy["depends_on"]["web"]["condition"] == "service_healthy"

    assert {"postgres-data", "media", "models", "caddy-data"} <= set(stack["volumes"])


def test_gpu_override(tmp_path):
    services = config(tmp_path, GPU_OVERRIDE, WORKER_GPU="1")["services"]
    worker = services["worker"]
    assert worker["environment"]["DEMUCS_DEVICE"] == "cuda"
    assert "/whl/cu" in worker["build"]["args"]["TORCH_INDEX"]
    assert worker["image"].endswith(":cuda")
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["device_ids"] == ["1"]
    # Everything else is the base stack's: the same secrets, volumes and web image (CPU).
    assert worker["environment"]["SECRET_KEY"] == "compose-test-secret"
    assert worker["command"] == ["python", "manage.py", "qcluster"]
    assert "models:/data/models" in " ".join(worker["volumes"])
    assert services["web"]["build"]["args"]["TORCH_INDEX"].endswith("/whl/cpu")
    assert "deploy" not in services["web"]


@pytest.mark.parametrize("files", [(), (GPU_OVERRIDE,)], ids=["base", "gpu"])
def test_secret_key_is_required(tmp_path, files):
    result = compose_config(tmp_path, *files, DOMAIN="stems.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_domain_is_required(tmp_path):
    result = compose_config(tmp_path, SECRET_KEY="compose-test-secret")
    assert result.returncode != 0
    assert "DOMAIN is required" in result.stderr
