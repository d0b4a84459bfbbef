"""Before an upload's body is stored: a verified address, not uploading too often, credits for the
cheapest song. The body of a refused upload is never written, not even to a temporary file: these
tests spool uploads onto a 64 KB filesystem, where a stored song would answer 507."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from separation.models import Job
from testkit.audio import tone_bytes
from tests.conftest import bearer_client, logged_in
from tests.disks import small_disk
from tests.factories import UserFactory

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]

SONG = tone_bytes(10.0)  # 1.7 MB


@pytest.fixture
def tiny_spool(settings, tmp_path):
    with small_disk(tmp_path / "spool", kilobytes=64) as spool:
        settings.FILE_UPLOAD_TEMP_DIR = str(spool)
        yield spool


@pytest.fixture
def poor_user(settings):
    settings.SIGNUP_BONUS_CREDITS = Decimal(0)
    settings.PREVIEWS_PER_DAY = 0  # an account with a free preview left may send its song (test_previews.py)
    return UserFactory()


def post(client, content: bytes = SONG):
    return client.post("/api/upload", {"file": SimpleUploadedFile("song.wav", content)}, format="multipart")


def test_a_user_who_cannot_pay_gets_402_before_the_body_is_stored(poor_user, tiny_spool):
    response = post(bearer_client(poor_user))

    assert response.status_code == 402, response.content
    assert response.json()["code"] == "insufficient_credits"
    assert Job.objects.count() == 0


def test_the_page_refuses_a_user_who_cannot_pay_before_the_body_is_stored(poor_user, tiny_spool):
    client = logged_in(poor_user)

    response = client.post("/upload/", {"file": SimpleUploadedFile("song.wav", SONG), "model": "demo"}, follow=True)

    assert response.status_code == 200
    assert "Not enough credits" in response.content.decode()
    assert Job.objects.count() == 0


def test_an_unverified_user_gets_403_before_the_body_is_stored(settings, tiny_spool):
    settings.EMAIL_VERIFICATION = "mandatory"
    from allauth.account.models import EmailAddress

    user = UserFactory()
    EmailAddress.objects.filter(user=user).update(verified=False)

    response = post(bearer_client(user))

    assert response.status_code == 403
    assert response.json()["code"] == "email_not_verified"


def test_uploads_are_throttled_per_user(settings, media):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "upload": "2/hour"},
    }
    user, other = UserFactory(), UserFactory()
    client = bearer_client(user)
    song = tone_bytes(2.0)
    assert [post(client, song).status_code for _ in range(2)] == [202, 202]

    refused = post(client, song)

    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert int(refused["Retry-After"]) > 0
    assert Job.objects.filter(user=user).count() == 2
    assert post(bearer_client(other), song).status_code == 202  # one user's budget is not another's
