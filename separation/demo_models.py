"""Randomly initialised HTDemucs models (or bags of them) written into a local demucs model folder,
for `manage.py create_demo_model`, the tests and the benchmarks.

No machine here can download weights, so tests, benchmarks and the local default run on
these models: real HTDemucs networks, loaded and applied by demucs's own code, just untrained
(their "stems" are filtered noise). A model file is exactly what `demucs.states.load_model`
reads, `{"klass", "args", "kwargs", "state"}` saved with torch.save, so
`python -m demucs --repo DIR -n NAME song.wav` works on it too.

Presets:
- "demo": a tiny HTDemucs (~2 s for a 30 s clip on 2 cores) for tests and trying the service,
  written as NAME.th.
- "htdemucs": the released htdemucs layout and size (demucs/grids/mmi.py: dconv_mode 3,
  depth 4, 5 transformer layers, bottom_channels 512, a 7.8 s segment; 41.98M parameters,
  168 MB), written as NAME.th, for benchmarks that need a model of real size.
- "htdemucs_ft": a bag of four such networks (different seeds) with one-hot weights per
  stem, as demucs/remote/htdemucs_ft.yaml has (no bag-level segment there either): the
  members as NAME_0.th .. NAME_3.th and NAME.yaml listing them, so
  `demucs.pretrained.get_model(NAME, repo=DIR)` returns a BagOfModels.

RoFormer presets (written as NAME/model.ckpt and NAME/config.yaml, the Music-Source-Separation-
Training format: a state dict and its YAML config, for separation/engine/roformer.py):
- "roformer": a tiny Mel-Band RoFormer vocals model with 2-second chunks, for tests and demos.
- "mel_roformer": the size and layout of Kimberley Jensen's Mel-Band RoFormer vocals model (dim 384,
  depth 6, 60 bands, 8-second chunks, 2 overlaps), for benchmarks.

The service offers the names in its catalogue (separation/catalog.py) whose weights are in
DEMUCS_MODEL_REPO. To benchmark at real size, write the presets under the names the service
offers into a folder of their own and point DEMUCS_MODEL_REPO there (bench/separation.py
does this), e.g. `--preset htdemucs --name htdemucs` and `--preset htdemucs_ft --name
htdemucs_ft`. Never do that in a production model folder: users would be sold noise.

Every file is written under a temporary name and renamed, a bag's NAME.yaml last, so a
reader never sees half a model. An existing model of that name (NAME.th, NAME-<checksum>.th,
NAME.yaml, or a bag member this preset would write) is kept unless forced (--force).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

SOURCES = ["drums", "bass", "other", "vocals"]
NAME_PATTERN = re.compile(r"[A-Za-z0-9_]+")

# The released htdemucs (955717e8): HTDemucs defaults plus these (demucs/grids/mmi.py).
HTDEMUCS_KWARGS = dict(sources=SOURCES, dconv_mode=3, depth=4, t_layers=5, bottom_channels=512, segment=Fraction(39, 5))
ONE_HOT_WEIGHTS = [[1.0 if row == column else 0.0 for column in range(4)] for row in range(4)]


@dataclass(frozen=True)
class Preset:
    description: str
    # Keyword arguments for demucs.htdemucs.HTDemucs.
    kwargs: dict = field(default_factory=dict)
    seed: int = 0
    # A bag: one member per row (seeded seed, seed + 1, ...), each row its weight per source.
    bag_weights: list[list[float]] | None = None

    @property
    def members(self) -> int:
        return len(self.bag_weights) if self.bag_weights is not None else 0


PRESETS: dict[str, Preset] = {
    # Measured on a 2-core CPU: a 30 s stereo 44.1 kHz clip separates in about 2 s.
    # depth=4 keeps the transformer's sequence short (freq branch 2048 -> 8 bins), a 4 s
    # segment keeps attention cheap and short clips fast (every chunk is padded to the
    # segment), channels=4 with dconv_comp=4 keeps the DConv branches non-empty
    # (channels // dconv_comp must be >= 1). nfft stays at htdemucs's 4096.
    "demo": Preset(
        description="tiny untrained HTDemucs for tests and demos",
        kwargs=dict(
            sources=SOURCES,
            audio_channels=2,
            samplerate=44100,
            segment=4,
            channels=4,
            growth=2,
            depth=4,
            nfft=4096,
            dconv_comp=4,
            t_layers=1,
            t_heads=4,
            t_hidden_scale=2.0,
        ),
    ),
    # About 0.75 s of CPU per second of audio on this 2-core machine, like the real one.
    "htdemucs": Preset(
        description="untrained HTDemucs of the released htdemucs layout and size", kwargs=HTDEMUCS_KWARGS, seed=1
    ),
    "htdemucs_ft": Preset(
        description="bag of four untrained htdemucs-size networks, one per stem, like htdemucs_ft",
        kwargs=HTDEMUCS_KWARGS,
        seed=11,
        bag_weights=ONE_HOT_WEIGHTS,
    ),
}


@dataclass(frozen=True)
class RoformerPreset:
    description: str
    model: dict  # the config's model section: MelBandRoformer's keyword arguments
    chunk_size: int
    num_overlap: int
    seed: int = 0


ROFORMER_MODEL_COMMON = dict(
    stereo=True,
    num_stems=1,
    time_transformer_depth=1,
    freq_transformer_depth=1,
    attn_dropout=0.0,
    ff_dropout=0.0,
    dim_freqs_in=1025,
    sample_rate=44100,
    stft_n_fft=2048,
    stft_hop_length=441,
    stft_win_length=2048,
    stft_normalized=False,
)
ROFORMER_PRESETS: dict[str, RoformerPreset] = {
    "roformer": RoformerPreset(
        description="tiny untrained Mel-Band RoFormer vocals model (MSST format) for tests and demos",
        model=dict(ROFORMER_MODEL_COMMON, dim=16, depth=1, num_bands=8, heads=2, dim_head=8, mask_estimator_depth=1),
        chunk_size=88200,  # 2 s, a whole number of 441-sample hops
        num_overlap=2,
    ),
    "mel_roformer": RoformerPreset(
        description="untrained Mel-Band RoFormer of the size of Kimberley Jensen's vocals model (MSST format)",
        model=dict(ROFORMER_MODEL_COMMON, dim=384, depth=6, num_bands=60, heads=8, dim_head=64, mask_estimator_depth=2),
        chunk_size=352800,
        num_overlap=2,
        seed=3,
    ),
}


def roformer_config(preset: str) -> dict:
    spec = ROFORMER_PRESETS[preset]
    return {
        "audio": {"chunk_size": spec.chunk_size, "num_channels": 2, "sample_rate": 44100},
        "model": dict(spec.model),
        "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
        "inference": {"batch_size": 1, "num_overlap": spec.num_overlap},
    }


def create_demo_roformer(repo: Path, name: str, preset: str, force: bool = False) -> tuple[Path, bool]:
    """NAME/model.ckpt (the state dict, named as MSST saves it) and NAME/config.yaml, the config
    written last."""
    import torch
    import yaml
    from bs_roformer import MelBandRoformer

    from separation.engine.roformer_checkpoint import network_kwargs, package_to_msst, transformer_shift

    folder = Path(repo) / name
    checkpoint, config_path = folder / "model.ckpt", folder / "config.yaml"
    if checkpoint.exists() and config_path.exists() and not force:
        return folder, False
    folder.mkdir(parents=True, exist_ok=True)
    config = roformer_config(preset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ROFORMER_PRESETS[preset].seed)
        network = MelBandRoformer(**network_kwargs(MelBandRoformer, config["model"]))
    state = {
        key: value.detach().cpu().clone()
        for key, value in package_to_msst(network.state_dict(), shift=transformer_shift(network)).items()
    }
    config_path.unlink(missing_ok=True)  # no reader sees the new checkpoint with the old config
    _write_atomically(checkpoint, lambda file: torch.save(state, file))
    text = yaml.safe_dump(config, sort_keys=False)
    _write_atomically(config_path, lambda file: file.write(text.encode()))
    return folder, True


def model_files(repo: Path, name: str) -> list[Path]:
    """The files demucs's LocalRepo would read for signature `name`: NAME.th or NAME-<checksum>.th."""
    if not repo.is_dir():
        return []
    return sorted(
        path
        for path in repo.iterdir()
        if path.suffix == ".th" and (path.stem == name or path.stem.rsplit("-", 1)[0] == name and "-" in path.stem)
    )


