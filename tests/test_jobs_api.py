"""The job API after upload: status, the job list, downloads, DELETE, and /api/models.
Completed jobs are separated for real, in-process, by the demo model."""

import io
import zipfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from credits.models import CreditTransaction
from separation.models import Job
from separation.tasks import separate_next_job
from testkit.audio import files_under
from tests.conftest import balance, bearer_client

Kind = CreditTransaction.Kind
STEMS = ["drums", "bass", "other", "vocals"]

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


def upload(client, song: bytes, name: str = "My Song.wav", **fields) -> Job:
    response = client.post("/api/upload", {"file": SimpleUploadedFile(name, song), **fields}, format="multipart")
    assert response.status_code == 202, response.content
    return Job.objects.get(pk=response.json()["job_id"])


def completed(client, song: bytes, **fields) -> Job:
    job = upload(client, song, **fields)
    separate_next_job()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED, job.error
    return job


def make_jobs(user, count: int, **fields) -> list[Job]:
    """Rows only (no charge): enough for listing. Created a minute apart, oldest first."""
    start = timezone.now() - timedelta(days=1)
    jobs = []
    for index in range(count):
        job = Job.objects.create(
            user=user, original_filename=f"song {index}.wav", model="demo", cost=1, duration_seconds=2.0, **fields
        )
        Job.objects.filter(pk=job.pk).update(created_at=start + timedelta(minutes=index))
        jobs.append(job)
    return jobs


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- status ---------------------------------------------------------------------------


def test_it_reports_a_waiting_job(user_client, song):
    job = upload(user_client, song, stems="vocals", format="flac")

    response = user_client.get(f"/api/status/{job.pk}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "job_id", "status", "progress", "filename", "model", "stems", "format", "cost", "duration_seconds",
        "created_at", "started_at", "finished_at", "error", "preview", "full_song_job_id", "queue_position",
        "download_url", "stem_files", "refunded", "expires_at", "files_deleted_at", "analysis",
    }  # fmt: skip
    assert body["job_id"] == str(job.pk)
    assert (body["status"], body["progress"], body["error"]) == ("PENDING", 0, "")
    assert (body["filename"], body["model"], body["stems"], body["format"]) == ("My Song.wav", "demo", "vocals", "flac")
    assert body["cost"] == "1.00"
    assert body["duration_seconds"] == pytest.approx(2.0, abs=0.01)
    assert parse_datetime(body["created_at"]) == job.created_at
    assert body["started_at"] is None and body["finished_at"] is None
    assert body["download_url"] is None
    assert body["stem_files"] == []
    assert body["queue_position"] == 1
    assert (body["refunded"], body["expires_at"], body["files_deleted_at"], body["analysis"]) == (
        "0.00",
        None,
        None,
        None,
    )


def test_it_reports_a_completed_job_with_its_download_urls(user_client, song, settings):
    job = completed(user_client, song)

    body = user_client.get(f"/api/status/{job.pk}").json()

    assert (body["status"], body["progress"], body["error"]) == ("COMPLETED", 100, "")
    assert parse_datetime(body["started_at"]) <= parse_datetime(body["finished_at"])
    assert body["download_url"] == f"http://testserver/api/download/{job.pk}"
    assert body["stem_files"] == [
        {"name": name, "label": name.capitalize(), "url": f"http://testserver/api/download/{job.pk}/{name}"}
        for name in ["drums", "bass"]
    ] + [
        {"name": name, "label": label, "url": f"http://testserver/api/download/{job.pk}/{name}"}
        for name, label in [("other", "Other instruments"), ("vocals", "Vocals")]
    ]
    retention = timedelta(days=settings.JOB_RETENTION_DAYS)
    assert parse_datetime(body["expires_at"]) == parse_datetime(body["finished_at"]) + retention


def test_it_reports_what_was_refunded_and_when_the_files_were_deleted(user_client, song):
    job = upload(user_client, song)

    body = user_client.delete(f"/api/job/{job.pk}").json()
    status = user_client.get(f"/api/status/{job.pk}").json()

    assert body == status
    assert (status["status"], status["refunded"], status["expires_at"]) == ("CANCELLED", "1.00", None)
    assert parse_datetime(status["files_deleted_at"]) == Job.objects.get(pk=job.pk).files_deleted_at


def test_it_reports_a_two_stem_job_with_two_stems(user_client, song):
    job = completed(user_client, song, stems="vocals", format="mp3")

    body = user_client.get(f"/api/status/{job.pk}").json()

    assert [(stem["name"], stem["label"]) for stem in body["stem_files"]] == [
        ("vocals", "Vocals"),
        ("no_vocals", "Instrumental (no vocals)"),
    ]
    assert body["format"] == "mp3"


# --- list -----------------------------------------------------------------------------


