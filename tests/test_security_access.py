"""Who may reach what: another user's job is 404 on every route that takes a job id (found from the
URL resolver, so a new route is covered the day it is added), bad tokens cannot reach a job,
the admin needs staff, and every page form needs its CSRF token.

Token lifetime and signature checks on /me and /balance are in test_jwt_tokens.py; throttling
is in test_auth_throttling.py."""

import base64
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken
from rest_framework_simplejwt.utils import aware_utcnow

from accounts.models import User
from accounts.services import api_key_create
from separation.models import Job
from separation.tasks import separate_next_job
from testkit.audio import tone_bytes
from tests.conftest import balance, bearer_client, logged_in
from tests.factories import PASSWORD
from tests.jobs import make_job
from webhooks.models import Delivery, Endpoint

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]

METHODS = ["get", "post", "put", "patch", "delete"]


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield prefix + str(pattern.pattern), namespace + pattern.name, pattern


def job_routes() -> list[str]:
    """URL names of every route with a job_id converter."""
    return sorted(
        {name for _, name, pattern in _walk(get_resolver().url_patterns) if "job_id" in pattern.pattern.converters}
    )


def _url(name: str, job: Job) -> str:
    kwargs = {"job_id": job.pk}
    route = next(route for _, n, route in _walk(get_resolver().url_patterns) if n == name)
    if "stem" in route.pattern.converters:
        kwargs["stem"] = "drums"
    return reverse(name, kwargs=kwargs)


@pytest.fixture
def owners_job(user):
    job = make_job(user)
    separate_next_job()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED, job.error
    return job


def _snapshot(job: Job):
    job.refresh_from_db()
    files = sorted(p for p in Path(django_settings.MEDIA_ROOT).rglob("*") if p.is_file())
    return job.status, job.stems, str(job.zip_file), files, balance(job.user)


def test_the_resolver_finds_the_job_routes_we_know_of():
    # A floor, not the list: a new route with a job id joins the tests below by itself.
    assert {"job", "job-status-partial", "job-waveform", "job-delete"} <= set(job_routes())
    assert {"api-status", "api-download", "api-download-stem", "api-job"} <= set(job_routes())


