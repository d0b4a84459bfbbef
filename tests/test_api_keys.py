"""API keys: made and revoked by a person, used by programs as `Authorization: Api-Key <key>`."""

import logging
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import UserAPIKey
from accounts.services import api_key_create, api_key_revoke
from separation.models import Job
from testkit.audio import tone_bytes
from tests.conftest import bearer_client, logged_in
from tests.factories import UserFactory

pytestmark = pytest.mark.unit


def key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_it_creates_a_key_shown_once_and_stored_hashed(user_client, user):
    answer = user_client.post("/api/keys", {"name": "ci"}, format="json")
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"id", "name", "prefix", "key", "created_at", "expires_at", "last_used_at"}
    assert body["name"] == "ci" and body["key"].startswith(body["prefix"] + ".")
    stored = UserAPIKey.objects.get(pk=body["id"])
    assert stored.user == user
    assert body["key"] not in (stored.hashed_key, str(stored.pk))
    listed = user_client.get("/api/keys").json()
    assert [row["id"] for row in listed] == [body["id"]]
    assert "key" not in listed[0] and listed[0]["prefix"] == body["prefix"]


def test_it_authenticates_api_requests_with_a_key_as_its_owner(user):
    _, key = api_key_create(user=user, name="script")
    answer = key_client(key).get("/api/auth/me")
    assert answer.status_code == 200
    assert answer.json()["id"] == user.pk
    assert key_client(key).get("/api/credits/balance").status_code == 200
    assert key_client(key).get("/api/jobs").status_code == 200


def test_it_answers_401_for_a_revoked_key_at_once(user_client, user):
    made = user_client.post("/api/keys", {"name": "old"}, format="json").json()
    client = key_client(made["key"])
    assert client.get("/api/credits/balance").status_code == 200
    assert user_client.delete(f"/api/keys/{made['id']}").status_code == 204
    answer = client.get("/api/credits/balance")
    assert answer.status_code == 401
    assert "revoked" in answer.json()["detail"]
    assert user_client.get("/api/keys").json() == []
    assert user_client.delete(f"/api/keys/{made['id']}").status_code == 204  # revoking again is harmless


def test_it_answers_401_for_an_expired_key(user):
    api_key, key = api_key_create(user=user, name="soon", expires_at=timezone.now() + timedelta(hours=1))
    assert key_client(key).get("/api/credits/balance").status_code == 200
    UserAPIKey.objects.filter(pk=api_key.pk).update(expiry_date=timezone.now() - timedelta(seconds=1))
    assert key_client(key).get("/api/credits/balance").status_code == 401


def test_it_refuses_an_expiry_in_the_past(user_client):
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    answer = user_client.post("/api/keys", {"name": "x", "expires_at": past}, format="json")
    assert answer.status_code == 400
    assert "expires_at" in answer.json()["errors"]


def test_it_answers_401_for_a_forged_or_malformed_key(user):
    api_key, key = api_key_create(user=user, name="real")
    prefix = key.split(".")[0]
    for forged in (f"{prefix}.wrongsecret", "nonsense", "", f"{api_key.pk}", key[:-1]):
        assert key_client(forged).get("/api/credits/balance").status_code == 401, forged


def test_it_answers_401_for_a_key_of_a_deactivated_account(user):
    _, key = api_key_create(user=user, name="k")
    user.is_active = False
    user.save()
    assert key_client(key).get("/api/credits/balance").status_code == 401


def test_a_key_cannot_create_list_or_revoke_keys(user):
    api_key, key = api_key_create(user=user, name="k")
    client = key_client(key)
    assert client.post("/api/keys", {"name": "more"}, format="json").status_code == 401
    assert client.get("/api/keys").status_code == 401
    assert client.delete(f"/api/keys/{api_key.pk}").status_code == 401
    assert UserAPIKey.objects.filter(user=user).count() == 1
    assert not UserAPIKey.objects.get(pk=api_key.pk).revoked


