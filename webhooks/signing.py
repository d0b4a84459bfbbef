"""Standard Webhooks signatures (https://www.standardwebhooks.com): the `standardwebhooks`
library signs "<webhook-id>.<webhook-timestamp>.<body>" with HMAC-SHA256 under each secret."""

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def secret_new() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(*, message_id: str, timestamp: datetime, body: str, signing_secrets: list[str]) -> dict[str, str]:
    """The headers of one attempt: one `v1,<signature>` per secret, space-separated (two while a
    rotated secret is still honoured)."""
    signatures = " ".join(
        Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body) for secret in signing_secrets
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }
