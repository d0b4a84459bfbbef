"""The platform features' promises against the running stack: URL import, webhooks and upload
callbacks never reach a private or loopback address (literal, IPv4-mapped, or a name resolving to
one) and charge nothing when refused; forged Square notifications credit nothing; an API key
cannot make keys, is another user's 404, and answers 401 once revoked; /metrics needs its token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from reliability.harness import METRICS_TOKEN, SQUARE_WEBHOOK_SIGNATURE_KEY
from reliability.scenarios.common import Row, balance, make_user
from testkit.audio import tone_bytes
from testkit.http import http

SQUARE_WEBHOOK = "/api/payments/square/webhook"


class Trap:
    """An HTTP server on 127.0.0.1 that answers a song to anything and counts what reached it."""

    def __init__(self):
        self.requests = 0
        trap = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                trap.requests += 1
                body = tone_bytes(1.0)
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _json(stack, method: str, path: str, data: dict | None, headers: dict[str, str]):
    body = json.dumps(data).encode() if data is not None else None
    return http(method, stack.url(path), body=body, headers={"Content-Type": "application/json", **headers})


def ssrf_refused(stack) -> Row:
    """Every private or loopback address is refused (400) by URL import, webhook registration and
    an upload's callback_url; the trap on loopback hears nothing, nothing is charged."""
    started = time.monotonic()
    user, token = make_user("ssrf", credits=10)
    before = balance(user)
    trap = Trap()
    addresses = [
        f"http://127.0.0.1:{trap.port}/song.wav",
        f"http://localhost:{trap.port}/song.wav",  # a name that resolves to loopback
        f"http://[::ffff:127.0.0.1]:{trap.port}/song.wav",  # IPv4-mapped IPv6
        f"http://[::1]:{trap.port}/song.wav",
        f"http://2130706433:{trap.port}/song.wav",  # 127.0.0.1 as one number
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.0.0.1/song.wav",
    ]
    answers: dict[str, int] = {}
    try:
        for address in addresses:
            answers[f"URL import {address}"] = _json(
                stack, "POST", "/api/upload", {"url": address}, stack.auth(token)
            ).status
            answers[f"webhook {address}"] = _json(
                stack, "POST", "/api/webhooks", {"url": address, "events": ["job.completed"]}, stack.auth(token)
            ).status
            body_song = tone_bytes(1.0)
            answers[f"callback_url {address}"] = stack.upload(token, "song.wav", body_song, callback_url=address).status
    finally:
        trap.close()
    after = balance(user)
    wrong = [f"{case}: {status}, expected 400" for case, status in answers.items() if status != 400]
    if trap.requests:
        wrong.append(f"the loopback trap got {trap.requests} requests")
    if after != before:
        wrong.append(f"balance {before} -> {after}")
    figure = (
        f"{sum(status == 400 for status in answers.values())}/{len(answers)} x 400 for {len(addresses)} private, "
        f"loopback, IPv4-mapped and metadata addresses through URL import, webhooks and callback_url; "
        f"{trap.requests} requests reached the loopback trap; balance {before} -> {after}"
    )
    return Row("SSRF refused", figure, not wrong, time.monotonic() - started, tuple(wrong), details=answers)


def _square_signature(url: str, payload: bytes, key: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), url.encode() + payload, hashlib.sha256).digest()).decode()


