"""Tempo and key: measured with librosa on synthesized audio of known tempo and key (click
patterns within 2 BPM, chord progressions on the exact key), on the right stems of a job, queued
on the maintenance cluster when a job completes, and shown in GET /api/status/<id>."""

from pathlib import Path

import numpy as np
import pytest
from django_q.models import OrmQ

from separation.analysis import audio_analyse, job_analyse
from separation.models import Job
from separation.services import job_delete_files
from separation.tasks import separate_next_job
from testkit.audio import write_audio, write_wav
from testkit.http import get, wait_until
from tests import e2e
from tests.conftest import bearer_client
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = pytest.mark.e2e

SAMPLERATE = 44100
C_MAJOR = [(60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)]  # I IV V I
A_MINOR = [(57, 60, 64), (62, 65, 69), (64, 68, 71), (57, 60, 64)]  # i iv V i (harmonic minor)


def clicks(bpm: float, seconds: float = 20.0) -> np.ndarray:
    """A click on every beat, the first of each bar louder: (frames, 2)."""
    audio = np.zeros(int(seconds * SAMPLERATE), dtype=np.float32)
    n = np.arange(int(0.03 * SAMPLERATE))
    click = np.sin(2 * np.pi * 1000 * n / SAMPLERATE) * np.exp(-n / (0.005 * SAMPLERATE))
    for beat in range(int(seconds * bpm / 60)):
        start = int(round(beat * 60 / bpm * SAMPLERATE))
        piece = audio[start : start + len(click)]
        piece += (0.9 if beat % 4 == 0 else 0.5) * click[: len(piece)]
    return np.stack([audio, audio], axis=1)


def progression(chords, repeats: int = 4, seconds_per_chord: float = 1.0) -> np.ndarray:
    """Each chord with its root an octave down, three harmonics per note: (frames, 2)."""
    t = np.arange(int(seconds_per_chord * SAMPLERATE)) / SAMPLERATE
    envelope = np.minimum(1, np.minimum(t / 0.02, (seconds_per_chord - t) / 0.05))
    pieces = []
    for notes in chords:
        hz = [440.0 * 2 ** ((note - 69) / 12) for note in (*notes, notes[0] - 12)]
        chord = sum(0.08 / k * np.sin(2 * np.pi * f * k * t) for f in hz for k in (1, 2, 3))
        pieces.append(chord * envelope)
    audio = np.concatenate(pieces * repeats).astype(np.float32)
    return np.stack([audio, audio], axis=1)


@pytest.mark.parametrize("bpm", [120, 96, 143])
def test_it_measures_the_tempo_of_a_click_pattern_within_2_bpm(tmp_path, bpm):
    drums = write_audio(tmp_path / "drums.wav", clicks(bpm), SAMPLERATE)

    result = audio_analyse(tempo_paths=[drums], key_paths=[drums])

    assert abs(result["bpm"] - bpm) <= 2, result
    assert result["tempo_confidence"] >= 0.9


@pytest.mark.parametrize(("chords", "key"), [(C_MAJOR, "C major"), (A_MINOR, "A minor")])
def test_it_names_the_exact_key_of_a_chord_progression(tmp_path, chords, key):
    harmony = write_audio(tmp_path / "other.wav", progression(chords), SAMPLERATE)

    result = audio_analyse(tempo_paths=[harmony], key_paths=[harmony])

    assert result["key"] == key, result
    assert 0 < result["key_confidence"] <= 1


@pytest.mark.django_db
@pytest.mark.usefixtures("demo_model")
def test_a_job_gets_the_tempo_of_its_drums_and_the_key_of_the_rest(settings):
    user = UserFactory()
    job = make_job(user, content=None)
    separate_next_job()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED and job.analysis is None
    # The stems as a real song's would be: a click on the drums, chords on bass and other, silence
    # in the vocals (the demo model's are noise).
    media = Path(settings.MEDIA_ROOT)
    files = {stem["name"]: media / stem["file"] for stem in job.stems}
    write_audio(files["drums"], clicks(100), SAMPLERATE)
    write_audio(files["bass"], progression(A_MINOR[:1] * 4, repeats=5), SAMPLERATE)
    write_audio(files["other"], progression(A_MINOR, repeats=5), SAMPLERATE)
    write_audio(files["vocals"], np.zeros((20 * SAMPLERATE, 2), dtype=np.float32), SAMPLERATE)

    job_analyse(job_id=job.pk)

    analysis = bearer_client(user).get(f"/api/status/{job.pk}").json()["analysis"]
    assert abs(analysis["bpm"] - 100) <= 2, analysis
    assert analysis["key"] == "A minor", analysis
    assert analysis["seconds"] == 20.0


@pytest.mark.django_db
@pytest.mark.usefixtures("demo_model")
def test_the_worker_queues_the_analysis_on_the_maintenance_cluster(settings):
    job = make_job(UserFactory())

    separate_next_job()

    queued = [row for row in OrmQ.objects.all() if row.task.get("func") == "separation.tasks.job_analyse"]
    assert [(row.key, row.task["args"]) for row in queued] == [(settings.MAINTENANCE_CLUSTER, (str(job.pk),))]


@pytest.mark.django_db
@pytest.mark.usefixtures("demo_model")
def test_a_job_whose_files_were_deleted_is_not_analysed():
    job = make_job(UserFactory())
    separate_next_job()
    job_delete_files(job=Job.objects.get(pk=job.pk))

    assert job_analyse(job_id=job.pk) is None
    assert Job.objects.get(pk=job.pk).analysis is None


@pytest.mark.django_db(transaction=True)
def test_a_completed_job_is_analysed_by_the_maintenance_worker(live_server, cluster_factory, tmp_path):
    cluster_factory("separation")
    cluster_factory("maintenance", Q_CLUSTER_NAME="maintenance")
    token = e2e.register(live_server.url, "analysed_listener")
    accepted = e2e.upload(live_server.url, token, write_wav(tmp_path / "song.wav", 8))
    assert accepted.status == 202, accepted.body
    status_url = f"{live_server.url}/api/status/{accepted.json()['job_id']}"

    wait_until(lambda: get(status_url, token).json()["analysis"] is not None, timeout=180, message="the analysis")

    status = get(status_url, token).json()
    assert status["status"] == "COMPLETED"
    assert set(status["analysis"]) == {"bpm", "tempo_confidence", "key", "key_confidence", "seconds"}
    assert status["analysis"]["seconds"] == 8.0
