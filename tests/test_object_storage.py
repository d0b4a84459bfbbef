"""STORAGE_BACKEND=s3 against a real S3 API on loopback (moto's standalone server): uploads and
outputs in the bucket, a worker on a MEDIA_ROOT of its own, downloads as presigned redirects with
byte ranges, retention deleting the objects, and failures refunded with nothing left behind."""

import io
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from datetime import timedelta
from decimal import Decimal

import boto3
import pytest
from botocore.config import Config
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from demucs_service.middleware.content_security_policy import bucket_origin, content_security_policy
from separation.maintenance import jobs_delete_expired
from separation.models import Job
from testkit.audio import tone_bytes, write_wav
from testkit.http import get, http, wait_until
from testkit.processes import free_port
from tests import e2e
from tests.conftest import balance

pytestmark = pytest.mark.e2e

BUCKET = "stemfold-test"
STEMS = {"drums", "bass", "other", "vocals"}


class MotoServer:
    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._answers, timeout=30, message="moto's server did not start")
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.client.create_bucket(Bucket=BUCKET)

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2).close()
            return True
        except (urllib.error.URLError, ConnectionError):
            return False

    def keys(self, prefix: str = "") -> dict[str, int]:
        listing = self.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}

    def reset(self) -> None:
        """Forget every bucket (moto's API): the next transfer fails as on a bucket gone away."""
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")).close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def environment(self) -> dict[str, str]:
        return {
            "STORAGE_BACKEND": "s3",
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_S3_REGION_NAME": "us-east-1",
            "AWS_S3_ADDRESSING_STYLE": "path",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }


@pytest.fixture
def s3(settings, monkeypatch):
    """A moto server with an empty bucket, and this process (the web) storing in it."""
    server = MotoServer()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.STORAGE_BACKEND = "s3"
    settings.AWS_STORAGE_BUCKET_NAME = BUCKET
    settings.AWS_S3_ENDPOINT_URL = server.endpoint
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_S3_ADDRESSING_STYLE = "path"
    settings.AWS_QUERYSTRING_EXPIRE = 300
    settings.AWS_DEFAULT_ACL = None
    settings.AWS_S3_CLIENT_CONFIG = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        connect_timeout=2,
        read_timeout=10,
        retries={"max_attempts": 1},
    )
    # Last: changing STORAGES makes Django build default_storage again, with the settings above.
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    yield server
    server.stop()


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get_without_following(url: str, token: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(NoRedirects)
    try:
        opener.open(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}), timeout=30)
    except urllib.error.HTTPError as reply:
        return reply.code, reply.headers.get("Location", "")
    raise AssertionError(f"{url} answered 2xx, not a redirect")


@pytest.mark.django_db(transaction=True)
def test_it_separates_with_the_worker_on_a_disk_of_its_own_and_only_the_bucket_between(
    s3, live_server, cluster_factory, folders, tmp_path
):
    web_media, _ = folders
    worker_media = tmp_path / "worker-media"
    worker_media.mkdir()
    cluster_factory(MEDIA_ROOT=str(worker_media), **s3.environment())
    base = live_server.url
    token = e2e.register(base, "bucket_listener")

    reply = e2e.upload(base, token, write_wav(tmp_path / "song.wav", 20))
    assert reply.status == 202, reply.body
    job_id = reply.json()["job_id"]
    assert f"jobs/{job_id}/input.wav" in s3.keys()
    assert not (web_media / "jobs").exists() or not any((web_media / "jobs").iterdir())

    wait_until(
        lambda: get(f"{base}/api/status/{job_id}", token).json()["status"] in {"COMPLETED", "FAILED"},
        timeout=300,
        message="the job did not finish",
    )
    job = Job.objects.get(pk=job_id)
    assert job.status == Job.Status.COMPLETED, job.error
    stored = s3.keys(f"jobs/{job_id}/")
    assert {f"jobs/{job_id}/stems-1/{stem}.wav" for stem in STEMS} <= set(stored)
    assert job.zip_file in stored
    assert job.storage_bytes == sum(stored.values())  # the quota counts what the bucket holds
    scratch = worker_media / "jobs" / job_id
    wait_until(lambda: not scratch.exists(), timeout=30, message="the worker's scratch copies to go")
    assert not (web_media / "jobs" / job_id).exists()

    status, location = get_without_following(f"{base}/api/download/{job_id}", token)
    assert status == 302
    assert location.startswith(f"{s3.endpoint}/{BUCKET}/jobs/{job_id}/") and "X-Amz-Signature=" in location
    archive = http("GET", location)
    assert archive.status == 200
    assert "attachment" in archive.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(archive.body)) as bundle:
        assert {name.rsplit("/", 1)[-1] for name in bundle.namelist()} == {f"{stem}.wav" for stem in STEMS}

    status, location = get_without_following(f"{base}/api/download/{job_id}/vocals", token)
    assert status == 302
    part = http("GET", location, headers={"Range": "bytes=100-199"})
    assert part.status == 206
    assert len(part.body) == 100
    assert part.headers["content-type"] == "audio/wav"

    other = e2e.register(base, "bucket_stranger")
    assert get(f"{base}/api/download/{job_id}", other).status == 404

    Job.objects.filter(pk=job_id).update(finished_at=timezone.now() - timedelta(days=30))
    jobs_delete_expired()
    assert s3.keys(f"jobs/{job_id}/") == {}
    job.refresh_from_db()
    assert job.files_deleted_at is not None and job.storage_bytes == 0


