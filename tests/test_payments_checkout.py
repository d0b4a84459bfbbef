"""Buying with Stripe Checkout: the API and the page open a Checkout Session on Stripe (here a
fake Stripe API on loopback, so the real stripe client and HTTP requests are exercised) and send
the customer there; credits arrive only by webhook. Without Stripe, simulated purchases are for
development only."""

from decimal import Decimal

import pytest
from django.test import Client

from credits.models import CreditTransaction, Payment
from credits.services import ledger_append
from testkit.stripe import (
    SECRET_KEY,
    FakeStripe,
    completed,
    configure_stripe,
    deliver,
    new_id,
    refunded,
)
from tests.conftest import balance, bearer_client
from tests.factories import UserFactory

Kind = CreditTransaction.Kind

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("consistent_ledger")]

SUCCESS_URL = "http://testserver/credits/success/?session_id={CHECKOUT_SESSION_ID}"
CANCEL_URL = "http://testserver/credits/cancelled/"


@pytest.fixture
def fake_stripe(settings):
    configure_stripe(settings)
    with FakeStripe() as fake:
        settings.STRIPE_API_BASE = fake.url
        yield fake


def _shown(amount: Decimal) -> str:
    """A balance as the pages show it (floatformat:"-2"): 8 or 7.50."""
    return str(int(amount)) if amount == amount.to_integral_value() else f"{amount:.2f}"


def _purchases():
    return CreditTransaction.objects.filter(kind=Kind.PURCHASE)


# The API


