"""Security headers with the production settings the tests run under (DEBUG off): a
Content-Security-Policy on every page, nosniff, frame denial, a referrer policy, HSTS over TLS,
downloads as attachments, Secure and HttpOnly cookies. A real browser checks the policy against
our pages in test_content_security_policy_browser.py."""

import pytest
from django.conf import settings as django_settings
from django.test import Client

from demucs_service.middleware.content_security_policy import API_DOCS_CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY
from separation.tasks import separate_next_job
from tests.conftest import bearer_client, logged_in
from tests.factories import PASSWORD
from tests.jobs import make_job

pytestmark = pytest.mark.unit


@pytest.fixture
def completed_job(db, demo_model, user):
    job = make_job(user)
    separate_next_job()
    job.refresh_from_db()
    assert job.status == job.Status.COMPLETED, job.error
    return job


def _page_paths(job) -> list[str]:
    return ["/", "/accounts/login/", "/accounts/signup/", "/credits/", "/dashboard/", f"/jobs/{job.pk}/"]


def test_it_runs_the_tests_with_production_security_settings():
    assert not django_settings.DEBUG
    assert django_settings.SESSION_COOKIE_SECURE and django_settings.CSRF_COOKIE_SECURE
    assert django_settings.SESSION_COOKIE_HTTPONLY
    assert django_settings.SECURE_HSTS_SECONDS >= 31536000


@pytest.mark.django_db
def test_every_page_carries_the_security_headers_over_tls(user, completed_job):
    client = logged_in(user)
    for path in _page_paths(completed_job):
        anonymous = path in {"/", "/accounts/login/", "/accounts/signup/"}
        response = (Client() if anonymous else client).get(path, secure=True)
        assert response.status_code == 200, (path, response.status_code)
        assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
        assert response["X-Content-Type-Options"] == "nosniff", path
        assert response["X-Frame-Options"] == "DENY", path
        assert response["Referrer-Policy"] == "same-origin", path
        assert response["Strict-Transport-Security"].startswith("max-age=31536000"), path
        assert "includeSubDomains" in response["Strict-Transport-Security"], path


@pytest.mark.django_db
def test_it_sends_no_hsts_over_plain_http(client):
    response = client.get("/")
    assert "Strict-Transport-Security" not in response
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_the_policy_allows_only_our_origin_and_the_providers_checkouts_for_forms():
    directives = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert directives == {
        "default-src": "'self'",
        "img-src": "'self' data:",
        "media-src": "'self' blob:",
        "script-src": "'self'",
        "style-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self' https://checkout.stripe.com https://billing.stripe.com "
        "https://square.link https://*.square.link https://*.square.site",
        "frame-ancestors": "'none'",
    }
    assert "unsafe" not in CONTENT_SECURITY_POLICY


@pytest.mark.django_db
def test_only_the_api_docs_get_inline_scripts_and_the_admin_does_not(admin_client, client):
    docs = client.get("/api/docs/", secure=True)
    assert docs.status_code == 200
    assert docs["Content-Security-Policy"] == API_DOCS_CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in docs["Content-Security-Policy"]
    assert docs["X-Frame-Options"] == "DENY"
    admin = admin_client.get("/admin/", secure=True)
    assert admin.status_code == 200
    assert admin["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    api = client.get("/api/", secure=True)
    assert api["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert api["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_downloads_are_attachments_with_nosniff(user, completed_job):
    client = bearer_client(user)
    paths = [f"/api/download/{completed_job.pk}"] + [
        f"/api/download/{completed_job.pk}/{stem}" for stem in ("drums", "bass", "other", "vocals")
    ]
    for path in paths:
        response = client.get(path, secure=True)
        assert response.status_code == 200, path
        assert response["Content-Disposition"].startswith("attachment;"), (path, response["Content-Disposition"])
        assert response["X-Content-Type-Options"] == "nosniff", path
        assert response["Content-Type"] != "text/html", path
        b"".join(response.streaming_content) if response.streaming else None


@pytest.mark.django_db
def test_the_session_and_csrf_cookies_are_secure_and_the_session_cookie_http_only(user):
    client = Client()
    client.get("/accounts/login/", secure=True)
    csrf = client.cookies["csrftoken"]
    assert csrf["secure"]
    response = client.post(
        "/accounts/login/", {"login": user.email, "password": PASSWORD, "csrfmiddlewaretoken": csrf.value}, secure=True
    )
    assert response.status_code == 302, response.content
    session = response.cookies["sessionid"]
    assert session["secure"] and session["httponly"]
    assert session["samesite"].lower() == "lax"
