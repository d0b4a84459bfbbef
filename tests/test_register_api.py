"""POST /api/auth/register: an account and a bearer token; its signup bonus comes with the verified
address (test_signup_bonus_once.py)."""

from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from accounts.services import email_address_verify
from credits.models import CreditTransaction
from tests.conftest import bearer_client
from tests.factories import PASSWORD, UserFactory

URL = "/api/auth/register"

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def _register(client, **overrides):
    payload = {"email": "newcomer@example.com", "username": "newcomer", "password": PASSWORD, **overrides}
    return client.post(URL, payload, format="json")


def _assert_field_error(response, field):
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body["errors"], body
    assert isinstance(body["detail"], str) and body["detail"]


def test_it_creates_an_account_and_returns_a_bearer_token(api_client):
    response = _register(api_client)

    assert response.status_code == 201, response.content
    body = response.json()
    user = User.objects.get(username="newcomer")
    assert body["token_type"] == "bearer"
    assert body["user"]["id"] == user.pk
    assert body["user"]["email"] == "newcomer@example.com"
    assert body["user"]["username"] == "newcomer"
    assert body["user"]["credits"] == "0.00"
    assert body["user"]["signup_bonus_pending"] == "3.00"
    assert AccessToken(body["access_token"])["user_id"] in (user.pk, str(user.pk))
    assert user.check_password(PASSWORD)


def test_it_returns_a_token_that_authenticates_the_new_user(api_client):
    token = _register(api_client).json()["access_token"]

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api_client.get("/api/auth/me")

    assert response.status_code == 200
    assert response.json()["username"] == "newcomer"
    assert response.json()["credits"] == "0.00"


def test_it_grants_three_credits_as_exactly_one_signup_bonus_row_once_the_address_is_verified(api_client):
    _register(api_client)
    user = User.objects.get(username="newcomer")
    assert not CreditTransaction.objects.filter(user=user).exists()

    email_address_verify(address=EmailAddress.objects.get(user=user))

    user.refresh_from_db()
    assert user.credits == Decimal("3.00")
    rows = list(CreditTransaction.objects.filter(user=user))
    assert len(rows) == 1
    assert rows[0].kind == CreditTransaction.Kind.SIGNUP_BONUS
    assert rows[0].amount == Decimal("3.00")
    assert rows[0].balance_after == Decimal("3.00")


def test_it_stores_the_email_lowercased(api_client):
    response = _register(api_client, email="Mixed.Case@Example.COM")

    assert response.status_code == 201, response.content
    assert response.json()["user"]["email"] == "mixed.case@example.com"
    assert User.objects.get(username="newcomer").email == "mixed.case@example.com"


def test_it_keeps_the_username_casing(api_client):
    response = _register(api_client, username="NewComer")

    assert response.status_code == 201, response.content
    assert User.objects.get(pk=response.json()["user"]["id"]).username == "NewComer"


@pytest.mark.parametrize("email", ["not-an-email", "missing-at.example.com", "a@", "@example.com", "a b@example.com"])
def test_it_rejects_a_bad_email(api_client, email):
    response = _register(api_client, email=email)

    _assert_field_error(response, "email")
    assert not User.objects.exists()


@pytest.mark.parametrize("username", ["has space", "semi;colon", "slash/name", "quote'name", "<script>", ""])
def test_it_rejects_a_username_with_bad_characters(api_client, username):
    response = _register(api_client, username=username)

    _assert_field_error(response, "username")
    assert not User.objects.exists()


def test_it_rejects_an_overlong_username(api_client):
    response = _register(api_client, username="u" * 151)

    _assert_field_error(response, "username")
    assert not User.objects.exists()


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("Xq7#kd", id="short"),
        pytest.param("password", id="common"),
        pytest.param("qwertyuiop", id="common-keyboard"),
        pytest.param("73926481057", id="numeric"),
        pytest.param("newcomer1", id="similar-to-username"),
    ],
)
def test_it_rejects_a_weak_password_naming_the_password_field(api_client, password):
    response = _register(api_client, password=password)

    _assert_field_error(response, "password")
    assert not User.objects.exists()
    assert not CreditTransaction.objects.exists()


def test_it_explains_a_short_password_in_the_detail(api_client):
    response = _register(api_client, password="Xq7#kd")

    assert response.status_code == 400
    assert "too short" in response.json()["detail"]


def test_it_names_every_missing_field(api_client):
    response = api_client.post(URL, {}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert {"email", "username", "password"} <= set(body["errors"])
    assert isinstance(body["detail"], str) and body["detail"]


@pytest.mark.parametrize("field", ["email", "username", "password"])
def test_it_names_a_single_missing_field(api_client, field):
    payload = {"email": "newcomer@example.com", "username": "newcomer", "password": PASSWORD}
    del payload[field]

    response = api_client.post(URL, payload, format="json")

    _assert_field_error(response, field)
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", 12345),
        ("email", ["newcomer@example.com"]),
        ("username", ["newcomer"]),
        ("username", {"name": "newcomer"}),
        ("password", ["a-long-test-password-42"]),
        ("password", {"secret": PASSWORD}),
        ("password", None),
    ],
)
def test_it_rejects_a_field_of_the_wrong_type(api_client, field, value):
    response = _register(api_client, **{field: value})

    _assert_field_error(response, field)
    assert not User.objects.exists()


def test_it_rejects_a_body_that_is_not_an_object(api_client):
    response = api_client.post(URL, ["newcomer@example.com", "newcomer", PASSWORD], format="json")

    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)
    assert not User.objects.exists()


def test_it_rejects_malformed_json(api_client):
    response = api_client.post(URL, '{"email": "newcomer@example.com", ', content_type="application/json")

    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert not User.objects.exists()


@pytest.mark.parametrize("email", ["taken@example.com", "TAKEN@EXAMPLE.COM", "Taken@Example.com"])
def test_it_rejects_an_email_already_taken_in_any_case(api_client, email):
    existing = UserFactory(username="first", email="taken@example.com")

    response = _register(api_client, email=email, username="second")

    _assert_field_error(response, "email")
    assert list(User.objects.values_list("pk", flat=True)) == [existing.pk]
    assert CreditTransaction.objects.count() == 1


@pytest.mark.parametrize("username", ["Taken", "taken", "TAKEN", "tAkEn"])
def test_it_rejects_a_username_already_taken_in_any_case(api_client, username):
    existing = UserFactory(username="Taken", email="first@example.com")

    response = _register(api_client, email="second@example.com", username=username)

    _assert_field_error(response, "username")
    assert list(User.objects.values_list("pk", flat=True)) == [existing.pk]
    assert CreditTransaction.objects.count() == 1


def test_it_rejects_registering_the_same_account_twice(api_client):
    assert _register(api_client).status_code == 201

    response = _register(api_client, email="NEWCOMER@example.com", username="NEWCOMER")

    assert response.status_code == 400
    assert {"email", "username"} <= set(response.json()["errors"])
    assert User.objects.count() == 1
    assert not CreditTransaction.objects.exists()


def test_it_does_not_need_or_use_a_bearer_token(api_client, user):
    client = bearer_client(user)

    response = _register(client)

    assert response.status_code == 201, response.content
    assert response.json()["user"]["username"] == "newcomer"
    assert User.objects.count() == 2
