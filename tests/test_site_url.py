"""Job mails link to the job page through SITE_URL: in production (DEBUG off, an SMTP EMAIL_URL)
the workers that send them refuse to start without it; the web process, which sends none, starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from separation.notifications import mail_settings_validate

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SMTP = "django.core.mail.backends.smtp.EmailBackend"


def production_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("SITE_URL", "DEBUG", "EMAIL_URL")}
    env.update(DEBUG="0", SECRET_KEY="s" * 60, EMAIL_URL="smtp://127.0.0.1:2525", **extra)
    return env


def test_it_refuses_to_start_a_worker_that_would_mail_without_site_url():
    started = subprocess.run(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert started.returncode != 0
    assert "SITE_URL is required for workers that send job mails" in started.stderr


def test_it_starts_the_web_process_without_site_url():
    checked = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    ("debug", "backend", "site_url", "refused"),
    [
        (False, SMTP, "", True),
        (False, SMTP, "https://stems.example", False),
        (False, "django.core.mail.backends.console.EmailBackend", "", False),
        (True, SMTP, "", False),
    ],
)
def test_it_asks_for_site_url_only_where_mails_go_out(settings, debug, backend, site_url, refused):
    settings.DEBUG, settings.EMAIL_BACKEND, settings.SITE_URL = debug, backend, site_url

    if refused:
        with pytest.raises(ImproperlyConfigured, match="SITE_URL"):
            mail_settings_validate()
    else:
        mail_settings_validate()
