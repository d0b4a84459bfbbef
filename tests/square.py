"""Helpers for the Square payment tests (no tests here): Square's webhook events as Square sends
them, signed as Square signs them, delivered to the webhook; and a fake Square API on loopback
whose payment links open a tiny checkout page that "pays" by sending the signed notification."""

import base64
import hashlib
import hmac
import json
import secrets
import threading
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

from django.test import Client

WEBHOOK_PATH = "/api/payments/square/webhook"
SITE_URL = "http://testserver"
ACCESS_TOKEN = "EAAAl_test_fake_square_token_0123456789"
LOCATION_ID = "LTESTLOCATION01"
SIGNATURE_KEY = "sq_test_signature_key_0123456789abcdef"


def configure_square(settings, site_url: str = SITE_URL) -> None:
    """Square on, Stripe and simulated payments off, for one test (pytest-django's settings)."""
    settings.PAYMENT_PROVIDER = "square"
    settings.SQUARE_ACCESS_TOKEN = ACCESS_TOKEN
    settings.SQUARE_LOCATION_ID = LOCATION_ID
    settings.SQUARE_WEBHOOK_SIGNATURE_KEY = SIGNATURE_KEY
    settings.SQUARE_ENVIRONMENT = "sandbox"
    settings.SITE_URL = site_url
    settings.STRIPE_SECRET_KEY = ""
    settings.PAYMENTS_SIMULATED = False


