"""/api/credits/: balance, packages, purchase (simulated) and history."""

from decimal import Decimal

import pytest

from credits.models import CreditTransaction
from credits.services import ledger_append
from tests.conftest import balance, bearer_client

Kind = CreditTransaction.Kind

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_it_returns_the_balance(user, user_client):
    ledger_append(user_id=user.pk, amount=Decimal("5.50"), kind=Kind.ADMIN_GRANT, description="Gift")

    response = user_client.get("/api/credits/balance")

    assert response.status_code == 200
    assert response.json() == {"credits": f"{user.credits + Decimal('5.50'):.2f}"}


def test_it_lists_the_packages_without_authentication(api_client):
    response = api_client.get("/api/credits/packages")

    assert response.status_code == 200
    assert response.json() == [
        {"id": "starter", "credits": "5.00", "price": "1.00", "currency": "usd"},
        {"id": "standard", "credits": "25.00", "price": "4.00", "currency": "usd"},
        {"id": "pro", "credits": "100.00", "price": "15.00", "currency": "usd"},
    ]


def test_it_buys_a_package(user, user_client):
    start = balance(user)

    response = user_client.post("/api/credits/purchase", {"package": "standard"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["credits"] == f"{start + 25:.2f}"
    assert body["simulated"] is True
    assert body["package"]["id"] == "standard"
    transaction = body["transaction"]
    assert transaction["kind"] == "purchase"
    assert transaction["amount"] == "25.00"
    assert transaction["balance_after"] == f"{start + 25:.2f}"
    assert "simulated" in transaction["description"].lower()
    row = CreditTransaction.objects.get(pk=transaction["id"])
    assert (row.user_id, row.kind, row.amount) == (user.pk, Kind.PURCHASE, Decimal("25"))
    assert balance(user) == start + 25


@pytest.mark.parametrize("payload", [{"package": "platinum"}, {"package": ""}, {}])
def test_it_refuses_an_unknown_or_missing_package(user, user_client, payload):
    start = balance(user)
    rows = CreditTransaction.objects.count()

    response = user_client.post("/api/credits/purchase", payload, format="json")

    assert response.status_code == 400
    body = response.json()
    assert list(body["errors"]) == ["package"]
    assert body["detail"].startswith("package: ")
    assert CreditTransaction.objects.count() == rows
    assert balance(user) == start


def test_it_names_the_packages_on_sale_when_the_package_is_unknown(user_client):
    response = user_client.post("/api/credits/purchase", {"package": "platinum"}, format="json")

    assert "starter, standard, pro" in response.json()["errors"]["package"][0]


def test_it_buys_once_for_the_same_idempotency_key(user, user_client):
    start = balance(user)

    first = user_client.post("/api/credits/purchase", {"package": "starter"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = user_client.post(
        "/api/credits/purchase", {"package": "starter"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["transaction"]["id"] == first.json()["transaction"]["id"]
    assert second.json()["credits"] == f"{start + 5:.2f}"
    assert CreditTransaction.objects.filter(user=user, kind=Kind.PURCHASE).count() == 1
    assert balance(user) == start + 5


def test_it_never_reports_a_package_other_than_the_one_credited_for_a_reused_key(user, user_client):
    start = balance(user)
    user_client.post("/api/credits/purchase", {"package": "starter"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    response = user_client.post("/api/credits/purchase", {"package": "pro"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    # Either refused as a conflicting reuse of the key, or an honest replay of the starter purchase.
    if response.status_code == 200:
        body = response.json()
        assert body["package"]["credits"] == body["transaction"]["amount"] == "5.00"
    else:
        assert response.status_code in (409, 422)
    assert CreditTransaction.objects.filter(user=user, kind=Kind.PURCHASE).count() == 1
    assert balance(user) == start + 5


def test_it_buys_again_with_another_key_or_without_one(user, user_client):
    start = balance(user)

    responses = [
        user_client.post("/api/credits/purchase", {"package": "starter"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"),
        user_client.post("/api/credits/purchase", {"package": "starter"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2"),
        user_client.post("/api/credits/purchase", {"package": "starter"}, format="json"),
        user_client.post("/api/credits/purchase", {"package": "starter"}, format="json"),
    ]

    assert [response.status_code for response in responses] == [201, 201, 201, 201]
    assert CreditTransaction.objects.filter(user=user, kind=Kind.PURCHASE).count() == 4
    assert balance(user) == start + 20


def test_it_keeps_idempotency_keys_apart_between_users(user, other_user, user_client):
    other_start = balance(other_user)
    user_client.post("/api/credits/purchase", {"package": "starter"}, format="json", HTTP_IDEMPOTENCY_KEY="same")

    response = bearer_client(other_user).post(
        "/api/credits/purchase", {"package": "starter"}, format="json", HTTP_IDEMPOTENCY_KEY="same"
    )

    assert response.status_code == 201
    assert balance(other_user) == other_start + 5


def test_it_pages_the_history_newest_first(user, user_client):
    for number in range(24):
        ledger_append(user_id=user.pk, amount=Decimal("1"), kind=Kind.ADMIN_GRANT, description=f"Grant {number}")
    ids = list(CreditTransaction.objects.filter(user=user).order_by("-id").values_list("id", flat=True))
    assert len(ids) == 25

    first = user_client.get("/api/credits/history").json()
    second = user_client.get(first["next"]).json()

    assert first["count"] == 25
    assert first["previous"] is None
    assert first["next"].endswith("/api/credits/history?page=2")
    assert [row["id"] for row in first["results"]] == ids[:20]
    assert first["results"][0]["description"] == "Grant 23"
    assert first["results"][0]["balance_after"] == f"{balance(user):.2f}"
    assert set(first["results"][0]) == {
        "id",
        "amount",
        "balance_after",
        "kind",
        "description",
        "reference",
        "created_at",
    }
    assert second["next"] is None
    assert [row["id"] for row in second["results"]] == ids[20:]
    assert second["results"][-1]["kind"] == "signup_bonus"


def test_it_shows_a_user_only_their_own_history(user, other_user, user_client):
    ledger_append(user_id=other_user.pk, amount=Decimal("9"), kind=Kind.PURCHASE, description="Theirs", reference="x")
    own = set(CreditTransaction.objects.filter(user=user).values_list("id", flat=True))

    body = user_client.get("/api/credits/history").json()

    assert body["count"] == len(own) == 1
    assert {row["id"] for row in body["results"]} == own


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/api/credits/balance"), ("post", "/api/credits/purchase"), ("get", "/api/credits/history")],
)
def test_it_refuses_anonymous_requests(api_client, method, path):
    response = getattr(api_client, method)(path, {"package": "starter"} if method == "post" else None, format="json")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert not CreditTransaction.objects.filter(kind=Kind.PURCHASE).exists()
