"""Operators see subscriptions in the admin (read-only, with whether each covers jobs now) and the
monthly recurring revenue on the statistics page."""

import re
import time
from decimal import Decimal

import pytest

from credits.models import Subscription
from credits.selectors import subscription_statistics
from testkit.stripe import deliver
from tests.factories import UserFactory
from tests.stripe_billing import configure_subscriptions, subscribed, subscription_event

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _subscriptions(settings):
    configure_subscriptions(settings)


@pytest.fixture
def three_subscribers():
    """Two covering subscriptions and one cancelled."""
    users = [UserFactory() for _ in range(3)]
    ids = [subscribed(user) for user in users]
    subscription, customer = ids[2]
    deliver(
        subscription_event(
            users[2],
            subscription=subscription,
            customer=customer,
            status="canceled",
            kind="customer.subscription.deleted",
            created=int(time.time()) + 1,
        )
    )
    return users


def test_mrr_counts_the_subscriptions_covering_jobs_now(three_subscribers):
    statistics = subscription_statistics()

    assert statistics.covering == 2
    assert statistics.in_grace == 0
    assert statistics.mrr_by_currency == {"USD": Decimal("19.98")}


def test_the_statistics_page_shows_the_mrr(three_subscribers, admin_client):
    html = admin_client.get("/admin/separation/job/statistics/").content.decode()

    assert re.search(r'class="mrr">19\.98 USD<', html)


def test_the_admin_lists_subscriptions_read_only(three_subscribers, admin_client):
    response = admin_client.get("/admin/credits/subscription/")

    assert response.status_code == 200
    html = response.content.decode()
    for user in three_subscribers:
        assert user.username in html
    assert html.count('field-status">Active<') == 2
    assert html.count('field-status">Cancelled<') == 1
    row = Subscription.objects.filter(user=three_subscribers[0]).get()
    change = admin_client.get(f"/admin/credits/subscription/{row.pk}/change/")
    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()
    assert admin_client.get("/admin/credits/subscription/add/").status_code == 403