def new_id(length: int = 22) -> str:
    """An id shaped like Square's (upper-case letters and digits)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def sign(payload: str | bytes, *, url: str = SITE_URL + WEBHOOK_PATH, key: str = SIGNATURE_KEY) -> str:
    """x-square-hmacsha256-signature as Square documents it, written out here on its own:
    base64(HMAC-SHA256(key, notification URL + body))."""
    body = payload.encode() if isinstance(payload, str) else payload
    return base64.b64encode(hmac.new(key.encode(), url.encode() + body, hashlib.sha256).digest()).decode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(kind: str, object_type: str, obj: dict) -> str:
    return json.dumps(
        {
            "merchant_id": "MLTESTMERCHANT",
            "type": kind,
            "event_id": secrets.token_hex(16),
            "created_at": _now(),
            "data": {"type": object_type, "id": obj["id"], "object": {object_type: obj}},
        }
    )


def payment(
    *, order_id: str, payment_id: str, status: str = "COMPLETED", amount: int = 400, kind: str = "payment.updated"
) -> str:
    money = {"amount": amount, "currency": "USD"}
    return event(
        kind,
        "payment",
        {
            "id": payment_id,
            "order_id": order_id,
            "location_id": LOCATION_ID,
            "status": status,
            "amount_money": money,
            "total_money": money,
            "approved_money": money,
            "source_type": "CARD",
            "created_at": _now(),
            "updated_at": _now(),
            "version": 3,
        },
    )


def refund(
    *,
    payment_id: str,
    refund_id: str | None = None,
    amount: int = 400,
    status: str = "COMPLETED",
    kind="refund.updated",
) -> str:
    refund_id = refund_id or f"{payment_id}_{new_id(10)}"
    return event(
        kind,
        "refund",
        {
            "id": refund_id,
            "payment_id": payment_id,
            "location_id": LOCATION_ID,
            "status": status,
            "amount_money": {"amount": amount, "currency": "USD"},
            "reason": "Requested by the customer",
            "created_at": _now(),
            "updated_at": _now(),
        },
    )


def dispute(
    *, payment_id: str, dispute_id: str | None = None, amount: int = 400, state: str = "EVIDENCE_REQUIRED", kind=""
) -> str:
    dispute_id = dispute_id or new_id()
    return event(
        kind or ("dispute.created" if state == "EVIDENCE_REQUIRED" else "dispute.state.updated"),
        "dispute",
        {
            "id": dispute_id,
            "dispute_id": dispute_id,
            "amount_money": {"amount": amount, "currency": "USD"},
            "reason": "NOT_AS_DESCRIBED",
            "state": state,
            "disputed_payment": {"payment_id": payment_id},
            "card_brand": "VISA",
            "created_at": _now(),
            "updated_at": _now(),
        },
    )


def deliver(payload: str, signature: str | None = "sign", client: Client | None = None):
    """POST a delivery as Square does; signature "sign" signs it with the test key and URL."""
    headers = {}
    if signature == "sign":
        signature = sign(payload)
    if signature is not None:
        headers["HTTP_X_SQUARE_HMACSHA256_SIGNATURE"] = signature
    return (client or Client()).post(WEBHOOK_PATH, data=payload, content_type="application/json", **headers)


class FakeSquare:
    """A tiny Square API on 127.0.0.1: records each request, answers payment link creates as
    Square does (a repeated idempotency key gets the first answer), and serves each link's
    checkout page, whose Pay button sends the signed payment notification to notify_url and
    then sends the customer to the link's redirect URL with the ids Square adds."""

    def __init__(self):
        self.requests: list[dict] = []
        self.error: tuple[int, dict] | None = None
        self.links: dict[str, dict] = {}
        self.links_by_key: dict[str, dict] = {}
        self.notify_url = ""  # where the checkout page's Pay button delivers the notification
        self.deliveries: list[int] = []  # the webhook's answers to those
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/checkout/") and self.path.endswith("/pay"):
                    return fake.pay(self, self.path.split("/")[2])
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                if fake.error is not None:
                    status, answer = fake.error
                elif self.path == "/v2/online-checkout/payment-links":
                    status, answer = 200, fake.link_for(json.loads(body), self.host)
                else:
                    status, answer = 404, {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "NOT_FOUND"}]}
                fake.send(self, status, "application/json", json.dumps(answer).encode())

            def do_GET(self):
                link = fake.links.get(self.path.removeprefix("/checkout/"))
                if link is None:
                    return fake.send(self, 404, "text/plain", b"no such link")
                page = (
                    f'<!doctype html><html lang="en"><title>Square checkout</title>'
                    f"<h1>Pay {link['amount']} cents</h1>"
                    f'<form method="post" action="/checkout/{link["id"]}/pay"><button>Pay now</button></form></html>'
                )
                fake.send(self, 200, "text/html", page.encode())

            @property
            def host(self):
                return f"http://{self.headers['Host']}"

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @staticmethod
    def send(handler, status: int, content_type: str, data: bytes, headers: dict | None = None):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def link_for(self, body: dict, host: str) -> dict:
        key = body.get("idempotency_key", "")
        if key in self.links_by_key:
            return self.links_by_key[key]["answer"]
        link_id, order_id = new_id(16), new_id(27)
        order = body["order"]
        amount = sum(int(item["base_price_money"]["amount"]) for item in order["line_items"])
        currency = order["line_items"][0]["base_price_money"]["currency"]
        answer = {
            "payment_link": {
                "id": link_id,
                "version": 1,
                "order_id": order_id,
                "checkout_options": body.get("checkout_options", {}),
                "url": f"{host}/checkout/{link_id}",
                "long_url": f"{host}/checkout/{link_id}?long=1",
                "created_at": _now(),
            },
            "related_resources": {
                "orders": [
                    {
                        "id": order_id,
                        "location_id": order["location_id"],
                        "reference_id": order.get("reference_id"),
                        "line_items": order["line_items"],
                        "total_money": {"amount": amount, "currency": currency},
                        "state": "OPEN",
                        "version": 1,
                    }
                ]
            },
        }
        link = {"id": link_id, "order_id": order_id, "amount": amount, "answer": answer, "body": body}
        self.links[link_id] = link
        if key:
            self.links_by_key[key] = link
        return answer

    def pay(self, handler, link_id: str):
        """The customer paid: Square notifies the webhook, then redirects the customer."""
        link = self.links[link_id]
        payment_id = new_id()
        payload = payment(order_id=link["order_id"], payment_id=payment_id, amount=link["amount"])
        request = urllib.request.Request(
            self.notify_url,
            data=payload.encode(),
            headers={
                "Content-Type": "application/json",
                "X-Square-HmacSha256-Signature": sign(payload, url=self.notify_url),
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            self.deliveries.append(answer.status)
        query = urlencode({"checkoutId": link_id, "orderId": link["order_id"], "transactionId": payment_id})
        redirect = link["body"]["checkout_options"]["redirect_url"]
        self.send(handler, 303, "text/plain", b"", headers={"Location": f"{redirect}?{query}"})

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
