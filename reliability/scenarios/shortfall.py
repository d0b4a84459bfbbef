"""A payment taken back stays taken back: a customer buys a pack (signed Stripe webhook), spends
it on uploads, disputes the payment when nothing is left to take back, then cancels the queued
jobs; the refunds repay what is owed first. Then the dispute is won: the credits come back once.

The stack's qcluster is stopped while the jobs wait (so they are still queued when cancelled) and
a fresh one started after."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from reliability.scenarios.common import Row, audit_ledger, balance, make_user
from reliability.scenarios.faults import start_qcluster
from testkit.audio import tone_bytes
from testkit.http import http
from testkit.processes import stop_group
from testkit.stripe import WEBHOOK_URL, completed, deliver_to, disputed

PACK_CREDITS = Decimal("25.00")
PACK_PRICE_CENTS = 400


def _deliver(stack, payload: str) -> int:
    return deliver_to(stack.url(WEBHOOK_URL), payload).status


def run(stack, *, threads: int = 8) -> Row:
    from credits.models import CreditTransaction, Payment

    Kind = CreditTransaction.Kind
    started = time.monotonic()
    problems: list[str] = []
    user, token = make_user("disputer", 3)
    session_id, intent = f"cs_test_rel_{secrets.token_hex(12)}", f"pi_test_rel_{secrets.token_hex(12)}"
    charge, dispute_id = f"ch_test_rel_{secrets.token_hex(12)}", f"dp_test_rel_{secrets.token_hex(12)}"

    def dispute(kind: str, status: str) -> int:
        return _deliver(
            stack,
            disputed(
                charge_id=charge,
                payment_intent=intent,
                amount=PACK_PRICE_CENTS,
                dispute_id=dispute_id,
                kind=kind,
                status=status,
            ),
        )

    stop_group(stack.processes["qcluster"])  # the jobs stay queued until cancelled
    try:
        bought = _deliver(
            stack,
            completed(user, session_id, intent, credits=str(PACK_CREDITS), amount_total=PACK_PRICE_CENTS),
        )
        spendable = balance(user)
        clip = tone_bytes(2.0)  # 1 credit
        with ThreadPoolExecutor(max_workers=threads) as pool:
            uploads = list(pool.map(lambda n: stack.upload(token, f"spent-{n}.wav", clip), range(int(spendable))))
        job_ids = [reply.json()["job_id"] for reply in uploads if reply.status == 202]
        spent_to = balance(user)
        dispute_answer = dispute("charge.dispute.created", "needs_response")
        payment = Payment.objects.get(provider_session_id=session_id)
        owed = payment.credits_shortfall_open

        def cancel(job_id: str) -> int:
            return http("DELETE", stack.url(f"/api/job/{job_id}"), headers=stack.auth(token)).status

        with ThreadPoolExecutor(max_workers=threads) as pool:
            cancels = Counter(pool.map(cancel, job_ids))
    finally:
        start_qcluster(stack, "qcluster-after-shortfall")
    after_cancels = balance(user)
    payment.refresh_from_db()
    repaid, open_after = payment.credits_shortfall_repaid, payment.credits_shortfall_open
    clean, said = audit_ledger(stack)

    won = [dispute("charge.dispute.closed", "won"), dispute("charge.dispute.funds_reinstated", "won")]
    won.append(dispute("charge.dispute.closed", "won"))
    after_won = balance(user)
    reinstated = list(
        CreditTransaction.objects.filter(user=user, kind=Kind.PAYMENT_REINSTATED).values_list("amount", flat=True)
    )
    clean_after_won, said_after_won = audit_ledger(stack)

    if bought != 200 or spendable != 3 + PACK_CREDITS:
        problems.append(f"purchase answered {bought}, balance {spendable}")
    if len(job_ids) != int(spendable) or spent_to != 0:
        problems.append(f"{len(job_ids)} uploads accepted of {int(spendable)}, balance {spent_to}")
    if dispute_answer != 200 or owed != PACK_CREDITS:
        problems.append(f"dispute answered {dispute_answer}, open shortfall {owed}")
    if cancels != Counter({200: len(job_ids)}):
        problems.append(f"cancels answered {dict(cancels)}")
    # The refunds give back every credit spent; the 25 the money paid for repay the dispute.
    if (after_cancels, repaid, open_after) != (Decimal(3), PACK_CREDITS, Decimal(0)):
        problems.append(f"after the cancels: balance {after_cancels}, repaid {repaid}, still owed {open_after}")
    if not clean:
        problems.append(f"audit_ledger after the cancels: {said}")
    if won != [200, 200, 200] or after_won != 3 + PACK_CREDITS or reinstated != [PACK_CREDITS]:
        problems.append(f"dispute won: answers {won}, balance {after_won}, reinstated rows {reinstated}")
    if not clean_after_won:
        problems.append(f"audit_ledger after the win: {said_after_won}")
    figure = (
        f"{int(PACK_CREDITS)}-credit pack + 3 bonus spent on {len(job_ids)} queued jobs; dispute: {owed} owed; "
        f"{len(job_ids)} concurrent DELETEs {dict(cancels)}: balance {after_cancels} ({repaid} repaid, "
        f"{open_after} owed), audit_ledger {'clean' if clean else 'BROKEN'}; dispute won (3 deliveries): "
        f"{'+'.join(str(amount) for amount in reinstated) or 'nothing'} back once, balance {after_won}, "
        f"audit_ledger {'clean' if clean_after_won else 'BROKEN'}"
    )
    return Row(
        "A payment taken back stays taken back", figure, not problems, time.monotonic() - started, tuple(problems)
    )
