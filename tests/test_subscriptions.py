"""Monthly plans through Stripe Billing: the API opens a Checkout in subscription mode (on the fake
Stripe API on loopback), and only Stripe's signed events make a subscription cover jobs; they may
arrive twice, concurrently or out of order and still end in the right state."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from credits.models import Subscription
from credits.subscriptions import subscription_covering
from testkit.stripe import SECRET_KEY, FakeStripe, deliver, new_id
from tests.stripe_billing import (
    MONTH,
    checkout_completed,
    configure_subscriptions,
    invoice,
    subscribed,
    subscription_event,
)
from tests.threads import run_together

Status = Subscription.Status

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("consistent_ledger")]


@pytest.fixture
def fake_stripe(settings):
    configure_subscriptions(settings)
    with FakeStripe() as fake:
        settings.STRIPE_API_BASE = fake.url
        yield fake


def _ids():
    return new_id("sub"), new_id("cus")


def _covered(user) -> bool:
    return subscription_covering(user_id=user.pk) is not None


# Subscribing


def test_the_api_opens_a_checkout_in_subscription_mode_for_the_plan(user, user_client, fake_stripe):
    response = user_client.post("/api/subscriptions", {"plan": "unlimited"}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["checkout_url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    [request] = fake_stripe.requests
    assert request["path"] == "/v1/checkout/sessions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET_KEY}"
    form = request["form"]
    assert form["mode"] == "subscription"
    assert form["line_items[0][price_data][unit_amount]"] == "999"
    assert form["line_items[0][price_data][recurring][interval]"] == "month"
    assert form["client_reference_id"] == str(user.pk)
    assert (form["metadata[user_id]"], form["metadata[plan_id]"]) == (str(user.pk), "unlimited")
    assert form["subscription_data[metadata][user_id]"] == str(user.pk)
    assert not Subscription.objects.exists()
    assert not _covered(user)


def test_an_unknown_plan_never_reaches_stripe(user_client, fake_stripe):
    response = user_client.post("/api/subscriptions", {"plan": "everything-free"}, format="json")

    assert response.status_code == 400
    assert fake_stripe.requests == []


def test_someone_subscribed_already_is_not_sold_a_second_plan(user, user_client, fake_stripe):
    subscribed(user)

    response = user_client.post("/api/subscriptions", {"plan": "unlimited"}, format="json")

    assert response.status_code == 409
    assert fake_stripe.requests == []


def test_the_api_needs_a_login(fake_stripe):
    from rest_framework.test import APIClient

    assert APIClient().post("/api/subscriptions", {"plan": "unlimited"}, format="json").status_code == 401


# Stripe's events


def test_a_paid_first_invoice_makes_the_subscription_cover_jobs_and_me_shows_it(user, user_client, fake_stripe):
    subscription, customer = _ids()
    deliver(checkout_completed(user, subscription=subscription, customer=customer))
    deliver(subscription_event(user, subscription=subscription, customer=customer, status="incomplete"))
    assert not _covered(user)
    assert user_client.get("/api/auth/me").json()["subscription"]["status"] == "incomplete"
    start = int(time.time()) - 60

    for _ in range(2):
        assert deliver(invoice(user, subscription=subscription, customer=customer, start=start)).status_code == 200

    assert _covered(user)
    row = Subscription.objects.get()
    assert (row.user_id, row.plan_id, row.provider_customer_id, row.status) == (
        user.pk,
        "unlimited",
        customer,
        Status.ACTIVE,
    )
    me = user_client.get("/api/auth/me").json()["subscription"]
    assert me["plan"] == "unlimited" and me["status"] == "active"
    assert datetime.fromisoformat(me["current_period_end"]) == datetime.fromtimestamp(start + MONTH, UTC)


def test_me_says_null_without_a_subscription(user_client, fake_stripe):
    assert user_client.get("/api/auth/me").json()["subscription"] is None


def test_an_invoice_paid_before_anything_else_arrives_still_makes_the_subscription(user, fake_stripe):
    subscription, customer = _ids()

    deliver(invoice(user, subscription=subscription, customer=customer, start=int(time.time())))
    deliver(checkout_completed(user, subscription=subscription, customer=customer))

    assert _covered(user)
    assert Subscription.objects.get().status == Status.ACTIVE


def test_an_older_status_never_overwrites_a_newer_one(user, fake_stripe):
    subscription, customer = _ids()
    now = int(time.time())
    deliver(invoice(user, subscription=subscription, customer=customer, start=now, created=now))
    deliver(subscription_event(user, subscription=subscription, customer=customer, status="active", created=now))

    late = subscription_event(user, subscription=subscription, customer=customer, status="incomplete", created=now - 5)
    deliver(late)

    assert Subscription.objects.get().status == Status.ACTIVE
    assert _covered(user)


def test_a_subscription_deleted_before_its_invoice_arrives_stays_ended(user, fake_stripe):
    subscription, customer = _ids()
    now = int(time.time())

    deliver(
        subscription_event(
            user, subscription=subscription, customer=customer, status="canceled", kind="customer.subscription.deleted"
        )
    )
    deliver(invoice(user, subscription=subscription, customer=customer, start=now))
    deliver(subscription_event(user, subscription=subscription, customer=customer, status="active", created=now + 5))

    row = Subscription.objects.get()
    assert row.status == Status.CANCELED and row.ended_at is not None
    assert not _covered(user)


def test_cancelling_ends_the_cover(user, fake_stripe):
    subscription, customer = subscribed(user)

    deliver(
        subscription_event(
            user, subscription=subscription, customer=customer, status="canceled", kind="customer.subscription.deleted"
        )
    )

    assert not _covered(user)


def test_a_failed_renewal_keeps_covering_for_the_grace_period_only(user, fake_stripe):
    subscription, customer = _ids()
    now = int(time.time())
    # The last paid month ended a minute ago; the renewal failed then.
    deliver(invoice(user, subscription=subscription, customer=customer, start=now - MONTH - 60, created=now - MONTH))
    assert not _covered(user)

    failed = invoice(
        user, subscription=subscription, customer=customer, start=now - 60, kind="invoice.payment_failed", created=now
    )
    deliver(failed)
    deliver(subscription_event(user, subscription=subscription, customer=customer, status="past_due"))

    row = Subscription.objects.get()
    assert row.status == Status.PAST_DUE
    assert _covered(user)
    # Three days from the failure (the paid month had ended a minute before it).
    assert row.grace_until == datetime.fromtimestamp(now, UTC) + timedelta(days=3)
    Subscription.objects.filter(pk=row.pk).update(grace_until=datetime.now(UTC) - timedelta(seconds=1))
    assert not _covered(user)


def test_a_failed_first_payment_gets_no_grace(user, fake_stripe):
    subscription, customer = _ids()

    deliver(checkout_completed(user, subscription=subscription, customer=customer))
    deliver(
        invoice(
            user, subscription=subscription, customer=customer, start=int(time.time()), kind="invoice.payment_failed"
        )
    )

    assert Subscription.objects.get().grace_until is None
    assert not _covered(user)


def test_events_for_an_unknown_user_make_nothing(fake_stripe):
    from tests.factories import UserFactory

    ghost = UserFactory.build(pk=987654)
    response = deliver(invoice(ghost, subscription=new_id("sub"), customer=new_id("cus"), start=int(time.time())))

    assert response.status_code == 200 and response.json()["handled"] is False
    assert not Subscription.objects.exists()


def test_a_subscription_checkout_naming_no_subscription_makes_nothing(user, fake_stripe):
    payload = checkout_completed(user, subscription=None, customer=new_id("cus"))

    response = deliver(payload)

    assert response.status_code == 200 and response.json()["handled"] is False
    assert not Subscription.objects.exists()


def test_an_unsigned_subscription_event_is_refused(user, fake_stripe):
    payload = invoice(user, subscription=new_id("sub"), customer=new_id("cus"), start=int(time.time()))

    assert deliver(payload, signature=None).status_code == 400
    assert deliver(payload, signature="t=1,v1=00").status_code == 400
    assert not Subscription.objects.exists()


# The customer portal


def test_the_portal_opens_for_the_callers_own_customer_only(user, user_client, other_user, fake_stripe):
    assert user_client.post("/api/subscriptions/portal").status_code == 404
    _, customer = subscribed(user)
    subscribed(other_user)

    response = user_client.post("/api/subscriptions/portal")

    assert response.status_code == 201
    assert response.json()["portal_url"].startswith("https://billing.stripe.com/p/session/")
    [request] = [request for request in fake_stripe.requests if request["path"] == "/v1/billing_portal/sessions"]
    assert request["form"]["customer"] == customer
    assert request["form"]["return_url"] == "http://testserver/accounts/profile/"


def test_the_account_page_offers_manage_subscription_and_it_goes_to_the_portal(user, fake_stripe):
    client = Client()
    client.force_login(user)
    assert "Manage subscription" not in client.get("/accounts/profile/").content.decode()
    subscribed(user)

    page = client.get("/accounts/profile/").content.decode()
    response = client.post("/credits/subscription/manage/")

    assert "Manage subscription" in page
    assert response.status_code == 303
    assert response["Location"].startswith("https://billing.stripe.com/p/session/")


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_events_make_one_subscription(settings):
    from tests.factories import UserFactory

    configure_subscriptions(settings)
    user = UserFactory()
    subscription, customer = _ids()
    now = int(time.time())
    payloads = [
        checkout_completed(user, subscription=subscription, customer=customer),
        invoice(user, subscription=subscription, customer=customer, start=now),
        subscription_event(user, subscription=subscription, customer=customer, status="active"),
    ] * 4

    results = run_together(*[(lambda payload=payload: deliver(payload).status_code) for payload in payloads])

    assert results == [200] * len(payloads)
    assert Subscription.objects.count() == 1
    assert Subscription.objects.get().status == Status.ACTIVE
    assert _covered(user)
