"""A completed job's tempo and key, measured with librosa on its stems: the tempo on the drums
(the whole mix when the job has no drums stem), the key on the harmonic stems (everything but
the drums). It runs on the maintenance cluster after the job completes (`analysis_enqueue`), so a
separation worker never waits for it, and its result (`Job.analysis`) is only ever added: a job
without it is complete all the same.

Tempo: librosa's beat tracker, then the slope of the beat times (a straight-line fit), which is
finer than the tracker's own estimate on its lag grid (117.5 BPM for a 120 BPM click at the
default hop); its confidence is the share of beat intervals within 5 % of their median. Key: the
mean of librosa's constant-Q chroma matched against the Krumhansl-Kessler major and minor
profiles in all 24 keys (Pearson correlation); its confidence is how far the best key's
correlation stands above the runner-up's, from 0 (a tie) to 1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from django.conf import settings
from django_q.tasks import async_task

from separation.job_files import local_copies
from separation.models import Job

logger = logging.getLogger(__name__)

ANALYSIS_SAMPLERATE = 22050
# Only this much of each stem is read (from the start): it bounds the memory and time of a
# two-hour song, and a song's tempo and key are settled well within it.
ANALYSIS_MAX_SECONDS = 600.0
HOP = 256
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl & Kessler (1982), probe-tone ratings of each pitch class in C major and C minor.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _load_sum(paths: Sequence[Path]) -> np.ndarray:
    import librosa

    total = np.zeros(0, dtype=np.float32)
    for path in paths:
        audio, _ = librosa.load(str(path), sr=ANALYSIS_SAMPLERATE, mono=True, duration=ANALYSIS_MAX_SECONDS)
        if len(audio) > len(total):
            audio[: len(total)] += total
            total = audio
        else:
            total[: len(audio)] += audio
    return total


def tempo_estimate(audio: np.ndarray) -> tuple[float | None, float]:
    """(beats per minute, confidence from 0 to 1); None when fewer than four beats are found."""
    import librosa

    onsets = librosa.onset.onset_strength(y=audio, sr=ANALYSIS_SAMPLERATE, hop_length=HOP)
    _, beats = librosa.beat.beat_track(onset_envelope=onsets, sr=ANALYSIS_SAMPLERATE, hop_length=HOP, units="time")
    if len(beats) < 4:
        return None, 0.0
    seconds_per_beat = float(np.polyfit(np.arange(len(beats)), beats, 1)[0])
    intervals = np.diff(beats)
    steady = float(np.mean(np.abs(intervals - np.median(intervals)) <= 0.05 * np.median(intervals)))
    return 60.0 / seconds_per_beat, steady


def key_estimate(audio: np.ndarray) -> tuple[str | None, float]:
    """("C major", "A minor", ...; confidence from 0 to 1); None for silence."""
    import librosa

    if not np.any(audio):
        return None, 0.0
    chroma = librosa.feature.chroma_cqt(y=audio, sr=ANALYSIS_SAMPLERATE, hop_length=4 * HOP).mean(axis=1)
    if not np.any(chroma) or np.allclose(chroma, chroma[0]):
        return None, 0.0
    scores = sorted(
        (
            (float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]), f"{NOTE_NAMES[tonic]} {mode}")
            for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE))
            for tonic in range(12)
        ),
        reverse=True,
    )
    (best, key), (second, _) = scores[0], scores[1]
    return key, float(np.clip((best - second) / (1 - second) if second < 1 else 0.0, 0, 1))


def audio_analyse(*, tempo_paths: Sequence[Path], key_paths: Sequence[Path]) -> dict:
    """{bpm, tempo_confidence, key, key_confidence, seconds}: rounded for people and the API."""
    rhythm = _load_sum(tempo_paths)
    bpm, tempo_confidence = tempo_estimate(rhythm)
    key, key_confidence = key_estimate(_load_sum(key_paths))
    return {
        "bpm": None if bpm is None else round(bpm, 1),
        "tempo_confidence": round(tempo_confidence, 2),
        "key": key,
        "key_confidence": round(key_confidence, 2),
        "seconds": round(len(rhythm) / ANALYSIS_SAMPLERATE, 1),
    }


def job_analysis_paths(*, job: Job, local: dict[str, Path]) -> tuple[list[Path], list[Path]]:
    """The stems for the tempo (drums, or all) and for the key (all but the drums), given where
    each stored stem is on this machine."""
    files = {stem["name"]: local[stem["file"]] for stem in job.stems}
    tempo = [files["drums"]] if "drums" in files else list(files.values())
    harmonic = [path for name, path in files.items() if name != "drums"]
    return tempo, harmonic or list(files.values())


def job_analyse(*, job_id) -> dict | None:
    """Measure a completed job's tempo and key and keep them on the job; None when the job has
    no stems to measure (deleted meanwhile, or not completed). A file that cannot be analysed
    leaves {"error": ...}, so the page stops waiting for it."""
    job = Job.objects.filter(pk=job_id, status=Job.Status.COMPLETED, files_deleted_at__isnull=True).first()
    if job is None or not job.stems:
        return None
    with local_copies([stem["file"] for stem in job.stems]) as local:
        try:
            if local is None:
                raise FileNotFoundError(f"the stems of job {job_id} are not all stored")
            tempo_paths, key_paths = job_analysis_paths(job=job, local=local)
            analysis = audio_analyse(tempo_paths=tempo_paths, key_paths=key_paths)
        except Exception:
            logger.exception("Could not analyse job %s", job_id)
            analysis = {"error": "The tempo and key could not be measured."}
    # Only a job still completed with its files keeps it (a deletion may have come meanwhile).
    Job.objects.filter(pk=job_id, status=Job.Status.COMPLETED, files_deleted_at__isnull=True).update(analysis=analysis)
    return analysis


def analysis_enqueue(*, job_id) -> None:
    """Queue the analysis of a just-completed job on the maintenance cluster. Never raises: a job
    is complete without its analysis."""
    try:
        async_task("separation.tasks.job_analyse", str(job_id), cluster=settings.MAINTENANCE_CLUSTER)
    except Exception:
        logger.exception("Could not queue the analysis of job %s", job_id)
