"""API tokens end when people expect: POST /api/auth/logout ends the token it is sent with, and a
password change or reset (API, pages, admin) or a deactivation ends every earlier token. Revoked
token ids are purged once they would have expired anyway."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.hashers import make_password
from django.core import mail
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from tests.factories import PASSWORD

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

LOGOUT = "/api/auth/logout"
NEW_PASSWORD = "a-brand-new-passphrase-77"
RESET_LINK = re.compile(r"/accounts/password/reset/key/([0-9a-z]+)-([^/\s\"<>]+)/")


def login(user, password=PASSWORD) -> str:
    response = APIClient().post("/api/auth/login", {"email": user.email, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def works(token: str) -> bool:
    status = bearer(token).get("/api/auth/me").status_code
    assert status in (200, 401), status
    return status == 200


def csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def logged_in_as(client) -> int | None:
    value = client.session.get(SESSION_KEY)
    return int(value) if value is not None else None


# --- logout ---------------------------------------------------------------------------------


def test_it_logs_out_the_token_it_is_sent_with_and_no_other(user):
    first, second = login(user), login(user)

    response = bearer(first).post(LOGOUT)

    assert response.status_code == 204, response.content
    assert not works(first)
    assert works(second)
    assert works(login(user))


def test_it_answers_401_to_a_second_logout_with_the_same_token(user):
    token = login(user)
    assert bearer(token).post(LOGOUT).status_code == 204

    response = bearer(token).post(LOGOUT)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_answers_401_to_a_logout_with_an_expired_token(user):
    from accounts.models import RevokedToken

    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=-1))

    assert bearer(str(token)).post(LOGOUT).status_code == 401
    assert not RevokedToken.objects.exists()


def test_it_answers_401_to_a_logout_without_a_token(api_client):
    assert api_client.post(LOGOUT).status_code == 401


def test_it_does_not_log_out_a_browser_session_through_the_api(client, user):
    # The API logout ends bearer tokens; the page's Log out button ends the session.
    client.force_login(user)

    assert client.post(LOGOUT).status_code == 401
    assert logged_in_as(client) == user.pk


def test_the_page_logout_ends_the_session_and_leaves_the_api_tokens(client, user):
    token = login(user)
    client.force_login(user)

    client.post("/accounts/logout/")

    assert logged_in_as(client) is None
    assert works(token)


# --- password changes and resets end every earlier token -----------------------------------


def test_a_password_reset_over_the_api_ends_every_earlier_token(user):
    tokens = [login(user), login(user)]
    client = APIClient()
    client.post("/api/auth/password-reset", {"email": user.email}, format="json")
    uid, key = RESET_LINK.search(mail.outbox[0].body).groups()

    reset = client.post(
        "/api/auth/password-reset/confirm", {"uid": uid, "token": key, "new_password": NEW_PASSWORD}, format="json"
    )

    assert reset.status_code == 200, reset.content
    assert not any(works(token) for token in tokens)
    assert works(login(user, NEW_PASSWORD))


def test_a_password_reset_on_the_pages_ends_every_earlier_token_and_other_sessions(user):
    token = login(user)
    elsewhere = Client()
    elsewhere.force_login(user)
    client = Client()
    client.post("/accounts/password/reset/", {"email": user.email})
    path = RESET_LINK.search(mail.outbox[0].body).group(0)
    form = client.get(path, follow=True)
    set_url = form.redirect_chain[-1][0]

    done = client.post(set_url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert done.status_code == 302
    assert not works(token)
    assert elsewhere.get("/accounts/profile/").status_code == 302  # back to the login page
    assert works(login(user, NEW_PASSWORD))


def test_changing_the_password_on_the_account_page_ends_every_token_and_keeps_that_session(user):
    token = login(user)
    client = Client()
    client.force_login(user)
    page = client.get("/accounts/password/change/")
    assert page.status_code == 200

    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert not works(token)
    assert client.get("/accounts/profile/").status_code == 200
    assert works(login(user, NEW_PASSWORD))


def test_an_operator_setting_a_password_in_the_admin_ends_every_token(admin_client, user):
    token = login(user)

    response = admin_client.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert not works(token)
    assert works(login(user, NEW_PASSWORD))


def test_set_password_and_save_end_every_token(user):
    # The path of manage.py changepassword and any other code that sets a password.
    token = login(user)

    user.set_password(NEW_PASSWORD)
    user.save()

    assert not works(token)


def test_an_unusable_password_ends_every_token(user):
    token = login(user)

    user.set_unusable_password()
    user.save()

    assert not works(token)


def test_a_login_that_upgrades_the_password_hash_keeps_the_tokens(settings, user):
    # The hasher changing under a login is not a password change: nobody's tokens end.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    User.objects.filter(pk=user.pk).update(password=make_password(PASSWORD, hasher="pbkdf2_sha256"))
    token = login(user)

    login(user)

    assert User.objects.get(pk=user.pk).password.startswith("md5$")
    assert works(token)


def test_other_saves_keep_the_tokens(user):
    token = login(user)

    user.first_name = "Renamed"
    user.save()

    assert works(token)


# --- deactivation ----------------------------------------------------------------------------


def test_deactivating_an_account_ends_its_tokens_for_good(user):
    token = login(user)

    user.is_active = False
    user.save()
    assert not works(token)
    user.is_active = True
    user.save()

    assert not works(token)
    assert works(login(user))


# --- the denylist is purged -----------------------------------------------------------------


def test_it_purges_revoked_tokens_once_they_have_expired(user):
    from accounts.models import RevokedToken
    from accounts.services import revoked_tokens_purge

    token = login(user)
    bearer(token).post(LOGOUT)
    RevokedToken.objects.create(jti="old-one", expires_at=timezone.now() - timedelta(seconds=1))

    purged = revoked_tokens_purge()

    assert purged == 1
    assert list(RevokedToken.objects.values_list("jti", flat=True)) == [AccessToken(token)["jti"]]
    assert not works(token)


def test_the_schema_documents_logout(api_client):
    schema = api_client.get("/api/schema/?format=json").json()

    operation = schema["paths"]["/api/auth/logout"]["post"]
    assert {"204", "401"} <= set(operation["responses"])
