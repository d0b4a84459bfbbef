"""Social login through GitHub and Google (django-allauth), against fake providers on loopback
(tests.fake_oauth): the real allauth views, our adapter and the sign-up service, the provider's
token and user endpoints called over HTTP."""

import re
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount, SocialApp
from django.test import Client

from accounts.models import User
from demucs_service.middleware.content_security_policy import _BASE
from tests.conftest import balance, logged_in
from tests.factories import PASSWORD, UserFactory
from tests.fake_oauth import CLIENT_ID, FakeOAuth, Person

BASE_FORM_ACTION = _BASE["form-action"]

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def fake(settings):
    with FakeOAuth() as fake:
        fake.configure(settings, "github", "google")
        yield fake


@pytest.fixture(params=["optional", "mandatory"])
def verification(request, settings):
    """Both ways the site runs: EMAIL_VERIFICATION optional (DEBUG) and mandatory (production)."""
    settings.EMAIL_VERIFICATION = request.param
    settings.ACCOUNT_EMAIL_VERIFICATION = request.param
    return request.param


def social_login(client: Client, fake: FakeOAuth, provider: str, *, process: str = "login"):
    """The button (a POST), the provider's authorize page, then its redirect back to the callback."""
    start = client.post(f"/accounts/{provider}/login/?process={process}")
    assert start.status_code == 302, start.content[:500]
    callback = urlsplit(fake.approve(start["Location"]))
    assert callback.path == f"/accounts/{provider}/login/callback/"
    return client.get(f"{callback.path}?{callback.query}")


def session_user(client: Client):
    return User.objects.filter(pk=client.session.get("_auth_user_id")).first()


@pytest.mark.parametrize("provider", ["github", "google"])
def test_it_makes_a_new_account_with_its_free_credits_once(fake, verification, provider):
    fake.person = Person(uid="1001", login="ada", email="Ada@Example.com")
    client = Client()

    response = social_login(client, fake, provider)

    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    user = session_user(client)
    assert user is not None and user.email == "ada@example.com"
    assert balance(user) == Decimal(3)
    assert not user.has_usable_password()
    assert EmailAddress.objects.get(user=user).verified
    assert SocialAccount.objects.get(user=user).provider == provider
    # Logging in again, from another browser, is the same account and no second bonus.
    again = Client()
    social_login(again, fake, provider)
    assert session_user(again) == user
    assert User.objects.count() == 1
    assert balance(user) == Decimal(3)


def test_it_sends_the_registered_client_and_callback_to_the_provider(fake):
    social_login(Client(), fake, "github")

    [authorize] = [r for r in fake.requests if r["path"].endswith("/authorize")]
    assert authorize["params"]["client_id"] == CLIENT_ID
    assert authorize["params"]["redirect_uri"] == "http://testserver/accounts/github/login/callback/"
    assert set(authorize["params"]["scope"].split()) == {"read:user", "user:email"}


def test_a_mailbox_that_had_its_bonus_gets_none_through_a_provider(fake):
    UserFactory(email="a.da.l@gmail.com")  # verified, bonus granted
    fake.person = Person(uid="1002", login="adal", email="adal+stems@gmail.com")
    client = Client()

    social_login(client, fake, "google")

    user = session_user(client)
    assert user is not None and user.email == "adal+stems@gmail.com"
    assert balance(user) == Decimal(0)


@pytest.mark.parametrize("provider", ["github", "google"])
def test_an_unverified_provider_address_does_not_take_over_an_existing_account(fake, verification, provider):
    owner = UserFactory(email="owner@example.com")
    fake.person = Person(uid="666", login="mallory", email="owner@example.com", verified=False)
    client = Client()

    social_login(client, fake, provider)

    assert session_user(client) != owner
    assert not SocialAccount.objects.filter(user=owner).exists()
    owner.refresh_from_db()
    assert owner.has_usable_password() and owner.check_password(PASSWORD)
    assert User.objects.filter(email__iexact="owner@example.com").count() == 1
    assert balance(owner) == Decimal(3)


@pytest.mark.parametrize("provider", ["github", "google"])
def test_a_verified_provider_address_connects_to_the_account_that_has_it(fake, verification, provider):
    owner = UserFactory(email="owner@example.com")
    fake.person = Person(uid="777", login="owner", email="OWNER@example.com")
    client = Client()

    response = social_login(client, fake, provider)

    assert response.status_code == 302
    assert session_user(client) == owner
    assert SocialAccount.objects.get(user=owner).uid == "777"
    assert User.objects.count() == 1
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)  # the address was verified here too: nothing to fear
    assert balance(owner) == Decimal(3)  # no second bonus


