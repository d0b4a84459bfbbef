"""The separation engine, run for real: demucs's code with the demo model, no mocks."""

import math
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import sphn

from separation import engine
from separation.engine import (
    AudioDecodeError,
    AudioInfo,
    EngineConfig,
    EngineError,
    ModelUnavailable,
    SeparationAborted,
)
from testkit.audio import make_song, png_bytes, tones, write_audio
from tests.echo_model import write_echo_model

pytestmark = pytest.mark.slow

SOURCES = ["drums", "bass", "other", "vocals"]
MP3_FRAME = 1152


# --- model fixtures -------------------------------------------------------------------


@pytest.fixture
def config(demo_model_repo) -> EngineConfig:
    return EngineConfig(model_repo=demo_model_repo, device="cpu", shifts=1)


def separate(song: Path, out: Path, config: EngineConfig, **options) -> engine.SeparationResult:
    return engine.separate(input_path=song, output_dir=out, model_name="demo", config=config, **options)


# --- import weight --------------------------------------------------------------------


def test_web_side_calls_never_import_torch(demo_model_repo, tmp_path):
    song = make_song(tmp_path)
    code = (
        "import importlib, pkgutil, sys; from pathlib import Path; from separation import engine; "
        "modules = [module.name for module in pkgutil.iter_modules(engine.__path__, 'separation.engine.')]; "
        "assert len(modules) > 10, modules; [importlib.import_module(name) for name in modules]; "
        f"engine.probe_audio(Path({str(song)!r})); "
        f"assert engine.model_is_installed('demo', Path({str(demo_model_repo)!r})); "
        "heavy = [m for m in ('torch', 'demucs', 'julius', 'lameenc', 'soundfile', 'PIL', 'django') "
        "if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)


# --- probe_audio ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "samplerate", "channels", "tolerance"),
    [
        ("a.wav", 44100, 2, 1e-6),
        ("a.flac", 44100, 2, 1e-6),
        ("a.ogg", 44100, 2, 0.05),
        ("a.mp3", 44100, 2, 0.06),  # no gapless header: duration includes LAME's padding
        ("m.wav", 48000, 1, 1e-6),
        ("m.mp3", 48000, 1, 0.06),
        ("s.wav", 22050, 6, 1e-6),
    ],
)
def test_probe_reads_duration_rate_and_channels(tmp_path, name, samplerate, channels, tolerance):
    path = write_audio(tmp_path / name, tones(3.0, samplerate, channels), samplerate)
    info = engine.probe_audio(path)
    assert isinstance(info, AudioInfo)
    assert info.samplerate == samplerate
    assert info.channels == channels
    assert info.duration_seconds == pytest.approx(3.0, abs=tolerance)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda wav: np.random.default_rng(1).bytes(4000), id="random-bytes"),
        pytest.param(lambda wav: png_bytes(), id="png"),
        pytest.param(lambda wav: b"%PDF-1.4\n" + b"x" * 500, id="pdf"),
        pytest.param(lambda wav: b"PK\x03\x04" + b"\0" * 200, id="zip"),
        pytest.param(lambda wav: b"", id="empty"),
        pytest.param(lambda wav: wav[:30], id="truncated-header"),
        pytest.param(lambda wav: wav[:44], id="header-without-data"),
    ],
)
def test_probe_rejects_what_is_not_audio(tmp_path, content):
    wav = make_song(tmp_path, seconds=0.5).read_bytes()
    path = tmp_path / "upload.wav"
    path.write_bytes(content(wav))
    with pytest.raises(AudioDecodeError) as caught:
        engine.probe_audio(path)
    assert str(caught.value)  # a message for the user


# --- models ---------------------------------------------------------------------------