def member_names(name: str, preset: str) -> list[str]:
    """The signatures of a bag preset's members (none for a single model)."""
    return [f"{name}_{index}" for index in range(PRESETS[preset].members)]


def existing_files(repo: Path, name: str, preset: str) -> list[Path]:
    """What writing `name` with `preset` would replace or shadow: the model's own files, a bag
    of that name, and the member files this preset writes."""
    found = model_files(repo, name)
    bag = repo / f"{name}.yaml"
    if bag.is_file():
        found.append(bag)
    for member in member_names(name, preset):
        found.extend(model_files(repo, member))
    return found


def build_package(preset: str = "demo", member: int = 0) -> dict:
    """The serialized model (for a bag: its member `member`): what demucs.states.load_model
    expects. Deterministic for a preset and member."""
    import torch
    from demucs.htdemucs import HTDemucs

    spec = PRESETS[preset]
    kwargs = dict(spec.kwargs)
    kwargs["sources"] = list(kwargs["sources"])
    # Seed a private RNG stream so the weights (and the file) are the same on every run
    # and the caller's global RNG is left alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed + member)
        model = HTDemucs(**kwargs)
    args, init_kwargs = model._init_args_kwargs  # recorded by demucs's @capture_init
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    return {"klass": HTDemucs, "args": args, "kwargs": init_kwargs, "state": state}


