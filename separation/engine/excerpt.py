"""A free preview's excerpt: where the most energetic stretch of a song lies, and that stretch cut
from the decoded audio into a WAV file of its own, so the worker separating a preview never sees
more of the song than the excerpt.

Both decode window by window (memory does not grow with the song). The web process calls them:
this module imports only numpy, sphn, soundfile (inside the function) and the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from separation.engine.errors import AudioDecodeError, AudioTooLong
from separation.engine.reader import AudioInfo, InputReader

# The energy of the song is summed over steps this long; an excerpt starts on a step.
ENERGY_STEP_SECONDS = 0.5


@dataclass(frozen=True)
class ExcerptPlan:
    audio: AudioInfo  # the whole song, measured by decoding it
    start_seconds: float
    seconds: float


def excerpt_plan(path: Path, *, seconds: float, start_seconds: float | None, max_seconds: float) -> ExcerptPlan:
    """Decode the whole song (stopping past `max_seconds`: AudioTooLong), measure it, and choose
    the excerpt: from `start_seconds` when given (kept inside the song), else the `seconds`-long
    stretch with the most energy (sum of squared samples). A song shorter than `seconds` is its
    own excerpt."""
    reader = InputReader(Path(path))
    rate = reader.samplerate
    step = max(1, int(ENERGY_STEP_SECONDS * rate))
    limit = int(max_seconds * rate)
    energies: list[float] = []
    carry = 0.0
    filled = 0  # frames of the step being summed
    for block in reader.blocks():
        if reader.frames_read > limit:
            raise AudioTooLong(seconds_at_least=reader.frames_read / rate)
        power = np.square(block, dtype=np.float64).sum(axis=0)
        position = 0
        while position < power.shape[0]:
            take = min(step - filled, power.shape[0] - position)
            carry += float(power[position : position + take].sum())
            filled += take
            position += take
            if filled == step:
                energies.append(carry)
                carry, filled = 0.0, 0
    if filled:
        energies.append(carry)
    if reader.frames_read == 0:
        raise AudioDecodeError("The file contains no audio data.")
    duration = reader.frames_read / rate
    audio = AudioInfo(duration_seconds=duration, samplerate=rate, channels=reader.channels)
    length = min(seconds, duration)
    if start_seconds is not None:
        start = min(max(0.0, start_seconds), duration - length)
    else:
        start = _loudest_start(energies, steps=max(1, math.ceil(length / ENERGY_STEP_SECONDS))) * step / rate
        start = min(start, duration - length)
    return ExcerptPlan(audio=audio, start_seconds=start, seconds=length)


def _loudest_start(energies: list[float], *, steps: int) -> int:
    """The first step of the `steps`-long run of steps with the most energy (the earliest on a tie)."""
    if len(energies) <= steps:
        return 0
    totals = np.concatenate([[0.0], np.cumsum(energies)])
    windows = totals[steps:] - totals[:-steps]
    return int(np.argmax(windows))


def excerpt_write(path: Path, *, plan: ExcerptPlan, output: Path) -> AudioInfo:
    """Write the planned excerpt of the decoded song to `output` as a float WAV, decoding only as
    far as its end. Returns what was written."""
    import soundfile

    reader = InputReader(Path(path))
    rate = reader.samplerate
    first = int(round(plan.start_seconds * rate))
    last = first + int(round(plan.seconds * rate))
    written = 0
    with soundfile.SoundFile(
        str(output), "w", samplerate=rate, channels=reader.channels, subtype="FLOAT", format="WAV"
    ) as out:
        for block in reader.blocks():
            end = reader.frames_read
            begin = end - block.shape[1]
            lo, hi = max(first, begin), min(last, end)
            if hi > lo:
                out.write(block[:, lo - begin : hi - begin].T)
                written += hi - lo
            if end >= last:
                break
    if written == 0:
        raise AudioDecodeError("The file contains no audio data.")
    return AudioInfo(duration_seconds=written / rate, samplerate=rate, channels=reader.channels)