def test_model_is_installed_in_the_repo(demo_model_repo, tmp_path, offline):
    assert engine.model_is_installed("demo", demo_model_repo)
    assert not engine.model_is_installed("htdemucs", demo_model_repo)
    assert not engine.model_is_installed("demo", None)
    assert not engine.model_is_installed("demo", tmp_path / "no-such-folder")

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(demo_model_repo / "demo.th", repo / "single-0123abcd.th")  # NAME-<checksum>.th
    (repo / "bag.yaml").write_text("models: ['single', 'single']\n")
    (repo / "broken_bag.yaml").write_text("models: ['single', 'missing']\nsegment: 4\n")
    assert engine.model_is_installed("single", repo)
    assert engine.model_is_installed("bag", repo)
    assert not engine.model_is_installed("broken_bag", repo)


def hf_cache_bag(name: str, members: list[str]) -> Path:
    """A bag `name` in the HuggingFace hub cache, in the repository demucs would download it from
    (models--OWNER--REPO/{refs/main, snapshots/REVISION/FILE}); its folder of files."""
    import huggingface_hub.constants
    from demucs.hf import hf_repo_name

    revision = "0" * 40
    root = Path(huggingface_hub.constants.HF_HUB_CACHE) / f"models--adefossez--{hf_repo_name(name)}"
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)
    (snapshot / f"{name}.yaml").write_text(f"models: {members}\n")
    for member in members:
        (snapshot / f"{member}.safetensors").write_bytes(b"x")
    return snapshot


def test_model_is_installed_in_the_huggingface_cache(offline):
    snapshot = hf_cache_bag("htdemucs_ft", ["aaaa", "bbbb"])
    assert engine.model_is_installed("htdemucs_ft", None)
    assert not engine.model_is_installed("htdemucs", None)
    (snapshot / "bbbb.safetensors").unlink()
    assert not engine.model_is_installed("htdemucs_ft", None)  # one member missing


@pytest.mark.parametrize("name", ["htdemucs", "mdx_extra_q"])
def test_the_huggingface_cache_is_looked_up_where_demucs_downloads_to(offline, name):
    assert not engine.model_is_installed(name, None)
    hf_cache_bag(name, ["cccc"])
    assert engine.model_is_installed(name, None)


def test_missing_model_is_unavailable_without_network(tmp_path, offline):
    config = EngineConfig(model_repo=tmp_path, device="cpu")
    with pytest.raises(ModelUnavailable) as caught:
        engine.load_model("no_such_model", config)
    assert "'no_such_model'" in str(caught.value)
    with pytest.raises(ModelUnavailable):
        engine.load_model("no_such_model", EngineConfig(model_repo=None, device="cpu"))


def test_corrupt_weights_are_unavailable(tmp_path, offline):
    (tmp_path / "broken.th").write_bytes(b"not a torch file")
    with pytest.raises(ModelUnavailable):
        engine.load_model("broken", EngineConfig(model_repo=tmp_path, device="cpu"))


def test_model_is_loaded_once_for_many_jobs(demo_model_repo, tmp_path):
    repo = tmp_path / "own-repo"  # a cache key no other test has loaded
    repo.mkdir()
    shutil.copy(demo_model_repo / "demo.th", repo / "demo.th")
    config = EngineConfig(model_repo=repo, device="cpu", shifts=0)
    song = make_song(tmp_path, seconds=1.0)
    results = [separate(song, tmp_path / f"out{index}", config) for index in range(3)]
    assert [result.model_loaded for result in results] == [True, False, False]
    model, loaded = engine.load_model("demo", config)
    assert not loaded
    assert engine.load_model("demo", config) == (model, False)
    assert engine.warm_up("demo", config) is False


def test_resolve_device():
    import torch

    assert engine.resolve_device("cpu") == "cpu"
    assert engine.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(EngineError):
        engine.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError):
            engine.resolve_device("cuda:0")


# --- separate -------------------------------------------------------------------------