@pytest.mark.django_db(transaction=True)
def test_it_fails_and_refunds_a_job_whose_outputs_the_bucket_refuses(
    s3, live_server, cluster_factory, folders, tmp_path
):
    worker_media = tmp_path / "worker-media"
    worker_media.mkdir()
    cluster_factory(MEDIA_ROOT=str(worker_media), **s3.environment())
    base = live_server.url
    token = e2e.register(base, "bucket_refused")
    # A minute at 8 kHz: a small upload that the worker still takes seconds to separate.
    reply = e2e.upload(base, token, write_wav(tmp_path / "long.wav", 60, samplerate=8000))
    assert reply.status == 202, reply.body
    job_id = reply.json()["job_id"]

    wait_until(
        lambda: get(f"{base}/api/status/{job_id}", token).json()["progress"] > 0,
        timeout=300,
        interval=0.05,
        message="the worker did not start separating",
    )
    s3.reset()  # the input was fetched; the outputs will have nowhere to go

    wait_until(
        lambda: get(f"{base}/api/status/{job_id}", token).json()["status"] == "FAILED",
        timeout=300,
        message="the job did not fail",
    )
    job = Job.objects.get(pk=job_id)
    assert "could not store your stems" in job.error
    assert get(f"{base}/api/auth/me", token).json()["credits"] in ("3.00", 3, "3")
    scratch = worker_media / "jobs" / job_id
    wait_until(lambda: not scratch.exists(), timeout=30, message="the worker's scratch copies to go")


@pytest.mark.django_db
def test_it_refuses_an_upload_the_bucket_does_not_take_and_charges_nothing(s3, user, user_client, demo_model):
    s3.stop()
    before = balance(user)

    response = user_client.post(
        "/api/upload", {"file": SimpleUploadedFile("song.wav", tone_bytes())}, format="multipart"
    )

    assert response.status_code == 503, response.content
    assert response.json()["code"] == "storage_unavailable"
    assert balance(user) == before == Decimal(3)
    assert not Job.objects.filter(user=user).exists()


def test_it_lets_pages_load_stems_from_the_bucket_and_nowhere_else(settings):
    settings.STORAGE_BACKEND = "s3"
    settings.AWS_S3_ENDPOINT_URL = "https://minio.example.net:9000/"
    directives = dict(part.split(" ", 1) for part in content_security_policy().split("; "))

    assert bucket_origin() == "https://minio.example.net:9000"
    assert directives["media-src"] == "'self' blob: https://minio.example.net:9000"
    assert directives["img-src"] == "'self' data: https://minio.example.net:9000"
    assert directives["script-src"] == "'self'"
    settings.STORAGE_BACKEND = "local"
    assert bucket_origin() == ""
