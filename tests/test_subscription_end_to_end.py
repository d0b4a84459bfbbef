"""End to end over HTTP: a subscriber's songs go through the live server and a real qcluster worker
running the demo model without spending credits, each one in the ledger as a covered job."""

from decimal import Decimal

import pytest

from accounts.models import User
from credits.models import CreditTransaction
from credits.selectors import ledger_violations
from testkit.audio import write_wav
from testkit.http import get
from tests import e2e
from tests.stripe_billing import configure_subscriptions, subscribed

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_subscribers_songs_are_separated_by_a_real_worker_without_credits(
    settings, live_server, cluster_factory, tmp_path
):
    configure_subscriptions(settings)
    base = live_server.url
    cluster_factory()
    token = e2e.register(base, "e2e_subscriber")
    user = User.objects.get(username="e2e_subscriber")
    start = user.credits
    subscription_id, _ = subscribed(user)
    songs = [write_wav(tmp_path / f"song {index}.wav", 5) for index in range(2)]

    accepted = [e2e.upload_ok(base, token, song) for song in songs]

    assert [Decimal(reply["credits_remaining"]) for reply in accepted] == [start, start]
    for reply in accepted:
        final = e2e.poll_job(base, token, reply["job_id"], until=lambda job: job["status"] in e2e.TERMINAL)[-1]
        assert final["status"] == "COMPLETED", final
    me = get(f"{base}/api/auth/me", token).json()
    assert Decimal(me["credits"]) == start
    assert me["subscription"]["status"] == "active"
    covered = CreditTransaction.objects.filter(user=user, kind=CreditTransaction.Kind.SUBSCRIPTION_JOB)
    assert sorted(row.reference for row in covered) == sorted(
        f"subscription:{subscription_id}:job:{reply['job_id']}" for reply in accepted
    )
    assert not CreditTransaction.objects.filter(user=user, kind=CreditTransaction.Kind.JOB_CHARGE).exists()
    assert ledger_violations() == []
