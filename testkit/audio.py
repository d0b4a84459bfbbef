"""Audio to upload and to separate, and other files to upload (plain functions; the demo
model and the settings around it are fixtures in tests/conftest.py).

Audio is written for real: numpy samples, soundfile for wav/flac/ogg, lameenc for mp3.
Keep mp3s at least a second long: sphn cannot open an mp3 of only a few frames.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import lameenc
import numpy as np
import soundfile

FORMATS = ("wav", "flac", "ogg", "mp3")
SAMPLERATE = 44100


def tones(seconds: float, samplerate: int = SAMPLERATE, channels: int = 2, seed: int = 0) -> np.ndarray:
    """(frames, channels) float32: a different sine per channel plus a little noise."""
    rng = np.random.default_rng(seed)
    frames = int(round(seconds * samplerate))
    t = np.arange(frames) / samplerate
    columns = [
        0.25 * np.sin(2 * np.pi * (220 * (index + 1)) * t) + 0.02 * rng.standard_normal(frames)
        for index in range(channels)
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def encode(data: np.ndarray, samplerate: int, fmt: str = "wav", mp3_kbps: int = 192) -> bytes:
    """(frames, channels) float samples as the bytes of a `fmt` file (wav and flac 16-bit)."""
    if fmt == "mp3":
        encoder = lameenc.Encoder()
        encoder.set_bit_rate(mp3_kbps)
        encoder.set_in_sample_rate(samplerate)
        encoder.set_channels(data.shape[1])
        encoder.set_quality(7)
        encoder.silence()
        pcm = (np.clip(data, -1, 1) * 32767).astype("<i2")
        return encoder.encode(pcm.tobytes()) + encoder.flush()
    if fmt == "ogg":
        return _soundfile_bytes(data, samplerate, "OGG", "VORBIS")
    if fmt in ("wav", "flac"):
        return _soundfile_bytes(data, samplerate, fmt.upper(), "PCM_16")
    raise ValueError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def wav(data: np.ndarray, samplerate: int = SAMPLERATE, subtype: str = "PCM_16") -> bytes:
    """(frames, channels) float samples as a wav of `subtype` (e.g. FLOAT, which may go past 1.0)."""
    return _soundfile_bytes(data, samplerate, "WAV", subtype)


def _soundfile_bytes(data: np.ndarray, samplerate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, data, samplerate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def write_audio(path: Path, data: np.ndarray, samplerate: int) -> Path:
    """Write samples in the format the suffix names (anything else: wav)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    path.write_bytes(encode(data, samplerate, fmt if fmt in FORMATS else "wav"))
    return path


def tone_bytes(
    seconds: float = 2.0, samplerate: int = SAMPLERATE, channels: int = 2, fmt: str = "wav", mp3_kbps: int = 192
) -> bytes:
    return encode(tones(seconds, samplerate, channels), samplerate, fmt, mp3_kbps)


def make_song(folder: Path, name="song.wav", seconds=2.0, samplerate=SAMPLERATE, channels=2) -> Path:
    return write_audio(Path(folder) / name, tones(seconds, samplerate, channels), samplerate)


def write_wav(path: Path, seconds: float, samplerate: int = SAMPLERATE) -> Path:
    return write_audio(path, tones(seconds, samplerate), samplerate)


def read_audio(data: bytes) -> tuple[np.ndarray, int]:
    """(frames, channels) samples and the samplerate of an encoded file."""
    samples, samplerate = soundfile.read(io.BytesIO(data), always_2d=True)
    return samples, samplerate


def write_test_audio(path: Path, seconds: float, *, samplerate: int = SAMPLERATE, seed: int = 0) -> Path:
    """A seeded stereo 16-bit wav, written in 10 s blocks (an hour needs no hour in memory):
    a few slowly swelling partials per channel, a pulse every half second and a little noise,
    so every stem of an untrained model gets something to chew on. Kept if it exists."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.partial")
    rng = np.random.default_rng(seed)
    partials = rng.uniform(55, 2000, size=(2, 6))
    frames = int(round(seconds * samplerate))
    block = 10 * samplerate
    with soundfile.SoundFile(temp, "w", samplerate=samplerate, channels=2, subtype="PCM_16", format="WAV") as out:
        for start in range(0, frames, block):
            t = np.arange(start, min(start + block, frames)) / samplerate
            swell = 0.5 + 0.5 * np.sin(2 * np.pi * 0.05 * t)
            pulse = np.exp(-40 * (t % 0.5))
            columns = []
            for channel in range(2):
                partial_sum = sum(np.sin(2 * np.pi * f * t) for f in partials[channel]) / len(partials[channel])
                noise = rng.standard_normal(len(t))
                columns.append(0.3 * swell * partial_sum + 0.2 * pulse * noise + 0.02 * noise)
            out.write(np.stack(columns, axis=1).astype(np.float32))
    os.replace(temp, path)
    return path


def png_bytes(size=(8, 8)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def files_under(folder: Path) -> list[Path]:
    folder = Path(folder)
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


MP3_BITRATES_KBPS = {
    "1": (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    "2": (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
MP3_SAMPLERATES = {0b11: (44100, 48000, 32000), 0b10: (22050, 24000, 16000), 0b00: (11025, 12000, 8000)}


def mp3_claiming_seconds(mp3: bytes, seconds: float) -> bytes:
    """`mp3` (layer III, as lameenc writes it) behind a first frame whose Xing tag says it holds
    `seconds` of audio: the frame count decoders take the duration from, whatever follows. The
    tag frame has the stream's own MPEG version, rate, bitrate and channel mode."""
    import struct

    header = mp3[:4]
    assert header[0] == 0xFF and header[1] & 0xE0 == 0xE0, "not an MPEG audio frame"
    version = (header[1] >> 3) & 0b11
    mpeg1 = version == 0b11
    bitrate = MP3_BITRATES_KBPS["1" if mpeg1 else "2"][header[2] >> 4] * 1000
    samplerate = MP3_SAMPLERATES[version][(header[2] >> 2) & 0b11]
    mono = header[3] >> 6 == 0b11
    side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    samples_per_frame = 1152 if mpeg1 else 576
    length = (144 if mpeg1 else 72) * bitrate // samplerate
    frame = bytearray(length)
    frame[:4] = bytes([header[0], header[1] | 0x01, header[2] & ~0x02 & 0xFF, header[3]])  # no CRC, no padding
    frames = round(seconds * samplerate / samples_per_frame)
    frame[4 + side_info : 4 + side_info + 12] = b"Xing" + struct.pack(">II", 1, frames)
    return bytes(frame) + mp3


def flac_claiming_samples(flac: bytes, claimed_samples: int) -> bytes:
    """A FLAC file whose STREAMINFO says it holds `claimed_samples` samples (0: unknown)."""
    assert flac[:4] == b"fLaC"
    # STREAMINFO starts at byte 8; its total-samples field is the low 36 bits of bytes 21..25.
    head = int.from_bytes(flac[21:26], "big")
    patched = (head & ~((1 << 36) - 1)) | claimed_samples
    return flac[:21] + patched.to_bytes(5, "big") + flac[26:]