def test_it_lists_the_users_jobs_newest_first_twenty_a_page(user, other_user, user_client):
    jobs = make_jobs(user, 30)
    make_jobs(other_user, 2)

    first = user_client.get("/api/jobs").json()
    second = user_client.get("/api/jobs?page=2").json()

    newest_first = [str(job.pk) for job in reversed(jobs)]
    assert first["count"] == 30
    assert [job["job_id"] for job in first["results"]] == newest_first[:20]
    assert first["next"] == "http://testserver/api/jobs?page=2"
    assert [job["job_id"] for job in second["results"]] == newest_first[20:]
    assert second["next"] is None
    assert first["results"][0]["filename"] == "song 29.wav"


def test_it_lists_jobs_in_a_constant_number_of_queries(user):
    client = bearer_client(user)
    make_jobs(user, 1)
    with CaptureQueriesContext(connection) as one:
        assert len(client.get("/api/jobs").json()["results"]) == 1
    make_jobs(user, 29)
    with CaptureQueriesContext(connection) as thirty:
        assert len(client.get("/api/jobs").json()["results"]) == 20

    assert len(one) == len(thirty)
    assert len(one) <= 5  # the user, the count, the page, the queue (the jobs wait), the refunds


def test_it_lists_nothing_for_a_new_user(user_client):
    assert user_client.get("/api/jobs").json() == {"count": 0, "next": None, "previous": None, "results": []}


# --- downloads ------------------------------------------------------------------------


def test_it_refuses_downloads_before_the_job_completes(user_client, song):
    job = upload(user_client, song)

    zip_response = user_client.get(f"/api/download/{job.pk}")
    stem_response = user_client.get(f"/api/download/{job.pk}/vocals")

    assert zip_response.status_code == 409
    assert zip_response.json()["status"] == "PENDING"
    assert stem_response.status_code == 409


def test_it_downloads_the_zip_of_all_stems_named_after_the_song(user_client, song, media):
    job = completed(user_client, song)

    response = user_client.get(f"/api/download/{job.pk}")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="My Song - stems.zip"'
    with zipfile.ZipFile(io.BytesIO(body_of(response))) as bundle:
        assert sorted(bundle.namelist()) == sorted(f"My Song/{name}.wav" for name in STEMS)
        for name in STEMS:
            assert bundle.read(f"My Song/{name}.wav") == (media / job.stem(name)["file"]).read_bytes()


def test_it_downloads_each_stem(user_client, song, media):
    job = completed(user_client, song, format="flac")

    for name in STEMS:
        response = user_client.get(f"/api/download/{job.pk}/{name}")

        assert response.status_code == 200
        assert response["Content-Type"] == "audio/flac"
        assert response["Content-Disposition"] == f'attachment; filename="My Song - {name}.flac"'
        assert response["Accept-Ranges"] == "bytes"
        content = body_of(response)
        assert content == (media / job.stem(name)["file"]).read_bytes()
        assert content[:4] == b"fLaC"


def test_it_serves_byte_ranges_of_a_stem(user_client, song, media):
    job = completed(user_client, song)
    data = (media / job.stem("vocals")["file"]).read_bytes()
    size = len(data)
    url = f"/api/download/{job.pk}/vocals"

    middle = user_client.get(url, headers={"Range": "bytes=100-1099"})
    tail = user_client.get(url, headers={"Range": "bytes=-500"})
    open_ended = user_client.get(url, headers={"Range": f"bytes={size - 10}-"})
    beyond = user_client.get(url, headers={"Range": f"bytes={size}-"})

    assert middle.status_code == 206
    assert middle["Content-Range"] == f"bytes 100-1099/{size}"
    assert middle["Content-Length"] == "1000"
    assert body_of(middle) == data[100:1100]
    assert tail.status_code == 206
    assert tail["Content-Range"] == f"bytes {size - 500}-{size - 1}/{size}"
    assert body_of(tail) == data[-500:]
    assert body_of(open_ended) == data[-10:]
    assert beyond.status_code == 416
    assert beyond["Content-Range"] == f"bytes */{size}"


def test_it_answers_404_for_a_stem_the_job_does_not_have(user_client, song):
    job = completed(user_client, song, stems="vocals")

    assert user_client.get(f"/api/download/{job.pk}/drums").status_code == 404
    assert user_client.get(f"/api/download/{job.pk}/no_vocals").status_code == 200


def test_it_answers_410_once_the_files_are_deleted(user_client, song):
    job = completed(user_client, song)
    assert user_client.delete(f"/api/job/{job.pk}").status_code == 200

    assert user_client.get(f"/api/download/{job.pk}").status_code == 410
    assert user_client.get(f"/api/download/{job.pk}/vocals").status_code == 410
    assert user_client.get(f"/api/status/{job.pk}").json()["download_url"] is None