def test_separates_into_the_model_stems(tmp_path, config):
    song = make_song(tmp_path, seconds=2.5)
    result = separate(song, tmp_path / "out", config, archive_name="My song")

    assert list(result.stems) == SOURCES
    assert list(result.waveforms) == SOURCES
    assert (result.samplerate, result.channels, result.frames) == (44100, 2, int(2.5 * 44100))
    for name, path in result.stems.items():
        assert path == tmp_path / "out" / f"{name}.wav"
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (44100, 2, 110250, "PCM_16")
        data, _ = soundfile.read(path)
        assert np.abs(data).max() > 0  # an untrained model still outputs something

    with zipfile.ZipFile(result.zip_path) as bundle:
        assert result.zip_path == tmp_path / "out" / "My song.zip"
        assert bundle.namelist() == [f"My song/{name}.wav" for name in SOURCES]
        for name in SOURCES:
            assert bundle.read(f"My song/{name}.wav") == result.stems[name].read_bytes()
    expected = {f"{name}.{ext}" for name in SOURCES for ext in ("wav", "png")} | {"My song.zip"}
    assert {path.name for path in (tmp_path / "out").iterdir()} == expected  # no temp files left


def drawn_rows(png: Path) -> list[tuple[int, int]]:
    """Per pixel column of a waveform picture, its first and last drawn row; each column is drawn
    as one run of pixels of the one colour on transparent."""
    from PIL import Image

    with Image.open(png) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (1000, 120))
        pixels = np.asarray(image)
    drawn = pixels[..., 3] > 0
    assert {tuple(pixel) for pixel in pixels[drawn]} == {(0x5B, 0x3D, 0xF5, 255)}
    runs = []
    for column in drawn.T:
        rows = np.flatnonzero(column)
        assert len(rows) and rows[-1] - rows[0] + 1 == len(rows)  # every column, one run
        runs.append((int(rows[0]), int(rows[-1])))
    return runs


def expected_rows(stem: Path) -> list[tuple[int, int]]:
    """The rows a stem's picture spans per column: from the max to the min of its mono mix-down
    over the column's frames (frames split as numpy's reduceat does: c * frames // width on),
    scaled to the stem's own peak, but at least 0.05 (near-silence is not blown up)."""
    mono = soundfile.read(stem, dtype="float32", always_2d=True)[0].mean(axis=1)
    starts = np.minimum(np.arange(1000) * len(mono) // 1000, len(mono) - 1)
    low, high = np.minimum.reduceat(mono, starts), np.maximum.reduceat(mono, starts)
    scale = max(float(np.abs(mono).max()), 0.05)
    middle = 119 / 2
    top = np.floor(middle - np.clip(high / scale, -1, 1) * middle)
    bottom = np.ceil(middle - np.clip(low / scale, -1, 1) * middle)
    return list(zip(top.astype(int).tolist(), bottom.astype(int).tolist(), strict=True))


def assert_waveform_of(result, name: str) -> None:
    # Within a pixel: the picture is drawn from the stem before it is rounded to 16 bits.
    for (top, bottom), (want_top, want_bottom) in zip(
        drawn_rows(result.waveforms[name]), expected_rows(result.stems[name]), strict=True
    ):
        assert abs(top - want_top) <= 1 and abs(bottom - want_bottom) <= 1


def test_waveform_png_draws_each_columns_min_and_max(tmp_path, config):
    # 9 s with 4 s segments: the stems reach the picture in several blocks.
    result = separate(make_song(tmp_path, seconds=9.0), tmp_path / "out", config)
    assert list(result.waveforms) == SOURCES
    for name in SOURCES:
        assert result.waveforms[name] == tmp_path / "out" / f"{name}.png"
        assert_waveform_of(result, name)


def test_waveform_of_a_stem_shorter_than_the_picture_is_wide(tmp_path, config):
    # 960 frames for 1000 columns: columns that start at the same frame each draw that frame.
    song = write_audio(tmp_path / "song.wav", tones(0.12, 8000, 1), 8000)
    result = separate(song, tmp_path / "out", config)
    assert result.frames == 960
    assert_waveform_of(result, "vocals")


@pytest.mark.parametrize(
    ("samplerate", "channels", "out_channels"),
    [(44100, 1, 1), (48000, 2, 2), (48000, 1, 1), (22050, 6, 2)],
)
def test_output_matches_the_input_rate_length_and_channels(tmp_path, config, samplerate, channels, out_channels):
    song = write_audio(tmp_path / "song.wav", tones(1.5, samplerate, channels), samplerate)
    frames = sphn.read(str(song))[0].shape[1]
    result = separate(song, tmp_path / "out", config)
    assert (result.samplerate, result.channels, result.frames) == (samplerate, out_channels, frames)
    for path in result.stems.values():
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.frames) == (samplerate, out_channels, frames)


