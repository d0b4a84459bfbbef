"""/readyz: the database, the queue and at least one installed model, without auth."""

import pytest
from django.db import OperationalError
from django_q.conf import Conf

from demucs_service import views

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_it_is_ready_with_the_database_the_queue_and_the_demo_model(client, demo_model):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "queue": "ok", "models": "ok"}}


def test_it_answers_503_naming_the_models_when_none_is_installed(client, settings, hf_offline, tmp_path):
    settings.DEMUCS_MODEL_REPO = tmp_path / "no-models"
    settings.DEMUCS_MODEL_REPO.mkdir()

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["models"]
    assert body["checks"] == {"database": "ok", "queue": "ok", "models": "no model installed"}


def test_it_answers_503_naming_the_queue_when_the_broker_is_unreachable(client, demo_model, monkeypatch):
    # django-q2 read Q_CLUSTER at import; point what it read at a Redis on a closed port.
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:1/0")

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["queue"]
    assert body["checks"]["queue"] == "unreachable"
    assert "127.0.0.1" not in response.content.decode()  # details go to the log only


def test_it_pings_a_redis_broker(client, demo_model, monkeypatch):
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:6379/15")

    response = client.get("/readyz")

    assert response.status_code == 200, response.content
    assert response.json()["checks"]["queue"] == "ok"


def test_it_answers_503_naming_the_database_when_it_does_not_answer(client, demo_model, monkeypatch):
    class DeadConnection:
        def cursor(self):
            raise OperationalError("connection refused")

    monkeypatch.setattr(views, "connection", DeadConnection())

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]


def test_it_needs_no_login_and_is_not_cached_as_a_page(client, demo_model):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