def bag_yaml(members: list[str], weights: list[list[float]]) -> str:
    """NAME.yaml in the layout of demucs/remote/htdemucs_ft.yaml."""
    rows = ",\n".join("  [" + ", ".join(f"{weight:g}." for weight in row) + "]" for row in weights)
    return f"models: [{', '.join(repr(member) for member in members)}]\nweights: [\n{rows},\n]\n"


def _write_atomically(target: Path, write) -> None:
    """Call write(file) on a temporary file next to `target`, then rename it into place."""
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.chmod(temp_name, 0o644)  # mkstemp makes it private; workers may run as another user
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def create_demo_model(repo: Path, name: str = "demo", preset: str = "demo", force: bool = False) -> tuple[Path, bool]:
    """Write the model into `repo`: NAME.th, or for a bag preset its members and NAME.yaml.
    Returns (path, written), path being NAME.th or NAME.yaml; an existing model is kept
    (and the first of its files returned) unless force."""
    import torch

    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"Invalid model name {name!r}: use letters, digits and underscores only.")
    if preset in ROFORMER_PRESETS:
        return create_demo_roformer(Path(repo), name, preset, force)
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of: {', '.join([*PRESETS, *ROFORMER_PRESETS])}.")
    spec = PRESETS[preset]
    repo = Path(repo)
    existing = existing_files(repo, name, preset)
    if existing and not force:
        return existing[0], False
    repo.mkdir(parents=True, exist_ok=True)

    if spec.bag_weights is None:
        target = repo / f"{name}.th"
        package = build_package(preset)
        _write_atomically(target, lambda file: torch.save(package, file))
        # NAME-<checksum>.th would make demucs see a duplicate; NAME.yaml would be shadowed.
        for path in existing:
            if path != target:
                path.unlink(missing_ok=True)
        return target, True

    target = repo / f"{name}.yaml"
    # The bag goes first, so no reader sees a bag of old and new members; NAME.th and
    # NAME-<checksum>.th would shadow the new bag.
    for path in existing:
        if path.suffix == ".yaml" or path in model_files(repo, name):
            path.unlink(missing_ok=True)
    members = member_names(name, preset)
    for index, member in enumerate(members):
        member_package = build_package(preset, member=index)
        _write_atomically(repo / f"{member}.th", lambda file, data=member_package: torch.save(data, file))
        for path in model_files(repo, member):
            if path.name != f"{member}.th":
                path.unlink()
        del member_package  # one member in memory at a time
    text = bag_yaml(members, spec.bag_weights)
    _write_atomically(target, lambda file: file.write(text.encode()))
    return target, True