def test_two_stems(tmp_path, demo_model_repo):
    config = EngineConfig(model_repo=demo_model_repo, device="cpu", shifts=0)  # deterministic
    song = make_song(tmp_path)
    full = separate(song, tmp_path / "full", config)
    pair = separate(song, tmp_path / "pair", config, two_stems="vocals")
    assert list(pair.stems) == ["vocals", "no_vocals"]
    assert {path.name for path in pair.stems.values()} == {"vocals.wav", "no_vocals.wav"}
    assert list(pair.waveforms) == ["vocals", "no_vocals"]

    def read(path):
        return soundfile.read(path, dtype="float32")[0]

    assert np.array_equal(read(pair.stems["vocals"]), read(full.stems["vocals"]))
    others = sum(read(full.stems[name]) for name in ("drums", "bass", "other"))
    np.testing.assert_allclose(read(pair.stems["no_vocals"]), others, atol=4 / 32767)


def test_unknown_stem_is_refused(tmp_path, config):
    with pytest.raises(EngineError) as caught:
        separate(make_song(tmp_path), tmp_path / "out", config, two_stems="piano")
    assert "piano" in str(caught.value)
    assert "drums, bass, other, vocals" in str(caught.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("output_format", ["wav", "flac", "mp3"])
@pytest.mark.parametrize(("samplerate", "channels"), [(44100, 2), (48000, 1)])
def test_each_format_opens_again(tmp_path, config, output_format, samplerate, channels):
    song = write_audio(tmp_path / "song.wav", tones(1.2, samplerate, channels), samplerate)
    frames = int(round(1.2 * samplerate))
    result = separate(song, tmp_path / "out", config, output_format=output_format)
    assert {path.suffix for path in result.stems.values()} == {f".{output_format}"}
    with zipfile.ZipFile(result.zip_path) as bundle:
        assert all(name.endswith(f".{output_format}") for name in bundle.namelist())
    for path in result.stems.values():
        data, rate = sphn.read(str(path))
        assert rate == samplerate
        assert data.shape[0] == channels
        if output_format == "mp3":
            # No gapless header: LAME's 576-sample delay, padding to whole 1152-sample
            # frames and one flush frame. Decoded length is exactly this:
            assert data.shape[1] == MP3_FRAME * (math.ceil(frames / MP3_FRAME) + 1)
        else:
            assert data.shape[1] == frames
            info = soundfile.info(path)
            assert (info.samplerate, info.channels, info.frames, info.subtype) == (
                samplerate,
                channels,
                frames,
                "PCM_16",
            )


def test_above_48khz_stems_are_written_at_the_models_rate(tmp_path, config):
    """Nothing the model makes lies above its own Nyquist frequency: a 96 kHz (or 384 kHz) input
    does not make stems twice (or eight times) as large, in any format."""
    song = write_audio(tmp_path / "song.wav", tones(1.0, 96000, 2), 96000)
    result = separate(song, tmp_path / "out", config, output_format="mp3")
    assert (result.samplerate, result.frames) == (44100, 44100)
    data, rate = sphn.read(str(result.stems["vocals"]))
    assert rate == 44100
    assert data.shape[1] == MP3_FRAME * (math.ceil(44100 / MP3_FRAME) + 1)
    for fmt in ("wav", "flac"):
        other = separate(song, tmp_path / fmt, config, output_format=fmt)
        assert soundfile.info(other.stems["vocals"]).samplerate == 44100
        assert soundfile.info(other.stems["vocals"]).frames == 44100


def test_48khz_stems_keep_their_rate(tmp_path, config):
    song = write_audio(tmp_path / "song.wav", tones(1.0, 48000, 2), 48000)
    result = separate(song, tmp_path / "out", config)
    assert (result.samplerate, result.frames) == (48000, 48000)
    assert soundfile.info(result.stems["vocals"]).samplerate == 48000


def test_silent_stems_are_deflated_in_the_zip_and_music_is_stored(tmp_path, config):
    """The zip deflates what compresses (a silent song's stems shrink to almost nothing) and stores
    what does not (mp3), so storage stays bounded without spending time on incompressible audio."""
    silent = write_audio(tmp_path / "silent.wav", np.zeros((5 * 44100, 2), dtype=np.float32), 44100)
    result = separate(silent, tmp_path / "silent", config)
    with zipfile.ZipFile(result.zip_path) as bundle:
        assert {item.compress_type for item in bundle.infolist()} == {zipfile.ZIP_DEFLATED}
        assert sum(item.compress_size for item in bundle.infolist()) < 0.05 * sum(
            item.file_size for item in bundle.infolist()
        )
        assert bundle.read("stems/vocals.wav") == result.stems["vocals"].read_bytes()
    mp3 = separate(make_song(tmp_path), tmp_path / "mp3", config, output_format="mp3")
    with zipfile.ZipFile(mp3.zip_path) as bundle:
        assert {item.compress_type for item in bundle.infolist()} == {zipfile.ZIP_STORED}


@pytest.mark.parametrize("name", ["song.mp3", "song.flac", "song.ogg"])
def test_compressed_inputs(tmp_path, config, name):
    song = write_audio(tmp_path / name, tones(1.5, 44100, 2), 44100)
    frames = sphn.read(str(song))[0].shape[1]
    result = separate(song, tmp_path / "out", config)
    assert soundfile.info(result.stems["drums"]).frames == frames


def test_nan_and_inf_samples_become_silence(tmp_path, config):
    data = tones(1.0)
    data[100:200] = np.nan
    data[300] = np.inf
    song = tmp_path / "song.wav"
    soundfile.write(song, data, 44100, subtype="FLOAT")
    result = separate(song, tmp_path / "out", config)
    for path in result.stems.values():
        assert np.isfinite(soundfile.read(path)[0]).all()


def test_undecodable_input(tmp_path, config):
    song = tmp_path / "song.mp3"
    song.write_bytes(np.random.default_rng(2).bytes(10_000))
    with pytest.raises(AudioDecodeError):
        separate(song, tmp_path / "out", config)
    assert not (tmp_path / "out").exists()


def test_unknown_format_is_refused(tmp_path, config):
    with pytest.raises(EngineError):
        separate(make_song(tmp_path), tmp_path / "out", config, output_format="aac")


def test_equals_demucs_separator(tmp_path, demo_model_repo):
    """The files hold what Separator.separate_tensor returns (the engine streams; demucs holds it all)."""
    from demucs.api import Separator

    song = make_song(tmp_path, seconds=5.0)
    config = EngineConfig(model_repo=demo_model_repo, device="cpu", shifts=0)
    separator = Separator(model="demo", repo=demo_model_repo, device="cpu", shifts=0)
    wav = separator._load_audio(song)  # sphn + convert_audio, as the demucs CLI reads it
    _, expected = separator.separate_tensor(wav, separator.samplerate)
    assert list(expected) == SOURCES

    result = separate(song, tmp_path / "out", config)
    for name in SOURCES:
        written = soundfile.read(result.stems[name], dtype="float32")[0].T
        reference = expected[name].numpy()
        assert np.abs(reference).max() < 1 / 1.01  # so save_audio did not rescale
        np.testing.assert_allclose(written, reference, atol=1.5 / 32767)


def test_longer_segment_than_the_model_allows_is_capped(tmp_path, demo_model_repo):
    config = EngineConfig(model_repo=demo_model_repo, device="cpu", shifts=0, segment=30.0)
    result = separate(make_song(tmp_path, seconds=5.0), tmp_path / "out", config)
    assert soundfile.info(result.stems["vocals"]).frames == 5 * 44100


# --- progress and abort ---------------------------------------------------------------


def test_progress_is_monotonic_and_ends_at_one(tmp_path, demo_model_repo):
    config = EngineConfig(model_repo=demo_model_repo, device="cpu", shifts=2)
    fractions = []
    separate(make_song(tmp_path, seconds=10.0), tmp_path / "out", config, progress=fractions.append)
    assert fractions[0] == 0.0
    assert fractions[-1] == 1.0
    assert all(a < b for a, b in zip(fractions, fractions[1:], strict=False))
    assert len(fractions) > 10  # 4 chunks x 2 shifts, start and end, then the files
    # Half the model work is done when the first shift pass ends.
    assert any(0.4 < fraction < 0.5 for fraction in fractions)


def test_progress_rises_across_a_bag_of_models(tmp_path, demo_model_repo):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(demo_model_repo / "demo.th", repo / "demo.th")
    (repo / "pair.yaml").write_text("models: ['demo', 'demo']\nweights: [[1, 1, 1, 1], [1, 1, 1, 1]]\n")
    config = EngineConfig(model_repo=repo, device="cpu", shifts=1)
    assert engine.model_is_installed("pair", repo)
    fractions = []
    result = engine.separate(
        input_path=make_song(tmp_path, seconds=7.0),
        output_dir=tmp_path / "out",
        model_name="pair",
        config=config,
        progress=fractions.append,
    )
    assert list(result.stems) == SOURCES
    assert fractions[-1] == 1.0
    assert all(a < b for a, b in zip(fractions, fractions[1:], strict=False))
    assert any(0.4 < fraction < 0.5 for fraction in fractions)  # end of the first model


@pytest.mark.parametrize("abort_at", [0.3, 0.95])  # during the model, while writing files
def test_abort_from_progress_stops_and_leaves_nothing(tmp_path, demo_model_repo, abort_at):
    config = EngineConfig(model_repo=demo_model_repo, device="cpu", shifts=1)
    calls_after_abort = []
    aborted = False

    def progress(fraction):
        nonlocal aborted
        if aborted:
            calls_after_abort.append(fraction)
        if fraction >= abort_at:
            aborted = True
            raise SeparationAborted

    out = tmp_path / "out"
    with pytest.raises(SeparationAborted):
        separate(make_song(tmp_path, seconds=10.0), out, config, progress=progress)
    assert aborted
    assert calls_after_abort == []
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(("loudness", "least", "most"), [(1.0, 100, 119), (0.05, 1, 20)])
def test_waveform_is_scaled_to_the_stem_peak(tmp_path, loudness, least, most):
    """Quiet stems (peaks near 0.06 here) are drawn to full height, as players draw them;
    near-silence (peaks under 0.05) is not blown up into a band of noise."""
    repo = tmp_path / "models"
    repo.mkdir()
    write_echo_model(repo)  # each stem is a quarter of the mix
    song = write_audio(tmp_path / "song.wav", tones(1.0, 22050, 2) * loudness, 22050)
    config = EngineConfig(model_repo=repo, device="cpu")
    result = engine.separate(input_path=song, output_dir=tmp_path / "out", model_name="echo", config=config)
    runs = drawn_rows(result.waveforms["vocals"])
    height = max(bottom for _, bottom in runs) - min(top for top, _ in runs)
    assert least <= height <= most, height


def test_it_reports_progress_through_encoding_and_the_zip(tmp_path, config):
    """Encoding a long song's stems takes minutes (about 167 s per stem of a 2-hour song as MP3):
    progress, which is the job's heartbeat, keeps coming block by block until the zip is written."""
    song = make_song(tmp_path, seconds=60.0)
    reports = []

    separate(song, tmp_path / "out", config, output_format="mp3", progress=reports.append)

    writing = [fraction for fraction in reports if fraction >= engine.SEPARATION_SHARE]
    blocks_per_stem = 60 * 44100 // engine.ENCODE_BLOCK_FRAMES
    assert len(writing) >= 4 * blocks_per_stem + 1
    assert writing == sorted(writing) and writing[-1] == 1.0
