"""The RoFormer family through the streaming engine: its files equal a plain whole-song run of the
Music-Source-Separation-Training project's `demix` (generic mode: chunk size, overlap, border
reflection, fade windows) on the same weights, a small random Mel-Band RoFormer that
`create_demo_model --preset roformer` writes in the MSST format."""

import io
from pathlib import Path

import pytest
import sphn
import torch
import torch.nn.functional as F

from separation import engine
from separation.engine import EngineConfig
from testkit.audio import tones, write_audio
from tests.engine_reference import assert_equal_to_reference

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def roformer_repo(tmp_path_factory) -> Path:
    from django.core.management import call_command

    repo = tmp_path_factory.mktemp("roformer-models")
    call_command("create_demo_model", repo=str(repo), name="demo_roformer", preset="roformer", stdout=io.StringIO())
    return repo


def msst_window(chunk_size: int, fade_size: int):
    """MSST's _getWindowingArray."""
    window = torch.ones(chunk_size)
    window[-fade_size:] = torch.linspace(1, 0, fade_size)
    window[:fade_size] = torch.linspace(0, 1, fade_size)
    return window


def msst_demix(network, mix, *, chunk_size: int, num_overlap: int, stems: int):
    """MSST's demix (utils.py, generic mode, batch size 1) on the whole song [C, T]."""
    fade_size = chunk_size // 10
    step = chunk_size // num_overlap
    border = chunk_size - step
    length_init = mix.shape[-1]
    windowing_array = msst_window(chunk_size, fade_size)
    if length_init > 2 * border and border > 0:
        mix = F.pad(mix, (border, border), mode="reflect")
    result = torch.zeros((stems, *mix.shape))
    counter = torch.zeros((stems, *mix.shape))
    i = 0
    with torch.inference_mode():
        while i < mix.shape[1]:
            part = mix[:, i : i + chunk_size]
            chunk_len = part.shape[-1]
            pad_mode = "reflect" if chunk_len > chunk_size // 2 else "constant"
            part = F.pad(part, (0, chunk_size - chunk_len), mode=pad_mode, value=0)
            x = network(part[None])
            start = i
            i += step
            window = windowing_array.clone()
            if i - step == 0:
                window[:fade_size] = 1
            elif i >= mix.shape[1]:
                window[-fade_size:] = 1
            result[..., start : start + chunk_len] += x[0, ..., :chunk_len] * window[..., :chunk_len]
            counter[..., start : start + chunk_len] += window[..., :chunk_len]
    estimated = torch.nan_to_num(result / counter, nan=0.0)
    if length_init > 2 * border and border > 0:
        estimated = estimated[..., border:-border]
    return estimated


def reference(song: Path, model, *, out_samplerate: int, out_channels: int, frames: int, two_stems=None):
    """MSST's vocals and instrumental (the mix minus the vocals) on the mix converted to the model's
    rate and channels, then written as the engine writes stems (as in test_engine_streaming)."""
    import julius
    from demucs.audio import convert_audio, convert_audio_channels, prevent_clip

    data, samplerate = sphn.read(str(song))
    mix = convert_audio(torch.from_numpy(data), samplerate, model.samplerate, model.audio_channels)
    vocals = msst_demix(model.network, mix, chunk_size=model.chunk_size, num_overlap=model.num_overlap, stems=1)[0]
    sources = {"vocals": vocals, "instrumental": mix - vocals}
    if two_stems == "vocals":
        sources = {"vocals": vocals, "no_vocals": mix - vocals}
    stems = {}
    for name, stem in sources.items():
        stem = julius.resample_frac(convert_audio_channels(stem, out_channels), model.samplerate, out_samplerate)
        stem = F.pad(stem, (0, max(0, frames - stem.shape[-1])))[..., :frames]
        stems[name] = prevent_clip(stem, mode="rescale").numpy()
    return stems


def run(song, out, repo, **options):
    config = EngineConfig(model_repo=repo, device="cpu", shifts=1)  # shifts are Demucs's: ignored here
    return engine.separate(input_path=song, output_dir=out, model_name="demo_roformer", config=config, **options)


def test_it_equals_msst_demix_on_a_stereo_44khz_track_of_several_chunks(tmp_path, roformer_repo):
    # 5.3 s, 2 s chunks, a 1 s step: reflected borders of 1 s and seven chunks, the last one short.
    song = write_audio(tmp_path / "song.wav", tones(5.3, 44100, 2, seed=11), 44100)
    result = run(song, tmp_path / "out", roformer_repo)
    model, _ = engine.load_model("demo_roformer", EngineConfig(model_repo=roformer_repo, device="cpu"))
    expected = reference(song, model, out_samplerate=44100, out_channels=2, frames=result.frames)
    assert_equal_to_reference(result, expected)


def test_it_equals_msst_demix_on_a_mono_48khz_track(tmp_path, roformer_repo):
    # Resampled 48 -> 44.1 kHz on the way in (and the mono mix doubled for a stereo model), back on
    # the way out; 1.7 s is under twice the border, so MSST pads nothing and pads the last chunk.
    song = write_audio(tmp_path / "song.wav", tones(1.7, 48000, 1, seed=12), 48000)
    result = run(song, tmp_path / "out", roformer_repo)
    assert (result.samplerate, result.channels) == (48000, 1)
    model, _ = engine.load_model("demo_roformer", EngineConfig(model_repo=roformer_repo, device="cpu"))
    expected = reference(song, model, out_samplerate=48000, out_channels=1, frames=result.frames)
    assert_equal_to_reference(result, expected)


def test_it_makes_vocals_and_no_vocals_for_a_two_stem_job(tmp_path, roformer_repo):
    song = write_audio(tmp_path / "song.wav", tones(3.1, 44100, 2, seed=13), 44100)
    result = run(song, tmp_path / "out", roformer_repo, two_stems="vocals")
    model, _ = engine.load_model("demo_roformer", EngineConfig(model_repo=roformer_repo, device="cpu"))
    expected = reference(song, model, out_samplerate=44100, out_channels=2, frames=result.frames, two_stems="vocals")
    assert_equal_to_reference(result, expected)


def test_it_reports_progress_and_stops_when_cancelled(tmp_path, roformer_repo):
    song = write_audio(tmp_path / "song.wav", tones(5.3, 44100, 2, seed=14), 44100)
    seen = []

    def progress(fraction):
        seen.append(fraction)
        if fraction > 0.3:
            raise engine.SeparationAborted

    with pytest.raises(engine.SeparationAborted):
        run(song, tmp_path / "out", roformer_repo, progress=progress)
    assert seen == sorted(seen) and 0 < seen[-1] < engine.SEPARATION_SHARE
    assert not list((tmp_path / "out").iterdir())
