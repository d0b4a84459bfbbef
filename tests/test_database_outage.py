"""A request that finds the database unreachable answers 503 with Retry-After, not 500.
(bin/attack's PostgreSQL-restart row shows it against a real restart.)"""

from django.db import OperationalError
from django.db.backends.postgresql.base import DatabaseWrapper

from tests.conftest import logged_in


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
