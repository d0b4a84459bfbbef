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
samplerate and frame count, mono for a mono input and stereo otherwise. Exception: LAME
only encodes 8-48 kHz at its standard rates, so for mp3 only, an input above 48 kHz is
written at 48 kHz and an input at a non-standard rate at the next standard rate above it
(e.g. 96 kHz -> 48 kHz, 37.8 kHz -> 44.1 kHz); `SeparationResult` reports what was written.
An mp3 decoded again is longer than what was encoded (LAME's encoder delay and frame
padding, no gapless header): ~1-2 frames of 1152 samples, mostly leading silence.
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


def probe_audio(path: Path) -> AudioInfo:
    """Duration, samplerate and channels from the file's headers, without decoding it all.

    Raises AudioDecodeError for anything sphn cannot open, and for a file that announces
    audio but yields none (e.g. a header with the data cut off)."""
    try:
        reader = sphn.FileReader(str(path))
        duration = float(reader.duration_sec)
        samplerate = int(reader.sample_rate)
        channels = int(reader.channels)
        # Decode a few milliseconds: proves the codec works and the data is really there.
        head = reader.decode(0.0, 0.05)
    except Exception as error:  # sphn raises ValueError/OSError, with Rust's message
        raise AudioDecodeError("The file could not be read as audio.") from error
    if not (math.isfinite(duration) and duration > 0 and samplerate > 0 and channels > 0):
        raise AudioDecodeError("The file contains no audio.")
    if head.ndim != 2 or head.shape[-1] == 0:
        raise AudioDecodeError("The file contains no audio data.")
    return AudioInfo(duration_seconds=duration, samplerate=samplerate, channels=channels)


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
_threads_configured = False


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


def _configure_threads(workers: int) -> None:
    """Split this machine's cores between the worker processes, once per process."""
    global _threads_configured
    if _threads_configured:
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, workers)))
    _threads_configured = True


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
        _configure_threads(config.workers)
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


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(channels, frames) float32 samples and the samplerate; non-finite samples zeroed."""
    try:
        data, samplerate = sphn.read(str(path))
    except Exception as error:
        raise AudioDecodeError("The file could not be decoded as audio.") from error
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0 or int(samplerate) <= 0:
        raise AudioDecodeError("The file contains no audio data.")
    if not np.isfinite(data).all():
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(data), int(samplerate)


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


class _Progress:
    """Turns apply_model's callback dicts into a monotonic fraction in [0, share].

    Work is (bag member, shift) passes, each a run of chunks at rising segment_offset;
    within a pass the fraction is how far the chunks have reached into the audio."""

    def __init__(self, report: Callable[[float], None] | None, model, config: EngineConfig, segment, share: float):
        self.report = report
        self.share = share
        self.passes_per_model = max(1, config.shifts)
        self.strides = []
        for sub in _sub_models(model):
            seconds = float(segment if segment is not None else sub.segment)
            self.strides.append(max(1, int((1 - config.overlap) * int(sub.samplerate * seconds))))
        self.total_passes = len(self.strides) * self.passes_per_model
        self.last = 0.0

    def emit(self, fraction: float) -> None:
        if self.report is None or fraction <= self.last:
            return
        self.last = fraction
        self.report(fraction)

    def __call__(self, info: dict) -> None:
        model_idx = int(info.get("model_idx_in_bag", 0))
        shift_idx = int(info.get("shift_idx", 0))
        length = max(1, int(info.get("audio_length", 1)))
        reached = int(info.get("segment_offset", 0))
        if info.get("state") == "end":
            reached += self.strides[min(model_idx, len(self.strides) - 1)]
        within = min(1.0, reached / length)
        done = (model_idx * self.passes_per_model + shift_idx + within) / self.total_passes
        # Never report the end from here: the caller reports it once everything is written.
        self.emit(min(done, 1.0) * self.share * 0.999)


def _prepare(data: np.ndarray, samplerate: int, model):
    """The mix at the model's samplerate and channel count, as Separator._load_audio does."""
    import torch
    from demucs.audio import convert_audio

    return convert_audio(torch.from_numpy(data), samplerate, model.samplerate, model.audio_channels)


