"""manage.py audit_ledger from the command line: exit status 0 on a consistent ledger, 1 naming the
user otherwise. Slow: each run is a fresh Python process reading the settings (the checks
themselves are in test_audit_ledger.py)."""

import os
import subprocess
import sys
from decimal import Decimal

import pytest
from django.db.models import F

from accounts.models import User
from testkit.processes import REPO_ROOT, database_url
from tests.factories import UserFactory

pytestmark = pytest.mark.slow


def _manage_py(*args):
    env = {**os.environ, "DATABASE_URL": database_url()}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
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
