"""The separation engine: a thin wrapper around demucs's own code paths.

Its only input is a file path and options, its only output is files and a progress
callback, so it runs (and is tested and benchmarked) without Django; this module imports
nothing from Django.

Fork safety. django-q2 forks its workers from the cluster process, and once a process has
run any multi-threaded torch operation, a child it forks hangs on its first torch
operation. So this module imports only numpy, sphn and the standard library at import time;
torch, demucs, julius, lameenc, soundfile and Pillow are imported inside the functions that
need them, and nothing runs torch work at import time. The web process only calls
`probe_audio` and `model_is_installed`, which never import torch. `load_model`,
`resolve_device` and `separate` belong in the worker (after the fork): they import torch,
may query CUDA and set torch's thread count.

Formats. Input is whatever sphn decodes (wav, mp3, flac, ogg/vorbis, ...; there is no
ffmpeg fallback). Output is wav (16-bit PCM), mp3 (320 kbps, LAME via lameenc) or flac
(16-bit, via soundfile because demucs's flac writer needs ffmpeg), each at the input's
samplerate and length, mono for a mono input and stereo otherwise. Inputs above 48 kHz are
written at the model's rate (44.1 kHz): nothing the model makes lies above that, and storage
stays bounded by the length paid for. LAME only encodes 8-48 kHz at its standard rates, so an
mp3 at a non-standard rate is written at the next standard rate above it (37.8 kHz -> 44.1
kHz); `SeparationResult` reports what was written.
An mp3 decoded again is longer than what was encoded (LAME's encoder delay and frame
padding, no gapless header): ~1-2 frames of 1152 samples, mostly leading silence.

Streaming. `separate` holds about one segment of audio, whatever the track's length: it reads
the input twice, window by window (sphn decodes a time range; windows are joined sample-exactly,
see _InputReader): first for the mix's length, mean and standard deviation (demucs normalises
the whole mix), then to run demucs's own arithmetic incrementally: julius's resampling, the
split into overlapping segments with their triangle weights, the random shifts (Python's
`random`, drawn in apply_model's order), the bag's weights, and every (bag member, shift) pass
in lockstep. The result equals demucs.api.Separator.separate_tensor's (within float rounding).
Chunks run one at a time on all of the worker's cores (see _configure_torch for what is
faster than upstream on a CPU).
Finished stems go at the output rate to raw float32 files beside the outputs (removed at the
end), because save_audio's clip="rescale" divides by max(1.01 * peak, 1) over the whole stem;
each is then encoded from its file block by block.

Bags. Members whose weights are zero for every stem the job needs do not run (a two-stem job on
htdemucs_ft runs its vocals model only). no_STEM is then the mix minus STEM (demucs's
`--other-method minus`, at the model's rate); when every source is computed anyway (a single
model, or a bag whose members all run) it is the sum of the other sources (`--other-method add`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sphn

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("wav", "mp3", "flac")
MIN_SECONDS = 0.1  # shorter inputs break demucs's chunking (and are not songs)
MP3_BITRATE = 320
# Stems are written at the input's rate up to this; a higher input's stems at the model's rate.
MAX_OUTPUT_SAMPLERATE = 48000
# Sample rates LAME can write (MPEG-1, -2 and -2.5 layer III).
MP3_SAMPLERATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
WAVEFORM_SIZE = (1000, 120)  # width, height in pixels
WAVEFORM_COLOR = (0x5B, 0x3D, 0xF5, 255)
WAVEFORM_MIN_PEAK = 0.05  # quieter stems are drawn at most 20 times larger
# Share of the progress range the model itself takes; writing files takes the rest.
SEPARATION_SHARE = 0.9
# demucs.hf.DEFAULT_NAMESPACE; copied because importing demucs.hf imports torch.
HF_NAMESPACE = "adefossez"


class EngineError(Exception):
    """Base; str(error) is a message fit to show a user."""


class AudioDecodeError(EngineError):
    """The file cannot be opened or decoded as audio."""


class AudioTooLong(EngineError):
    """The decoded audio runs past a limit: the longest song accepted, or what a job was charged for."""

    def __init__(self, *, seconds_at_least: float, message: str = "The audio is longer than allowed."):
        super().__init__(message)
        self.seconds_at_least = seconds_at_least


class ModelUnavailable(EngineError):
    """The model is not installed or cannot be loaded."""


class SeparationAborted(Exception):
    """Raised from the progress callback to stop a separation; no output is left behind."""


@dataclass(frozen=True)
class AudioInfo:
    duration_seconds: float
    samplerate: int
    channels: int


@dataclass(frozen=True)
class EngineConfig:
    model_repo: Path | None  # local demucs repo folder (.th files and bag .yaml files)
    device: str = "auto"  # "auto" (cuda if available else cpu), "cpu", "cuda", "cuda:N"
    shifts: int = 1
    overlap: float = 0.25
    segment: float | None = None  # None = the model's default
    workers: int = 1  # worker processes sharing this machine's cores


@dataclass(frozen=True)
class SeparationResult:
    stems: dict[str, Path]  # stem name -> audio file, in the model's source order
    waveforms: dict[str, Path]  # stem name -> PNG
    zip_path: Path
    samplerate: int
    channels: int
    frames: int


# ---------------------------------------------------------------------------------------
# Probing (web process: no torch)


def probe_audio(path: Path, *, max_seconds: float | None = None) -> AudioInfo:
    """Samplerate and channels from the file's headers, and the duration by decoding the whole file
    (what the worker will separate): a header's claim (Xing/VBRI frames, FLAC STREAMINFO, WAV or OGG
    sizes, an estimate from a VBR MP3's first frame) is never trusted for price or limits. Decoding
    stops once it passes `max_seconds` (AudioTooLong), so a hostile file costs at most that much.

    Raises AudioDecodeError for anything sphn cannot open or that holds no audio."""
    reader = _InputReader(Path(path))
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


# ---------------------------------------------------------------------------------------
# Models


def _hf_repo_name(name: str) -> str:
    """demucs.hf.hf_repo_name, copied: importing demucs.hf would import torch."""
    if name == "htdemucs":
        return "HTDemucs"
    if name.startswith("htdemucs_"):
        return "HTDemucs-" + name[len("htdemucs_") :]
    return "Demucs-" + name


def _local_signatures(repo: Path) -> set[str]:
    """Signatures demucs.repo.LocalRepo finds in a folder: NAME.th and NAME-<checksum>.th."""
    signatures = set()
    for file in repo.iterdir():
        if file.suffix == ".th":
            signatures.add(file.stem.rsplit("-", 1)[0] if "-" in file.stem else file.stem)
    return signatures


def _bag_members(yaml_path: Path) -> list[str] | None:
    import yaml

    try:
        with open(yaml_path) as file:
            bag = yaml.safe_load(file)
        members = bag["models"]
    except Exception:
        return None
    if not isinstance(members, list) or not members:
        return None
    return [str(member) for member in members]


def _installed_in_repo(name: str, repo: Path) -> bool:
    try:
        if not repo.is_dir():
            return False
        signatures = _local_signatures(repo)
    except OSError:
        return False
    if name in signatures:
        return True
    bag = repo / f"{name}.yaml"
    if not bag.is_file():
        return False
    members = _bag_members(bag)
    return members is not None and all(member in signatures for member in members)


def _installed_in_hf_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    name = name.removeprefix("hf://")
    namespace, _, short = name.rpartition("/")
    repo_id = f"{namespace or HF_NAMESPACE}/{_hf_repo_name(short)}"
    try:
        yaml_path = try_to_load_from_cache(repo_id, f"{short}.yaml")
        if not isinstance(yaml_path, str):
            return False
        members = _bag_members(Path(yaml_path))
        if members is None:
            return False
        return all(isinstance(try_to_load_from_cache(repo_id, f"{sig}.safetensors"), str) for sig in members)
    except Exception:
        return False


def model_is_installed(name: str, model_repo: Path | None) -> bool:
    """True when the weights are on disk: NAME.th / NAME-<checksum>.th or a complete NAME.yaml
    bag in model_repo, or the bag in the HuggingFace cache. No network, no torch."""
    if not name:
        return False
    if model_repo is not None and _installed_in_repo(name, Path(model_repo)):
        return True
    return _installed_in_hf_cache(name)


model_loads = 0  # incremented on every real load; tests and benchmarks read it
_models: dict[tuple[str, str | None, str], object] = {}
_models_lock = threading.Lock()
_torch_configured = False


def resolve_device(preference: str) -> str:
    """ "auto" -> "cuda" when available else "cpu"; "cpu", "cuda", "cuda:N" are checked."""
    import torch

    preference = (preference or "auto").strip().lower()
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", preference)
    if match is None:
        raise EngineError(f"Unknown device {preference!r}: use auto, cpu, cuda or cuda:N.")
    if not torch.cuda.is_available():
        raise EngineError(f"The device {preference!r} was requested but CUDA is not available.")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise EngineError(f"The device {preference!r} does not exist ({torch.cuda.device_count()} GPU(s)).")
    return preference


def _configure_torch(workers: int, device: str) -> None:
    """Once per process: split this machine's cores between the worker processes, and on a CPU
    turn off nn.MultiheadAttention's inference fast path, which computes self-attention with
    explicit bmm and softmax; the regular path uses scaled_dot_product_attention (measured on
    htdemucs with torch 2.13: 11% less time per segment, outputs within 5e-7). Running two
    chunks at once on half the cores each was measured no faster, so chunks run one by one."""
    global _torch_configured
    if _torch_configured:
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, workers)))
    if device == "cpu":
        torch.backends.mha.set_fastpath_enabled(False)
    _torch_configured = True


def load_model(name: str, config: EngineConfig):
    """The demucs model (or bag) `name`, on its device in eval mode; loaded once per process
    for each (name, model_repo, device)."""
    global model_loads
    device = resolve_device(config.device)
    repo = Path(config.model_repo) if config.model_repo is not None else None
    key = (name, str(repo) if repo is not None else None, device)
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            return model
        _configure_torch(config.workers, device)
        try:
            from demucs.pretrained import get_model

            if repo is not None and _installed_in_repo(name, repo):
                model = get_model(name, repo=repo)
            else:
                # The normal demucs way: the HuggingFace hub (its cache when offline), then the
                # legacy download repo. Without network this fails (set HF_HUB_OFFLINE=1 to
                # make it fail at once rather than after the hub's retries).
                model = get_model(name)
            model.to(device)
            model.eval()
        except (Exception, SystemExit) as error:  # demucs calls sys.exit() on some errors
            logger.warning("Could not load the model %r: %r", name, error)
            raise ModelUnavailable(f"The model {name!r} is not available on this server.") from error
        _models[key] = model
        model_loads += 1
        return model


# ---------------------------------------------------------------------------------------
# Separation


def _sub_models(model) -> list:
    from demucs.apply import BagOfModels

    return list(model.models) if isinstance(model, BagOfModels) else [model]


def _effective_segment(model, segment: float | None) -> float | None:
    """The segment to use: None keeps each model's own. A transformer model cannot take a
    segment longer than it was trained on, so a longer setting is capped to the longest
    allowed (demucs's CLI refuses it; a service-wide setting should not break one model)."""
    if segment is None:
        return None
    from demucs.htdemucs import HTDemucs

    limits = [float(sub.segment) for sub in _sub_models(model) if isinstance(sub, HTDemucs)]
    if limits and segment > min(limits):
        logger.info("Segment %.2f s capped to %.2f s for this model.", segment, min(limits))
        return min(limits)
    return segment


# Reading the input, window by window

DECODE_WINDOW_SECONDS = 20.0
# How far from the asked sample a decoder may start after a seek (vorbis: up to a block).
SEEK_SLACK = 8192
ALIGN_ANCHOR = 64
# Share of the model's progress range taken by the first pass (reading the mix for its statistics).
STATISTICS_SHARE = 0.02
ENCODE_BLOCK_FRAMES = 1 << 18
ZIP_BLOCK_BYTES = 1 << 22
# Past this an entry's sizes need zip64 records (and force_zip64 must be said before writing).
ZIP64_THRESHOLD = (1 << 31) - (1 << 26)
DEFLATE_PROBES = 8
DEFLATE_PROBE_BYTES = 1 << 17
DEFLATE_WORTH_RATIO = 0.7


class _InputReader:
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


class _Resampler:
    """julius.resample_frac(x, old_sr, new_sr) over a signal given in consecutive blocks: the same
    kernels, replicate padding at both ends and output length; each output sample depends on the
    input within the kernel's reach only, so the result is the whole-signal one."""

    def __init__(self, old_sr: int, new_sr: int):
        import julius

        self.identity = old_sr == new_sr
        self.inputs = 0
        self.outputs = 0
        self.buffer = None  # the padded input from the next output block on
        if not self.identity:
            resample = julius.ResampleFrac(old_sr, new_sr)
            self.old, self.new, self.width = resample.old_sr, resample.new_sr, resample._width
            self.kernel = resample.kernel

    def _run(self):
        import torch
        import torch.nn.functional as F

        size = self.kernel.shape[-1]
        length = self.buffer.shape[-1]
        blocks = (length - size) // self.old + 1 if length >= size else 0
        if blocks <= 0:
            return self.buffer[..., :0]
        used = self.buffer[..., : (blocks - 1) * self.old + size]
        shape = used.shape[:-1]
        ys = F.conv1d(used.reshape(-1, 1, used.shape[-1]), self.kernel.to(used), stride=self.old)
        self.buffer = self.buffer[..., blocks * self.old :]
        return torch.reshape(ys.transpose(1, 2), (*shape, blocks * self.new))

    def feed(self, x):
        import torch

        self.inputs += x.shape[-1]
        if self.identity or x.shape[-1] == 0:
            self.outputs += x.shape[-1] if self.identity else 0
            return x if self.identity else x[..., :0]
        if self.buffer is None:  # replicate padding on the left, as julius does
            self.buffer = torch.cat([x[..., :1].expand(*x.shape[:-1], self.width), x], dim=-1)
        else:
            self.buffer = torch.cat([self.buffer, x], dim=-1)
        y = self._run()
        self.outputs += y.shape[-1]
        return y

    def finish(self):
        import torch

        if self.identity or self.buffer is None:
            return None
        self.buffer = torch.cat(
            [self.buffer, self.buffer[..., -1:].expand(*self.buffer.shape[:-1], self.width + self.old)], dim=-1
        )
        # julius computes the length in float32: floor(float32(new * length / old)).
        total = int(torch.floor(torch.as_tensor(self.new * self.inputs / self.old)))
        y = self._run()[..., : max(0, total - self.outputs)]
        self.outputs += y.shape[-1]
        return y


def _mix_blocks(reader: _InputReader, model):
    """The mix at the model's samplerate and channel count (Separator._load_audio's
    convert_audio: channels, then julius), block by block."""
    import torch
    from demucs.audio import convert_audio_channels

    resampler = _Resampler(reader.samplerate, model.samplerate)
    for block in reader.blocks():
        y = resampler.feed(convert_audio_channels(torch.from_numpy(block), model.audio_channels))
        if y.shape[-1]:
            yield y
    y = resampler.finish()
    if y is not None and y.shape[-1]:
        yield y


@dataclass(frozen=True)
class _MixStatistics:
    input_frames: int
    frames: int  # at the model's samplerate
    mean: object  # float32 scalar tensors, as Separator.separate_tensor computes them
    std: object


def _mix_statistics(
    reader: _InputReader, model, report: Callable[[float], None], max_seconds: float | None = None
) -> _MixStatistics:
    """First pass: the length of the converted mix, and the mean and (unbiased) standard deviation
    of its channel average, accumulated in float64 block by block (Chan et al.). Stops with
    AudioTooLong past `max_seconds`, before anything is separated."""
    import torch

    count, mean, m2 = 0, 0.0, 0.0
    seconds = max_seconds if max_seconds is not None else reader.duration
    expected = max(1.0, seconds * reader.samplerate)
    limit = None if max_seconds is None else int(max_seconds * reader.samplerate)
    for block in _mix_blocks(reader, model):
        if limit is not None and reader.frames_read > limit:
            raise AudioTooLong(
                seconds_at_least=reader.frames_read / reader.samplerate,
                message="The file holds more audio than was measured when it was uploaded.",
            )
        ref = block.mean(0).double()
        size = ref.numel()
        block_mean = float(ref.mean())
        block_m2 = float(((ref - block_mean) ** 2).sum())
        delta = block_mean - mean
        total = count + size
        mean += delta * size / total
        m2 += block_m2 + delta * delta * count * size / total
        count = total
        report(min(reader.frames_read / expected, 1.0))
    std = math.sqrt(m2 / (count - 1)) if count > 1 else math.nan
    return _MixStatistics(
        input_frames=reader.frames_read,
        frames=count,
        mean=torch.tensor(mean, dtype=torch.float32),
        std=torch.tensor(std, dtype=torch.float32) + 1e-8,
    )


class _Mix:
    """The converted mix through a sliding window over a second read of the file."""

    def __init__(self, blocks, stats: _MixStatistics, channels: int):
        import torch

        self.blocks = blocks
        self.stats = stats
        self.start = 0
        self.data = torch.zeros(channels, 0)

    def _ensure(self, end: int) -> None:
        import torch

        end = min(end, self.stats.frames)
        pieces = [self.data]
        have = self.start + self.data.shape[-1]
        while have < end:
            block = next(self.blocks, None)
            if block is None:
                raise AudioDecodeError("The file changed while it was being read.")
            pieces.append(block)
            have += block.shape[-1]
        if len(pieces) > 1:
            self.data = torch.cat(pieces, dim=-1)

    def raw(self, start: int, end: int):
        self._ensure(end)
        return self.data[..., start - self.start : end - self.start]

    def normalised(self, start: int, length: int):
        """(mix - mean) / std over [start, start + length), zeros outside the mix, as apply_model
        sees the normalised mix through TensorChunk.padded."""
        import torch

        out = torch.zeros(self.data.shape[0], length)
        low, high = max(start, 0), min(start + length, self.stats.frames)
        if high > low:
            out[..., low - start : high - start] = (self.raw(low, high) - self.stats.mean) / self.stats.std
        return out

    def discard_before(self, position: int) -> None:
        if position > self.start:
            drop = min(position - self.start, self.data.shape[-1])
            self.data = self.data[..., drop:]
            self.start += drop


class _Pass:
    """One apply_model pass of one model over the (shifted) mix: demucs's split arithmetic,
    chunk by chunk. Pass position t is mix position t + base (base < 0: the shift's zero prefix)."""

    def __init__(self, *, member: int, model, base: int, frames: int, segment, overlap: float, sources: int):
        import torch

        self.member = member
        self.model = model
        self.segment = segment
        self.base = base
        self.length = frames - base
        seconds = segment if segment is not None else model.segment
        self.segment_length = int(model.samplerate * seconds)
        self.stride = int((1 - overlap) * self.segment_length)
        self.offsets = range(0, self.length, self.stride)
        half = self.segment_length // 2
        weight = torch.cat([torch.arange(1, half + 1), torch.arange(self.segment_length - half, 0, -1)])
        self.weight = weight / weight.max()  # transition_power 1
        self.out = torch.zeros(sources, model.audio_channels, 0)
        self.sum_weight = torch.zeros(0)
        self.start = 0  # pass position of self.out[..., 0]
        self.final = []  # finished output in mix positions, from the combiner's position on
        self.final_end = 0  # mix position up to which output is finished

    def chunk(self, index: int) -> tuple[int, int]:
        """(first mix position the model sees, how many) for chunk `index`: TensorChunk.padded."""
        from demucs.htdemucs import HTDemucs

        offset = self.offsets[index]
        length = min(self.segment_length, self.length - offset)
        if isinstance(self.model, HTDemucs) and self.segment is not None:
            valid = int(self.segment * self.model.samplerate)
        elif hasattr(self.model, "valid_length"):
            valid = self.model.valid_length(length)
        else:
            valid = length
        return self.base + offset - (valid - length) // 2, valid

    def add(self, index: int, out) -> None:
        """Adds chunk `index`'s output (sources, channels, length), center-trimmed; positions before
        the next chunk are then finished."""
        import torch

        offset = self.offsets[index]
        length = out.shape[-1]
        missing = offset + length - (self.start + self.out.shape[-1])
        if missing > 0:
            self.out = torch.cat([self.out, self.out.new_zeros(*self.out.shape[:-1], missing)], dim=-1)
            self.sum_weight = torch.cat([self.sum_weight, self.sum_weight.new_zeros(missing)])
        at = offset - self.start
        self.out[..., at : at + length] += self.weight[:length] * out
        self.sum_weight[at : at + length] += self.weight[:length]
        done = (self.offsets[index + 1] if index + 1 < len(self.offsets) else self.length) - self.start
        finished = self.out[..., :done] / self.sum_weight[:done]
        self.out, self.sum_weight = self.out[..., done:], self.sum_weight[done:]
        first = self.start + self.base  # mix position of finished[..., 0]
        self.start += done
        if first < 0:  # the shift's zero prefix is dropped
            finished = finished[..., -first:]
        if finished.shape[-1]:
            self.final.append(finished)
            self.final_end = self.start + self.base

    def take(self, count: int):
        import torch

        whole = torch.cat(self.final, dim=-1) if len(self.final) > 1 else self.final[0]
        self.final = [whole[..., count:]] if whole.shape[-1] > count else []
        return whole[..., :count].clone()


@dataclass(frozen=True)
class _Plan:
    members: list[int]  # bag members that run
    weights: list[list[float]] | None  # the bag's weights; None for a single model
    minus: bool  # two stems: no_STEM = mix - STEM (else the sum of the other sources)


def _plan(model, two_stems: str | None) -> _Plan:
    """Which bag members run: those with a non-zero weight for a stem the job needs. When that
    leaves some out, the other sources are incomplete and no_STEM is the mix minus STEM."""
    from demucs.apply import BagOfModels

    if not isinstance(model, BagOfModels):
        return _Plan(members=[0], weights=None, minus=False)
    weights = [list(weight) for weight in model.weights]
    every = [index for index, weight in enumerate(weights) if any(value != 0 for value in weight)]
    if two_stems is None:
        return _Plan(members=every, weights=weights, minus=False)
    stem = list(model.sources).index(two_stems)
    needed = [index for index, weight in enumerate(weights) if weight[stem] != 0]
    return _Plan(members=needed, weights=weights, minus=needed != every)


def _passes(model, plan: _Plan, *, frames: int, config: EngineConfig, segment) -> list[_Pass]:
    """apply_model's passes, with its random shifts drawn in its order (every bag member's, even
    the ones that do not run, so the others get the shifts demucs would give them)."""
    import random

    passes = []
    for member, sub in enumerate(_sub_models(model)):
        bases = [0]
        if config.shifts:
            max_shift = int(0.5 * sub.samplerate)
            bases = [random.randint(0, max_shift) - max_shift for _ in range(config.shifts)]
        if member not in plan.members:
            continue
        for base in bases:
            passes.append(
                _Pass(
                    member=member,
                    model=sub,
                    base=base,
                    frames=frames,
                    segment=segment,
                    overlap=config.overlap,
                    sources=len(model.sources),
                )
            )
    return passes


def _combine(passes: list[_Pass], count: int, *, plan: _Plan, shifts: int, stats: _MixStatistics):
    """The next `count` finished positions of every pass -> the sources [S, C, count], as
    apply_model averages shifts and weighs bag members, and separate_tensor scales back."""
    estimates = 0.0
    totals = [0.0] * passes[0].out.shape[0]
    if plan.weights is not None:
        for weight in plan.weights:
            for k, value in enumerate(weight):
                totals[k] += value
    for member in plan.members:
        mine = [one for one in passes if one.member == member]
        if shifts:
            out = 0.0
            for one in mine:
                out += one.take(count)
            out /= shifts
        else:
            out = mine[0].take(count)
        if plan.weights is None:
            estimates = out
            continue
        for k, value in enumerate(plan.weights[member]):
            out[k] *= value
        estimates += out
    if plan.weights is not None:
        for k in range(estimates.shape[0]):
            estimates[k] /= totals[k]
    return estimates * stats.std + stats.mean


def _forward(model, mix, length: int, device: str):
    """The model on one padded chunk [C, T]: the output center-trimmed to `length`, on the CPU."""
    import torch
    from demucs.utils import center_trim

    with torch.inference_mode():
        out = model(mix[None].to(device))
    return center_trim(out, length)[0].to("cpu")


def warm_up(name: str, config: EngineConfig) -> None:
    """Load the model and run each of its members once on a segment of silence: torch's first call
    sets up its kernels (seconds on a CPU), which the first job would otherwise pay."""
    import torch

    model = load_model(name, config)
    device = resolve_device(config.device)
    segment = _effective_segment(model, config.segment)
    for sub in _sub_models(model):
        length = int(sub.samplerate * float(segment if segment is not None else sub.segment))
        _forward(sub, torch.zeros(sub.audio_channels, length), length, device)


def _output_samplerate(samplerate: int, output_format: str, model_samplerate: int) -> int:
    """The input's rate up to MAX_OUTPUT_SAMPLERATE; above it, the model's own (nothing the model
    wrote lies above its Nyquist frequency, and a 384 kHz input would make stems 8x larger for
    nothing). MP3 only takes LAME's standard rates."""
    if samplerate > MAX_OUTPUT_SAMPLERATE:
        samplerate = model_samplerate
    if output_format != "mp3" or samplerate in MP3_SAMPLERATES:
        return samplerate
    return next((rate for rate in MP3_SAMPLERATES if rate >= samplerate), MP3_SAMPLERATES[-1])


class _WaveformPeaks:
    """Per pixel column, the min and max of a mono signal given block by block; column c spans
    frames [c * frames // width, (c + 1) * frames // width), as numpy's reduceat splits it."""

    def __init__(self, frames: int, width: int):
        self.frames = frames
        self.starts = np.minimum((np.arange(width) * frames) // width, max(frames - 1, 0))
        self.low = np.full(width, np.inf, dtype=np.float32)
        self.high = np.full(width, -np.inf, dtype=np.float32)
        self.position = 0

    def add(self, samples: np.ndarray) -> None:
        begin, end = self.position, self.position + samples.shape[-1]
        self.position = end
        if end <= begin:
            return
        first = int(np.searchsorted(self.starts, begin, side="right")) - 1
        last = int(np.searchsorted(self.starts, end - 1, side="right")) - 1
        # Columns that start at the same frame (fewer frames than columns) each hold that one frame.
        while first > 0 and self.starts[first - 1] == self.starts[first]:
            first -= 1
        columns = slice(first, last + 1)
        local = np.maximum(self.starts[columns] - begin, 0)
        self.low[columns] = np.minimum(self.low[columns], np.minimum.reduceat(samples, local))
        self.high[columns] = np.maximum(self.high[columns], np.maximum.reduceat(samples, local))


def _write_waveform(low: np.ndarray, high: np.ndarray, path: Path) -> None:
    """A 1000x120 PNG from the per-column min/max of the mono mix-down, #5b3df5 on transparent;
    scaled to the stem's own peak, as players draw it, so quiet stems show their shape, but
    near-silence is not blown up into a full-height band of noise."""
    from PIL import Image

    width, height = WAVEFORM_SIZE
    scale = np.float32(max(float(max(np.abs(low).max(initial=0.0), np.abs(high).max(initial=0.0))), WAVEFORM_MIN_PEAK))
    low, high = low / scale, high / scale
    middle = (height - 1) / 2
    top = np.floor(middle - np.clip(high, -1, 1) * middle).astype(int)
    bottom = np.ceil(middle - np.clip(low, -1, 1) * middle).astype(int)
    rows = np.arange(height)[:, None]
    pixels = np.zeros((height, width, 4), dtype=np.uint8)
    pixels[(rows >= top[None, :]) & (rows <= bottom[None, :])] = WAVEFORM_COLOR
    Image.fromarray(pixels, "RGBA").save(path, format="PNG", optimize=False)


class _StemWriter:
    """A stem at the model's rate, block by block -> `channels` channels at `samplerate`, exactly
    `frames` long, as interleaved float32 in a raw file; with its peak and waveform columns."""

    def __init__(self, raw: Path, *, model_samplerate: int, samplerate: int, channels: int, frames: int):
        self.raw = raw
        self.file = open(raw, "wb")  # noqa: SIM115 - closed in finish(); the file is removed on failure
        self.resampler = _Resampler(model_samplerate, samplerate)
        self.channels = channels
        self.frames = frames
        self.written = 0
        self.peak = 0.0
        self.waveform = _WaveformPeaks(frames, WAVEFORM_SIZE[0])

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


def _wav_header(channels: int, samplerate: int, frames: int) -> bytes:
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


def _encode(
    writer: _StemWriter, path: Path, samplerate: int, output_format: str, tick: Callable[[float], None]
) -> None:
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
            file.write(_wav_header(channels, samplerate, frames))
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


def _worth_deflating(path: Path) -> bool:
    """Whether a stem compresses well enough to deflate it in the zip: judged on a few slices.
    Music in 16-bit PCM deflates by about 5% at 56 MB/s (not worth the time on a GPU worker);
    silence and near-silence (a stem the song hardly has) by over 99%."""
    import zlib

    size = path.stat().st_size
    with open(path, "rb") as file:
        sample = b""
        for index in range(DEFLATE_PROBES):
            file.seek(size * index // DEFLATE_PROBES)
            sample += file.read(DEFLATE_PROBE_BYTES)
    return bool(sample) and len(zlib.compress(sample, 1)) < DEFLATE_WORTH_RATIO * len(sample)


def _write_zip(temp: Path, stem_paths: dict[str, Path], *, folder: str, tick: Callable[[float], None]) -> None:
    """The stems in one zip, copied in blocks (tick(fraction) after each, as the job's heartbeat).
    WAV stems that compress well are deflated; the others (and mp3/flac) are stored."""
    total = sum(path.stat().st_size for path in stem_paths.values()) or 1
    done = 0
    with zipfile.ZipFile(temp, "w", allowZip64=True) as bundle:
        for path in stem_paths.values():
            size = path.stat().st_size
            # open() takes the method and level of the archive's current settings for the next entry.
            deflate = path.suffix == ".wav" and _worth_deflating(path)
            bundle.compression = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            bundle.compresslevel = 1 if deflate else None
            entry = bundle.open(f"{folder}/{path.name}", "w", force_zip64=size > ZIP64_THRESHOLD)
            with open(path, "rb") as source, entry as target:
                while block := source.read(ZIP_BLOCK_BYTES):
                    target.write(block)
                    done += len(block)
                    tick(done / total)


def _safe_archive_name(name: str) -> str:
    name = re.sub(r"[\x00-\x1f/\\:]+", "_", name or "").strip(" .")
    return name[:120] or "stems"


class _Outputs:
    """Files written through temporary names in one folder; all removed again on failure."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.created: list[Path] = []

    def temp_path(self, final: Path) -> Path:
        handle, name = tempfile.mkstemp(dir=self.folder, prefix=".partial-", suffix=f"-{final.name}")
        os.close(handle)
        os.chmod(name, 0o644)  # mkstemp makes it private; the web server may run as another user
        path = Path(name)
        self.created.append(path)
        return path

    def commit(self, temp: Path, final: Path) -> Path:
        os.replace(temp, final)
        self.created.remove(temp)
        self.created.append(final)
        return final

    def discard(self, temp: Path) -> None:
        temp.unlink(missing_ok=True)
        self.created.remove(temp)

    def remove_all(self) -> None:
        for path in self.created:
            path.unlink(missing_ok=True)
        self.created.clear()


class _Progress:
    """A monotonic fraction: the first pass, then chunks done over all the passes that run (in
    [0, share) together), then the files. 1.0 is reported once everything is written."""

    def __init__(self, report: Callable[[float], None] | None, share: float):
        self.report = report
        self.share = share
        self.last = 0.0

    def emit(self, fraction: float) -> None:
        if self.report is None or fraction <= self.last:
            return
        self.last = fraction
        self.report(fraction)

    def reading(self, fraction: float) -> None:
        self.emit(STATISTICS_SHARE * fraction * self.share)

    def separating(self, fraction: float) -> None:
        self.emit((STATISTICS_SHARE + (1 - STATISTICS_SHARE) * fraction) * self.share * 0.999)


def _stem_names(sources: list[str], two_stems: str | None) -> list[str]:
    return list(sources) if two_stems is None else [two_stems, f"no_{two_stems}"]


def _stems(sources, names: list[str], model_sources: list[str], two_stems: str | None, plan: _Plan, mix):
    """The stems from the sources [S, C, T]: all of them, or (STEM, no_STEM) where no_STEM adds
    the other sources (demucs's --other-method add) or, when they were not all computed, is the
    mix minus STEM (--other-method minus)."""
    import torch

    if two_stems is None:
        return dict(zip(names, sources, strict=True))
    index = model_sources.index(two_stems)
    selected = sources[index]
    if plan.minus:
        rest = mix - selected
    else:
        rest = torch.zeros_like(selected)
        for k, source in enumerate(sources):
            if k != index:
                rest += source
    return {two_stems: selected, f"no_{two_stems}": rest}


def _separate_into(
    writers: dict[str, _StemWriter],
    *,
    reader: _InputReader,
    model,
    stats: _MixStatistics,
    plan: _Plan,
    passes: list[_Pass],
    config: EngineConfig,
    device: str,
    two_stems: str | None,
    tracker: _Progress,
) -> None:
    """Second pass: every pass of every running model over the mix in lockstep, chunk by chunk
    in order of position, so only about a segment of audio is held; finished positions are
    combined and handed to the writers."""
    import heapq

    mix = _Mix(_mix_blocks(reader, model), stats, model.audio_channels)
    queue = [(one.chunk(0)[0], number, 0) for number, one in enumerate(passes) if len(one.offsets)]
    heapq.heapify(queue)
    total = sum(len(one.offsets) for one in passes)
    done = 0
    combined = 0
    names = list(writers)
    while queue:
        _, number, index = heapq.heappop(queue)
        one = passes[number]
        start, length = one.chunk(index)
        chunk_length = min(one.segment_length, one.length - one.offsets[index])
        one.add(index, _forward(one.model, mix.normalised(start, length), chunk_length, device))
        if index + 1 < len(one.offsets):
            heapq.heappush(queue, (one.chunk(index + 1)[0], number, index + 1))
        done += 1
        ready = min(p.final_end for p in passes)
        if ready > combined:
            sources = _combine(passes, ready - combined, plan=plan, shifts=config.shifts, stats=stats)
            raw = mix.raw(combined, ready) if plan.minus else None
            stems = _stems(sources, names, list(model.sources), two_stems, plan, raw)
            for name, writer in writers.items():
                writer.add(stems[name])
            combined = ready
        mix.discard_before(min([combined] + [item[0] for item in queue]))
        tracker.separating(done / total)
    if combined != stats.frames:
        raise EngineError("The separation did not cover the whole track.")


def separate(
    *,
    input_path: Path,
    output_dir: Path,
    model_name: str,
    config: EngineConfig,
    two_stems: str | None = None,
    output_format: str = "wav",
    progress: Callable[[float], None] | None = None,
    archive_name: str = "stems",
    max_seconds: float | None = None,
) -> SeparationResult:
    """Separate `input_path` into stems in `output_dir`: one audio file and one waveform PNG
    per stem, and a zip of the audio files. Never separates past `max_seconds` of audio (what the
    job was charged for): a longer file raises AudioTooLong before any separation. Raises
    AudioDecodeError, ModelUnavailable or EngineError (messages fit for users), or
    SeparationAborted when `progress` raised it; on any failure no output file is left behind."""
    if output_format not in OUTPUT_FORMATS:
        raise EngineError(f"Unknown output format {output_format!r}: use {', '.join(OUTPUT_FORMATS)}.")
    if progress is not None:
        progress(0.0)  # a heartbeat before decoding and loading the model, which can take a while
    reader = _InputReader(Path(input_path))
    model = load_model(model_name, config)
    if two_stems is not None and two_stems not in model.sources:
        raise EngineError(
            f"The model {model_name!r} has no stem {two_stems!r}; choose one of: {', '.join(model.sources)}."
        )
    device = resolve_device(config.device)
    segment = _effective_segment(model, config.segment)
    tracker = _Progress(progress, SEPARATION_SHARE)

    stats = _mix_statistics(reader, model, tracker.reading, max_seconds)
    if stats.input_frames == 0:
        raise AudioDecodeError("The file contains no audio data.")
    if stats.input_frames < MIN_SECONDS * reader.samplerate:
        raise AudioDecodeError(f"The audio is too short to separate (under {MIN_SECONDS:g} s).")
    plan = _plan(model, two_stems)
    passes = _passes(model, plan, frames=stats.frames, config=config, segment=segment)

    out_samplerate = _output_samplerate(reader.samplerate, output_format, model.samplerate)
    out_channels = 1 if reader.channels == 1 else 2
    in_frames = stats.input_frames
    out_frames = (
        in_frames if out_samplerate == reader.samplerate else round(in_frames * out_samplerate / reader.samplerate)
    )

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    archive = _safe_archive_name(archive_name)
    outputs = _Outputs(output_dir)
    writers: dict[str, _StemWriter] = {}
    stem_paths: dict[str, Path] = {}
    waveform_paths: dict[str, Path] = {}
    try:
        for name in _stem_names(model.sources, two_stems):
            writers[name] = _StemWriter(
                outputs.temp_path(output_dir / f"{name}.f32"),
                model_samplerate=model.samplerate,
                samplerate=out_samplerate,
                channels=out_channels,
                frames=out_frames,
            )
        _separate_into(
            writers,
            reader=reader,
            model=model,
            stats=stats,
            plan=plan,
            passes=passes,
            config=config,
            device=device,
            two_stems=two_stems,
            tracker=tracker,
        )
        for writer in writers.values():
            writer.finish()
        # The files' share of the progress range: 90% for the stems (encoding and waveforms), 10% the zip.
        files_share = 1 - SEPARATION_SHARE
        for index, (name, writer) in enumerate(writers.items()):

            def encoded(fraction: float, index: int = index) -> None:
                tracker.emit(SEPARATION_SHARE + files_share * 0.9 * (index + fraction) / len(writers))

            final = output_dir / f"{name}.{output_format}"
            temp = outputs.temp_path(final)
            _encode(writer, temp, out_samplerate, output_format, encoded)
            stem_paths[name] = outputs.commit(temp, final)
            outputs.discard(writer.raw)
            final = output_dir / f"{name}.png"
            temp = outputs.temp_path(final)
            _write_waveform(writer.waveform.low, writer.waveform.high, temp)
            waveform_paths[name] = outputs.commit(temp, final)
        zip_final = output_dir / f"{archive}.zip"
        temp = outputs.temp_path(zip_final)
        _write_zip(
            temp,
            stem_paths,
            folder=archive,
            tick=lambda fraction: tracker.emit(SEPARATION_SHARE + files_share * (0.9 + 0.1 * fraction) * 0.999),
        )
        zip_path = outputs.commit(temp, zip_final)
        tracker.emit(1.0)
    except BaseException:
        for writer in writers.values():
            writer.close()
        outputs.remove_all()
        raise
    return SeparationResult(
        stems=stem_paths,
        waveforms=waveform_paths,
        zip_path=zip_path,
        samplerate=out_samplerate,
        channels=out_channels,
        frames=out_frames,
    )
