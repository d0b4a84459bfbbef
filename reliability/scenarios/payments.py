"""One payment reference credited from many requests at once: signed Stripe
checkout.session.completed deliveries for one checkout session, all at the same moment."""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from reliability.scenarios.common import Row, audit_ledger, balance, make_user
from testkit.stripe import WEBHOOK_URL, completed, deliver_to


def run(stack, *, requests: int = 20) -> Row:
    from credits.models import CreditTransaction

    started = time.monotonic()
    user, _ = make_user("payer", 3)
    session_id = f"cs_test_rel_{secrets.token_hex(12)}"
    intent = f"pi_test_rel_{secrets.token_hex(12)}"
    pack_credits = Decimal("25.00")
    gate = threading.Barrier(requests)

    def deliver(_: int) -> int:
        # A new event id each time: Stripe's retries and duplicates carry the same session.
        payload = completed(user, session_id, intent, credits=str(pack_credits), amount_total=400)
        gate.wait(timeout=30)
        try:
            return deliver_to(stack.url(WEBHOOK_URL), payload).status
        except OSError:
            return -1

    with ThreadPoolExecutor(max_workers=requests) as pool:
        statuses = Counter(pool.map(deliver, range(requests)))
    purchases = CreditTransaction.objects.filter(user=user, kind=CreditTransaction.Kind.PURCHASE).count()
    final = balance(user)
    clean, said = audit_ledger(stack)
    problems = []
    if statuses != Counter({200: requests}):
        problems.append(f"statuses {dict(statuses)}")
    if purchases != 1:
        problems.append(f"{purchases} purchase rows for one payment")
    if final != Decimal(3) + pack_credits:
        problems.append(f"balance {final}, expected {Decimal(3) + pack_credits}")
    if not clean:
        problems.append(f"audit_ledger: {said}")
    figure = (
        f"{requests} concurrent signed deliveries of one checkout: {dict(statuses)}; "
        f"{purchases} purchase row; balance 3.00 -> {final}; audit_ledger {'clean' if clean else 'BROKEN'}"
    )
    return Row("One payment credited once", figure, not problems, time.monotonic() - started, tuple(problems))
