"""Bearer tokens: 30-day lifetime; anything expired, forged or for a gone user is 401."""

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken
from rest_framework_simplejwt.utils import aware_utcnow, datetime_from_epoch

from accounts.models import User
from tests.factories import PASSWORD

PROTECTED = ["/api/auth/me", "/api/credits/balance"]

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _b64decode(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _get(path, authorization=None):
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.get(path)


def _assert_unauthorized(authorization):
    for path in PROTECTED:
        response = _get(path, authorization)
        assert response.status_code == 401, (path, response.content)
        assert "credits" not in response.json()
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_issues_login_tokens_that_last_30_days(api_client, user):
    before = aware_utcnow()
    response = api_client.post("/api/auth/login", {"email": user.email, "password": PASSWORD}, format="json")
    after = aware_utcnow()

    claims = _b64decode(response.json()["access_token"].split(".")[1])
    expires = datetime_from_epoch(claims["exp"])
    assert before + timedelta(days=30) - timedelta(seconds=1) <= expires <= after + timedelta(days=30)
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600
    assert claims["token_type"] == "access"
    assert int(claims["user_id"]) == user.pk


def test_it_issues_register_tokens_that_last_30_days(api_client):
    response = api_client.post(
        "/api/auth/register",
        {"email": "fresh@example.com", "username": "fresh", "password": PASSWORD},
        format="json",
    )

    claims = _b64decode(response.json()["access_token"].split(".")[1])
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600


def test_it_accepts_a_valid_token_on_both_endpoints(user):
    token = AccessToken.for_user(user)

    for path in PROTECTED:
        response = _get(path, f"Bearer {token}")
        assert response.status_code == 200, path
        assert response.json()["credits"] == "3.00"


def test_it_accepts_a_token_that_is_29_days_old(user):
    token = AccessToken.for_user(user)
    token.set_iat(at_time=aware_utcnow() - timedelta(days=29))
    token.set_exp(from_time=aware_utcnow() - timedelta(days=29))

    assert _get("/api/auth/me", f"Bearer {token}").status_code == 200


def test_it_rejects_a_token_that_is_31_days_old(user):
    token = AccessToken.for_user(user)
    token.set_iat(at_time=aware_utcnow() - timedelta(days=31))
    token.set_exp(from_time=aware_utcnow() - timedelta(days=31))

    _assert_unauthorized(f"Bearer {token}")


def test_it_rejects_a_token_expired_a_second_ago(user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=-1))

    _assert_unauthorized(f"Bearer {token}")


def test_it_rejects_a_token_signed_with_another_key(user):
    token = AccessToken.for_user(user)
    forged = jwt.encode(dict(token.payload), "not-the-secret-key-" + "x" * 40, algorithm="HS256")

    _assert_unauthorized(f"Bearer {forged}")


def test_it_rejects_a_token_with_a_tampered_signature(user):
    header, payload, signature = str(AccessToken.for_user(user)).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    tampered = signature[:middle] + flipped + signature[middle + 1 :]

    _assert_unauthorized(f"Bearer {header}.{payload}.{tampered}")


def test_it_rejects_a_token_whose_payload_was_changed_to_another_user(user, other_user):
    header, payload, signature = str(AccessToken.for_user(user)).split(".")
    claims = _b64decode(payload)
    claims["user_id"] = other_user.pk if isinstance(claims["user_id"], int) else str(other_user.pk)

    _assert_unauthorized(f"Bearer {header}.{_b64(claims)}.{signature}")


def test_it_rejects_a_token_with_an_extended_expiry(user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=-1))
    header, payload, signature = str(token).split(".")
    claims = _b64decode(payload)
    claims["exp"] += 365 * 24 * 3600

    _assert_unauthorized(f"Bearer {header}.{_b64(claims)}.{signature}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_it_rejects_an_unsigned_alg_none_token(user, alg):
    claims = dict(AccessToken.for_user(user).payload)
    unsigned = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(claims)}."

    _assert_unauthorized(f"Bearer {unsigned}")


def test_it_rejects_a_token_signed_with_another_algorithm_and_the_same_key(user):
    claims = dict(AccessToken.for_user(user).payload)
    other = jwt.encode(claims, settings.SECRET_KEY, algorithm="HS512")

    _assert_unauthorized(f"Bearer {other}")


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer garbage", id="garbage-token"),
        pytest.param("Bearer a.b.c", id="three-garbage-parts"),
        pytest.param("Bearer ", id="empty-token"),
        pytest.param("Bearer", id="bare-scheme"),
        pytest.param("Bearer one two", id="two-tokens"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-auth"),
        pytest.param("Token abcdef", id="other-scheme"),
        pytest.param("garbage", id="no-scheme"),
    ],
)
def test_it_rejects_a_garbage_authorization_header(user, authorization):
    _assert_unauthorized(authorization)


def test_it_rejects_a_request_without_an_authorization_header(user):
    _assert_unauthorized(None)


def test_it_rejects_a_refresh_token_type(user):
    claims = dict(AccessToken.for_user(user).payload)
    claims["token_type"] = "refresh"
    forged = jwt.encode(claims, settings.SIMPLE_JWT.get("SIGNING_KEY", settings.SECRET_KEY), algorithm="HS256")

    _assert_unauthorized(f"Bearer {forged}")


def test_it_rejects_a_token_for_a_user_that_no_longer_exists(user):
    token = AccessToken.for_user(user)
    gone = (User.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1000
    token["user_id"] = gone if isinstance(token["user_id"], int) else str(gone)
    assert not User.objects.filter(pk=gone).exists()

    _assert_unauthorized(f"Bearer {token}")


def test_it_rejects_a_token_for_a_user_made_inactive(user):
    token = AccessToken.for_user(user)
    assert _get("/api/auth/me", f"Bearer {token}").status_code == 200

    User.objects.filter(pk=user.pk).update(is_active=False)

    _assert_unauthorized(f"Bearer {token}")
