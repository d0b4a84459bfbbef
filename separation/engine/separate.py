"""`separate`: one song into stem files, their waveform pictures and a zip.

It holds about one segment of audio, whatever the track's length: it reads the input twice,
window by window (reader.py), first for the mix's length and statistics (mix.py), then to run
demucs's arithmetic incrementally (apply.py); finished stems go through raw files to the
encoders (encode.py), and every file is written under a temporary name (outputs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from separation.engine.apply import (
    Run,
    effective_segment,
    passes_for,
    plan_for,
    separate_into,
    stem_names,
)
from separation.engine.config import EngineConfig
from separation.engine.encode import OUTPUT_FORMATS, StemWriter, encode, output_samplerate
from separation.engine.errors import AudioDecodeError, EngineError
from separation.engine.mix import mix_statistics, unnormalised
from separation.engine.models import load_model, resolve_device
from separation.engine.outputs import Outputs, safe_archive_name, write_zip
from separation.engine.progress import SEPARATION_SHARE, Progress
from separation.engine.reader import InputReader
from separation.engine.waveform import write_waveform

MIN_SECONDS = 0.1  # shorter inputs break demucs's chunking (and are not songs)


@dataclass(frozen=True)
class SeparationResult:
    stems: dict[str, Path]  # stem name -> audio file, in the model's source order
    waveforms: dict[str, Path]  # stem name -> PNG
    zip_path: Path
    samplerate: int
    channels: int
    frames: int
    model_loaded: bool  # this call loaded the model (it was not in this process's cache)


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
    parts: dict[str, str] | None = None,
) -> SeparationResult:
    """Separate `input_path` into stems in `output_dir`: one audio file and one waveform PNG
    per stem, and a zip of the audio files. Never separates past `max_seconds` of audio (what the
    job was charged for): a longer file raises AudioTooLong before any separation. Raises
    AudioDecodeError, ModelUnavailable or EngineError (messages fit for users), or
    SeparationAborted when `progress` raised it; on any failure no output file is left behind.
    `parts` makes an ensemble: each stem (in that order) from the model named for it, all of them
    run over the mix in lockstep (model_name then only names the ensemble)."""
    if output_format not in OUTPUT_FORMATS:
        raise EngineError(f"Unknown output format {output_format!r}: use {', '.join(OUTPUT_FORMATS)}.")
    if progress is not None:
        progress(0.0)  # a heartbeat before decoding and loading the model, which can take a while
    reader = InputReader(Path(input_path))
    if parts is not None and two_stems is not None:
        if two_stems not in parts:
            raise EngineError(f"The ensemble has no stem {two_stems!r}; choose one of: {', '.join(parts)}.")
        model_name, parts = parts[two_stems], None  # a two-stem job on an ensemble is its part's job
    names = [model_name] if parts is None else list(dict.fromkeys(parts.values()))
    models, model_loaded = {}, False
    for name in names:
        models[name], loaded = load_model(name, config)
        model_loaded = model_loaded or loaded
    model = models[names[0]]
    if two_stems is not None and two_stems not in model.sources:
        raise EngineError(
            f"The model {model_name!r} has no stem {two_stems!r}; choose one of: {', '.join(model.sources)}."
        )
    for stem, name in (parts or {}).items():
        part = models[name]
        same_mix = (part.samplerate, part.audio_channels) == (model.samplerate, model.audio_channels)
        if stem not in part.sources or not same_mix:
            raise EngineError(f"The ensemble cannot take {stem!r} from {name!r}.")
    device = resolve_device(config.device)
    tracker = Progress(progress, SEPARATION_SHARE)

    stats = mix_statistics(reader, model, tracker.reading, max_seconds)
    if stats.input_frames == 0:
        raise AudioDecodeError("The file contains no audio data.")
    if stats.input_frames < MIN_SECONDS * reader.samplerate:
        raise AudioDecodeError(f"The audio is too short to separate (under {MIN_SECONDS:g} s).")
    runs = []
    for name in names:
        part = models[name]
        plan = plan_for(part, two_stems)
        segment = effective_segment(part, config.segment)
        passes = passes_for(part, plan, frames=stats.frames, config=config, segment=segment, device=device)
        take = None if parts is None else [stem for stem, owner in parts.items() if owner == name]
        runs.append(Run(part, plan, passes, stats if plan.normalise else unnormalised(stats), take))

    out_samplerate = output_samplerate(reader.samplerate, output_format, model.samplerate)
    out_channels = 1 if reader.channels == 1 else 2
    in_frames = stats.input_frames
    out_frames = (
        in_frames if out_samplerate == reader.samplerate else round(in_frames * out_samplerate / reader.samplerate)
    )

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    archive = safe_archive_name(archive_name)
    outputs = Outputs(output_dir)
    writers: dict[str, StemWriter] = {}
    stem_paths: dict[str, Path] = {}
    waveform_paths: dict[str, Path] = {}
    try:
        for name in stem_names(model.sources, two_stems) if parts is None else list(parts):
            writers[name] = StemWriter(
                outputs.temp_path(output_dir / f"{name}.f32"),
                model_samplerate=model.samplerate,
                samplerate=out_samplerate,
                channels=out_channels,
                frames=out_frames,
            )
        separate_into(
            writers,
            reader=reader,
            runs=runs,
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
            encode(writer, temp, out_samplerate, output_format, encoded)
            stem_paths[name] = outputs.commit(temp, final)
            outputs.discard(writer.raw)
            final = output_dir / f"{name}.png"
            temp = outputs.temp_path(final)
            write_waveform(writer.waveform, temp)
            waveform_paths[name] = outputs.commit(temp, final)
        zip_final = output_dir / f"{archive}.zip"
        temp = outputs.temp_path(zip_final)
        write_zip(
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
        model_loaded=model_loaded,
    )
