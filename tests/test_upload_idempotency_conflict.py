"""An Idempotency-Key names one upload: the same file and options again get the same job; another
file or other options with it are refused (409), never answered with the first job."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from separation.models import Job
from testkit.audio import tone_bytes
from tests.conftest import balance

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


def post(client, content: bytes, key: str, **fields):
    data = {"file": SimpleUploadedFile("song.wav", content), **fields}
    return client.post("/api/upload", data, format="multipart", headers={"Idempotency-Key": key})


def test_it_refuses_a_key_reused_for_another_file(user, user_client):
    first = post(user_client, tone_bytes(2.0), "key-1")
    assert first.status_code == 202

    other = post(user_client, tone_bytes(3.0), "key-1")

    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    assert Job.objects.count() == 1
    assert balance(user) == Decimal(2)


def test_it_refuses_a_key_reused_with_other_options(user, user_client):
    song = tone_bytes(2.0)
    assert post(user_client, song, "key-1").status_code == 202

    assert post(user_client, song, "key-1", stems="vocals").status_code == 409
    assert post(user_client, song, "key-1", format="mp3").status_code == 409
    assert Job.objects.count() == 1


def test_it_answers_the_same_upload_with_the_first_job(user, user_client):
    song = tone_bytes(2.0)
    first = post(user_client, song, "key-1", stems="vocals")

    again = post(user_client, song, "key-1", stems="vocals")

    assert again.status_code == 200
    assert again.json()["job_id"] == first.json()["job_id"]
    assert balance(user) == Decimal(2)
