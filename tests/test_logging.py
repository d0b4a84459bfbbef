"""Logs: a request id on every request, request/user/job ids on every line, JSON with
LOG_FORMAT=json, and never a password or a token."""

import io
import json
import logging
import sys

import pytest
from django.urls import reverse

from demucs_service.observability.log_context import ContextFilter
from demucs_service.observability.log_formatters import JsonFormatter, TextFormatter
from separation import tasks
from tests.conftest import bearer_client, logged_in
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def json_logs():
    """What LOG_FORMAT=json configures (the JSON formatter and the context filter on a root
    handler), writing to a buffer; returns a function giving the records so far, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # everything anyone logs, to look for secrets in
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _access(records, route):
    return [r for r in records if r["logger"] == "demucs_service.access" and r["route"] == route]


def test_it_echoes_a_sane_request_id_and_logs_it(client, json_logs):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="lb-1234.abc:9")

    assert response["X-Request-ID"] == "lb-1234.abc:9"
    [line] = _access(json_logs(), "/healthz")
    assert line["request_id"] == "lb-1234.abc:9"
    assert line["status_code"] == 200
    assert line["method"] == "GET"
    assert line["user_id"] is None


@pytest.mark.parametrize("incoming", ["", "has spaces", "x" * 200, "<script>", "a\tb"])
def test_it_makes_its_own_request_id_for_a_missing_or_odd_one(client, incoming):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=incoming)

    generated = response["X-Request-ID"]
    assert generated != incoming and len(generated) == 32 and int(generated, 16) >= 0


def test_each_request_gets_its_own_id(client):
    assert client.get("/healthz")["X-Request-ID"] != client.get("/healthz")["X-Request-ID"]


def test_it_logs_the_user_of_a_jwt_api_call(user, json_logs):
    response = bearer_client(user).get("/api/auth/me")

    assert response.status_code == 200
    [line] = _access(json_logs(), "/api/auth/me")
    assert line["user_id"] == user.pk
    assert line["request_id"] == response["X-Request-ID"]


def test_it_logs_the_user_of_a_session_page(user, json_logs):
    response = logged_in(user).get(reverse("dashboard"))

    assert response.status_code == 200
    [line] = _access(json_logs(), "/dashboard/")
    assert line["user_id"] == user.pk


def test_it_logs_the_job_id_of_everything_a_task_logs(json_logs, demo_model, settings, tmp_path):
    from tests.jobs import make_job

    job = make_job(UserFactory())
    settings.DEMUCS_MODEL_REPO = tmp_path / "models"  # a model folder whose demo model is broken
    settings.DEMUCS_MODEL_REPO.mkdir()
    (settings.DEMUCS_MODEL_REPO / "demo.th").write_bytes(b"not a model")

    tasks.separate_next_job()  # the engine logs why the model does not load
    logging.getLogger("separation.engine.models").info("after")

    during, after = [r for r in json_logs() if r["logger"] == "separation.engine.models"]
    assert during["job_id"] == str(job.pk)
    assert "Could not load the model" in during["message"]
    assert after["job_id"] is None


def test_a_json_line_has_every_field_and_the_traceback():
    try:
        raise ValueError("kaboom")
    except ValueError:
        record = logging.LogRecord("separation.services", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
        record.exc_info = sys.exc_info()
    record.job_id = "j1"

    line = json.loads(JsonFormatter().format(record))

    assert {"timestamp", "level", "logger", "message", "request_id", "user_id", "job_id", "exception"} <= set(line)
    assert line["level"] == "ERROR" and line["message"] == "failed x" and line["job_id"] == "j1"
    assert "ValueError: kaboom" in line["exception"] and "Traceback" in line["exception"]


def test_text_lines_are_readable_and_show_the_context():
    record = logging.LogRecord("separation.services", logging.INFO, __file__, 1, "hello", (), None)
    record.request_id, record.user_id, record.job_id = "r1", 7, None

    text = TextFormatter().format(record)

    assert text.endswith("INFO separation.services [req=r1 user=7] hello")


def test_formatters_scrub_tokens_and_passwords():
    message = 'Authorization: Bearer abc.def-ghi and {"password": "hunter2"} eyJhbGciOiJI.eyJzdWIiOiIx.c2lnbmF0dXJl'
    record = logging.LogRecord("x", logging.INFO, __file__, 1, message, (), None)

    for formatter in (JsonFormatter(), TextFormatter()):
        out = formatter.format(record)
        assert "abc.def-ghi" not in out and "hunter2" not in out and "eyJhbGciOiJI" not in out
        assert "[redacted]" in out


def test_no_password_or_token_reaches_the_logs(api_client, client, json_logs):
    password = "Correct-Horse-Battery-41"
    register = api_client.post(
        "/api/auth/register",
        {"email": "logs@example.com", "username": "logs", "password": password},
        format="json",
    )
    assert register.status_code == 201, register.content
    login = api_client.post("/api/auth/login", {"email": "logs@example.com", "password": password}, format="json")
    assert login.status_code == 200, login.content
    token = login.json()["access_token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api_client.get("/api/auth/me").status_code == 200
    bad_login = api_client.post("/api/auth/login", {"email": "logs@example.com", "password": PASSWORD}, format="json")
    assert bad_login.status_code in (400, 401)
    page_login = client.post("/accounts/login/", {"login": "logs@example.com", "password": password})
    assert page_login.status_code == 302

    records = json_logs()
    text = json.dumps(records)
    assert len(_access(records, "/api/auth/login")) == 2
    assert password not in text and PASSWORD not in text
    assert token not in text and token.split(".")[1] not in text
