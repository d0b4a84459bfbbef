"""Buying a pack through Square: the API and the page open a payment link (on a fake Square API on
loopback, through the real squareup client and HTTP), credits arrive only by a notification
signed with our key over our URL and the raw body, once however often it comes; refunds and
disputes take them back through the same reversal and shortfall rules as Stripe."""

import base64
import hashlib
import hmac
from decimal import Decimal

import pytest
from django.test import Client

from credits.models import CreditTransaction, Payment, PaymentReversal
from credits.services import ledger_append
from tests.conftest import balance
from tests.factories import UserFactory
from tests.square import (
    ACCESS_TOKEN,
    LOCATION_ID,
    SIGNATURE_KEY,
    SITE_URL,
    WEBHOOK_PATH,
    FakeSquare,
    configure_square,
    deliver,
    dispute,
    new_id,
    payment,
    refund,
    sign,
)

Kind = CreditTransaction.Kind
Status = Payment.Status

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("consistent_ledger")]


@pytest.fixture
def fake_square(settings):
    configure_square(settings)
    with FakeSquare() as fake:
        settings.SQUARE_API_BASE = fake.url
        yield fake


def _purchases():
    return CreditTransaction.objects.filter(kind=Kind.PURCHASE)


def _bought(user_client, pack="standard") -> str:
    """Open a payment link over the API; its order id."""
    response = user_client.post("/api/credits/purchase", {"package": pack}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["session_id"]


# Opening a checkout


def test_the_api_opens_a_payment_link_for_the_pack_and_credits_nothing_yet(user, user_client, fake_square):
    start = balance(user)

    response = user_client.post("/api/credits/purchase", {"package": "standard"}, format="json")

    assert response.status_code == 201
    body = response.json()
    [request] = fake_square.requests
    assert request["path"] == "/v2/online-checkout/payment-links"
    assert request["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    sent = request["json"]
    assert sent["order"]["location_id"] == LOCATION_ID
    assert sent["order"]["reference_id"] == str(user.pk)
    assert sent["order"]["line_items"] == [
        {"name": "25 credits", "quantity": "1", "base_price_money": {"amount": 400, "currency": "USD"}}
    ]
    assert sent["checkout_options"]["redirect_url"] == "http://testserver/credits/success/"
    assert sent["pre_populated_data"] == {"buyer_email": user.email}
    link = fake_square.links[body["checkout_url"].rsplit("/", 1)[1]]
    assert body["session_id"] == link["order_id"]
    assert (body["simulated"], body["status"], body["credits"]) == (False, "open", f"{start:.2f}")
    payment_row = Payment.objects.get()
    assert (payment_row.provider, payment_row.provider_session_id, payment_row.user_id) == (
        "square",
        link["order_id"],
        user.pk,
    )
    assert (payment_row.credits, payment_row.amount, payment_row.currency) == (Decimal(25), Decimal("4.00"), "usd")
    assert balance(user) == start
    assert not _purchases().exists()


def test_an_account_without_an_address_sends_no_prepopulated_data(user, user_client, fake_square):
    type(user).objects.filter(pk=user.pk).update(email="")

    assert user_client.post("/api/credits/purchase", {"package": "starter"}, format="json").status_code == 201

    assert "pre_populated_data" not in fake_square.requests[0]["json"]


def test_a_retried_request_with_the_same_idempotency_key_opens_one_payment_link(user_client, fake_square):
    first = user_client.post("/api/credits/purchase", {"package": "starter"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    second = user_client.post("/api/credits/purchase", {"package": "starter"}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert first.json()["session_id"] == second.json()["session_id"]
    assert Payment.objects.count() == 1
    keys = {request["json"]["idempotency_key"] for request in fake_square.requests}
    assert len(keys) == 1 and len(keys.pop()) <= 45


def test_the_buy_button_redirects_to_the_square_checkout(user, page_client, fake_square):
    page = page_client.get("/credits/")
    assert "handled securely by Square" in page.content.decode()

    response = page_client.post("/credits/buy/", {"pack": "pro", "token": "t1"})

    assert response.status_code == 303
    link_id = response["Location"].rsplit("/", 1)[1]
    assert response["Location"] == f"{fake_square.url}/checkout/{link_id}"
    assert Payment.objects.get().provider_session_id == fake_square.links[link_id]["order_id"]
    # The redirect leaves the page through a form, so the policy must let the form go there.
    assert "https://square.link https://*.square.link https://*.square.site" in page["Content-Security-Policy"]
    assert fake_square.url in page["Content-Security-Policy"]


def test_a_refusing_square_is_a_502_and_nothing_is_recorded(user, user_client, fake_square):
    fake_square.error = (401, {"errors": [{"category": "AUTHENTICATION_ERROR", "code": "UNAUTHORIZED"}]})

    response = user_client.post("/api/credits/purchase", {"package": "standard"}, format="json")

    assert response.status_code == 502
    assert response.json()["code"] == "payment_provider_error"
    assert not Payment.objects.exists()


def test_the_success_page_finds_the_payment_by_the_order_id_square_adds(user, user_client, page_client, fake_square):
    order_id = _bought(user_client)

    waiting = page_client.get(f"/credits/success/?checkoutId=X&orderId={order_id}&transactionId=Y")
    deliver(payment(order_id=order_id, payment_id=new_id()))
    done = page_client.get(f"/credits/success/?checkoutId=X&orderId={order_id}&transactionId=Y")

    assert waiting.context["payment"].provider_session_id == order_id
    assert waiting.context["payment"].credited_at is None
    assert done.context["payment"].credited_at is not None
    stranger = Client()
    stranger.force_login(UserFactory())
    assert stranger.get(f"/credits/success/?orderId={order_id}").context["payment"] is None


# The webhook: credits once


def test_a_completed_payment_credits_its_pack_once_however_often_it_arrives(user, user_client, fake_square):
    start = balance(user)
    order_id = _bought(user_client, "pro")
    payment_id = new_id()

    answers = [
        deliver(payment(order_id=order_id, payment_id=payment_id, amount=1500, status=status, kind=kind))
        for status, kind in [
            ("APPROVED", "payment.created"),
            ("COMPLETED", "payment.updated"),
            ("COMPLETED", "payment.updated"),
            ("COMPLETED", "payment.created"),
        ]
    ]

    assert [answer.status_code for answer in answers] == [200] * 4
    assert [answer.json()["handled"] for answer in answers] == [False, True, True, True]
    assert balance(user) == start + 100
    assert _purchases().get().reference == order_id
    row = Payment.objects.get()
    assert (row.status, row.payment_intent_id, row.amount) == (Status.PAID, payment_id, Decimal("15.00"))


def test_a_payment_that_is_not_completed_credits_nothing(user, user_client, fake_square):
    start = balance(user)
    order_id = _bought(user_client)

    for status in ("APPROVED", "PENDING", "FAILED", "CANCELED"):
        deliver(payment(order_id=order_id, payment_id=new_id(), status=status))

    assert balance(user) == start
    assert Payment.objects.get().status == Status.OPEN


def test_a_payment_for_an_order_we_never_opened_credits_nobody(user, fake_square):
    start = balance(user)

    response = deliver(payment(order_id=new_id(27), payment_id=new_id()))

    assert response.status_code == 200
    assert response.json()["handled"] is False
    assert balance(user) == start
    assert not Payment.objects.exists()


# The signature, byte for byte


def test_the_signature_is_hmac_sha256_of_our_url_and_the_raw_body_in_base64(user, user_client, fake_square):
    order_id = _bought(user_client)
    body = payment(order_id=order_id, payment_id=new_id())
    # Computed here without the helper: the key, the URL as registered, the body's very bytes.
    url = b"http://testserver/api/payments/square/webhook"
    signature = base64.b64encode(hmac.new(SIGNATURE_KEY.encode(), url + body.encode(), hashlib.sha256).digest())
    assert signature.decode() == sign(body)

    response = Client().post(
        WEBHOOK_PATH, data=body, content_type="application/json", HTTP_X_SQUARE_HMACSHA256_SIGNATURE=signature.decode()
    )

    assert response.status_code == 200
    assert response.json() == {"received": True, "handled": True}
    assert _purchases().count() == 1


@pytest.mark.parametrize(
    "forgery",
    [
        "unsigned",
        "empty",
        "another key",
        "another url",
        "body without its url",
        "one byte changed",
        "whitespace added",
        "hex instead of base64",
    ],
)
def test_an_unsigned_or_mis_signed_delivery_is_refused_with_no_effect(forgery, user, user_client, fake_square):
    start = balance(user)
    order_id = _bought(user_client)
    body = payment(order_id=order_id, payment_id=new_id())
    url = SITE_URL + WEBHOOK_PATH
    headers = {
        "unsigned": None,
        "empty": "",
        "another key": sign(body, key=SIGNATURE_KEY + "x"),
        "another url": sign(body, url="https://elsewhere.example/api/payments/square/webhook"),
        "body without its url": sign(body, url=""),
        "one byte changed": sign(body.replace('"amount": 400', '"amount": 401')),
        "whitespace added": sign(body + " "),
        "hex instead of base64": hmac.new(SIGNATURE_KEY.encode(), (url + body).encode(), hashlib.sha256).hexdigest(),
    }
    signature = headers[forgery]
    kwargs = {} if signature is None else {"HTTP_X_SQUARE_HMACSHA256_SIGNATURE": signature}

    response = Client().post(WEBHOOK_PATH, data=body, content_type="application/json", **kwargs)

    assert response.status_code == 400
    assert balance(user) == start
    assert Payment.objects.get().status == Status.OPEN


def test_a_signed_delivery_that_is_not_an_event_is_refused(fake_square):
    for body in ("not json", "{}", '{"type": "payment.updated", "data": {"object": {}}}'):
        assert deliver(body).status_code == 400


def test_without_a_signature_key_no_delivery_is_accepted(settings, user, user_client, fake_square):
    order_id = _bought(user_client)
    settings.SQUARE_WEBHOOK_SIGNATURE_KEY = ""

    response = deliver(payment(order_id=order_id, payment_id=new_id()))

    assert response.status_code == 503
    assert not _purchases().exists()


# Refunds and disputes


def _paid(user_client, amount=400) -> tuple[str, str]:
    order_id, payment_id = _bought(user_client), new_id()
    assert deliver(payment(order_id=order_id, payment_id=payment_id, amount=amount)).json()["handled"]
    return order_id, payment_id


def test_a_completed_refund_takes_the_credits_back_once(user, user_client, fake_square):
    start = balance(user)
    _, payment_id = _paid(user_client)
    refund_id = f"{payment_id}_R1"

    deliver(refund(payment_id=payment_id, refund_id=refund_id, status="PENDING", kind="refund.created"))
    assert balance(user) == start + 25
    for _ in range(2):
        deliver(refund(payment_id=payment_id, refund_id=refund_id))

    assert balance(user) == start
    assert Payment.objects.get().status == Status.REFUNDED
    assert CreditTransaction.objects.filter(kind=Kind.PAYMENT_REVERSAL).count() == 1


def test_two_partial_refunds_take_back_their_share_each(user, user_client, fake_square):
    start = balance(user)
    _, payment_id = _paid(user_client)

    deliver(refund(payment_id=payment_id, amount=100))
    assert balance(user) == start + Decimal("18.75")
    assert Payment.objects.get().status == Status.PARTIALLY_REFUNDED
    deliver(refund(payment_id=payment_id, amount=300))

    assert balance(user) == start
    assert Payment.objects.get().status == Status.REFUNDED


def test_a_refund_of_spent_credits_leaves_a_shortfall_that_later_credits_repay(user, user_client, fake_square):
    _, payment_id = _paid(user_client)
    spend = balance(user) - 5
    ledger_append(user_id=user.pk, amount=-spend, kind=Kind.JOB_CHARGE, description="spent", reference="job:spent")

    deliver(refund(payment_id=payment_id))

    assert balance(user) == 0
    row = Payment.objects.get()
    assert (row.credits_reversed, row.credits_shortfall_open) == (Decimal(5), Decimal(20))
    _paid(user_client)  # the next pack pays the shortfall first
    assert balance(user) == 5
    assert Payment.objects.get(credits_shortfall__gt=0).credits_shortfall_open == 0


def test_a_refund_arriving_before_its_payment_is_applied_when_the_payment_completes(user, user_client, fake_square):
    start = balance(user)
    order_id, payment_id = _bought(user_client), new_id()

    deliver(refund(payment_id=payment_id))
    deliver(payment(order_id=order_id, payment_id=payment_id))

    assert balance(user) == start
    assert Payment.objects.get().status == Status.REFUNDED


def test_a_dispute_takes_the_credits_back_and_a_win_gives_them_back_once(user, user_client, fake_square):
    start = balance(user)
    _, payment_id = _paid(user_client)
    dispute_id = new_id()

    deliver(dispute(payment_id=payment_id, dispute_id=dispute_id))
    deliver(dispute(payment_id=payment_id, dispute_id=dispute_id, state="PROCESSING"))
    assert balance(user) == start
    assert Payment.objects.get().status == Status.DISPUTED
    for _ in range(2):
        deliver(dispute(payment_id=payment_id, dispute_id=dispute_id, state="WON"))

    assert balance(user) == start + 25
    assert Payment.objects.get().status == Status.DISPUTE_WON
    assert CreditTransaction.objects.filter(kind=Kind.PAYMENT_REINSTATED).count() == 1


def test_a_lost_dispute_keeps_the_credits_taken(user, user_client, fake_square):
    start = balance(user)
    _, payment_id = _paid(user_client)
    dispute_id = new_id()

    deliver(dispute(payment_id=payment_id, dispute_id=dispute_id, state="LOST"))  # its only delivery
    deliver(dispute(payment_id=payment_id, dispute_id=dispute_id))  # the creation, late

    assert balance(user) == start
    assert PaymentReversal.objects.get().outcome == PaymentReversal.Outcome.LOST
