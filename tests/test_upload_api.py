"""POST /api/upload: checked (size, type by content, duration, options) before any charge; then
the job is created, charged once and queued once committed."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_q.conf import Conf
from django_q.models import OrmQ

from credits.models import CreditTransaction
from separation.models import Job
from testkit.audio import files_under, png_bytes, tone_bytes
from testkit.http import multipart
from tests.conftest import balance, bearer_client
from tests.factories import UserFactory

Kind = CreditTransaction.Kind

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]

URL = "/api/upload"


def post(client, content: bytes | None, name: str = "song.wav", headers=None, **fields):
    data = dict(fields)
    if content is not None:
        data["file"] = SimpleUploadedFile(name, content)
    return client.post(URL, data, format="multipart", headers=headers or {})


def charges(user) -> int:
    return CreditTransaction.objects.filter(user=user, kind=Kind.JOB_CHARGE).count()


def test_it_accepts_a_song_charges_it_once_and_stores_it_in_the_job_folder(user, user_client, media, song):
    response = post(user_client, song, name="My Song.wav")

    assert response.status_code == 202, response.content
    body = response.json()
    job = Job.objects.get()
    assert body == {"job_id": str(job.pk), "status": "PENDING", "cost": "1.00", "credits_remaining": "2.00"}
    assert job.user == user
    assert job.original_filename == "My Song.wav"
    assert (job.model, job.stem_mode, job.output_format) == ("demo", "all", "wav")
    assert job.duration_seconds == pytest.approx(2.0, abs=0.01)
    assert job.cost == Decimal("1.00")
    charge = CreditTransaction.objects.get(user=user, kind=Kind.JOB_CHARGE)
    assert (charge.amount, charge.balance_after, charge.reference) == (
        Decimal("-1.00"),
        Decimal("2.00"),
        f"job:{job.pk}",
    )
    assert balance(user) == Decimal("2.00")
    assert job.input_file == f"jobs/{job.pk}/input.wav"
    assert files_under(media) == [media / "jobs" / str(job.pk) / "input.wav"]
    assert (media / job.input_file).read_bytes() == song


def test_it_queues_the_job_once_the_transaction_commits(user_client, song, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(user_client, song)

    assert response.status_code == 202
    assert len(callbacks) == 1
    job = Job.objects.get()
    queued = [row.task for row in OrmQ.objects.all()]
    assert [(task["func"], task["args"]) for task in queued] == [("separation.tasks.separate_next_job", ())]
    assert job.enqueued_at is not None


def test_it_queues_nothing_before_the_commit(user_client, song, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert post(user_client, song).status_code == 202
        assert OrmQ.objects.count() == 0
    assert len(callbacks) == 1


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_it_accepts_each_input_format(user_client, media, fmt):
    response = post(user_client, tone_bytes(seconds=2.0, fmt=fmt), name=f"song.{fmt}")

    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.input_file == f"jobs/{job.pk}/input.{fmt}"
    assert job.duration_seconds == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("output_format", ["wav", "flac", "mp3"])
def test_it_records_the_output_format(user_client, song, output_format):
    assert post(user_client, song, format=output_format).status_code == 202
    assert Job.objects.get().output_format == output_format


def test_it_defaults_to_the_demo_model_when_htdemucs_is_not_installed(user_client, song):
    assert post(user_client, song).status_code == 202
    assert Job.objects.get().model == "demo"


def test_it_accepts_two_stem_mode(user_client, song):
    response = post(user_client, song, model="demo", stems="vocals")

    assert response.status_code == 202
    assert Job.objects.get().stem_mode == "vocals"


def test_it_makes_one_job_for_retries_with_one_idempotency_key(user, user_client, media, song):
    first = post(user_client, song, headers={"Idempotency-Key": "retry-1"})
    second = post(user_client, song, headers={"Idempotency-Key": "retry-1"})

    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["job_id"] == first.json()["job_id"]
    assert second.json()["credits_remaining"] == "2.00"
    assert Job.objects.count() == 1
    assert charges(user) == 1
    assert balance(user) == Decimal("2.00")
    assert len(files_under(media)) == 1


def test_it_makes_separate_jobs_for_different_idempotency_keys(user, user_client, song):
    assert post(user_client, song, headers={"Idempotency-Key": "a"}).status_code == 202
    assert post(user_client, song, headers={"Idempotency-Key": "b"}).status_code == 202
    assert charges(user) == 2


def test_it_keeps_idempotency_keys_apart_between_users(user, other_user, user_client, song):
    first = post(user_client, song, headers={"Idempotency-Key": "shared"})
    second = post(bearer_client(other_user), song, headers={"Idempotency-Key": "shared"})

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["job_id"] != second.json()["job_id"]
    assert Job.objects.get(pk=second.json()["job_id"]).user == other_user
    assert balance(user) == balance(other_user) == Decimal("2.00")


def _over_the_declared_limit(settings):
    settings.MAX_UPLOAD_MB = 1
    return {"content": tone_bytes(seconds=17.0, channels=1)}  # ~1.5 MB


def _over_the_limit_while_streaming(settings):
    # Within the declared-size allowance for the form's other fields, so the upload handler,
    # not the Content-Length check, stops it.
    settings.MAX_UPLOAD_MB = 1
    content = tone_bytes(seconds=12.2, channels=1)
    assert 1024 * 1024 < len(content) < 1024 * 1024 + 60 * 1024
    return {"content": content}


def _too_long(settings):
    settings.MAX_DURATION_MINUTES = 1
    return {"content": tone_bytes(seconds=70.0, samplerate=8000, channels=1)}


BAD_UPLOADS = {
    "empty file": (lambda settings: {"content": b""}, 400),
    "random bytes named .wav": (lambda settings: {"content": bytes(range(256)) * 64, "name": "song.wav"}, 415),
    "a png renamed .mp3": (lambda settings: {"content": png_bytes((64, 64)), "name": "song.mp3"}, 415),
    "a wav cut after its header": (lambda settings: {"content": tone_bytes(2.0)[:44]}, 415),
    "over MAX_UPLOAD_MB": (_over_the_declared_limit, 413),
    "over MAX_UPLOAD_MB while streaming": (_over_the_limit_while_streaming, 413),
    "longer than MAX_DURATION_MINUTES": (_too_long, 400),
    "too short": (lambda settings: {"content": tone_bytes(seconds=0.5)}, 400),
    "unknown model": (lambda settings: {"model": "nope"}, 400),
    "model not installed": (lambda settings: {"model": "htdemucs"}, 400),
    "stem not in the model": (lambda settings: {"model": "demo", "stems": "guitar"}, 400),
    "unknown stem": (lambda settings: {"stems": "kazoo"}, 400),
    "unknown format": (lambda settings: {"format": "ogg"}, 400),
    "no file field": (lambda settings: {"content": None, "model": "demo"}, 400),
}


@pytest.mark.parametrize(("make", "status"), BAD_UPLOADS.values(), ids=BAD_UPLOADS.keys())
def test_it_refuses_a_bad_upload_without_charging_or_storing_anything(
    user, user_client, media, song, settings, make, status
):
    request = {"content": song, **make(settings)}

    response = post(user_client, **request)

    assert response.status_code == status, response.content
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert balance(user) == Decimal("3.00")
    assert charges(user) == 0
    assert Job.objects.count() == 0
    assert files_under(media) == []


def test_it_says_what_is_wrong(user_client, song, settings):
    settings.MAX_DURATION_MINUTES = 1
    assert "not installed" in post(user_client, song, model="htdemucs").json()["detail"]
    assert "no stem 'guitar'" in post(user_client, song, model="demo", stems="guitar").json()["detail"]
    assert "longer than the 1-minute limit" in post(user_client, tone_bytes(70.0, 8000, 1)).json()["detail"]
    assert "not audio" in post(user_client, png_bytes(), name="a.mp3").json()["detail"]


def test_it_refuses_a_body_that_is_neither_multipart_nor_json(user, user_client, media):
    response = user_client.post(URL, "model=demo", content_type="text/plain")

    assert response.status_code == 415
    assert response.json()["detail"]
    assert Job.objects.count() == 0
    assert charges(user) == 0


def test_it_asks_for_a_file_or_a_url_in_a_json_body(user, user_client, media):
    """JSON is for URL import (tests/test_url_import.py); without `url` there is no song."""
    response = user_client.post(URL, {"model": "demo"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "no_file"
    assert Job.objects.count() == 0
    assert charges(user) == 0


def test_it_refuses_anonymous_uploads(api_client, user, media, song):
    response = post(api_client, song)

    assert response.status_code == 401
    assert Job.objects.count() == 0
    assert files_under(media) == []


@pytest.fixture
def poor_user(settings, db):
    settings.SIGNUP_BONUS_CREDITS = Decimal(0)
    return UserFactory()


def test_it_refuses_a_song_the_user_cannot_pay_for_and_stores_nothing(poor_user, media, song):
    response = post(bearer_client(poor_user), song)

    assert response.status_code == 402
    body = response.json()
    assert set(body) == {"detail", "code", "credits", "cost"}
    assert body["code"] == "insufficient_credits"
    # Money is "0.00" everywhere else in the API (DecimalField, 2 places).
    assert (body["credits"], body["cost"]) == ("0.00", "1.00")
    assert "Not enough credits" in body["detail"]
    assert Job.objects.count() == 0
    assert CreditTransaction.objects.filter(user=poor_user).count() == 0
    assert files_under(media) == []


def test_it_refuses_a_song_the_user_can_no_longer_pay_for(user, user_client, media, song):
    for _ in range(3):
        assert post(user_client, song).status_code == 202
    response = post(user_client, song)

    assert response.status_code == 402
    assert Decimal(response.json()["credits"]) == 0
    assert Job.objects.count() == 3
    assert charges(user) == 3
    assert balance(user) == 0
    assert len(files_under(media)) == 3


# --- file names -----------------------------------------------------------------------

HOSTILE_NAMES = {
    "parent folders": ("../../../../etc/passwd.wav", "passwd.wav", ".wav"),
    "windows folders": ("..\\..\\Windows\\evil.wav", "evil.wav", ".wav"),
    "control characters": ("bad\x01na\x1fme\x7f.wav", "badname.wav", ".wav"),
    "a NUL hiding the real extension": ("evil.php\x00.wav", "evil.php.wav", ".wav"),
    "emoji and accents": ("🎵 Ünïcödé – Sóng.wav", "🎵 Ünïcödé – Sóng.wav", ".wav"),
    "an extension that is not one": ("song.wav;rm -rf ~", "song.wav;rm -rf ~", ""),
    "only dots": ("...", "upload", ""),
}


@pytest.mark.parametrize(("sent", "shown", "extension"), HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_it_stores_hostile_file_names_safely(user_client, media, song, sent, shown, extension):
    body, content_type = multipart({}, [("file", sent, song, "application/octet-stream")])

    response = user_client.post(URL, body, content_type=content_type)

    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.original_filename == shown
    assert job.input_file == f"jobs/{job.pk}/input{extension}"
    assert files_under(media) == [media / job.input_file]


def test_it_shortens_a_300_character_name_keeping_its_extension(user_client, media, song):
    body, content_type = multipart({}, [("file", "é" * 296 + ".wav", song, "application/octet-stream")])

    response = user_client.post(URL, body, content_type=content_type)

    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert len(job.original_filename) <= 255
    assert job.original_filename.endswith(".wav")
    assert job.original_filename.startswith("é" * 200)
    assert files_under(media) == [media / "jobs" / str(job.pk) / "input.wav"]


# --- the queue ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_refunds_and_answers_503_when_the_queue_is_down(user, user_client, media, song, settings, monkeypatch):
    # django-q2 reads Q_CLUSTER once, at import (django_q.conf.Conf), so the settings fixture
    # cannot switch the broker; set what Conf read instead: a Redis broker on a closed port.
    settings.Q_CLUSTER = {
        **{k: v for k, v in settings.Q_CLUSTER.items() if k != "orm"},
        "redis": "redis://127.0.0.1:1/0",
    }
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:1/0")

    # A real commit (transaction=True), so the on-commit enqueue runs inside the request.
    response = post(user_client, song)

    assert response.status_code == 503
    assert "queue" in response.json()["detail"]
    job = Job.objects.get()
    assert job.status == Job.Status.FAILED
    assert "refunded" in job.error
    assert balance(user) == Decimal("3.00")
    kinds = sorted(CreditTransaction.objects.filter(user=user).values_list("kind", "amount"))
    assert kinds == [
        (Kind.JOB_CHARGE, Decimal("-1.00")),
        (Kind.JOB_REFUND, Decimal("1.00")),
        (Kind.SIGNUP_BONUS, Decimal("3.00")),
    ]
    assert OrmQ.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_retry_with_the_same_key_after_the_queue_failed_makes_a_new_job(user, user_client, media, song, monkeypatch):
    with monkeypatch.context() as broken_queue:
        broken_queue.setattr(Conf, "ORM", None)
        broken_queue.setattr(Conf, "REDIS", "redis://127.0.0.1:1/0")
        assert post(user_client, song, headers={"Idempotency-Key": "retry-1"}).status_code == 503

    retried = post(user_client, song, headers={"Idempotency-Key": "retry-1"})

    assert retried.status_code == 202, retried.content
    job = Job.objects.get(pk=retried.json()["job_id"])
    assert job.status == Job.Status.PENDING
    assert Job.objects.filter(user=user).count() == 2
    assert balance(user) == Decimal("2.00")
