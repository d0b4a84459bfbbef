"""Reading the input: decoded window by window, so memory does not grow with the song, and
`probe_audio`, which measures a file the way the worker will read it.

Input is whatever sphn decodes (wav, mp3, flac, ogg/vorbis, ...; there is no ffmpeg fallback).
The web process calls `probe_audio`: this module imports only numpy, sphn and the standard library.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sphn

from separation.engine.errors import AudioDecodeError, AudioTooLong

logger = logging.getLogger(__name__)

DECODE_WINDOW_SECONDS = 20.0
# How far from the asked sample a decoder may start after a seek (vorbis: up to a block).
SEEK_SLACK = 8192
ALIGN_ANCHOR = 64


@dataclass(frozen=True)
class AudioInfo:
    duration_seconds: float
    samplerate: int
    channels: int


class InputReader:
    """What sphn.read returns, as consecutive (channels, frames) float32 blocks decoded one window
    at a time, non-finite samples zeroed.

    sphn seeks by time, and not every codec lands on the sample it was asked for (vorbis starts
    a block late, mp3's first frames after a seek decode differently). So each window after the
    first is decoded again from `margin` frames before the join and placed where its samples,
    past the decoder's warm-up, equal the previous window's exactly (wav and flac land exactly)."""

    def __init__(self, path: Path):
        try:
            self._reader = sphn.FileReader(str(path))
            self.samplerate = int(self._reader.sample_rate)
            self.channels = int(self._reader.channels)
            self.duration = float(self._reader.duration_sec)
        except Exception as error:  # sphn raises ValueError/OSError, with Rust's message
            raise AudioDecodeError("The file could not be decoded as audio.") from error
        if self.samplerate <= 0 or self.channels <= 0:
            raise AudioDecodeError("The file contains no audio data.")
        self.window = max(1, int(DECODE_WINDOW_SECONDS * self.samplerate))
        self.margin = max(self.samplerate, 4 * SEEK_SLACK)
        self.frames_read = 0  # by the running blocks() iteration

    def _decode(self, start: int, frames: int) -> np.ndarray:
        rate = self.samplerate
        try:
            # Half a sample more: sphn floors seconds * rate, so this asks for `start` and `frames`.
            data = self._reader.decode((start + 0.5) / rate, (frames + 0.5) / rate)
        except Exception as error:
            raise AudioDecodeError("The file could not be decoded as audio.") from error
        data = np.asarray(data, dtype=np.float32)
        if data.ndim == 1:
            data = data[None]
        if data.ndim != 2 or data.shape[0] != self.channels:
            raise AudioDecodeError("The file contains no audio data.")
        if not np.isfinite(data).all():
            data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
        return data

    def _shift(self, tail: np.ndarray, block: np.ndarray, previous: int) -> int:
        """e such that block[:, i] == tail[:, i + e] where both hold the same samples: the window
        starts e frames later than asked. Ambiguous content (silence, an exactly periodic signal)
        keeps the previous window's shift."""
        size = tail.shape[1]
        skip = size // 2  # the decoder's warm-up after a seek
        end = min(size - SEEK_SLACK, block.shape[1])
        if end - skip < ALIGN_ANCHOR:
            return previous
        anchor = block[:, skip : skip + ALIGN_ANCHOR]
        low, high = max(0, skip - SEEK_SLACK), min(size - ALIGN_ANCHOR, skip + SEEK_SLACK)
        windows = np.lib.stride_tricks.sliding_window_view(tail[:, low : high + ALIGN_ANCHOR], ALIGN_ANCHOR, axis=1)
        hits = np.flatnonzero((windows == anchor[:, None, :]).all(axis=(0, 2))) + low - skip
        shifts = [int(e) for e in hits if np.array_equal(block[:, skip:end], tail[:, skip + e : end + e])]
        if len(shifts) == 1:
            return shifts[0]
        if not shifts:
            logger.warning("A decoded window matches none of the previous one; kept the shift %d.", previous)
            return previous
        return min(shifts, key=lambda e: (abs(e - previous), e))

    def blocks(self):
        self.frames_read = 0
        requested = self.window
        block = self._decode(0, requested)
        tail = block[:, :0]
        shift = 0
        while True:
            if tail.shape[1]:
                shift = self._shift(tail, block, shift)
                new = block[:, tail.shape[1] - shift :]
            else:
                new = block
            if new.shape[1]:
                self.frames_read += new.shape[1]
                yield np.ascontiguousarray(new)
            if block.shape[1] < requested:  # sphn stops at the end of the stream
                return
            tail = np.concatenate([tail, new], axis=1)[:, -self.margin :]
            requested = tail.shape[1] + self.window
            block = self._decode(self.frames_read - tail.shape[1], requested)


def probe_audio(path: Path, *, max_seconds: float | None = None) -> AudioInfo:
    """Samplerate and channels from the file's headers, and the duration by decoding the whole file
    (what the worker will separate): a header's claim (Xing/VBRI frames, FLAC STREAMINFO, WAV or OGG
    sizes, an estimate from a VBR MP3's first frame) is never trusted for price or limits. Decoding
    stops once it passes `max_seconds` (AudioTooLong), so a hostile file costs at most that much.

    Raises AudioDecodeError for anything sphn cannot open or that holds no audio."""
    reader = InputReader(Path(path))
    if not (math.isfinite(reader.duration) and reader.samplerate > 0 and reader.channels > 0):
        raise AudioDecodeError("The file contains no audio.")
    limit = None if max_seconds is None else int(max_seconds * reader.samplerate)
    for _ in reader.blocks():
        if limit is not None and reader.frames_read > limit:
            raise AudioTooLong(seconds_at_least=reader.frames_read / reader.samplerate)
    if reader.frames_read == 0:
        raise AudioDecodeError("The file contains no audio data.")
    return AudioInfo(
        duration_seconds=reader.frames_read / reader.samplerate,
        samplerate=reader.samplerate,
        channels=reader.channels,
    )
