"""Real concurrency on the database: many threads, each on its own connection, change one balance at once."""

from decimal import Decimal
from functools import partial

import pytest
from django.db.models import Min, Sum

from accounts.models import User
from credits.models import CreditTransaction
from credits.selectors import ledger_violations
from credits.services import InsufficientCredits, ledger_append
from tests.factories import UserFactory
from tests.threads import run_together

Kind = CreditTransaction.Kind

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]

THREADS = 16


def _run_together(worker, count=THREADS):
    """Run worker(index) in count threads released by one barrier; return each one's result or exception."""
    return run_together(*(partial(worker, index) for index in range(count)))


def _assert_ledger_consistent(user):
    rows = CreditTransaction.objects.filter(user=user)
    balance = User.objects.values_list("credits", flat=True).get(pk=user.pk)
    assert balance >= 0
    assert rows.aggregate(lowest=Min("balance_after"))["lowest"] >= 0
    assert balance == rows.aggregate(total=Sum("amount"))["total"]
    assert balance == rows.order_by("-id").first().balance_after
    assert ledger_violations() == []
    return balance


def test_it_lets_exactly_as_many_concurrent_debits_succeed_as_the_balance_allows():
    user = UserFactory()
    start = User.objects.values_list("credits", flat=True).get(pk=user.pk)
    ledger_append(
        user_id=user.pk, amount=Decimal("10") - start, kind=Kind.ADMIN_GRANT, description="To ten", reference="ten"
    )
    # 10.00 credits; 20 threads each try to take 1.00.

    def charge(index):
        return ledger_append(
            user_id=user.pk, amount=Decimal("-1"), kind=Kind.JOB_CHARGE, description="Job", reference=f"job-{index}"
        )

    results = _run_together(charge, count=20)

    charged = [result for result in results if not isinstance(result, BaseException)]
    refused = [result for result in results if isinstance(result, InsufficientCredits)]
    assert len(charged) == 10
    assert len(refused) == 10
    assert all(posting.created for posting in charged)
    assert User.objects.values_list("credits", flat=True).get(pk=user.pk) == Decimal("0")
    job_rows = CreditTransaction.objects.filter(user=user, kind=Kind.JOB_CHARGE)
    assert job_rows.count() == 10
    assert set(job_rows.values_list("pk", flat=True)) == {posting.transaction.pk for posting in charged}
    assert sorted(job_rows.values_list("balance_after", flat=True)) == [Decimal(n) for n in range(10)]
    _assert_ledger_consistent(user)


def test_it_keeps_the_ledger_consistent_under_concurrent_credits_and_debits():
    user = UserFactory()
    start_rows = CreditTransaction.objects.filter(user=user).count()
    start = User.objects.values_list("credits", flat=True).get(pk=user.pk)
    rounds = 8

    def work(index):
        posted, refused = [], 0
        for round_ in range(rounds):
            # Half the threads credit 2.00, half try to take 3.00: debits often find too little.
            amount = Decimal("2.00") if index % 2 == 0 else Decimal("-3.00")
            kind = Kind.ADMIN_GRANT if amount > 0 else Kind.JOB_CHARGE
            try:
                posting = ledger_append(
                    user_id=user.pk, amount=amount, kind=kind, description="Load", reference=f"load-{index}-{round_}"
                )
            except InsufficientCredits:
                refused += 1
            else:
                posted.append(posting)
        return posted, refused

    results = _run_together(work)

    assert not [result for result in results if isinstance(result, BaseException)], results
    postings = [posting for posted, _ in results for posting in posted]
    refused = sum(count for _, count in results)
    assert len(postings) + refused == THREADS * rounds
    assert all(posting.created for posting in postings)
    credits = [p for p in postings if p.transaction.amount > 0]
    debits = [p for p in postings if p.transaction.amount < 0]
    assert len(credits) == THREADS // 2 * rounds  # a credit is never refused
    assert len(debits) > 0

    balance = _assert_ledger_consistent(user)
    assert balance == start + sum(p.transaction.amount for p in postings)
    # Nothing lost, nothing doubled: one row per successful posting, and no more.
    rows = CreditTransaction.objects.filter(user=user)
    assert rows.count() == start_rows + len(postings)
    load_rows = rows.filter(description="Load")
    assert sorted(load_rows.values_list("pk", flat=True)) == sorted(p.transaction.pk for p in postings)
    assert load_rows.values("reference").distinct().count() == len(postings)
    # Replaying the ledger in order never dips below zero and ends at the balance.
    running = Decimal("0")
    for amount, balance_after in rows.order_by("id").values_list("amount", "balance_after"):
        running += amount
        assert running == balance_after
        assert running >= 0
    assert running == balance


def test_it_credits_a_concurrently_repeated_reference_exactly_once():
    user = UserFactory()
    start = User.objects.values_list("credits", flat=True).get(pk=user.pk)

    def purchase(index):
        return ledger_append(
            user_id=user.pk, amount=Decimal("25"), kind=Kind.PURCHASE, description="Payment", reference="payment-42"
        )

    results = _run_together(purchase)

    assert not [result for result in results if isinstance(result, BaseException)], results
    assert [posting.created for posting in results].count(True) == 1
    assert len({posting.transaction.pk for posting in results}) == 1
    assert CreditTransaction.objects.filter(kind=Kind.PURCHASE, reference="payment-42").count() == 1
    assert User.objects.values_list("credits", flat=True).get(pk=user.pk) == start + Decimal("25")
    _assert_ledger_consistent(user)
