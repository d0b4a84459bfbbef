"""A real browser showing that our pages (and the admin and the API docs) break none of the
Content-Security-Policy (test_security_headers.py checks the headers themselves)."""

import pytest
from django.conf import settings as django_settings
from django.test import Client
from playwright.sync_api import sync_playwright

from separation.tasks import separate_next_job
from tests import e2e
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _csp_console_messages(page, url: str, wait_for: str | None = None) -> list[str]:
    seen: list[str] = []

    def on_console(message):
        if "Content Security Policy" in message.text:
            seen.append(f"{url}: {message.text}")

    page.on("console", on_console)
    response = page.goto(url, wait_until="networkidle")
    assert response is not None and response.status == 200, (url, response and response.status)
    if wait_for:
        page.wait_for_selector(wait_for)
    page.wait_for_timeout(300)
    page.remove_listener("console", on_console)
    return seen


def test_our_pages_the_admin_and_the_api_docs_break_no_policy_in_a_browser(live_server, demo_model):
    user = UserFactory()
    job = make_job(user)
    separate_next_job()
    staff = UserFactory(is_staff=True, is_superuser=True)
    base = live_server.url
    assert base.startswith("http://localhost:"), base  # Secure cookies need a trustworthy origin
    # Sessions made before Playwright starts: its event loop makes the ORM refuse to run here.
    sessions = {None: None}
    for who in (user, staff):
        django_client = Client()
        django_client.force_login(who)
        sessions[who] = django_client.cookies[django_settings.SESSION_COOKIE_NAME]
    violations: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(e2e.CHROMIUM), args=e2e.CHROMIUM_ARGS)
        try:
            for who, paths in [
                (None, [("/", None), ("/accounts/signup/", None), ("/accounts/login/", None)]),
                (
                    user,
                    [
                        ("/dashboard/", None),
                        (f"/jobs/{job.pk}/", "#mixer"),
                        ("/credits/", None),
                        ("/accounts/keys/", None),
                        ("/accounts/webhooks/", None),
                    ],
                ),
                (
                    staff,
                    [
                        ("/admin/", None),
                        ("/admin/separation/job/", None),
                        (f"/admin/separation/job/{job.pk}/change/", None),
                        ("/admin/separation/job/statistics/", "canvas"),
                        ("/admin/accounts/user/", None),
                        ("/api/docs/", ".swagger-ui .info"),
                    ],
                ),
            ]:
                context = browser.new_context()
                if (cookie := sessions[who]) is not None:
                    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": base}])
                page = context.new_page()
                page.set_default_timeout(30_000)
                for path, wait_for in paths:
                    violations += _csp_console_messages(page, base + path, wait_for)
                context.close()
        finally:
            browser.close()
    assert violations == []
