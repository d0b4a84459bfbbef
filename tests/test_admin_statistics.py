"""The admin statistics page (/admin/separation/job/statistics/): real numbers from a seeded
database, staff only, a constant number of queries, and its chart's scripts served."""

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf
from django_q.tasks import async_task

from accounts.models import User
from accounts.selectors import signup_statistics
from credits.models import Payment
from credits.selectors import credit_statistics, revenue_statistics
from credits.services import credits_admin_grant
from separation.admin import statistics_days
from separation.models import Job
from separation.selectors import job_statistics
from tests.conftest import logged_in
from tests.factories import UserFactory
from tests.statistics_data import job, joined, payment, seed_statistics

pytestmark = [pytest.mark.unit, pytest.mark.django_db]
URL = "/admin/separation/job/statistics/"
S = Job.Status


@pytest.fixture
def seeded(settings):
    return seed_statistics(settings)


def test_it_counts_what_the_tables_hold(seeded):
    days = statistics_days()
    today = timezone.localdate()

    assert len(days) == 30 and days[-1] == today
    signups = signup_statistics(days=days)
    assert signups.users_total == 5
    assert signups.in_period == 4
    per_day = dict(zip(days, signups.per_day, strict=True))
    assert per_day[today] == 2
    assert per_day[today - timedelta(days=3)] == 1
    assert per_day[today - timedelta(days=10)] == 1
    assert sum(signups.per_day) == 4

    jobs = job_statistics(days=days)
    assert jobs.by_status == {"PENDING": 1, "PROCESSING": 1, "COMPLETED": 5, "FAILED": 3, "CANCELLED": 1}
    assert jobs.in_period == 9
    status_today = {key: values[-1] for key, values in jobs.per_day_by_status.items()}
    assert status_today == {"PENDING": 1, "PROCESSING": 1, "COMPLETED": 2, "FAILED": 0, "CANCELLED": 0}
    yesterday = {key: values[-2] for key, values in jobs.per_day_by_status.items()}
    assert yesterday == {"PENDING": 0, "PROCESSING": 0, "COMPLETED": 1, "FAILED": 1, "CANCELLED": 1}
    models_in_period = {model: sum(values) for model, values in jobs.per_day_by_model.items()}
    assert models_in_period == {"demo": 4, "htdemucs": 4, "htdemucs_6s": 1}
    assert jobs.per_day_by_model["htdemucs"][-6] == 2  # five days ago

    assert jobs.failure_rate == pytest.approx(3 / 8)  # failed / (completed + failed)
    assert jobs.failure_rate_in_period == pytest.approx(2 / 6)
    assert jobs.failure_percent == "37.5"

    ledger = credit_statistics()
    assert ledger.sold == Decimal(160)  # 25 + 25 + 100 paid, 2 x 5 simulated
    assert ledger.sold_simulated == Decimal(10)
    assert ledger.simulated_purchases == 2
    assert ledger.charged == Decimal(14)
    assert ledger.refunded == Decimal(4)
    assert ledger.spent == Decimal(10)
    assert ledger.granted == Decimal(5 * 3 + 20)
    assert ledger.reversed == Decimal(100)

    revenue = revenue_statistics()
    by_pack = {row.pack_id: (row.payments, row.credits, row.gross, row.reversed, row.net) for row in revenue.by_pack}
    assert by_pack == {
        "pro": (1, Decimal(100), Decimal("15.00"), Decimal("15.00"), Decimal("0.00")),
        "standard": (2, Decimal(50), Decimal("8.00"), Decimal("0.00"), Decimal("8.00")),
    }
    assert revenue.net_by_currency == {"USD": Decimal("8.00")}

    assert jobs.waiting == 1
    assert jobs.separating == 1