def test_the_api_opens_a_checkout_for_the_pack_and_credits_nothing_yet(user, user_client, fake_stripe):
    start = balance(user)

    response = user_client.post("/api/credits/purchase", {"package": "standard"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["checkout_url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    assert body["simulated"] is False
    assert body["status"] == "open"
    assert body["credits"] == f"{start:.2f}"
    assert body["package"] == {"id": "standard", "credits": "25.00", "price": "4.00", "currency": "usd"}
    assert balance(user) == start
    assert not _purchases().exists()

    [request] = fake_stripe.requests
    assert request["path"] == "/v1/checkout/sessions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET_KEY}"
    form = request["form"]
    assert form["mode"] == "payment"
    assert form["line_items[0][quantity]"] == "1"
    assert form["line_items[0][price_data][unit_amount]"] == "400"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["line_items[0][price_data][product_data][name]"] == "25 credits"
    assert form["client_reference_id"] == str(user.pk)
    assert form["customer_email"] == user.email
    assert (form["metadata[user_id]"], form["metadata[pack_id]"], form["metadata[credits]"]) == (
        str(user.pk),
        "standard",
        "25.00",
    )
    assert form["payment_intent_data[metadata][pack_id]"] == "standard"
    assert form["success_url"] == SUCCESS_URL
    assert form["cancel_url"] == CANCEL_URL

    payment = Payment.objects.get(provider_session_id=body["session_id"])
    assert body["payment_id"] == payment.pk
    assert (payment.user_id, payment.pack_id, payment.credits, payment.amount, payment.currency, payment.status) == (
        user.pk,
        "standard",
        Decimal("25.00"),
        Decimal("4.00"),
        "usd",
        Payment.Status.OPEN,
    )


def test_the_price_comes_from_the_pack_table_in_the_configured_currency(settings, user, user_client, fake_stripe):
    settings.CREDIT_PACKS = [{"id": "big", "credits": Decimal("300"), "price": Decimal("39.99")}]
    settings.CREDIT_CURRENCY = "eur"

    user_client.post("/api/credits/purchase", {"package": "big"}, format="json")

    form = fake_stripe.requests[0]["form"]
    assert (form["line_items[0][price_data][unit_amount]"], form["line_items[0][price_data][currency]"]) == (
        "3999",
        "eur",
    )
    assert Payment.objects.get().amount == Decimal("39.99")


def test_a_retried_request_with_the_same_idempotency_key_opens_one_checkout(user, user_client, fake_stripe):
    first = user_client.post("/api/credits/purchase", {"package": "starter"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    second = user_client.post("/api/credits/purchase", {"package": "starter"}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert first.json()["session_id"] == second.json()["session_id"]
    assert Payment.objects.count() == 1
    keys = [request["headers"]["Idempotency-Key"] for request in fake_stripe.requests]
    assert keys == [f"checkout:{user.pk}:starter:k"] * 2


def test_the_whole_purchase_checkout_then_webhook_credits_the_pack_once(user, user_client, fake_stripe):
    start = balance(user)
    body = user_client.post("/api/credits/purchase", {"package": "pro"}, format="json").json()
    intent = new_id("pi")

    for _ in range(2):
        response = deliver(
            completed(user, body["session_id"], intent, pack_id="pro", credits="100.00", amount_total=1500)
        )
        assert response.status_code == 200

    assert balance(user) == start + 100
    assert _purchases().get().reference == body["session_id"]
    payment = Payment.objects.get(pk=body["payment_id"])
    assert (payment.status, payment.payment_intent_id) == (Payment.Status.PAID, intent)


def test_the_credits_are_those_recorded_at_checkout_whatever_the_metadata_says(user, user_client, fake_stripe):
    start = balance(user)
    body = user_client.post("/api/credits/purchase", {"package": "starter"}, format="json").json()

    deliver(completed(user, body["session_id"], new_id("pi"), pack_id="starter", credits="5000.00", amount_total=100))

    assert balance(user) == start + 5


def test_an_unreachable_or_refusing_stripe_is_a_502_and_nothing_is_recorded(user, user_client, fake_stripe):
    fake_stripe.error = (401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}})

    response = user_client.post("/api/credits/purchase", {"package": "starter"}, format="json")

    assert response.status_code == 502
    assert response.json()["code"] == "payment_provider_error"
    assert not Payment.objects.exists()


def test_an_unknown_package_never_reaches_stripe(user_client, fake_stripe):
    response = user_client.post("/api/credits/purchase", {"package": "platinum"}, format="json")

    assert response.status_code == 400
    assert fake_stripe.requests == []


# The page


def test_the_buy_button_redirects_to_checkout(user, page_client, fake_stripe):
    start = balance(user)
    page = page_client.get("/credits/")
    assert "handled securely by Stripe" in page.content.decode()
    assert "simulated" not in page.content.decode().lower()

    response = page_client.post("/credits/buy/", {"pack": "standard", "token": page.context["purchase_token"]})

    assert response.status_code == 303
    payment = Payment.objects.get()
    assert response["Location"].startswith(f"https://checkout.stripe.com/c/pay/{payment.provider_session_id}")
    assert fake_stripe.requests[0]["form"]["success_url"] == SUCCESS_URL
    assert balance(user) == start


def test_a_double_clicked_buy_button_opens_one_checkout(page_client, fake_stripe):
    token = page_client.get("/credits/").context["purchase_token"]

    first = page_client.post("/credits/buy/", {"pack": "starter", "token": token})
    second = page_client.post("/credits/buy/", {"pack": "starter", "token": token})

    assert first["Location"] == second["Location"]
    assert Payment.objects.count() == 1


def test_the_page_says_so_when_stripe_refuses(page_client, fake_stripe):
    fake_stripe.error = (500, {"error": {"type": "api_error", "message": "Something went wrong"}})

    response = page_client.post("/credits/buy/", {"pack": "starter", "token": "t"}, follow=True)

    assert response.redirect_chain == [("/credits/", 302)]
    assert "could not be reached" in response.content.decode()
    # Stripe's client retried the server error with the same idempotency key; nothing was recorded.
    assert len({request["headers"]["Idempotency-Key"] for request in fake_stripe.requests}) == 1
    assert len(fake_stripe.requests) == 3
    assert not Payment.objects.exists()


def test_the_success_page_says_the_credits_are_on_their_way_then_that_they_arrived(user, page_client, fake_stripe):
    page_client.post("/credits/buy/", {"pack": "standard", "token": "t"})
    payment = Payment.objects.get()

    waiting = page_client.get(f"/credits/success/?session_id={payment.provider_session_id}").content.decode()

    assert "Your credits arrive in a moment" in waiting
    assert f'data-testid="credits-balance">{_shown(balance(user))}</strong>' in waiting

    deliver(completed(user, payment.provider_session_id, new_id("pi")))
    arrived = page_client.get(f"/credits/success/?session_id={payment.provider_session_id}").content.decode()

    assert "25 credits have been added" in arrived
    assert f'data-testid="credits-balance">{_shown(balance(user))}</strong>' in arrived


def test_the_success_page_shows_nothing_of_another_users_payment(user, fake_stripe):
    page_client = Client()
    page_client.force_login(user)
    page_client.post("/credits/buy/", {"pack": "standard", "token": "t"})
    payment = Payment.objects.get()
    deliver(completed(user, payment.provider_session_id, new_id("pi")))
    stranger = Client()
    stranger.force_login(UserFactory())

    html = stranger.get(f"/credits/success/?session_id={payment.provider_session_id}").content.decode()

    assert "25 credits have been added" not in html
    assert "arrive in a moment" in html


def test_the_cancel_page_says_nothing_was_charged(page_client, fake_stripe):
    response = page_client.get("/credits/cancelled/")

    assert response.status_code == 200
    assert "Nothing was charged" in response.content.decode()


@pytest.mark.parametrize("path", ["/credits/success/?session_id=cs_x", "/credits/cancelled/"])
def test_the_return_pages_need_a_login(path):
    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# Without Stripe


@pytest.fixture
def payments_off(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    settings.PAYMENTS_SIMULATED = False


def test_without_stripe_or_simulation_the_api_refuses_to_sell(user, user_client, payments_off):
    start = balance(user)

    response = user_client.post("/api/credits/purchase", {"package": "starter"}, format="json")

    assert response.status_code == 503
    assert response.json() == {
        "detail": "Payments are not configured on this server, so credits cannot be bought.",
        "code": "payments_not_configured",
    }
    assert balance(user) == start
    assert not _purchases().exists()


def test_without_stripe_or_simulation_the_page_disables_buying(user, page_client, payments_off):
    start = balance(user)

    html = page_client.get("/credits/").content.decode()
    refused = page_client.post("/credits/buy/", {"pack": "starter", "token": "t"}, follow=True)

    assert "Payments are not configured on this server" in html
    assert 'action="/credits/buy/"' not in html
    assert html.count('<button type="button" disabled>Buy') == 3
    assert "Payments are not configured" in refused.content.decode()
    assert balance(user) == start
    assert not _purchases().exists()


def test_with_simulation_on_and_no_stripe_the_simulated_purchase_stays(settings, user):
    settings.STRIPE_SECRET_KEY = ""
    settings.PAYMENTS_SIMULATED = True
    start = balance(user)

    response = bearer_client(user).post("/api/credits/purchase", {"package": "starter"}, format="json")

    assert response.status_code == 201
    assert response.json()["simulated"] is True
    assert balance(user) == start + 5


# The admin


def test_the_admin_lists_payments_with_their_shortfall_read_only(user, fake_stripe):
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    body = bearer_client(user).post("/api/credits/purchase", {"package": "standard"}, format="json").json()
    intent = new_id("pi")
    deliver(completed(user, body["session_id"], intent))
    ledger_append(user_id=user.pk, amount=-(balance(user) - 5), kind=Kind.JOB_CHARGE, description="Songs")
    deliver(refunded(charge_id=new_id("ch"), payment_intent=intent, amount_refunded=400))

    listing = client.get("/admin/credits/payment/")
    short = client.get("/admin/credits/payment/?shortfall=yes")

    assert listing.status_code == 200
    html = listing.content.decode()
    assert body["session_id"] in html
    assert "20.00" in html  # the shortfall
    assert list(short.context["cl"].result_list) == [Payment.objects.get()]
    assert client.get("/admin/credits/payment/add/").status_code == 403
    assert client.get("/admin/credits/paymentreversal/").status_code == 200
