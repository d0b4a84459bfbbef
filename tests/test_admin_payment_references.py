"""The payments and reversals changelists show the providers' ids usefully: cut short with the
whole id in a tooltip, the payment linked to its page in the provider's dashboard (a new tab that
is told nothing of the admin), and whatever a provider's id holds escaped."""

import re
from decimal import Decimal

import pytest

from credits.models import Payment, PaymentReversal

PAYMENTS_URL = "/admin/credits/payment/"
REVERSALS_URL = "/admin/credits/paymentreversal/"

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def _payment(user, *, provider: str, session_id: str, payment_id: str) -> Payment:
    return Payment.objects.create(
        provider=provider,
        provider_session_id=session_id,
        payment_intent_id=payment_id,
        user=user,
        pack_id="starter",
        credits=Decimal(5),
        amount=Decimal("4.00"),
        currency="usd",
        status=Payment.Status.PAID,
    )


def _reversal(*, provider: str, reversal_id: str, payment_id: str) -> PaymentReversal:
    return PaymentReversal.objects.create(
        provider=provider,
        provider_reversal_id=reversal_id,
        kind=PaymentReversal.Kind.REFUND,
        payment_intent_id=payment_id,
        amount=Decimal("4.00"),
        currency="usd",
    )


def _cell(html: str, column: str) -> str:
    """The changelist cells of `column`, joined."""
    return "".join(re.findall(rf'<td class="field-{column}">(.*?)</td>', html, flags=re.S))


def test_the_payments_list_links_a_stripe_payment_to_the_stripe_dashboard(admin_client, user):
    session = "cs_test_a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ"
    _payment(user, provider="stripe", session_id=session, payment_id="pi_3PqRsTuVwXyZ0123456789ab")

    html = admin_client.get(PAYMENTS_URL).content.decode()

    assert _cell(html, "payment_reference") == (
        '<a href="https://dashboard.stripe.com/payments/pi_3PqRsTuVwXyZ0123456789ab"'
        ' title="pi_3PqRsTuVwXyZ0123456789ab" target="_blank" rel="noopener noreferrer">'
        "pi_3PqRsTuVwXyZ012345678…</a>"
    )
    assert _cell(html, "session_reference") == f'<span title="{session}">cs_test_a1B2c3D4e5F6g7H8…</span>'


def test_the_reversals_list_links_a_square_payment_to_the_square_dashboard(admin_client):
    _reversal(provider="square", reversal_id="refund:Rf9Jx2", payment_id="KkAkhdMsgzn59SM8A89WgKwekxLZY")

    html = admin_client.get(REVERSALS_URL).content.decode()

    assert _cell(html, "payment_reference") == (
        '<a href="https://squareup.com/dashboard/sales/transactions/KkAkhdMsgzn59SM8A89WgKwekxLZY"'
        ' title="KkAkhdMsgzn59SM8A89WgKwekxLZY" target="_blank" rel="noopener noreferrer">'
        "KkAkhdMsgzn59SM8A89WgKwe…</a>"
    )
    assert _cell(html, "reversal_reference") == "refund:Rf9Jx2"


def test_a_payment_without_a_payment_id_yet_shows_the_empty_mark_and_no_link(admin_client, user):
    _payment(user, provider="square", session_id="order-1", payment_id="")

    html = admin_client.get(PAYMENTS_URL).content.decode()

    assert _cell(html, "payment_reference") == "-"
    assert "squareup.com" not in html


def test_html_in_a_providers_id_is_escaped_in_the_text_the_tooltip_and_the_link(admin_client, user):
    hostile = '"><script>alert(1)</script><a href="/x'
    _payment(user, provider="stripe", session_id=hostile + "-session", payment_id=hostile)
    _reversal(provider="stripe", reversal_id=hostile, payment_id=hostile)

    payments = admin_client.get(PAYMENTS_URL).content.decode()
    reversals = admin_client.get(REVERSALS_URL).content.decode()

    for html in (payments, reversals):
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    link = _cell(payments, "payment_reference")
    # The id goes into the dashboard's URL quoted as one path segment: no way out of the attribute or the path.
    assert link.startswith(
        '<a href="https://dashboard.stripe.com/payments/%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E%3Ca%20href%3D%22%2Fx"'
    )
    assert 'title="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;a href=&quot;/x"' in link