def test_a_verified_provider_address_locks_out_whoever_registered_it_unverified(fake, verification):
    squatter = UserFactory(email="victim@example.com", email_verified=False)
    fake.person = Person(uid="888", login="victim", email="victim@example.com")
    client = Client()

    social_login(client, fake, "github")

    assert session_user(client) == squatter
    squatter.refresh_from_db()
    assert not squatter.has_usable_password()  # the password the squatter chose is gone
    assert EmailAddress.objects.get(user=squatter).verified
    assert balance(squatter) == Decimal(3)  # the provider verified the mailbox: its bonus


def test_a_disabled_provider_shows_no_button_and_its_urls_are_not_found(fake, settings):
    fake.configure(settings, "github")
    client = Client()

    for page in ("/accounts/login/", "/accounts/signup/"):
        content = client.get(page).content.decode()
        assert "Continue with GitHub" in content
        assert "Google" not in content
    for url in ("/accounts/google/login/", "/accounts/google/login/callback/?code=x&state=y"):
        assert client.get(url).status_code == 404
        assert client.post(url).status_code == 404
    assert not [r for r in fake.requests if r["path"].startswith("/google")]


def test_without_providers_the_pages_offer_none(fake, settings):
    fake.configure(settings)
    client = Client()

    for page in ("/accounts/login/", "/accounts/signup/"):
        content = client.get(page).content.decode()
        assert "Or continue with" not in content
        assert "GitHub" not in content
    assert client.post("/accounts/github/login/").status_code == 404


def test_the_buttons_post_so_no_other_site_can_start_a_login(fake):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/accounts/login/").content.decode()
    assert '<form method="post" action="/accounts/github/login/?process=login">' in page

    # A link from elsewhere gets allauth's confirmation page, not a trip to the provider.
    assert client.get("/accounts/github/login/").status_code == 200
    assert client.post("/accounts/github/login/").status_code == 403  # no CSRF token
    assert fake.requests == []


def test_a_callback_cannot_be_replayed_or_opened_in_another_browser(fake):
    client = Client()
    start = client.post("/accounts/github/login/?process=login")
    callback = urlsplit(fake.approve(start["Location"]))
    url = f"{callback.path}?{callback.query}"

    stranger = Client()
    stranger.get(url)
    assert session_user(stranger) is None  # the state belongs to the first browser's session
    client.get(url)
    assert session_user(client) is not None
    replay = Client()
    replay.get(url)
    assert session_user(replay) is None
    assert User.objects.count() == 1


def test_it_connects_and_disconnects_from_the_account_page_after_asking_for_the_password(fake):
    user = UserFactory(email="me@example.com")
    fake.person = Person(uid="5150", login="me-on-github", email="someone-else@example.com")
    client = logged_in(user)
    page = client.get("/accounts/profile/").content.decode()
    assert "Connect GitHub" in page and "Connect Google" in page
    assert "No accounts connected yet." in page

    response = social_login(client, fake, "github", process="connect")

    # A session alone does not add a way in: the password first, then the connection is made.
    assert response.status_code == 302 and response["Location"] == "/accounts/reauthenticate/"
    assert not SocialAccount.objects.exists()
    assert client.post("/accounts/reauthenticate/", {"password": "wrong"}).status_code == 200
    assert not SocialAccount.objects.exists()
    response = client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
    connection = SocialAccount.objects.get(user=user)
    assert "me-on-github" in client.get("/accounts/profile/").content.decode()
    # The GitHub account logs in to this account from now on.
    other_browser = Client()
    social_login(other_browser, fake, "github")
    assert session_user(other_browser) == user

    # Within five minutes of giving the password, no second time.
    response = client.post(f"/accounts/connections/{connection.pk}/remove/")

    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
    assert not SocialAccount.objects.filter(user=user).exists()
    assert User.objects.count() == 1


def test_disconnecting_asks_for_the_password_too(fake):
    user = UserFactory()
    fake.person = Person(uid="5151", login="me", email=user.email)
    social_login(Client(), fake, "github")  # the verified address connects it
    connection = SocialAccount.objects.get(user=user)
    client = logged_in(user)

    response = client.post(f"/accounts/connections/{connection.pk}/remove/")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/reauthenticate/")
    assert SocialAccount.objects.filter(pk=connection.pk).exists()


def test_another_users_connection_cannot_be_removed(fake):
    fake.person = Person(uid="9001", login="theirs", email="theirs@example.com")
    social_login(Client(), fake, "github")
    theirs = SocialAccount.objects.get()
    me = UserFactory()

    response = logged_in(me).post(f"/accounts/connections/{theirs.pk}/remove/")

    assert response.status_code == 404
    assert SocialAccount.objects.filter(pk=theirs.pk).exists()


def test_the_only_way_in_cannot_be_disconnected(fake):
    fake.person = Person(uid="9002", login="solo", email="solo@example.com")
    client = Client()
    social_login(client, fake, "github")
    account = SocialAccount.objects.get()

    client.post(f"/accounts/connections/{account.pk}/remove/")

    assert SocialAccount.objects.filter(pk=account.pk).exists()
    page = client.get("/accounts/profile/").content.decode()
    assert "Your account has no password set up." in page
    assert "set one</a> to get a token" in page


def test_a_connection_is_removed_only_by_post(fake):
    fake.person = Person(uid="9003", login="mine", email="mine@example.com")
    client = Client()
    social_login(client, fake, "github")
    account = SocialAccount.objects.get()

    assert client.get(f"/accounts/connections/{account.pk}/remove/").status_code == 405
    assert SocialAccount.objects.filter(pk=account.pk).exists()


def test_the_pages_may_send_a_login_form_on_to_the_configured_providers_only(fake, settings):
    fake.configure(settings, "github")
    policy = Client().get("/accounts/login/")["Content-Security-Policy"]
    directives = dict(part.split(" ", 1) for part in policy.split("; "))
    # The button posts here, and Chromium checks form-action on the redirect to the provider too.
    assert directives["form-action"] == f"{BASE_FORM_ACTION} {fake.url}"

    fake.configure(settings)
    policy = Client().get("/accounts/login/")["Content-Security-Policy"]
    assert f"form-action {BASE_FORM_ACTION};" in policy


def test_a_taken_username_gives_the_new_account_another(fake):
    taken = UserFactory(username="Ada")
    fake.person = Person(uid="1003", login="ada", email="someone@example.com")
    client = Client()

    social_login(client, fake, "github")

    user = session_user(client)
    assert user is not None and user != taken
    assert user.username.lower() != "ada"


def test_providers_come_from_the_environment_only(fake, settings, admin_client):
    fake.configure(settings)
    SocialApp.objects.create(provider="github", name="added in the database", client_id="x", secret="y")

    assert "GitHub" not in Client().get("/accounts/login/").content.decode()
    assert Client().post("/accounts/github/login/").status_code == 404
    assert admin_client.get("/admin/socialaccount/socialapp/").status_code == 404
    assert admin_client.get("/admin/socialaccount/socialaccount/").status_code == 200


def test_cancelling_at_the_provider_makes_nothing(fake):
    fake.deny = True
    client = Client()

    response = social_login(client, fake, "github")

    assert response.status_code == 302 and response["Location"] == "/accounts/3rdparty/login/cancelled/"
    assert "cancelled" in client.get(response["Location"]).content.decode().lower()
    assert session_user(client) is None and not User.objects.exists()


def test_a_code_the_provider_refuses_makes_nothing(fake):
    client = Client()
    start = client.post("/accounts/github/login/?process=login")
    callback = urlsplit(fake.approve(start["Location"]))
    state = dict(part.split("=", 1) for part in callback.query.split("&"))["state"]

    response = client.get(f"{callback.path}?code=made-up&state={state}")

    assert response.status_code == 401
    assert "Third-Party Login Failure" in response.content.decode()
    assert session_user(client) is None and not User.objects.exists()


def test_without_an_address_from_the_provider_the_person_gives_one_and_verifies_it(fake, verification, mailoutbox):
    fake.person = Person(uid="1004", login="quiet", email="")
    client = Client()

    response = social_login(client, fake, "github")

    assert response.status_code == 302 and response["Location"] == "/accounts/3rdparty/signup/"
    page = client.get("/accounts/3rdparty/signup/")
    assert page.status_code == 200 and 'name="email"' in page.content.decode()
    client.post("/accounts/3rdparty/signup/", {"email": "quiet@example.com", "username": "quiet"})
    user = User.objects.get(email="quiet@example.com")
    assert SocialAccount.objects.get(user=user).uid == "1004"
    assert balance(user) == Decimal(0)  # an address nobody has verified yet
    link = re.search(r"/accounts/confirm-email/[^\s\"<>]+/", mailoutbox[-1].body).group(0)
    client.post(link)
    assert balance(user) == Decimal(3)


def test_starting_logins_counts_against_the_login_limit_per_client_address(fake, settings):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login": "2/m/ip"}
    client = Client()

    answers = [client.post("/accounts/github/login/?process=login") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [302, 302, 429]
    assert int(answers[-1]["Retry-After"]) > 0
    assert len([r for r in fake.requests if r["path"].endswith("/authorize")]) == 0  # none followed
    assert Client(REMOTE_ADDR="10.0.0.9").post("/accounts/google/login/?process=login").status_code == 302
