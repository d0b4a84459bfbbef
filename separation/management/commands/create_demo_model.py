"""Write a small, randomly initialised HTDemucs into a local demucs model folder.

No machine here can download weights, so tests, benchmarks and the local default run on
this model: a real HTDemucs, loaded and applied by demucs's own code, just untrained (its
"stems" are filtered noise). The file is exactly what `demucs.states.load_model` reads,
`{"klass", "args", "kwargs", "state"}` saved with torch.save as NAME.th, so
`python -m demucs --repo DIR -n NAME song.wav` works on it too.

Presets name an architecture; only "demo" exists now. A real-size preset (e.g. the
htdemucs layout, for benchmarks) is one more entry in PRESETS; a bag preset would also
write NAME.yaml listing its members.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

SOURCES = ["drums", "bass", "other", "vocals"]
NAME_PATTERN = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Preset:
    description: str
    # Keyword arguments for demucs.htdemucs.HTDemucs.
    kwargs: dict = field(default_factory=dict)
    seed: int = 0


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
}


def model_files(repo: Path, name: str) -> list[Path]:
    """The files demucs's LocalRepo would read for signature `name`: NAME.th or NAME-<checksum>.th."""
    if not repo.is_dir():
        return []
    return sorted(
        path
        for path in repo.iterdir()
        if path.suffix == ".th" and (path.stem == name or path.stem.rsplit("-", 1)[0] == name and "-" in path.stem)
    )


def build_package(preset: str = "demo") -> dict:
    """The serialized model: what demucs.states.load_model expects. Deterministic for a preset."""
    import torch
    from demucs.htdemucs import HTDemucs

    spec = PRESETS[preset]
    kwargs = dict(spec.kwargs)
    kwargs["sources"] = list(kwargs["sources"])
    # Seed a private RNG stream so the weights (and the file) are the same on every run
    # and the caller's global RNG is left alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = HTDemucs(**kwargs)
    args, init_kwargs = model._init_args_kwargs  # recorded by demucs's @capture_init
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    return {"klass": HTDemucs, "args": args, "kwargs": init_kwargs, "state": state}


def create_demo_model(repo: Path, name: str = "demo", preset: str = "demo", force: bool = False) -> tuple[Path, bool]:
    """Write NAME.th into `repo`. Returns (path, written); an existing model is kept unless force."""
    import torch

    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"Invalid model name {name!r}: use letters, digits and underscores only.")
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}.")
    repo = Path(repo)
    target = repo / f"{name}.th"
    existing = model_files(repo, name)
    if existing and not force:
        return existing[0], False
    repo.mkdir(parents=True, exist_ok=True)
    package = build_package(preset)
    # Write to a temporary name and rename, so a reader never sees half a file.
    handle, temp_name = tempfile.mkstemp(dir=repo, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(package, file)
        os.chmod(temp_name, 0o644)  # mkstemp makes it private; workers may run as another user
        for path in existing:  # NAME-<checksum>.th would make demucs see a duplicate
            path.unlink()
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target, True


class Command(BaseCommand):
    help = (
        "Write a small randomly initialised HTDemucs (untrained) into the demucs model folder, "
        "for tests, benchmarks and trying the service without downloading weights."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--repo", type=Path, default=None, help="Model folder (default: settings.DEMUCS_MODEL_REPO)."
        )
        parser.add_argument("--name", default="demo", help="Model name, written as NAME.th (default: demo).")
        parser.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="Architecture to write.")
        parser.add_argument("--force", action="store_true", help="Overwrite an existing model of that name.")
        parser.add_argument(
            "--if-no-model",
            action="store_true",
            help="Do nothing when any separation model is installed already (what bin/run uses).",
        )

    def handle(self, *args, **options):
        repo = options["repo"] or getattr(settings, "DEMUCS_MODEL_REPO", None)
        if repo is None:
            raise CommandError("No model folder: pass --repo or set DEMUCS_MODEL_REPO.")
        if options["if_no_model"]:
            from separation.catalog import models_list

            installed = [model.name for model in models_list() if model.installed]
            if installed:
                self.stdout.write(f"Models installed ({', '.join(installed)}); no demo model needed.")
                return
        try:
            path, written = create_demo_model(
                Path(repo), name=options["name"], preset=options["preset"], force=options["force"]
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        if written:
            self.stdout.write(self.style.SUCCESS(f"Wrote the {options['preset']} model to {path}"))
        else:
            self.stdout.write(f"{path} already exists; nothing written (use --force to overwrite).")
