"""What the scenarios share: the row they report, users with tokens, the ledger (audio is in
testkit.audio)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class Row:
    name: str
    figure: str
    holds: bool
    seconds: float = 0.0
    problems: tuple[str, ...] = ()
    details: dict = field(default_factory=dict)  # per case, where a row has cases


def make_user(prefix: str, credits: Decimal | int = 3):
    """A user made the way the product makes them: saved by user_save_new, its address verified
    through email_address_verify as following the mailed link does (which grants the signup bonus
    of 3), topped up through the ledger service to `credits`; returns (user, bearer token)."""
    from allauth.account.models import EmailAddress

    from accounts.models import User
    from accounts.services import email_address_verify, user_save_new
    from accounts.tokens import access_token_issue
    from credits.models import CreditTransaction
    from credits.services import ledger_append

    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    user = User(username=name, email=f"{name}@example.com")
    user.set_unusable_password()
    user = user_save_new(user=user)
    address = EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=False)
    email_address_verify(address=address)
    user.refresh_from_db()
    extra = Decimal(credits) - user.credits
    if extra > 0:
        ledger_append(
            user_id=user.pk,
            amount=extra,
            kind=CreditTransaction.Kind.ADMIN_GRANT,
            description="reliability suite",
            reference=f"reliability:{uuid.uuid4().hex}",
        )
        user.refresh_from_db()
    assert user.credits == Decimal(credits), (user.credits, credits)
    return user, access_token_issue(user=user)


def balance(user) -> Decimal:
    from accounts.models import User

    return User.objects.values_list("credits", flat=True).get(pk=user.pk)


def audit_ledger(stack) -> tuple[bool, str]:
    """`manage.py audit_ledger` on the stack's database: (clean, what it said)."""
    result = stack.manage("audit_ledger")
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def orphan_charges() -> list[str]:
    """Job charges whose job does not exist: a charge without a job."""
    from credits.models import CreditTransaction
    from separation.models import Job

    job_ids = {str(pk) for pk in Job.objects.values_list("pk", flat=True)}
    references = CreditTransaction.objects.filter(kind=CreditTransaction.Kind.JOB_CHARGE).values_list(
        "reference", flat=True
    )
    return [reference for reference in references if reference.removeprefix("job:") not in job_ids]


def wait_final(job_ids, timeout: float) -> dict[str, str]:
    """Waits until every job is COMPLETED, FAILED or CANCELLED (or the timeout); their statuses."""
    import time

    from separation.models import Job

    deadline = time.monotonic() + timeout
    while True:
        statuses = dict(Job.objects.filter(pk__in=list(job_ids)).values_list("pk", "status"))
        statuses = {str(pk): status for pk, status in statuses.items()}
        if all(status in Job.FINISHED for status in statuses.values()) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.5)