@pytest.mark.parametrize("name", job_routes())
def test_another_users_job_is_404_on_every_route_and_method(name, user, other_user, owners_job):
    url = _url(name, owners_job)
    # The owner reaches it (some method answers other than 404/405), so 404 below means "not yours".
    api = name.startswith("api-")
    owner = bearer_client(user) if api else logged_in(user)
    assert any(getattr(owner, method)(url).status_code not in {404, 405} for method in METHODS), url
    owners_job = make_job(user)  # a fresh one: the owner's POST above may have deleted its files
    url = _url(name, owners_job)
    before = _snapshot(owners_job)
    # Pages take the session; the API takes the session and bearer tokens.
    for client in [logged_in(other_user)] + ([bearer_client(other_user)] if api else []):
        answers = {method: getattr(client, method)(url).status_code for method in METHODS}
        assert set(answers.values()) <= {404, 405}, (url, answers)
        assert 404 in answers.values(), (url, answers)
    assert _snapshot(owners_job) == before


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _bad_tokens(owner: User, attacker: User) -> dict[str, str]:
    expired = AccessToken.for_user(owner)
    expired.set_exp(from_time=aware_utcnow() - timedelta(days=31))
    header, payload, signature = str(AccessToken.for_user(attacker)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["user_id"] = str(owner.pk)
    return {
        "expired owner token": str(expired),
        "attacker token with the owner's id": f"{header}.{_b64(claims)}.{signature}",
        "alg none for the owner": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "owner token with a flipped signature": str(AccessToken.for_user(owner))[:-2]
        + ("AA" if not str(AccessToken.for_user(owner)).endswith("AA") else "BB"),
    }


def test_bad_tokens_reach_no_job_route(user, other_user, owners_job):
    before = _snapshot(owners_job)
    api_routes = [name for name in job_routes() if name.startswith("api-")]
    for label, token in _bad_tokens(user, other_user).items():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        for name in api_routes:
            for method in ("get", "delete"):
                response = getattr(client, method)(_url(name, owners_job))
                assert response.status_code == 401, (label, name, method, response.status_code)
        assert client.get("/api/jobs").status_code == 401, label
    assert _snapshot(owners_job) == before


def test_the_attackers_own_token_lists_none_of_the_owners_jobs(other_user, owners_job):
    response = bearer_client(other_user).get("/api/jobs")
    assert response.status_code == 200
    assert response.json()["results"] == []
    history = bearer_client(other_user).get("/api/credits/history").json()["results"]
    assert all(str(owners_job.pk) not in json.dumps(row) for row in history)


# --- the admin needs staff -----------------------------------------------------------------


def admin_urls(job: Job, user: User) -> list[str]:
    urls = [reverse("admin:index"), reverse("admin:separation_job_statistics")]
    objects = {Job: job.pk, User: user.pk}
    for model in admin.site._registry:
        info = model._meta.app_label, model._meta.model_name
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        if model in objects:
            for view in ("change", "history", "delete"):
                urls.append(reverse("admin:{}_{}_{}".format(*info, view), args=[objects[model]]))
    for _, name, route in _walk(admin.site.get_urls(), namespace="admin:"):
        if not route.pattern.regex.groups and name not in {"admin:login", "admin:logout"}:
            urls.append(reverse(name))
    for _, name, route in _walk(admin.site.get_urls(), namespace="admin:"):
        if set(route.pattern.converters) == {"object_id"} and name.startswith("admin:accounts_user_"):
            urls.append(reverse(name, args=[user.pk]))
    return sorted(set(urls))


def test_every_admin_page_sends_a_non_staff_user_to_the_admin_login(user, owners_job, admin_client):
    urls = admin_urls(owners_job, user)
    assert len(urls) > 10
    client = logged_in(user)
    for url in urls:
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code == 302, (url, method, response.status_code)
            assert response["Location"].startswith(reverse("admin:login")), (url, response["Location"])
    before = _snapshot(owners_job)
    client.post(
        reverse("admin:separation_job_changelist"),
        {"action": "delete_selected", "_selected_action": [owners_job.pk], "post": "yes"},
    )
    assert _snapshot(owners_job) == before
    # The same pages answer a staff user, so the redirects above are about staff, not bad URLs.
    assert admin_client.get(reverse("admin:index")).status_code == 200
    assert admin_client.get(reverse("admin:separation_job_statistics")).status_code == 200


# --- CSRF on every page form ---------------------------------------------------------------


def _csrf_cases(user: User, job: Job) -> dict[str, tuple]:
    """url name -> (logged in?, url, data). Every POST a page of ours or allauth's makes."""
    endpoint, _ = Endpoint.objects.get_or_create(
        user=user, url="https://hooks.example.com/csrf", defaults={"events": ["job.completed"], "secret": "whsec_AA=="}
    )
    delivery, _ = Delivery.objects.get_or_create(
        endpoint=endpoint, job=job, event="job.completed", defaults={"body": "{}"}
    )
    on_endpoint = {"endpoint_id": endpoint.pk}
    return {
        "account_signup": (
            False,
            reverse("account_signup"),
            {"email": "c@example.com", "username": "csrfuser", "password1": PASSWORD, "password2": PASSWORD},
        ),
        "account_login": (False, reverse("account_login"), {"login": user.email, "password": PASSWORD}),
        "account_reset_password": (False, reverse("account_reset_password"), {"email": user.email}),
        "account_reset_password_from_key": (
            False,
            reverse("account_reset_password_from_key", kwargs={"uidb36": "1", "key": "set-password"}),
            {"password1": "another-long-password-1", "password2": "another-long-password-1"},
        ),
        "account_logout": (True, reverse("account_logout"), {}),
        "account_change_password": (
            True,
            reverse("account_change_password"),
            {"oldpassword": PASSWORD, "password1": "another-long-password-1", "password2": "another-long-password-1"},
        ),
        "account_email": (True, reverse("account_email"), {"email": "new@example.com", "action_add": ""}),
        "credits-buy": (True, reverse("credits-buy"), {"pack": "starter"}),
        "credits-subscribe": (True, reverse("credits-subscribe"), {"plan": "unlimited"}),
        "subscription-manage": (True, reverse("subscription-manage"), {}),
        "upload": (True, reverse("upload"), {"file": SimpleUploadedFile("song.wav", tone_bytes()), "model": "demo"}),
        "job-delete": (True, reverse("job-delete", kwargs={"job_id": job.pk}), {}),
        "job-full-song": (True, reverse("job-full-song", kwargs={"job_id": job.pk}), {}),
        "job-mix": (True, reverse("job-mix", kwargs={"job_id": job.pk}), {"gain_vocals": "0"}),
        "profile": (True, reverse("profile"), {"email_on_job_finished": ""}),
        "verify-email-resend": (True, reverse("verify-email-resend"), {}),
        "connection-remove": (True, reverse("connection-remove", kwargs={"connection_id": 1}), {}),
        # The social login buttons ({% provider_login_url %}): a login started from another site.
        "provider_login_url": (False, "/accounts/github/login/?process=login", {}),
        "api-keys-page": (True, reverse("api-keys-page"), {"name": "csrf"}),
        "api-key-revoke": (
            True,
            reverse("api-key-revoke", kwargs={"key_id": api_key_create(user=user, name="k")[0].pk}),
            {},
        ),
        "admin:login": (False, reverse("admin:login"), {"username": user.username, "password": PASSWORD}),
        "webhooks": (True, reverse("webhooks"), {"url": "https://hooks.example.com/new", "events": ["job.failed"]}),
        "webhook-delete": (True, reverse("webhook-delete", kwargs=on_endpoint), {}),
        "webhook-rotate": (True, reverse("webhook-rotate", kwargs=on_endpoint), {}),
        "webhook-enable": (True, reverse("webhook-enable", kwargs=on_endpoint), {}),
        "webhook-resend": (True, reverse("webhook-resend", kwargs={"delivery_id": delivery.pk}), {}),
    }


def _form_actions_in_our_templates() -> set[str]:
    names = set()
    for template in Path(django_settings.BASE_DIR, "templates").rglob("*.html"):
        for form in re.findall(r"<form[^>]*>", template.read_text()):
            if 'method="post"' in form:
                match = re.search(r"{% url '([^']+)'", form) or re.search(r"{% (provider_login_url) ", form)
                names.add(match.group(1) if match else f"(same page) {template.name}")
    return names


def test_the_csrf_table_covers_every_form_in_our_templates(user, owners_job):
    cases = _csrf_cases(user, owners_job)
    missing = {name for name in _form_actions_in_our_templates() if not name.startswith("(same page)")} - set(cases)
    assert not missing
    # grant_credits.html, waive_shortfall.html and refund.html post to themselves: admin pages,
    # covered by the admin's own CSRF (and staff; tests/test_admin_shortfalls.py posts one without its token).
    assert {name for name in _form_actions_in_our_templates() if name.startswith("(same page)")} <= {
        "(same page) grant_credits.html",
        "(same page) waive_shortfall.html",
        "(same page) refund.html",
    }


@pytest.mark.parametrize(
    "name",
    [
        "account_signup",
        "account_login",
        "account_reset_password",
        "account_reset_password_from_key",
        "account_logout",
        "account_change_password",
        "account_email",
        "credits-buy",
        "credits-subscribe",
        "subscription-manage",
        "upload",
        "job-delete",
        "job-full-song",
        "job-mix",
        "profile",
        "verify-email-resend",
        "connection-remove",
        "provider_login_url",
        "api-keys-page",
        "api-key-revoke",
        "admin:login",
        "webhooks",
        "webhook-delete",
        "webhook-rotate",
        "webhook-enable",
        "webhook-resend",
    ],
)
def test_every_page_form_refuses_a_post_without_its_csrf_token(name, user, owners_job, admin_user):
    logged, url, data = _csrf_cases(user, owners_job)[name]
    client = logged_in(user, enforce_csrf_checks=True) if logged else Client(enforce_csrf_checks=True)
    before = _snapshot(owners_job), Job.objects.count(), User.objects.count()
    password = User.objects.get(pk=user.pk).password
    response = client.post(url, data)
    assert response.status_code == 403, (name, response.status_code)
    assert (_snapshot(owners_job), Job.objects.count(), User.objects.count()) == before
    assert User.objects.get(pk=user.pk).password == password
    if logged:
        assert client.get(reverse("profile")).status_code == 200  # still logged in: logout refused too
