"""A request that finds the database unreachable answers 503 with Retry-After, not 500.
(bin/attack's PostgreSQL-restart row shows it against a real restart.)"""

from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError
from django.db.backends.postgresql.base import DatabaseWrapper

from separation.models import Job
from tests.conftest import balance, logged_in

pytestmark = pytest.mark.unit


def _database_down(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    # The boundary: opening a connection to PostgreSQL.
    monkeypatch.setattr(DatabaseWrapper, "get_new_connection", refuse)


def test_an_api_call_answers_503_json_while_the_database_is_down(db, user_client, monkeypatch):
    from django.db import connection

    connection.close()
    _database_down(monkeypatch)

    response = user_client.get("/api/credits/balance")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "try again" in response.json()["detail"]


def test_a_page_answers_503_html_while_the_database_is_down(user, monkeypatch):
    from django.db import connection

    client = logged_in(user)
    connection.close()
    _database_down(monkeypatch)

    response = client.get("/credits/")

    assert response.status_code == 503
    assert b"Briefly unavailable" in response.content


# --- the database lost between an upload's commit and its answer ------------------------------
# bin/attack's PostgreSQL row met this: an upload answered 503 whose job had been committed and
# charged (it later ran). A 503 must mean "nothing happened, try again"; a committed job is a 202.


@contextmanager
def database_lost_after_the_commit(*, before_the_enqueue: bool):
    """The request's database connection fails from the upload's on-commit step on: at the
    INSERT that queues the job (the ORM broker's queue is a table), or right after it."""
    from django.db import connection

    lost = {"now": False}

    def execute(execute, sql, params, many, context):
        queueing = "django_q_ormq" in sql
        if queueing and before_the_enqueue:
            lost["now"] = True
        if lost["now"]:
            raise OperationalError("server closed the connection unexpectedly")
        result = execute(sql, params, many, context)
        if queueing:
            lost["now"] = True
        return result

    with connection.execute_wrapper(execute):
        yield


@pytest.mark.parametrize("before_the_enqueue", [True, False], ids=["before-the-enqueue", "after-the-enqueue"])
@pytest.mark.django_db(transaction=True)
def test_an_upload_answered_503_charged_nothing(user, user_client, media, song, before_the_enqueue):
    with database_lost_after_the_commit(before_the_enqueue=before_the_enqueue):
        response = user_client.post("/api/upload", {"file": SimpleUploadedFile("song.wav", song)}, format="multipart")

    jobs = list(Job.objects.filter(user=user).values_list("status", flat=True))
    if response.status_code == 503:
        # Nothing happened, or what happened was undone: no job left to run, no credit taken.
        assert jobs in ([], ["FAILED"]) and balance(user) == Decimal("3.00"), (jobs, balance(user))
    else:
        assert response.status_code == 202, response.content
        assert jobs == ["PENDING"] and balance(user) == Decimal("2.00")


def test_the_503_is_logged_in_one_line_naming_where(db, user_client, monkeypatch, caplog):
    from django.db import connection

    connection.close()
    _database_down(monkeypatch)

    with caplog.at_level("WARNING", logger="demucs_service.middleware.database_unavailable"):
        assert user_client.get("/api/credits/balance").status_code == 503

    (line,) = [r.getMessage() for r in caplog.records if r.name == "demucs_service.middleware.database_unavailable"]
    assert line.startswith("Database unavailable (") and ".py:" in line and "site-packages" not in line, line
