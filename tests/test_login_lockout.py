"""Nobody can lock the owner out: failed logins are counted per (account, client address) and per
client address, on the API and the login page alike, so wrong passwords from one address throttle
that address (429 with Retry-After) while the owner's own address still logs in. Only failures
count. Behind proxies (NUM_PROXIES) the client address comes from X-Forwarded-For."""

import pytest
from django.test import Client

from tests.factories import PASSWORD

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

# The documented defaults: THROTTLE_LOGIN_ACCOUNT=5/minute, THROTTLE_LOGIN_IP=20/minute.
PER_ACCOUNT_AND_ADDRESS = 5
PER_ADDRESS = 20
OWNER, ATTACKER = "10.20.0.1", "10.20.0.66"
LOGIN_PAGE = "/accounts/login/"


def api_login(client, identifier, password, **extra):
    return client.post("/api/auth/login", {"email": identifier, "password": password}, format="json", **extra)


def page_login(identifier, password, **extra):
    client = Client()
    return client.post(LOGIN_PAGE, {"login": identifier, "password": password}, **extra)


def assert_throttled(response):
    assert response.status_code == 429, (response.status_code, response.content[:500])
    assert int(response["Retry-After"]) > 0


@pytest.fixture
def behind_one_proxy(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1


# --- the API --------------------------------------------------------------------------------


def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out_of_the_api(api_client, user):
    for _ in range(PER_ACCOUNT_AND_ADDRESS):
        assert api_login(api_client, user.email, "wrong-password-1", REMOTE_ADDR=ATTACKER).status_code == 401
    assert_throttled(api_login(api_client, user.email, PASSWORD, REMOTE_ADDR=ATTACKER))

    response = api_login(api_client, user.email, PASSWORD, REMOTE_ADDR=OWNER)

    assert response.status_code == 200, response.content
    assert response.json()["access_token"]


def test_the_api_counts_only_failures(api_client, user):
    for _ in range(PER_ACCOUNT_AND_ADDRESS * 3):
        assert api_login(api_client, user.username, PASSWORD, REMOTE_ADDR=OWNER).status_code == 200


def test_the_api_counts_failures_by_email_and_by_username_against_one_account(api_client, user):
    for n in range(PER_ACCOUNT_AND_ADDRESS):
        identifier = user.email.upper() if n % 2 else user.username
        api_login(api_client, identifier, "wrong-password-1", REMOTE_ADDR=ATTACKER)

    assert_throttled(api_login(api_client, user.username.upper(), PASSWORD, REMOTE_ADDR=ATTACKER))
    assert api_login(api_client, user.username, PASSWORD, REMOTE_ADDR=OWNER).status_code == 200


def test_the_api_throttles_an_address_that_fails_on_many_accounts(api_client, user):
    for n in range(PER_ADDRESS):
        assert api_login(api_client, f"victim{n}@example.com", "wrong-1", REMOTE_ADDR=ATTACKER).status_code == 401

    assert_throttled(api_login(api_client, user.email, PASSWORD, REMOTE_ADDR=ATTACKER))
    assert api_login(api_client, user.email, PASSWORD, REMOTE_ADDR=OWNER).status_code == 200


def test_the_api_tells_clients_behind_one_proxy_apart(behind_one_proxy, api_client, user):
    proxy = "127.0.0.1"
    for _ in range(PER_ACCOUNT_AND_ADDRESS):
        api_login(api_client, user.email, "wrong-password-1", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=ATTACKER)
    assert_throttled(
        api_login(api_client, user.email, PASSWORD, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"9.9.9.9, {ATTACKER}")
    )

    response = api_login(api_client, user.email, PASSWORD, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=OWNER)

    assert response.status_code == 200, response.content


# --- the login page -------------------------------------------------------------------------


def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out_of_the_login_page(user):
    for _ in range(PER_ACCOUNT_AND_ADDRESS):
        assert page_login(user.email, "wrong-password-1", REMOTE_ADDR=ATTACKER).status_code == 200
    assert_throttled(page_login(user.email, PASSWORD, REMOTE_ADDR=ATTACKER))

    response = page_login(user.email, PASSWORD, REMOTE_ADDR=OWNER)

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_the_login_page_counts_only_failures(user):
    for _ in range(PER_ACCOUNT_AND_ADDRESS * 2):
        assert page_login(user.username, PASSWORD, REMOTE_ADDR=OWNER).status_code == 302


def test_the_throttled_login_page_says_why(user):
    for _ in range(PER_ACCOUNT_AND_ADDRESS):
        page_login(user.email, "wrong-password-1", REMOTE_ADDR=ATTACKER)

    response = page_login(user.email, "wrong-password-1", REMOTE_ADDR=ATTACKER)

    assert_throttled(response)
    html = response.content.decode()
    assert "Too many failed login attempts" in html
    assert 'name="login"' in html


def test_the_login_page_tells_clients_behind_one_proxy_apart(behind_one_proxy, user):
    proxy = "127.0.0.1"
    for _ in range(PER_ACCOUNT_AND_ADDRESS):
        page_login(user.email, "wrong-password-1", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=ATTACKER)
    assert_throttled(page_login(user.email, PASSWORD, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=ATTACKER))

    response = page_login(user.email, PASSWORD, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=OWNER)

    assert response.status_code == 302


def test_failures_on_the_page_and_the_api_count_together(api_client, user):
    for n in range(PER_ACCOUNT_AND_ADDRESS):
        if n % 2:
            page_login(user.email, "wrong-password-1", REMOTE_ADDR=ATTACKER)
        else:
            api_login(api_client, user.email, "wrong-password-1", REMOTE_ADDR=ATTACKER)

    assert_throttled(api_login(api_client, user.email, PASSWORD, REMOTE_ADDR=ATTACKER))
    assert_throttled(page_login(user.email, PASSWORD, REMOTE_ADDR=ATTACKER))


def test_num_proxies_drives_allauths_client_address(tmp_path):
    from tests.settings_probe import settings_values

    found = settings_values(
        tmp_path,
        ["ALLAUTH_TRUSTED_PROXY_COUNT", "ACCOUNT_RATE_LIMITS"],
        DEBUG="1",
        NUM_PROXIES="2",
        THROTTLE_LOGIN_IP="30/hour",
        THROTTLE_LOGIN_ACCOUNT="4/minute",
    )

    assert found["ALLAUTH_TRUSTED_PROXY_COUNT"] == 2
    assert found["ACCOUNT_RATE_LIMITS"]["login_failed"] == "30/h/ip,4/m/key"