def test_others_keys_answer_404(user, other_user):
    theirs, their_key = api_key_create(user=other_user, name="theirs")
    mine = bearer_client(user)
    assert mine.delete(f"/api/keys/{theirs.pk}").status_code == 404
    assert logged_in(user).post(f"/accounts/keys/{theirs.pk}/revoke/").status_code == 404
    assert not UserAPIKey.objects.get(pk=theirs.pk).revoked
    assert mine.get("/api/keys").json() == []
    assert key_client(their_key).get("/api/auth/me").json()["id"] == other_user.pk


def test_it_records_last_use_at_most_once_a_minute(user):
    api_key, key = api_key_create(user=user, name="k")
    client = key_client(key)
    client.get("/api/credits/balance")
    first = UserAPIKey.objects.get(pk=api_key.pk).last_used_at
    assert first is not None
    client.get("/api/credits/balance")
    assert UserAPIKey.objects.get(pk=api_key.pk).last_used_at == first  # not written again within the minute
    UserAPIKey.objects.filter(pk=api_key.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/credits/balance")
    assert UserAPIKey.objects.get(pk=api_key.pk).last_used_at > first


def test_it_never_logs_the_key(user, caplog):
    _, key = api_key_create(user=user, name="k")
    with caplog.at_level(logging.DEBUG):
        key_client(key).get("/api/credits/balance")
        key_client(key + "x").get("/api/credits/balance")
    secret = key.split(".", 1)[1]
    assert caplog.records  # the access lines were written
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_it_limits_the_number_of_keys(user_client, user, monkeypatch):
    monkeypatch.setattr("accounts.services.MAX_API_KEYS_PER_USER", 2)
    assert user_client.post("/api/keys", {"name": "a"}, format="json").status_code == 201
    assert user_client.post("/api/keys", {"name": "b"}, format="json").status_code == 201
    answer = user_client.post("/api/keys", {"name": "c"}, format="json")
    assert answer.status_code == 400
    assert UserAPIKey.objects.filter(user=user).count() == 2


def test_the_keys_page_creates_shows_once_and_revokes(user):
    client = logged_in(user)
    page = client.post("/accounts/keys/", {"name": "laptop", "expires_in_days": "30"})
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    api_key = UserAPIKey.objects.get(user=user)
    key = page.context["new_key"]["key"]
    assert key in page.content.decode()
    assert api_key.expiry_date > timezone.now() + timedelta(days=29)
    again = client.get("/accounts/keys/").content.decode()
    assert key not in again and api_key.prefix in again
    assert key_client(key).get("/api/credits/balance").status_code == 200
    assert client.post(f"/accounts/keys/{api_key.pk}/revoke/").status_code == 302
    assert key_client(key).get("/api/credits/balance").status_code == 401


def test_the_keys_page_needs_a_login():
    answer = APIClient().get("/accounts/keys/")
    assert answer.status_code == 302 and "/login" in answer["Location"]


def test_a_key_cannot_open_the_keys_page(user):
    """Pages go by the session only: an Api-Key header logs nobody in there."""
    _, key = api_key_create(user=UserFactory(), name="k")
    answer = APIClient().get("/accounts/keys/", HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert answer.status_code == 302


def test_it_uploads_with_a_key_and_a_revoked_key_stores_nothing(user, demo_model, settings):
    settings.EMAIL_VERIFICATION = "none"
    api_key, key = api_key_create(user=user, name="uploader")
    song = {"file": SimpleUploadedFile("song.wav", tone_bytes()), "model": "demo"}
    answer = key_client(key).post("/api/upload", song, format="multipart")
    assert answer.status_code == 202
    assert Job.objects.get(pk=answer.json()["job_id"]).user == user
    api_key_revoke(api_key=api_key)
    song = {"file": SimpleUploadedFile("song.wav", tone_bytes()), "model": "demo"}
    assert key_client(key).post("/api/upload", song, format="multipart").status_code == 401
    assert Job.objects.filter(user=user).count() == 1