def test_the_page_shows_the_numbers_and_the_chart_data(seeded):
    if Conf.ORM:
        async_task("separation.tasks.reap_jobs")  # one task waiting in the ORM broker
    response = logged_in(seeded).get(URL)

    assert response.status_code == 200
    assert response.context["signups"].in_period == 4
    if Conf.ORM:
        assert response.context["broker_queue"].tasks == 1
    html = response.content.decode()

    def card(name):
        match = re.search(rf'id="stat-{name}">(.*?)</div>\s*</div>', html, re.S)
        assert match, name
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()

    assert "4" in card("users").split() and "5 accounts in all" in card("users")
    assert card("jobs").endswith(" 9")
    assert "37.5" in card("failure-rate") and "33.3" in card("failure-rate")
    assert card("queue").split()[0:2] == ["Queue", "1"]
    assert "1 separating" in card("queue")
    assert "160" in card("credits-sold").split() and "simulated (no money taken): 10 in 2 purchases" in card(
        "credits-sold"
    )
    assert "Credits spent 10 charged 14, refunded 4" in card("credits-spent")

    table = re.search(r'<table class="stats-table" id="revenue-by-pack">(.*?)</table>', html, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", table, re.S)]
    assert ["pro (100 credits)", "1", "100", "15.00 USD", "15.00 USD", "0.00 USD"] == cells[6:12]
    assert ["standard (25 credits)", "2", "50", "8.00 USD", "0.00 USD", "8.00 USD"] == cells[12:18]
    assert cells[-1] == "8.00 USD"

    # The chart's data: a JSON blob for static/js/admin-statistics.js, no inline script.
    blob = re.search(r'<script id="statistics-data" type="application/json">(.*?)</script>', html, re.S)
    data = json.loads(blob.group(1))
    assert data["days"][-1] == timezone.localdate().isoformat()
    assert sum(data["signups"]) == 4
    completed = next(series for series in data["jobsByStatus"] if series["key"] == "COMPLETED")
    assert sum(completed["data"]) == 4 and completed["label"] == "Done"
    assert {series["label"] for series in data["jobsByModel"]} == {"demo", "htdemucs", "htdemucs_6s"}
    inline = [s for s in re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html) if "application/json" not in s]
    assert inline == []


def test_the_chart_library_and_script_are_served(seeded, settings):
    # Whitenoise, as in production, from the finders (tests run no collectstatic).
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    client = logged_in(seeded)
    html = client.get(URL).content.decode()
    sources = re.findall(r'<script src="([^"]+)"', html)
    library = next(src for src in sources if "vendor/chartjs/chart.umd.min.js" in src)
    script = next(src for src in sources if "js/admin-statistics.js" in src)

    reply = client.get(library)
    assert reply.status_code == 200
    body = b"".join(reply.streaming_content)
    assert body.startswith(b"/*!\n * Chart.js v4") and b"sourceMappingURL" not in body
    reply = client.get(script)
    assert reply.status_code == 200
    assert b"statistics-data" in b"".join(reply.streaming_content)


def test_the_job_list_links_to_it(seeded):
    html = logged_in(seeded).get(reverse("admin:separation_job_changelist")).content.decode()
    assert f'href="{URL}"' in html


def test_it_is_for_staff_only(seeded, client):
    login = reverse("admin:login")
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith(login)
    response = logged_in(User.objects.get(username="alice")).get(URL)
    assert response.status_code == 302 and response["Location"].startswith(login)
    # Staff without the permission to view jobs: refused.
    clerk = UserFactory(username="clerk", is_staff=True)
    assert logged_in(clerk).get(URL).status_code == 403


def test_it_runs_the_same_number_of_queries_whatever_the_volume(seeded):
    client = logged_in(seeded)
    client.get(URL)  # warm up: session, content types

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(URL).status_code == 200
        return len(captured)

    before = queries()
    alice = User.objects.get(username="alice")
    credits_admin_grant(user=alice, amount=Decimal(50), reason="more", granted_by=seeded, request_token="more")
    for n in range(25):
        job(alice, model=["demo", "htdemucs", "mdx_extra"][n % 3], status=list(S)[n % 5], days_ago=n)
        joined(f"later{n}", n % 29)
    for n in range(5):
        payment(alice, f"cs_more_{n}", ["starter", "standard", "pro"][n % 3], Payment.Status.PAID)
    after = queries()

    print(f"\nStatistics page: {before} queries, {after} with more data")
    assert after == before
    assert before <= 12
