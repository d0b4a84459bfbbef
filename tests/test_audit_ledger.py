"""manage.py audit_ledger: credits == sum(amounts) == last balance_after, for every user."""

import os
import subprocess
import sys
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db.models import F

from accounts.models import User
from credits.models import CreditTransaction
from credits.services import ledger_append
from tests.factories import UserFactory

Kind = CreditTransaction.Kind
MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"


def _audit():
    out, err = StringIO(), StringIO()
    call_command("audit_ledger", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _audit_failing():
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("audit_ledger", stdout=out, stderr=err)
    return raised.value, err.getvalue()


@pytest.mark.django_db
def test_it_passes_a_clean_ledger(user, other_user):
    ledger_append(user_id=user.pk, amount=Decimal("5"), kind=Kind.PURCHASE, description="Buy", reference="p1")
    ledger_append(user_id=user.pk, amount=Decimal("-2.50"), kind=Kind.JOB_CHARGE, description="Job", reference="j1")

    out, err = _audit()

    assert "Ledger consistent" in out
    assert err == ""


@pytest.mark.django_db
def test_it_fails_and_names_a_user_whose_cached_balance_is_corrupted(user, other_user):
    start = user.credits
    User.objects.filter(pk=user.pk).update(credits=F("credits") + Decimal("1"))

    error, err = _audit_failing()

    assert error.returncode == 1
    assert str(error) == "1 ledger violation(s)"
    assert err.splitlines() == [
        f"user {user.pk} ({user.username}): balance {start + 1:.2f}, "
        f"sum of transactions {start:.2f}, last balance_after {start:.2f}"
    ]
    assert f"user {other_user.pk} " not in err


@pytest.mark.django_db
def test_it_fails_on_a_row_inserted_behind_the_services_back(user):
    row = CreditTransaction.objects.create(
        user=user, amount=Decimal("2"), balance_after=Decimal("100"), kind=Kind.ADMIN_GRANT, description="Forged"
    )

    error, err = _audit_failing()

    lines = err.splitlines()
    assert str(error) == "2 ledger violation(s)"
    assert (
        f"user {user.pk} ({user.username}): balance {user.credits:.2f}, "
        f"sum of transactions {user.credits + 2:.2f}, last balance_after 100.00"
    ) in lines
    assert f"transaction {row.pk} (user {user.pk}): balance_after 100.00 is not {user.credits:.2f} + 2.00" in lines


@pytest.mark.django_db
def test_it_fails_on_a_broken_chain_even_when_the_totals_agree(user):
    # +2 then -2 keeps sum == balance == last balance_after, but the middle row is wrong.
    start = user.credits
    wrong = CreditTransaction.objects.create(
        user=user, amount=Decimal("2"), balance_after=start + 7, kind=Kind.ADMIN_GRANT, description="Forged"
    )
    back = CreditTransaction.objects.create(
        user=user, amount=Decimal("-2"), balance_after=start, kind=Kind.ADMIN_REFUND, description="Forged"
    )

    error, err = _audit_failing()

    assert str(error) == "2 ledger violation(s)"
    assert err.splitlines() == [
        f"transaction {wrong.pk} (user {user.pk}): balance_after {start + 7:.2f} is not {start:.2f} + 2.00",
        f"transaction {back.pk} (user {user.pk}): balance_after {start:.2f} is not {start + 7:.2f} + -2.00",
    ]


def _manage_py(*args):
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, str(MANAGE_PY), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.django_db(transaction=True)
def test_it_exits_zero_then_one_from_the_command_line():
    # transaction=True commits the rows, so the subprocess sees them in the test database.
    user = UserFactory()

    clean = _manage_py("audit_ledger")

    assert clean.returncode == 0, clean.stderr
    assert "Ledger consistent" in clean.stdout

    User.objects.filter(pk=user.pk).update(credits=F("credits") + Decimal("1"))

    broken = _manage_py("audit_ledger")

    assert broken.returncode == 1
    assert f"user {user.pk} ({user.username}): balance {user.credits + 1:.2f}" in broken.stderr
    assert "CommandError: 1 ledger violation(s)" in broken.stderr