def _run_model(model, wav, *, config: EngineConfig, device: str, callback=None) -> dict:
    """demucs.api.Separator.separate_tensor for an already converted `wav` [C, T]:
    same normalisation, same apply_model call. Returns {source: tensor [C, T]}."""
    from demucs.apply import apply_model

    ref = wav.mean(0)
    mean = ref.mean()
    std = ref.std() + 1e-8
    out = apply_model(
        model,
        ((wav - mean) / std)[None],
        segment=_effective_segment(model, config.segment),
        shifts=config.shifts,
        split=True,
        overlap=config.overlap,
        device=device,
        callback=callback,
        callback_arg={"audio_length": wav.shape[1]},
    )
    out = out * std + mean
    return dict(zip(model.sources, out[0], strict=True))


def _select_stems(sources: dict, two_stems: str | None) -> dict:
    """All sources, or (stem, no_stem) where no_stem adds the others (demucs's --other-method add)."""
    if two_stems is None:
        return dict(sources)
    import torch

    selected = sources[two_stems]
    rest = torch.zeros_like(selected)
    for name, source in sources.items():
        if name != two_stems:
            rest += source
    return {two_stems: selected, f"no_{two_stems}": rest}


def _output_samplerate(samplerate: int, output_format: str) -> int:
    if output_format != "mp3" or samplerate in MP3_SAMPLERATES:
        return samplerate
    return next((rate for rate in MP3_SAMPLERATES if rate >= samplerate), MP3_SAMPLERATES[-1])


def _to_output(stem, model_samplerate: int, samplerate: int, channels: int, frames: int):
    """A stem [C, T] at the model's rate -> `channels` channels at `samplerate`, exactly `frames` long."""
    import julius
    import torch.nn.functional as F
    from demucs.audio import convert_audio_channels

    stem = convert_audio_channels(stem, channels)
    if samplerate != model_samplerate:
        stem = julius.resample_frac(stem, model_samplerate, samplerate)
    if stem.shape[-1] > frames:
        stem = stem[..., :frames]
    elif stem.shape[-1] < frames:
        stem = F.pad(stem, (0, frames - stem.shape[-1]))
    return stem.contiguous()


def _write_audio(stem, path: Path, samplerate: int, output_format: str) -> None:
    """demucs.audio.save_audio semantics (clip="rescale", 16-bit); flac through soundfile."""
    from demucs.audio import prevent_clip, save_audio

    if output_format == "flac":
        import soundfile

        wav = prevent_clip(stem, mode="rescale")
        # The same 16-bit conversion as demucs.audio._pcm_bytes.
        pcm = (wav.clamp(-1, 1).t().contiguous().cpu().numpy() * (2**15 - 1)).astype("<i2")
        soundfile.write(str(path), pcm, samplerate, subtype="PCM_16", format="FLAC")
    else:
        save_audio(stem, path, samplerate, bitrate=MP3_BITRATE, clip="rescale", bits_per_sample=16)