def test_it_answers_404_not_500_when_a_file_vanishes_under_a_download(user_client, song, media):
    job = completed(user_client, song)
    (Path(media) / job.zip_file).unlink()  # deleted between the lookup and the read

    response = user_client.get(f"/api/download/{job.pk}")

    assert response.status_code == 404
    assert "no longer available" in response.json()["detail"]


# --- delete ---------------------------------------------------------------------------


def test_it_cancels_and_refunds_a_waiting_job_once(user, user_client, song, media):
    job = upload(user_client, song)
    assert balance(user) == Decimal("2.00")

    first = user_client.delete(f"/api/job/{job.pk}")
    second = user_client.delete(f"/api/job/{job.pk}")

    assert first.status_code == 200
    assert first.json()["status"] == "CANCELLED"
    assert second.status_code == 200
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert job.finished_at is not None
    assert balance(user) == Decimal("3.00")
    refunds = CreditTransaction.objects.filter(user=user, kind=Kind.JOB_REFUND)
    assert [(row.amount, row.reference) for row in refunds] == [(Decimal("1.00"), f"job:{job.pk}")]
    assert not (media / "jobs" / str(job.pk)).exists()
    assert files_under(media) == []
    assert job.input_file == ""


def test_it_cancels_a_running_job_and_its_worker_stops(user, user_client, song, media):
    job = upload(user_client, song)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.PROCESSING, started_at=timezone.now())

    assert user_client.delete(f"/api/job/{job.pk}").json()["status"] == "CANCELLED"
    separate_next_job()  # a redelivered task finds nothing to claim

    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert balance(user) == Decimal("3.00")
    assert files_under(media) == []


def test_it_deletes_a_completed_jobs_files_without_refunding(user, user_client, song, media):
    job = completed(user_client, song)
    assert len(files_under(media)) == 1 + 4 * 2 + 1  # input, stems and waveforms, zip
    ledger_before = list(CreditTransaction.objects.filter(user=user).values_list("pk", flat=True))

    response = user_client.delete(f"/api/job/{job.pk}")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "COMPLETED"
    assert body["stem_files"] == [] and body["download_url"] is None
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert job.files_deleted_at is not None
    assert (job.stems, job.zip_file, job.input_file) == ([], "", "")
    assert files_under(media) == []
    assert balance(user) == Decimal("2.00")
    assert not CreditTransaction.objects.filter(user=user, kind=Kind.JOB_REFUND).exists()
    assert list(CreditTransaction.objects.filter(user=user).values_list("pk", flat=True)) == ledger_before


def test_another_users_job_is_not_found_and_left_alone(user, other_user, user_client, song, media):
    job = completed(user_client, song)
    stranger = bearer_client(other_user)
    files = files_under(media)

    for response in [
        stranger.get(f"/api/status/{job.pk}"),
        stranger.get(f"/api/download/{job.pk}"),
        stranger.get(f"/api/download/{job.pk}/vocals"),
        stranger.delete(f"/api/job/{job.pk}"),
    ]:
        assert response.status_code == 404
        assert "application/json" in response["Content-Type"]

    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED and len(job.stems) == 4
    assert files_under(media) == files
    assert balance(user) == Decimal("2.00")
    assert stranger.get("/api/jobs").json()["count"] == 0


def test_an_unknown_job_is_not_found(user_client):
    assert user_client.get("/api/status/00000000-0000-0000-0000-000000000000").status_code == 404


def test_job_endpoints_need_a_login(api_client, user):
    [job] = make_jobs(user, 1)
    for response in [
        api_client.get(f"/api/status/{job.pk}"),
        api_client.get("/api/jobs"),
        api_client.get(f"/api/download/{job.pk}"),
        api_client.delete(f"/api/job/{job.pk}"),
    ]:
        assert response.status_code == 401


# --- models ---------------------------------------------------------------------------


def test_it_lists_the_catalogue_with_only_demo_installed(api_client):
    response = api_client.get("/api/models")

    assert response.status_code == 200
    models = {model["name"]: model for model in response.json()}
    assert {"htdemucs", "htdemucs_6s", "hdemucs_mmi", "htdemucs_ft", "mdx_extra", "demo"} <= set(models)
    assert [name for name, model in models.items() if model["installed"]] == ["demo"]
    assert [name for name, model in models.items() if model["default"]] == ["demo"]
    assert [name for name, model in models.items() if model["untrained"]] == ["demo", "demo_roformer", "demo_ensemble"]
    assert models["htdemucs_6s"]["stems"] == ["drums", "bass", "other", "vocals", "guitar", "piano"]
    assert models["htdemucs_ft"]["price_multiplier"] == 4
    assert models["demo"]["stems"] == STEMS


def test_it_lists_no_model_as_installed_without_the_demo_model(api_client, settings, tmp_path):
    settings.DEMUCS_MODEL_REPO = tmp_path / "empty"

    assert not [model for model in api_client.get("/api/models").json() if model["installed"]]
