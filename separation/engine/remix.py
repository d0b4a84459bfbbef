"""A custom mix of a job's stems: the sum of the stems times their gains, block by block, so a
two-hour song never sits in memory, encoded in wav, flac or mp3 as the stems were.

Exact by construction: the stems are read as the 16-bit samples they hold (wav, flac; an mp3 as
libsndfile decodes it), summed in float64, rounded to the nearest integer and clipped to the
16-bit range, so loud mixes saturate instead of wrapping around:

    mix[n, c] = clip(rint(sum_i gain_i * stem_i[n, c]), -32768, 32767)

A stem shorter than the others (mp3 frame padding) counts as silence past its end.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from separation.engine.encode import MP3_BITRATE, wav_header

REMIX_BLOCK_FRAMES = 1 << 16
STREAM_CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class RemixShape:
    samplerate: int
    channels: int
    frames: int


def remix_shape(paths: Sequence[Path]) -> RemixShape:
    """The rate and channels the stems share, and the longest stem's length."""
    import soundfile

    infos = [soundfile.info(str(path)) for path in paths]
    if not infos:
        raise ValueError("No stems to mix.")
    if len({(info.samplerate, info.channels) for info in infos}) != 1:
        raise ValueError("The stems differ in sample rate or channels.")
    return RemixShape(infos[0].samplerate, infos[0].channels, max(info.frames for info in infos))


def remix_blocks(paths: Sequence[Path], gains: Sequence[float], shape: RemixShape) -> Iterator[np.ndarray]:
    """(frames, channels) int16 blocks of the mix, REMIX_BLOCK_FRAMES at a time."""
    import soundfile

    files = [soundfile.SoundFile(str(path)) for path in paths]
    try:
        done = 0
        while done < shape.frames:
            size = min(REMIX_BLOCK_FRAMES, shape.frames - done)
            total = np.zeros((size, shape.channels), dtype=np.float64)
            for file, gain in zip(files, gains, strict=True):
                block = file.read(size, dtype="int16", always_2d=True)
                if gain and block.shape[0]:
                    total[: block.shape[0]] += gain * block.astype(np.float64)
            yield np.clip(np.rint(total), -32768, 32767).astype("<i2")
            done += size
    finally:
        for file in files:
            file.close()


def remix_encoded(
    paths: Sequence[Path], gains: Sequence[float], output_format: str, *, temp_dir: Path | None = None
) -> Iterator[bytes]:
    """The mix as the bytes of a `output_format` file, in pieces as they are made. wav and mp3
    go out as they are encoded; flac goes through a temporary file first (libsndfile's FLAC writer
    seeks back to finish its header), removed once read or when the reader stops early. The
    stems are measured now (a bad file raises here, before anything is sent)."""
    if output_format not in ("wav", "mp3", "flac"):
        raise ValueError(f"Unknown output format {output_format!r}")
    shape = remix_shape(paths)
    return _encoded(remix_blocks(paths, gains, shape), shape, output_format, temp_dir)


def _encoded(blocks, shape: RemixShape, output_format: str, temp_dir: Path | None) -> Iterator[bytes]:
    if output_format == "wav":
        yield wav_header(shape.channels, shape.samplerate, shape.frames)
        for block in blocks:
            yield block.tobytes()
    elif output_format == "mp3":
        import lameenc

        encoder = lameenc.Encoder()
        encoder.set_bit_rate(MP3_BITRATE)
        encoder.set_in_sample_rate(shape.samplerate)
        encoder.set_channels(shape.channels)
        encoder.set_quality(2)  # as the stems were encoded (engine/encode.py)
        for block in blocks:
            data = encoder.encode(block.tobytes())
            if data:
                yield bytes(data)
        yield bytes(encoder.flush())
    else:
        yield from _flac_through_file(blocks, shape, temp_dir)


def _flac_through_file(blocks, shape: RemixShape, temp_dir: Path | None) -> Iterator[bytes]:
    import soundfile

    handle, name = tempfile.mkstemp(prefix=".mix-", suffix=".flac", dir=temp_dir)
    os.close(handle)
    try:
        with soundfile.SoundFile(
            name, "w", samplerate=shape.samplerate, channels=shape.channels, subtype="PCM_16", format="FLAC"
        ) as file:
            for block in blocks:
                file.write(block)
        with open(name, "rb") as file:
            while chunk := file.read(STREAM_CHUNK_BYTES):
                yield chunk
    finally:
        os.unlink(name)
