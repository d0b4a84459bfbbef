"""The /credits/ page: balance, packs to buy (simulated) and history."""

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from credits.models import CreditTransaction
from credits.services import ledger_append
from tests.conftest import balance, logged_in

Kind = CreditTransaction.Kind

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def client(user):
    return logged_in(user)


def _shown(amount: Decimal) -> str:
    """A balance as the page shows it (floatformat:"-2"): 8 or 7.50."""
    return str(int(amount)) if amount == amount.to_integral_value() else f"{amount:.2f}"


def _purchases(user) -> int:
    return CreditTransaction.objects.filter(user=user, kind=Kind.PURCHASE).count()


def _token(client) -> str:
    return client.get("/credits/").context["purchase_token"]


def test_it_shows_the_balance_the_packs_and_the_history(user, client):
    ledger_append(user_id=user.pk, amount=Decimal("4.50"), kind=Kind.ADMIN_GRANT, description="Sorry for the outage")

    response = client.get("/credits/")

    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-testid="credits-balance">{_shown(user.credits + Decimal("4.50"))}</strong>' in html
    for pack_id, label, price in [
        ("starter", "5 credits", "1.00"),
        ("standard", "25 credits", "4.00"),
        ("pro", "100 credits", "15.00"),
    ]:
        assert f'name="pack" value="{pack_id}"' in html
        assert f'<button type="submit">Buy {label}</button>' in html
        assert f"{price} USD" in html
    assert html.count('action="/credits/buy/"') == 3
    assert "Sorry for the outage" in html
    assert "Welcome bonus" in html
    assert [row.description for row in response.context["history"]] == ["Sorry for the outage", "Welcome bonus"]


def test_it_pages_the_history_20_rows_at_a_time(user, client):
    for number in range(20):
        ledger_append(user_id=user.pk, amount=Decimal("1"), kind=Kind.ADMIN_GRANT, description=f"Grant {number}")

    first = client.get("/credits/")
    second = client.get("/credits/?page=2")

    assert len(first.context["history"]) == 20
    assert first.context["history"][0].description == "Grant 19"
    assert "Page 1 of 2" in first.content.decode()
    assert [row.description for row in second.context["history"]] == ["Welcome bonus"]


def test_it_sends_anonymous_visitors_to_log_in():
    response = Client().get("/credits/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/credits/"


def test_it_buys_a_pack_and_says_so(user, client):
    start = balance(user)

    response = client.post("/credits/buy/", {"pack": "standard", "token": _token(client)}, follow=True)

    assert response.redirect_chain == [("/credits/", 302)]
    assert balance(user) == start + 25
    row = CreditTransaction.objects.get(user=user, kind=Kind.PURCHASE)
    assert row.amount == Decimal("25")
    assert "Simulated payment" in row.description
    assert [str(message) for message in response.context["messages"]] == [
        "25 credits added (simulated payment: no money was taken)."
    ]
    assert f'data-testid="credits-balance">{_shown(start + 25)}</strong>' in response.content.decode()


def test_it_buys_once_when_the_same_page_is_submitted_twice(user, client):
    start = balance(user)
    token = _token(client)

    first = client.post("/credits/buy/", {"pack": "starter", "token": token}, follow=True)
    second = client.post("/credits/buy/", {"pack": "starter", "token": token}, follow=True)

    assert _purchases(user) == 1
    assert balance(user) == start + 5
    assert len(list(first.context["messages"])) == 1
    assert list(second.context["messages"]) == []
    assert f'data-testid="credits-balance">{_shown(start + 5)}</strong>' in second.content.decode()


def test_it_buys_again_from_a_freshly_loaded_page(user, client):
    start = balance(user)

    client.post("/credits/buy/", {"pack": "starter", "token": _token(client)})
    client.post("/credits/buy/", {"pack": "starter", "token": _token(client)})

    assert _purchases(user) == 2
    assert balance(user) == start + 10


@pytest.mark.parametrize("data", [{"pack": "platinum"}, {"pack": ""}, {}])
def test_it_refuses_an_unknown_pack_and_changes_nothing(user, client, data):
    start = balance(user)
    rows = CreditTransaction.objects.count()

    response = client.post("/credits/buy/", {**data, "token": "t"})

    assert response.status_code == 302
    assert response["Location"] == "/credits/"
    messages = list(get_messages(response.wsgi_request))
    assert [message.level_tag for message in messages] == ["error"]
    assert "That pack does not exist" in str(messages[0])
    assert CreditTransaction.objects.count() == rows
    assert balance(user) == start


def test_it_refuses_get_on_buy(user, client):
    response = client.get("/credits/buy/?pack=starter")

    assert response.status_code == 405
    assert _purchases(user) == 0


def test_it_refuses_a_purchase_from_an_anonymous_visitor():
    rows = CreditTransaction.objects.count()

    response = Client().post("/credits/buy/", {"pack": "starter"})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert CreditTransaction.objects.count() == rows


def test_it_enforces_csrf_on_buy(user):
    client = logged_in(user, enforce_csrf_checks=True)
    start = balance(user)

    refused = client.post("/credits/buy/", {"pack": "starter", "token": "t1"})

    assert refused.status_code == 403
    assert _purchases(user) == 0
    assert balance(user) == start

    page = client.get("/credits/")
    csrf_token = page.context["csrf_token"]
    accepted = client.post("/credits/buy/", {"pack": "starter", "token": "t1", "csrfmiddlewaretoken": str(csrf_token)})

    assert accepted.status_code == 302
    assert _purchases(user) == 1
    assert balance(user) == start + 5