def _waveform_peaks(samples: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel column, the min and max of `samples` (mono) in that column's span."""
    frames = samples.shape[-1]
    starts = np.minimum((np.arange(width) * frames) // width, frames - 1)
    return np.minimum.reduceat(samples, starts), np.maximum.reduceat(samples, starts)


def _write_waveform(stem, path: Path) -> None:
    """A 1000x120 PNG: min/max per column of the mono mix-down, #5b3df5 on transparent."""
    from PIL import Image

    width, height = WAVEFORM_SIZE
    mono = stem.mean(0).cpu().numpy().astype(np.float32)
    # Scaled to the stem's own peak, as players draw it, so quiet stems show their shape;
    # near-silence is not blown up into a full-height band of noise.
    mono /= max(float(np.abs(mono).max(initial=0.0)), WAVEFORM_MIN_PEAK)
    low, high = _waveform_peaks(mono, width)
    middle = (height - 1) / 2
    top = np.floor(middle - np.clip(high, -1, 1) * middle).astype(int)
    bottom = np.ceil(middle - np.clip(low, -1, 1) * middle).astype(int)
    rows = np.arange(height)[:, None]
    pixels = np.zeros((height, width, 4), dtype=np.uint8)
    pixels[(rows >= top[None, :]) & (rows <= bottom[None, :])] = WAVEFORM_COLOR
    Image.fromarray(pixels, "RGBA").save(path, format="PNG", optimize=False)


def _safe_archive_name(name: str) -> str:
    name = re.sub(r"[\x00-\x1f/\\:]+", "_", name or "").strip(" .")
    return name[:120] or "stems"


class _Outputs:
    """Files written through temporary names in one folder; all removed again on failure."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.created: list[Path] = []

    def temp_path(self, final: Path) -> Path:
        # Keep the extension: save_audio chooses the encoder by it.
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

    def remove_all(self) -> None:
        for path in self.created:
            path.unlink(missing_ok=True)
        self.created.clear()


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
) -> SeparationResult:
    """Separate `input_path` into stems in `output_dir`: one audio file and one waveform PNG
    per stem, and a zip of the audio files. Raises AudioDecodeError, ModelUnavailable or
    EngineError (messages fit for users), or SeparationAborted when `progress` raised it;
    on any failure no output file is left behind."""
    if output_format not in OUTPUT_FORMATS:
        raise EngineError(f"Unknown output format {output_format!r}: use {', '.join(OUTPUT_FORMATS)}.")
    if progress is not None:
        progress(0.0)  # a heartbeat before decoding and loading the model, which can take a while
    data, samplerate = _decode(Path(input_path))
    if data.shape[1] < MIN_SECONDS * samplerate:
        raise AudioDecodeError(f"The audio is too short to separate (under {MIN_SECONDS:g} s).")
    model = load_model(model_name, config)
    if two_stems is not None and two_stems not in model.sources:
        raise EngineError(
            f"The model {model_name!r} has no stem {two_stems!r}; choose one of: {', '.join(model.sources)}."
        )
    device = resolve_device(config.device)
    segment = _effective_segment(model, config.segment)
    tracker = _Progress(progress, model, config, segment, SEPARATION_SHARE)

    in_channels, in_frames = data.shape
    wav = _prepare(data, samplerate, model)
    del data
    sources = _run_model(model, wav, config=config, device=device, callback=tracker)
    del wav
    stems = _select_stems(sources, two_stems)
    del sources

    out_samplerate = _output_samplerate(samplerate, output_format)
    out_channels = 1 if in_channels == 1 else 2
    out_frames = in_frames if out_samplerate == samplerate else round(in_frames * out_samplerate / samplerate)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    archive = _safe_archive_name(archive_name)
    outputs = _Outputs(output_dir)
    stem_paths: dict[str, Path] = {}
    waveform_paths: dict[str, Path] = {}
    try:
        for index, (name, stem) in enumerate(stems.items()):
            stem = _to_output(stem, model.samplerate, out_samplerate, out_channels, out_frames)
            final = output_dir / f"{name}.{output_format}"
            temp = outputs.temp_path(final)
            _write_audio(stem, temp, out_samplerate, output_format)
            stem_paths[name] = outputs.commit(temp, final)
            final = output_dir / f"{name}.png"
            temp = outputs.temp_path(final)
            _write_waveform(stem, temp)
            waveform_paths[name] = outputs.commit(temp, final)
            tracker.emit(SEPARATION_SHARE + (1 - SEPARATION_SHARE) * 0.9 * (index + 1) / len(stems))
        zip_final = output_dir / f"{archive}.zip"
        temp = outputs.temp_path(zip_final)
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as bundle:
            for name, path in stem_paths.items():
                bundle.write(path, arcname=f"{archive}/{name}.{output_format}")
        zip_path = outputs.commit(temp, zip_final)
        tracker.emit(1.0)
    except BaseException:
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
