"""A full disk is an answer (507, nothing stored or charged), not a crash; and files no job owns
are found and removed by the cleanup."""

import os
import time
import uuid
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from separation.maintenance import ORPHAN_GRACE_SECONDS, jobs_delete_expired
from separation.models import Job
from testkit.audio import files_under, tone_bytes
from tests.conftest import balance
from tests.disks import small_disk
from tests.jobs import make_job

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


def post(client, content: bytes):
    return client.post("/api/upload", {"file": SimpleUploadedFile("song.wav", content)}, format="multipart")


def test_it_answers_507_and_keeps_nothing_when_media_root_is_full(user, user_client, settings, tmp_path):
    with small_disk(tmp_path / "full-media", kilobytes=128) as media:
        settings.MEDIA_ROOT = media
        response = post(user_client, tone_bytes(5.0))  # 860 KB: does not fit

        assert response.status_code == 507
        assert response.json()["code"] == "server_storage_full"
        assert "Nothing was charged" in response.json()["detail"]
        assert files_under(media) == []  # the partial input went with its folder
        assert not (media / "jobs").exists() or not any((media / "jobs").iterdir())
    assert Job.objects.count() == 0
    assert balance(user) == Decimal(3)


def test_it_answers_507_when_the_upload_cannot_be_spooled(user, user_client, settings, tmp_path):
    with small_disk(tmp_path / "full-tmp", kilobytes=128) as spool:
        settings.FILE_UPLOAD_TEMP_DIR = str(spool)
        response = post(user_client, tone_bytes(5.0))

        assert response.status_code == 507
        assert files_under(spool) == []
    assert Job.objects.count() == 0
    assert balance(user) == Decimal(3)


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_cleanup_removes_folders_no_job_owns(user, media):
    job = make_job(user)
    orphan = media / "jobs" / str(uuid.uuid4())
    orphan.mkdir(parents=True)
    (orphan / "input.wav").write_bytes(b"half an upload")
    _age(orphan, ORPHAN_GRACE_SECONDS + 60)
    in_progress = media / "jobs" / str(uuid.uuid4())  # an upload being stored right now
    in_progress.mkdir()
    (in_progress / "input.wav").write_bytes(b"arriving")
    stray = media / "jobs" / "not-a-job"
    stray.mkdir()
    _age(stray, ORPHAN_GRACE_SECONDS + 60)
    _age(media / "jobs" / str(job.pk), ORPHAN_GRACE_SECONDS + 60)

    counts = jobs_delete_expired()

    assert counts == {"expired": 0, "orphans": 2}
    assert not orphan.exists() and not stray.exists()
    assert in_progress.exists()
    assert (media / job.input_file).is_file()  # a job's own files stay


def test_the_cleanup_removes_the_folders_of_runs_that_died_once_the_job_is_finished(user, media):
    from separation.scheduling import job_claim_next
    from separation.services import job_fail

    job = make_job(user)
    job_claim_next()
    dead_run = media / "jobs" / str(job.pk) / "stems-1"  # a worker killed mid-job leaves this
    dead_run.mkdir()
    (dead_run / ".partial-vocals.f32").write_bytes(b"\0" * 1000)
    job_fail(job_id=job.pk, error="lost")
    _age(media / "jobs" / str(job.pk), ORPHAN_GRACE_SECONDS + 60)

    assert jobs_delete_expired()["orphans"] == 1
    assert not dead_run.exists()
    assert (media / job.input_file).is_file()
