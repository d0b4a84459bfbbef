"""A RoFormer job end to end: the live server, a real `manage.py qcluster` worker that was started
before the model was installed (it loads it on first use, no restart), the API, the pages. The model
is the small random Mel-Band RoFormer `create_demo_model --preset roformer` writes."""

import io
import zipfile
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import User
from credits.selectors import ledger_violations
from testkit.audio import SAMPLERATE, read_audio, write_wav
from testkit.http import get
from tests import e2e

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_it_separates_with_a_roformer_installed_after_the_worker_started(
    live_server, cluster_factory, folders, tmp_path
):
    base = live_server.url
    _, models = folders
    cluster_factory()
    token = e2e.register(base, "e2e_roformer")
    offered = {model["name"]: model for model in get(f"{base}/api/models").json()}
    assert offered["demo_roformer"]["installed"] is False

    call_command("create_demo_model", repo=str(models), name="demo_roformer", preset="roformer", stdout=io.StringIO())

    offered = {model["name"]: model for model in get(f"{base}/api/models").json()}
    assert offered["demo_roformer"]["installed"] is True
    assert offered["demo_roformer"]["family"] == "roformer"
    reply = e2e.upload(base, token, write_wav(tmp_path / "song.wav", 6), model="demo_roformer")
    assert reply.status == 202, reply.body
    accepted = reply.json()
    assert Decimal(accepted["cost"]) == 1
    final = e2e.poll_job(base, token, accepted["job_id"], until=lambda job: job["status"] in e2e.TERMINAL)[-1]

    assert final["status"] == "COMPLETED", final
    assert final["model"] == "demo_roformer"
    assert {stem["name"] for stem in final["stem_files"]} == {"vocals", "instrumental"}
    reply = get(f"{base}/api/download/{accepted['job_id']}", token)
    assert reply.status == 200
    with zipfile.ZipFile(io.BytesIO(reply.body)) as bundle:
        assert sorted(name.rsplit("/", 1)[-1] for name in bundle.namelist()) == ["instrumental.wav", "vocals.wav"]
    vocals = get(f"{base}/api/download/{accepted['job_id']}/vocals", token)
    data, samplerate = read_audio(vocals.body)
    assert samplerate == SAMPLERATE and data.shape[0] == 6 * SAMPLERATE

    browser = Client()
    browser.force_login(User.objects.get(username="e2e_roformer"))
    page = browser.get(f"/jobs/{accepted['job_id']}/").content.decode()
    assert "demo_roformer" in page and "instrumental" in page
    assert 'value="demo_roformer"' in browser.get("/dashboard/").content.decode()
    assert ledger_violations() == []


def test_it_makes_a_vocals_and_instrumental_two_stem_job(live_server, cluster_factory, folders, tmp_path):
    base = live_server.url
    _, models = folders
    call_command("create_demo_model", repo=str(models), name="demo_roformer", preset="roformer", stdout=io.StringIO())
    cluster_factory()
    token = e2e.register(base, "e2e_roformer_two")

    reply = e2e.upload(base, token, write_wav(tmp_path / "song.wav", 3), model="demo_roformer", stems="vocals")
    assert reply.status == 202, reply.body
    accepted = reply.json()
    final = e2e.poll_job(base, token, accepted["job_id"], until=lambda job: job["status"] in e2e.TERMINAL)[-1]

    assert final["status"] == "COMPLETED", final
    assert {stem["name"] for stem in final["stem_files"]} == {"vocals", "no_vocals"}
