"""One payment reference credited from many requests at once: signed Stripe
checkout.session.completed deliveries for one checkout session, all at the same moment."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from reliability.harness import STRIPE_WEBHOOK_SECRET, http
from reliability.scenarios.common import Row, audit_ledger, balance, make_user

WEBHOOK = "/api/payments/stripe/webhook"


def signed(payload: str) -> str:
    timestamp = int(time.time())
    digest = hmac.new(STRIPE_WEBHOOK_SECRET.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def completed_event(*, user, session_id: str, payment_intent: str, credits: str, amount: int) -> str:
    """A checkout.session.completed event as Stripe sends it; a new event id each time (Stripe
    retries and duplicates carry the same session)."""
    session = {
        "id": session_id,
        "object": "checkout.session",
        "amount_subtotal": amount,
        "amount_total": amount,
        "client_reference_id": str(user.pk),
        "currency": "usd",
        "customer_email": user.email,
        "livemode": False,
        "metadata": {"user_id": str(user.pk), "pack_id": "standard", "credits": credits},
        "mode": "payment",
        "payment_intent": payment_intent,
        "payment_status": "paid",
        "status": "complete",
        "url": None,
    }
    return json.dumps(
        {
            "id": f"evt_rel_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": "2025-09-30.clover",
            "created": int(time.time()),
            "data": {"object": session},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "checkout.session.completed",
        }
    )


def run(stack, *, requests: int = 20) -> Row:
    from credits.models import CreditTransaction

    started = time.monotonic()
    user, _ = make_user("payer", 3)
    session_id = f"cs_test_rel_{secrets.token_hex(12)}"
    intent = f"pi_test_rel_{secrets.token_hex(12)}"
    pack_credits = Decimal("25.00")
    gate = threading.Barrier(requests)

    def deliver(_: int) -> int:
        payload = completed_event(
            user=user, session_id=session_id, payment_intent=intent, credits=str(pack_credits), amount=400
        )
        headers = {"Content-Type": "application/json", "Stripe-Signature": signed(payload)}
        gate.wait(timeout=30)
        try:
            return http("POST", stack.url(WEBHOOK), body=payload.encode(), headers=headers).status
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
