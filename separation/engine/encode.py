"""Writing stems: each goes at the output rate to a raw float32 file beside the outputs, then is
encoded from that file block by block, because save_audio's clip="rescale" divides by
max(1.01 * peak, 1) over the whole stem, which is only known at its end.

Formats. wav (16-bit PCM), mp3 (320 kbps, LAME via lameenc) or flac (16-bit, via soundfile
because demucs's flac writer needs ffmpeg), each at the input's samplerate and length, mono for
a mono input and stereo otherwise. Inputs above 48 kHz are written at the model's rate (44.1 kHz):
nothing the model makes lies above that, and storage stays bounded by the length paid for. LAME
only encodes 8-48 kHz at its standard rates, so an mp3 at a non-standard rate is written at the
next standard rate above it (37.8 kHz -> 44.1 kHz); `SeparationResult` reports what was written.
An mp3 decoded again is longer than what was encoded (LAME's encoder delay and frame padding, no
gapless header): ~1-2 frames of 1152 samples, mostly leading silence.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from separation.engine.resample import Resampler
from separation.engine.waveform import WAVEFORM_SIZE, WaveformPeaks

OUTPUT_FORMATS = ("wav", "mp3", "flac")
MP3_BITRATE = 320
# Stems are written at the input's rate up to this; a higher input's stems at the model's rate.
MAX_OUTPUT_SAMPLERATE = 48000
# Sample rates LAME can write (MPEG-1, -2 and -2.5 layer III).
MP3_SAMPLERATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
ENCODE_BLOCK_FRAMES = 1 << 18


def output_samplerate(samplerate: int, output_format: str, model_samplerate: int) -> int:
    """The input's rate up to MAX_OUTPUT_SAMPLERATE; above it, the model's own (nothing the model
    wrote lies above its Nyquist frequency, and a 384 kHz input would make stems 8x larger for
    nothing). MP3 only takes LAME's standard rates."""
    if samplerate > MAX_OUTPUT_SAMPLERATE:
        samplerate = model_samplerate
    if output_format != "mp3" or samplerate in MP3_SAMPLERATES:
        return samplerate
    return next((rate for rate in MP3_SAMPLERATES if rate >= samplerate), MP3_SAMPLERATES[-1])


class StemWriter:
    """A stem at the model's rate, block by block -> `channels` channels at `samplerate`, exactly
    `frames` long, as interleaved float32 in a raw file; with its peak and waveform columns."""

    def __init__(self, raw: Path, *, model_samplerate: int, samplerate: int, channels: int, frames: int):
        self.raw = raw
        self.file = open(raw, "wb")  # noqa: SIM115 - closed in finish(); the file is removed on failure
        self.resampler = Resampler(model_samplerate, samplerate)
        self.channels = channels
        self.frames = frames
        self.written = 0
        self.peak = 0.0
        self.waveform = WaveformPeaks(frames, WAVEFORM_SIZE[0])

    def _write(self, stem) -> None:
        stem = stem[..., : self.frames - self.written]
        if stem.shape[-1] == 0:
            return
        self.peak = max(self.peak, float(stem.abs().max()))
        self.waveform.add(stem.mean(0).numpy().astype(np.float32))
        self.file.write(stem.t().contiguous().numpy().tobytes())
        self.written += stem.shape[-1]

    def add(self, stem) -> None:
        from demucs.audio import convert_audio_channels

        self._write(self.resampler.feed(convert_audio_channels(stem, self.channels)))

    def finish(self) -> None:
        import torch

        rest = self.resampler.finish()
        if rest is not None:
            self._write(rest)
        if self.written < self.frames:
            self._write(torch.zeros(self.channels, self.frames - self.written))
        self.file.close()

    def close(self) -> None:
        self.file.close()


def wav_header(channels: int, samplerate: int, frames: int) -> bytes:
    """demucs.audio.encode_wav's header for 16-bit PCM."""
    import struct

    data_size = frames * channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, samplerate, samplerate * channels * 2, channels * 2, 16)
    riff_size = 4 + (8 + len(fmt)) + (8 + data_size)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
    )


def encode(writer: StemWriter, path: Path, samplerate: int, output_format: str, tick: Callable[[float], None]) -> None:
    """The raw stem -> `path`, as demucs.audio.save_audio writes it (clip="rescale": divided by
    max(1.01 * peak, 1) over the whole stem; 16-bit PCM as _pcm_bytes and i16_pcm convert it;
    mp3 as encode_mp3), block by block; flac through soundfile (demucs's writer needs ffmpeg).
    tick(fraction done) after each block: encoding a long song takes minutes, and the progress
    callback is the job's heartbeat."""
    import torch

    channels, frames = writer.channels, writer.frames
    scale = max(1.01 * torch.tensor(writer.peak, dtype=torch.float32), 1)

    def pcm_blocks():
        done = 0
        with open(writer.raw, "rb") as raw:
            while True:
                data = np.fromfile(raw, dtype=np.float32, count=ENCODE_BLOCK_FRAMES * channels)
                if data.size == 0:
                    return
                wav = torch.from_numpy(data.reshape(-1, channels)) / scale
                yield (wav.clamp(-1, 1).numpy() * (2**15 - 1)).astype("<i2")
                done += data.size // channels
                tick(min(done / max(frames, 1), 1.0))

    if output_format == "wav":
        with open(path, "wb") as file:
            file.write(wav_header(channels, samplerate, frames))
            for pcm in pcm_blocks():
                file.write(pcm.tobytes())
    elif output_format == "mp3":
        import lameenc

        encoder = lameenc.Encoder()
        encoder.set_bit_rate(MP3_BITRATE)
        encoder.set_in_sample_rate(samplerate)
        encoder.set_channels(channels)
        encoder.set_quality(2)  # save_audio's preset
        with open(path, "wb") as file:
            for pcm in pcm_blocks():
                file.write(encoder.encode(pcm.tobytes()))
            file.write(encoder.flush())
    else:
        import soundfile

        with soundfile.SoundFile(
            str(path), "w", samplerate=samplerate, channels=channels, subtype="PCM_16", format="FLAC"
        ) as file:
            for pcm in pcm_blocks():
                file.write(pcm)
