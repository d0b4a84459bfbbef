"""Login and register are throttled per client IP and per account name; 429 carries Retry-After.
Failed logins count per account from one client IP (test_login_lockout.py: nobody locks the owner
out from elsewhere)."""

import pytest
from django.conf import settings

from accounts.models import User
from tests.factories import PASSWORD, UserFactory

LOGIN = "/api/auth/login"
REGISTER = "/api/auth/register"

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def _limit(scope: str) -> int:
    rates = {"login_ip": settings.THROTTLE_LOGIN_IP, "login_account": settings.THROTTLE_LOGIN_ACCOUNT}
    rate = rates.get(scope) or settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][scope]
    return int(rate.split("/")[0])


def _login(client, ip, identifier, password="not-the-password-1", field="email", **extra):
    return client.post(LOGIN, {field: identifier, "password": password}, format="json", REMOTE_ADDR=ip, **extra)


def _register(client, ip, n, email=None, **extra):
    payload = {"email": email or f"reg{n}@example.com", "username": f"reg{n}", "password": PASSWORD}
    return client.post(REGISTER, payload, format="json", REMOTE_ADDR=ip, **extra)


def _assert_throttled(response):
    assert response.status_code == 429, response.content
    assert int(response["Retry-After"]) > 0
    assert isinstance(response.json()["detail"], str)


def test_it_has_the_documented_default_rates():
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert {"register_ip", "register_account"} <= set(rates)
    assert (settings.THROTTLE_LOGIN_IP, settings.THROTTLE_LOGIN_ACCOUNT) == ("20/minute", "5/minute")
    assert settings.ACCOUNT_RATE_LIMITS["login_failed"] == "20/m/ip,5/m/key"
    assert all(_limit(scope) >= 1 for scope in ("login_ip", "login_account", "register_ip", "register_account"))


# Login, per account (from one IP).


def test_it_throttles_failed_logins_on_one_account_from_one_ip(api_client, user):
    limit = _limit("login_account")
    for _ in range(limit):
        assert _login(api_client, "10.1.0.1", user.email).status_code == 401

    response = _login(api_client, "10.1.0.1", user.email, password=PASSWORD)

    _assert_throttled(response)
    assert "access_token" not in response.json()


def test_it_counts_the_account_name_in_any_letter_case(api_client, user):
    limit = _limit("login_account")
    for n in range(limit):
        _login(api_client, "10.1.0.1", user.email.upper() if n % 2 else user.email)

    _assert_throttled(_login(api_client, "10.1.0.1", user.email.title()))


def test_it_counts_the_username_field_like_the_email_field(api_client, user):
    for _ in range(_limit("login_account")):
        _login(api_client, "10.1.0.1", user.username, field="username")

    _assert_throttled(_login(api_client, "10.1.0.1", user.username, field="email"))


def test_it_does_not_block_another_account_from_the_same_ip(api_client, user, other_user):
    ip = "10.2.0.1"
    for _ in range(_limit("login_account")):
        _login(api_client, ip, user.email)
    _assert_throttled(_login(api_client, ip, user.email))

    response = _login(api_client, ip, other_user.email, password=PASSWORD)

    assert response.status_code == 200, response.content
    assert response.json()["access_token"]


# Login, per IP.


def test_it_throttles_login_attempts_from_one_ip_across_accounts(api_client):
    ip = "10.3.0.1"
    limit = _limit("login_ip")
    for n in range(limit):
        # A new name each time, so no account reaches its own limit.
        assert _login(api_client, ip, f"victim{n}@example.com").status_code == 401, n

    _assert_throttled(_login(api_client, ip, "somebody-new@example.com"))


def test_it_does_not_block_another_ip_when_one_ip_is_throttled(api_client, user):
    ip = "10.4.0.1"
    for n in range(_limit("login_ip")):
        _login(api_client, ip, f"spray{n}@example.com")
    _assert_throttled(_login(api_client, ip, "spray-more@example.com"))

    response = _login(api_client, "10.4.0.2", user.email, password=PASSWORD)

    assert response.status_code == 200, response.content


def test_it_ignores_a_spoofed_x_forwarded_for_header(api_client, settings):
    # Without proxies in front (the default), X-Forwarded-For is whatever the client says.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}
    ip = "10.5.0.1"
    limit = _limit("login_ip")
    for n in range(limit):
        _login(api_client, ip, f"xff{n}@example.com", HTTP_X_FORWARDED_FOR=f"198.51.100.{n + 1}")

    response = _login(api_client, ip, "xff-last@example.com", HTTP_X_FORWARDED_FOR="203.0.113.77")

    _assert_throttled(response)


# Register, per IP.


def test_it_throttles_registrations_from_one_ip(api_client):
    ip = "10.6.0.1"
    for n in range(_limit("register_ip")):
        assert _register(api_client, ip, n).status_code == 201, n

    response = _register(api_client, ip, 999)

    _assert_throttled(response)
    assert not User.objects.filter(username="reg999").exists()


def test_it_does_not_block_registrations_from_another_ip(api_client):
    ip = "10.7.0.1"
    for n in range(_limit("register_ip")):
        _register(api_client, ip, n)
    _assert_throttled(_register(api_client, ip, 998))

    assert _register(api_client, "10.7.0.2", 999).status_code == 201


# Register, per account (email).


def test_it_throttles_registrations_for_one_email_from_many_ips(api_client):
    limit = _limit("register_account")
    for n in range(limit):
        assert _register(api_client, f"10.8.0.{n + 1}", n, email="target@example.com").status_code in (201, 400)

    _assert_throttled(_register(api_client, "10.8.1.1", 999, email="TARGET@example.com"))


def test_it_does_not_block_another_email_from_the_same_ip(api_client):
    ip = "10.9.0.1"
    limit = _limit("register_account")
    assert limit < _limit("register_ip"), "the per-IP budget must leave room for this check"
    for n in range(limit):
        _register(api_client, ip, n, email="target@example.com")
    _assert_throttled(_register(api_client, ip, 998, email="target@example.com"))

    assert _register(api_client, ip, 999, email="someone-else@example.com").status_code == 201


def test_it_does_not_share_budgets_between_login_and_register(api_client):
    ip = "10.10.0.1"
    existing = UserFactory(email="shared@example.com")
    for n in range(_limit("register_account")):
        _register(api_client, f"10.10.1.{n + 1}", n, email=existing.email)
    _assert_throttled(_register(api_client, ip, 999, email=existing.email))

    response = _login(api_client, ip, existing.email, password=PASSWORD)

    assert response.status_code == 200, response.content


def test_it_counts_email_and_username_against_one_account_budget(api_client, user):
    limit = _limit("login_account")
    for n in range(limit):
        identifier = user.email if n % 2 else user.username.upper()
        _login(api_client, "10.6.0.1", identifier, password="wrong-password")

    _assert_throttled(_login(api_client, "10.6.0.1", user.username, password=PASSWORD))
