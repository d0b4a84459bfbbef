"""CSV export of jobs and of the credit history: every row, as the API gives it, streamed."""

import csv
import io
import uuid
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import api_key_create
from credits.services import credits_admin_grant
from demucs_service import csv_export
from tests.conftest import bearer_client, logged_in
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = pytest.mark.unit


def read_csv(response) -> list[dict]:
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def all_pages(client, url) -> list[dict]:
    rows = []
    while url:
        page = client.get(url).json()
        rows += page["results"]
        url = page["next"]
    return rows


def grant(user, amount, reason):
    operator = User.objects.filter(is_staff=True).first() or UserFactory(username="operator", is_staff=True)
    credits_admin_grant(
        user=user, amount=Decimal(amount), reason=reason, granted_by=operator, request_token=uuid.uuid4().hex
    )


def test_it_exports_every_ledger_row_as_the_api_gives_it(user, other_user):
    for n in range(25):  # more than one page of the API
        grant(user, "1.50", f"gift {n}")
    grant(other_user, "7", "not yours")
    client = bearer_client(user)
    rows = read_csv(client.get("/api/credits/history/export"))
    api_rows = all_pages(client, "/api/credits/history")
    assert len(rows) == len(api_rows) == 26  # the signup bonus and 25 grants
    assert list(rows[0]) == ["id", "created_at", "kind", "amount", "balance_after", "description", "reference"]
    for row, api_row in zip(rows, api_rows, strict=True):
        assert row == {key: str(api_row[key]) for key in row}
    assert rows[0]["amount"] == "1.50" and rows[0]["balance_after"] == "40.50"
    assert not any("not yours" in row["description"] for row in rows)


def test_it_exports_every_job_as_the_api_gives_it(user, other_user, demo_model, settings):
    settings.EMAIL_VERIFICATION = "none"
    grant(user, "30", "for the test")
    for n in range(21):
        make_job(user, f"song {n}.wav")
    make_job(other_user, "theirs.wav")
    client = bearer_client(user)
    rows = read_csv(client.get("/api/jobs/export"))
    api_rows = all_pages(client, "/api/jobs")
    assert len(rows) == len(api_rows) == 21
    assert list(rows[0]) == [
        "job_id",
        "status",
        "progress",
        "filename",
        "model",
        "stems",
        "format",
        "cost",
        "duration_seconds",
        "created_at",
        "started_at",
        "finished_at",
        "error",
    ]
    for row, api_row in zip(rows, api_rows, strict=True):
        expected = {key: "" if api_row[key] is None else str(api_row[key]) for key in row}
        assert row == expected
    assert rows[0]["cost"] == "1.00" and rows[0]["created_at"].endswith("Z")
    assert "theirs.wav" not in {row["filename"] for row in rows}


def test_it_keeps_a_file_name_from_becoming_a_spreadsheet_formula(user, demo_model, settings):
    settings.EMAIL_VERIFICATION = "none"
    make_job(user, "=cmd|' calc'!A1.wav")
    rows = read_csv(bearer_client(user).get("/api/jobs/export"))
    assert rows[0]["filename"] == "'=cmd|' calc'!A1.wav"


def test_it_streams_in_chunks_through_a_lazy_iterator(user, monkeypatch, django_assert_num_queries):
    for n in range(30):
        grant(user, "1", f"gift number {n}")
    monkeypatch.setattr(csv_export, "CHUNK_BYTES", 200)
    client = bearer_client(user)
    response = client.get("/api/credits/history/export")
    chunks = iter(response.streaming_content)
    with django_assert_num_queries(1):  # the rows are read only as the body is sent, in one cursor
        first = next(chunks)
    assert first.startswith(b"id,created_at,kind,amount")
    rest = list(chunks)
    assert len(rest) > 3
    assert len(b"".join([first, *rest]).decode().splitlines()) == 32


def test_it_exports_with_an_api_key_and_the_pages_session(user):
    _, key = api_key_create(user=user, name="export")
    by_key = APIClient()
    by_key.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert len(read_csv(by_key.get("/api/credits/history/export", HTTP_ACCEPT="text/csv"))) == 1
    assert len(read_csv(logged_in(user).get("/api/jobs/export"))) == 0


def test_it_answers_401_in_json_without_credentials():
    response = APIClient().get("/api/jobs/export", HTTP_ACCEPT="text/csv")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert APIClient().get("/api/credits/history/export").status_code == 401


def test_the_pages_link_to_the_exports(user):
    client = logged_in(user)
    assert 'href="/api/jobs/export"' in client.get("/dashboard/").content.decode()
    assert 'href="/api/credits/history/export"' in client.get("/credits/").content.decode()
