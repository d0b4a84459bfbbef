"""POST /api/auth/login: email or username (in either field), case-insensitive, one generic failure."""

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from accounts.api import INVALID_CREDENTIALS
from tests.factories import PASSWORD, UserFactory

URL = "/api/auth/login"

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def alice(db):
    return UserFactory(username="Alice", email="alice@example.com")


def _login(client, **payload):
    return client.post(URL, payload, format="json")


def _token_user_id(response):
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "bearer"
    return int(AccessToken(body["access_token"])["user_id"])


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"email": "alice@example.com"}, id="email-in-email"),
        pytest.param({"username": "Alice"}, id="username-in-username"),
        pytest.param({"email": "Alice"}, id="username-in-email"),
        pytest.param({"username": "alice@example.com"}, id="email-in-username"),
    ],
)
def test_it_logs_in_by_email_or_username_in_either_field(api_client, alice, other_user, payload):
    response = _login(api_client, password=PASSWORD, **payload)

    assert _token_user_id(response) == alice.pk


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"email": "ALICE@EXAMPLE.COM"}, id="upper-email"),
        pytest.param({"email": "Alice@Example.Com"}, id="mixed-email"),
        pytest.param({"username": "alice"}, id="lower-username"),
        pytest.param({"username": "ALICE"}, id="upper-username"),
        pytest.param({"email": "aLiCe"}, id="mixed-username-in-email"),
    ],
)
def test_it_matches_the_identifier_in_any_letter_case(api_client, alice, payload):
    response = _login(api_client, password=PASSWORD, **payload)

    assert _token_user_id(response) == alice.pk


def test_it_returns_a_token_that_works_on_me_with_the_balance(api_client, alice):
    token = _login(api_client, email="alice@example.com", password=PASSWORD).json()["access_token"]

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api_client.get("/api/auth/me")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == alice.pk
    assert body["email"] == "alice@example.com"
    assert body["username"] == "Alice"
    assert body["credits"] == "3.00"


def test_it_rejects_a_wrong_password_with_the_generic_message(api_client, alice):
    response = _login(api_client, email="alice@example.com", password=PASSWORD + "x")

    assert response.status_code == 401
    assert response.json() == {"detail": INVALID_CREDENTIALS}
    assert "access_token" not in response.json()


def test_it_rejects_a_password_in_another_case(api_client, alice):
    response = _login(api_client, username="Alice", password=PASSWORD.upper())

    assert response.status_code == 401


def test_it_gives_the_same_answer_for_wrong_password_unknown_user_and_inactive_user(api_client, alice):
    inactive = UserFactory(username="sleeper", email="sleeper@example.com", is_active=False)

    wrong_password = _login(api_client, email="alice@example.com", password="not-the-password-1")
    unknown_email = _login(api_client, email="nobody@example.com", password=PASSWORD)
    unknown_username = _login(api_client, username="nobody", password=PASSWORD)
    inactive_right_password = _login(api_client, email=inactive.email, password=PASSWORD)

    responses = [wrong_password, unknown_email, unknown_username, inactive_right_password]
    assert [r.status_code for r in responses] == [401, 401, 401, 401]
    assert all(r.json() == {"detail": INVALID_CREDENTIALS} for r in responses)
    assert len({r.content for r in responses}) == 1
    assert INVALID_CREDENTIALS == "Unable to log in with the provided credentials."


def test_it_asks_for_a_bearer_token_on_failure(api_client, alice):
    response = _login(api_client, email="alice@example.com", password="not-the-password-1")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"password": PASSWORD}, id="absent"),
        pytest.param({"email": "", "password": PASSWORD}, id="empty-email"),
        pytest.param({"username": "", "password": PASSWORD}, id="empty-username"),
    ],
)
def test_it_requires_an_identifier(api_client, alice, payload):
    response = _login(api_client, **payload)

    assert response.status_code == 400
    body = response.json()
    assert set(body["errors"]) & {"email", "username"}
    assert isinstance(body["detail"], str) and body["detail"]


def test_it_requires_a_password(api_client, alice):
    response = _login(api_client, email="alice@example.com")

    assert response.status_code == 400
    assert "password" in response.json()["errors"]


def test_it_rejects_malformed_json(api_client, alice):
    response = api_client.post(URL, '{"email": "alice@example.com"', content_type="application/json")

    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)


def test_it_does_not_log_in_one_user_with_another_users_password(api_client, alice):
    UserFactory(username="bob", email="bob@example.com", password="bobs-own-password-99")

    response = _login(api_client, email="alice@example.com", password="bobs-own-password-99")

    assert response.status_code == 401
