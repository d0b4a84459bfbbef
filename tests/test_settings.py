"""Settings come from the environment, and a bad value stops the process naming the variable."""

import json
import os
import secrets
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from demucs_service.settings import parse_credit_packs

REPO_ROOT = Path(__file__).resolve().parent.parent
SETUP = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'demucs_service.settings'; django.setup()"
PRODUCTION_SECRET = secrets.token_urlsafe(50)


def _env(tmp_path, **overrides) -> dict:
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/demucs"),
        "DATA_DIR": str(tmp_path / "data"),
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run(tmp_path, code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _settings(tmp_path, names: list[str], **env) -> dict:
    code = (
        f"{SETUP}; import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}, default=str))"
    )
    result = _run(tmp_path, code, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path):
    result = _run(tmp_path, SETUP, DEBUG="0")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY is required" in result.stderr


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_unset(tmp_path):
    result = _run(tmp_path, SETUP)

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_it_refuses_a_debug_value_it_does_not_understand(tmp_path):
    result = _run(tmp_path, SETUP, DEBUG="maybe", SECRET_KEY=PRODUCTION_SECRET)

    assert result.returncode != 0
    assert "DEBUG must be one of" in result.stderr
    assert "'maybe'" in result.stderr


def test_it_refuses_to_start_with_a_bad_credit_packs_value(tmp_path):
    result = _run(tmp_path, SETUP, DEBUG="1", CREDIT_PACKS="starter:five:1.00")

    assert result.returncode != 0
    assert "ImproperlyConfigured: CREDIT_PACKS must look like id:credits:price" in result.stderr


@pytest.mark.parametrize(
    "value", ["starter:5", "starter:5:1:2", "starter:0:1.00", "starter:5:-1", ":5:1.00", "a:1:1,a:2:2"]
)
def test_it_names_credit_packs_for_every_kind_of_bad_value(monkeypatch, value):
    monkeypatch.setenv("CREDIT_PACKS", value)

    with pytest.raises(ImproperlyConfigured, match="^CREDIT_PACKS"):
        parse_credit_packs("CREDIT_PACKS", "unused:1:1")


def test_it_reads_credit_packs_from_the_environment(tmp_path):
    values = _settings(tmp_path, ["CREDIT_PACKS"], DEBUG="1", CREDIT_PACKS="solo:1:0.50, bulk:500:40")

    assert values["CREDIT_PACKS"] == [
        {"id": "solo", "credits": "1", "price": "0.50"},
        {"id": "bulk", "credits": "500", "price": "40"},
    ]


@pytest.mark.django_db
def test_it_sells_the_configured_packs_through_the_api(api_client, settings, monkeypatch):
    monkeypatch.setenv("CREDIT_PACKS", "solo:1:0.50,bulk:500:40")
    settings.CREDIT_PACKS = parse_credit_packs("CREDIT_PACKS", "unused:1:1")
    settings.CREDIT_CURRENCY = "eur"

    response = api_client.get("/api/credits/packages")

    assert response.status_code == 200
    assert response.json() == [
        {"id": "solo", "credits": "1.00", "price": "0.50", "currency": "eur"},
        {"id": "bulk", "credits": "500.00", "price": "40.00", "currency": "eur"},
    ]


def test_it_uses_a_sqlite_file_in_the_data_dir_without_database_url(tmp_path):
    values = _settings(tmp_path, ["DATABASES"], DEBUG="1", DATABASE_URL=None)

    database = values["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(tmp_path / "data" / "db.sqlite3")
    assert database["ATOMIC_REQUESTS"] is False
    assert (tmp_path / "data").is_dir()


def test_it_uses_postgres_from_database_url(tmp_path):
    values = _settings(tmp_path, ["DATABASES"], DEBUG="1", DATABASE_URL="postgres://someone:pw@db.internal:5433/stems")

    database = values["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert database["NAME"] == "stems"
    assert (database["HOST"], database["PORT"], database["USER"]) == ("db.internal", 5433, "someone")
    assert database["ATOMIC_REQUESTS"] is False


def test_it_does_not_wrap_requests_in_a_transaction():
    from django.conf import settings

    assert settings.DATABASES["default"]["ATOMIC_REQUESTS"] is False


def test_it_passes_the_deploy_checks_with_a_production_environment(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=_env(tmp_path, DEBUG="0", SECRET_KEY=PRODUCTION_SECRET, ALLOWED_HOSTS="example.com"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


SECURITY = ["SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "ALLOWED_HOSTS"]


def test_it_turns_on_hsts_and_secure_cookies_when_debug_is_off(tmp_path):
    values = _settings(
        tmp_path, SECURITY, DEBUG="0", SECRET_KEY=PRODUCTION_SECRET, ALLOWED_HOSTS="example.com, www.example.com"
    )

    assert values["SECURE_HSTS_SECONDS"] > 0
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["ALLOWED_HOSTS"] == ["example.com", "www.example.com"]


def test_it_starts_without_a_secret_key_and_without_hsts_or_secure_cookies_when_debug_is_on(tmp_path):
    values = _settings(tmp_path, ["DEBUG", "SECRET_KEY", *SECURITY], DEBUG="1")

    assert values["DEBUG"] is True
    assert values["SECRET_KEY"]
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["CSRF_COOKIE_SECURE"] is False


def test_it_parses_credit_packs_into_decimals(monkeypatch):
    monkeypatch.setenv("CREDIT_PACKS", "one:2.5:0.99")

    assert parse_credit_packs("CREDIT_PACKS", "unused:1:1") == [
        {"id": "one", "credits": Decimal("2.5"), "price": Decimal("0.99")}
    ]
