"""Storage is bounded per user (STORAGE_QUOTA_MB): a job counts its upload and, while it runs, an
upper bound of what the separation writes (temporary files included); once it ends, what it keeps;
nothing once its files are deleted. Uploads past the quota get 409 with a clear message."""

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from separation.models import Job
from separation.services import job_cancel
from separation.storage_quota import folder_bytes, storage_used_bytes
from separation.tasks import separate_next_job
from testkit.audio import encode, files_under, tone_bytes
from tests.conftest import balance, logged_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


def post(client, content: bytes, name: str = "song.wav", **fields):
    data = {"file": SimpleUploadedFile(name, content), **fields}
    return client.post("/api/upload", data, format="multipart")


def test_it_refuses_an_upload_that_would_pass_the_quota_and_stores_nothing(user, user_client, settings, media):
    settings.STORAGE_QUOTA_MB = 1
    response = post(user_client, tone_bytes(2.0))  # 350 KB, and 2.8 MB while it runs

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "storage_quota_exceeded"
    assert "1 MB" in body["detail"] and "Delete the files" in body["detail"]
    assert body["quota_bytes"] == 1024 * 1024 and body["needed_bytes"] > 1024 * 1024
    assert Job.objects.count() == 0
    assert balance(user) == Decimal(3)
    assert files_under(media) == []


def test_a_running_job_holds_its_estimate_and_a_finished_one_what_it_keeps(user, user_client, settings):
    assert post(user_client, tone_bytes(2.0)).status_code == 202
    job = Job.objects.get()
    estimate = job.storage_bytes
    input_bytes = (Path(settings.MEDIA_ROOT) / job.input_file).stat().st_size
    # The upload, and for each of 4 stems its float32 temporary file, the wav and its copy in the zip.
    assert estimate >= input_bytes + 4 * 2 * 44100 * 2 * (4 + 2 + 2)

    separate_next_job()

    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert job.storage_bytes == folder_bytes(Path(settings.MEDIA_ROOT) / f"jobs/{job.pk}")
    assert input_bytes < job.storage_bytes < estimate
    assert storage_used_bytes(user=user) == job.storage_bytes


def test_deleting_a_jobs_files_frees_its_storage(user, user_client, settings):
    assert post(user_client, tone_bytes(2.0)).status_code == 202
    estimate = Job.objects.get().storage_bytes
    separate_next_job()
    job = Job.objects.get()
    settings.STORAGE_QUOTA_MB = estimate // (1024 * 1024) + 1  # room for one running job, not beside this one
    assert job.storage_bytes + estimate > settings.STORAGE_QUOTA_MB * 1024 * 1024
    assert post(user_client, tone_bytes(2.0)).status_code == 409

    job_cancel(job=job)  # what the dashboard's "Delete files" does

    assert storage_used_bytes(user=user) == 0
    assert post(user_client, tone_bytes(2.0)).status_code == 202


def test_a_384_khz_upload_keeps_storage_bounded_by_its_length(user, user_client, settings):
    """A 48 KB FLAC at 384 kHz once kept 369 MB for 1 credit: stems now come out at the model's rate
    (44.1 kHz) and silent stems deflate in the zip."""
    import numpy as np

    silence = np.zeros((384000 * 20, 2), dtype=np.float32)
    flac = encode(silence, 384000, "flac")
    assert len(flac) < 100 * 1024

    assert post(user_client, flac, "quiet.flac").status_code == 202
    separate_next_job()

    job = Job.objects.get()
    assert job.status == Job.Status.COMPLETED
    stems_wav = 4 * 20 * 44100 * 2 * 2  # four 16-bit stereo stems at 44.1 kHz
    assert job.storage_bytes < len(flac) + stems_wav * 1.1
    assert job.storage_bytes == folder_bytes(Path(settings.MEDIA_ROOT) / f"jobs/{job.pk}")


def test_the_dashboard_shows_storage_used_and_the_quota(user, user_client, settings):
    settings.STORAGE_QUOTA_MB = 100
    assert post(user_client, tone_bytes(2.0)).status_code == 202

    page = logged_in(user).get("/dashboard/").content.decode()

    assert 'id="storage-meter"' in page
    assert "of 100.0\xa0MB used" in page
