"""Stripe as it looks from outside: events as Stripe sends them, signed as Stripe signs them,
delivered to the webhook (through Django's test client, or over HTTP to a running server by the
attack suite); and a fake Stripe API on loopback. The test secrets below are what the payment
tests and the attack suite's servers configure."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from testkit.http import Reply, http

WEBHOOK_URL = "/api/payments/stripe/webhook"
WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
SECRET_KEY = "sk_test_fake_0123456789"


def configure_stripe(settings) -> None:
    """Stripe on, simulated payments off, for one test (settings is pytest-django's fixture)."""
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.PAYMENTS_SIMULATED = False


def assert_ledger_consistent() -> None:
    from credits.selectors import ledger_violations, payment_violations

    assert ledger_violations() == []
    assert payment_violations() == []


def new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header, computed as Stripe does: HMAC-SHA256 of "<t>.<payload>"."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event(kind: str, obj: dict) -> str:
    return json.dumps(
        {
            "id": new_id("evt"),
            "object": "event",
            "api_version": "2025-09-30.clover",
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }
    )


def checkout_session(
    *,
    user,
    session_id: str,
    payment_intent: str | None,
    pack_id: str = "standard",
    credits: str = "25.00",
    amount_total: int = 400,
    payment_status: str = "paid",
) -> dict:
    return {
        "id": session_id,
        "object": "checkout.session",
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "client_reference_id": str(user.pk),
        "currency": "usd",
        "customer_email": user.email,
        "livemode": False,
        "metadata": {"user_id": str(user.pk), "pack_id": pack_id, "credits": credits},
        "mode": "payment",
        "payment_intent": payment_intent,
        "payment_status": payment_status,
        "status": "complete" if payment_status != "unpaid" else "open",
        "success_url": "http://testserver/credits/success/?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://testserver/credits/cancelled/",
        "url": None,
    }


def completed(user, session_id: str, payment_intent: str, kind: str = "checkout.session.completed", **fields) -> str:
    return event(kind, checkout_session(user=user, session_id=session_id, payment_intent=payment_intent, **fields))


def refunded(*, charge_id: str, payment_intent: str, amount_refunded: int, amount: int = 400) -> str:
    return event(
        "charge.refunded",
        {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": amount_refunded,
            "captured": True,
            "currency": "usd",
            "paid": True,
            "payment_intent": payment_intent,
            "refunded": amount_refunded >= amount,
            "status": "succeeded",
        },
    )


def disputed(
    *,
    charge_id: str,
    payment_intent: str,
    amount: int = 400,
    dispute_id: str | None = None,
    kind: str = "charge.dispute.created",
    status: str = "needs_response",
) -> str:
    """A dispute event: created by default; charge.dispute.closed with status won or lost, or
    charge.dispute.funds_reinstated (status won) for its end."""
    return event(
        kind,
        {
            "id": dispute_id or new_id("dp"),
            "object": "dispute",
            "amount": amount,
            "charge": charge_id,
            "currency": "usd",
            "payment_intent": payment_intent,
            "reason": "fraudulent",
            "status": status,
        },
    )


def deliver(payload: str, signature: str | None = "sign", client=None):
    """POST a delivery as Stripe does, through `client` (a Django test Client; a new one if
    None); signature "sign" signs it with the test secret."""
    from django.test import Client

    headers = {}
    if signature == "sign":
        signature = sign(payload)
    if signature is not None:
        headers["HTTP_STRIPE_SIGNATURE"] = signature
    return (client or Client()).post(WEBHOOK_URL, data=payload, content_type="application/json", **headers)


class FakeStripe:
    """A tiny Stripe API on 127.0.0.1: records each request and answers Checkout Session creates
    with a realistic session (or with the error it is told to give)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.error: tuple[int, dict] | None = None
        self.sessions_by_key: dict[str, dict] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = dict(parse_qsl(body, keep_blank_values=True))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "form": form})
                if fake.error is not None:
                    status, payload = fake.error
                elif self.path == "/v1/checkout/sessions":
                    status, payload = 200, fake.session_for(form, self.headers.get("Idempotency-Key", ""))
                elif self.path == "/v1/billing_portal/sessions":
                    portal_id = new_id("bps")
                    url = f"https://billing.stripe.com/p/session/{portal_id}"
                    payload = {"id": portal_id, "object": "billing_portal.session", "url": url, **form}
                    status = 200
                else:
                    status, payload = 404, {"error": {"type": "invalid_request_error", "message": "Unrecognized"}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", new_id("req"))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def session_for(self, form: dict, idempotency_key: str) -> dict:
        # Stripe answers a repeated idempotency key with the first response.
        if idempotency_key in self.sessions_by_key:
            return self.sessions_by_key[idempotency_key]
        session_id = new_id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": int(form["line_items[0][price_data][unit_amount]"]),
            "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
            "cancel_url": form["cancel_url"],
            "client_reference_id": form.get("client_reference_id"),
            "currency": form["line_items[0][price_data][currency]"],
            "customer_email": form.get("customer_email"),
            "expires_at": int(time.time()) + 86400,
            "livemode": False,
            "metadata": {key[9:-1]: value for key, value in form.items() if key.startswith("metadata[")},
            "mode": form.get("mode", "payment"),
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": form["success_url"],
            "url": f"https://checkout.stripe.com/c/pay/{session_id}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
        }
        if idempotency_key:
            self.sessions_by_key[idempotency_key] = session
        return session

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def deliver_to(url: str, payload: str) -> Reply:
    """POST a signed delivery over HTTP to a running server's webhook `url`."""
    headers = {"Content-Type": "application/json", "Stripe-Signature": sign(payload)}
    return http("POST", url, body=payload.encode(), headers=headers)