def square_forgery_refused(stack) -> Row:
    """Square notifications of a completed payment: unsigned, signed with another key or over
    another URL, or with a body changed after signing, answer 400; a genuine one for an order we
    never opened is accepted (200) and credits nothing. The ledger does not change."""
    from credits.models import CreditTransaction

    started = time.monotonic()
    url = stack.url(SQUARE_WEBHOOK)
    payment = {
        "id": f"pay_{uuid.uuid4().hex}",
        "status": "COMPLETED",
        "order_id": f"order_{uuid.uuid4().hex}",
        "amount_money": {"amount": 50000, "currency": "USD"},
        "total_money": {"amount": 50000, "currency": "USD"},
    }
    event = {"type": "payment.updated", "event_id": uuid.uuid4().hex, "data": {"object": {"payment": payment}}}
    payload = json.dumps(event).encode()
    rows_before = CreditTransaction.objects.count()
    cases = {
        "no signature": (payload, ""),
        "another key": (payload, _square_signature(url, payload, "not-the-key")),
        "another URL": (
            payload,
            _square_signature("https://attacker.example/hook", payload, SQUARE_WEBHOOK_SIGNATURE_KEY),
        ),
        "body changed after signing": (
            payload.replace(b"50000", b"99999"),
            _square_signature(url, payload, SQUARE_WEBHOOK_SIGNATURE_KEY),
        ),
        "genuine, for an order nobody opened": (payload, _square_signature(url, payload, SQUARE_WEBHOOK_SIGNATURE_KEY)),
    }
    expected = {case: 400 for case in cases} | {"genuine, for an order nobody opened": 200}
    answers = {}
    for case, (body, signature) in cases.items():
        headers = {
            "Content-Type": "application/json",
            **({"X-Square-HmacSha256-Signature": signature} if signature else {}),
        }
        answers[case] = http("POST", url, body=body, headers=headers).status
    rows_after = CreditTransaction.objects.count()
    wrong = [f"{case}: {answers[case]}, expected {want}" for case, want in expected.items() if answers[case] != want]
    if rows_after != rows_before:
        wrong.append(f"ledger rows {rows_before} -> {rows_after}")
    figure = (
        f"{sum(answers[case] == want for case, want in expected.items())}/{len(expected)} answers "
        f"as expected: unsigned, wrong key, wrong URL and altered body 400, genuine for an unknown order 200; "
        f"ledger rows {rows_before} -> {rows_after}"
    )
    return Row("Square forgery refused", figure, not wrong, time.monotonic() - started, tuple(wrong), details=answers)


def api_keys_and_metrics(stack) -> Row:
    """An API key works for its owner, cannot make keys, is 404 to another user, answers 401 at
    once after revoking; /metrics is 404 without its token or with a wrong one, 200 with it."""
    started = time.monotonic()
    owner, owner_token = make_user("keys", credits=3)
    _, stranger_token = make_user("stranger", credits=3)
    expected: dict[str, int] = {}
    answers: dict[str, int] = {}

    def check(case: str, want: int, got: int) -> None:
        expected[case], answers[case] = want, got

    created = _json(stack, "POST", "/api/keys", {"name": "reliability"}, stack.auth(owner_token))
    check("create with a token", 201, created.status)
    if created.status != 201:
        return Row(
            "API keys and metrics", f"could not create a key: {created.status}", False, time.monotonic() - started
        )
    key_id, key = created.json()["id"], created.json()["key"]
    with_key = {"Authorization": f"Api-Key {key}"}
    check("jobs with the key", 200, http("GET", stack.url("/api/jobs"), headers=with_key).status)
    check("make a key with a key", 401, _json(stack, "POST", "/api/keys", {"name": "more"}, with_key).status)
    check("another user revokes it", 404, stack.delete(f"/api/keys/{key_id}", stranger_token).status)
    check("jobs with the key after that", 200, http("GET", stack.url("/api/jobs"), headers=with_key).status)
    check("revoke with a key", 401, http("DELETE", stack.url(f"/api/keys/{key_id}"), headers=with_key).status)
    check("owner revokes it", 204, stack.delete(f"/api/keys/{key_id}", owner_token).status)
    check("jobs with the revoked key", 401, http("GET", stack.url("/api/jobs"), headers=with_key).status)
    check("upload with the revoked key", 401, http("POST", stack.url("/api/upload"), headers=with_key).status)
    check("metrics without a token", 404, http("GET", stack.url("/metrics")).status)
    check(
        "metrics with a wrong token",
        404,
        http("GET", stack.url("/metrics"), headers={"Authorization": "Bearer wrong"}).status,
    )
    check(
        "metrics with a user's token", 404, http("GET", stack.url("/metrics"), headers=stack.auth(owner_token)).status
    )
    check(
        "metrics with its token",
        200,
        http("GET", stack.url("/metrics"), headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status,
    )
    wrong = [f"{case}: {answers[case]}, expected {want}" for case, want in expected.items() if answers[case] != want]
    figure = (
        f"{len(expected) - len(wrong)}/{len(expected)} answers as expected: the key works (200), cannot make or "
        f"revoke keys (401), is another user's 404, answers 401 once revoked; /metrics 404 without its token, "
        f"200 with it"
    )
    return Row("API keys and metrics", figure, not wrong, time.monotonic() - started, tuple(wrong), details=answers)
