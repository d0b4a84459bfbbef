"""The separation models on offer: what each is, how good and how fast, what it costs, where its
weights come from and under which licence, and whether they are installed here.

The catalogue is the product's price list, so it lives here in code; operators choose among it
with DEFAULT_MODEL and WORKER_PRELOAD_MODELS, checked by `model_settings_validate` at start-up,
and install weights with `manage.py install_model` (separation/model_install.py).

Licences. Only weights whose licence allows commercial use are offered unless the operator sets
MODELS_NONCOMMERCIAL (a checkpoint with no licence grant, or trained on non-commercial data only,
is not ours to sell). Demucs's weights are released with its code under MIT; the Mel-Band RoFormer
vocals model by Kimberley Jensen is MIT; the BS-RoFormer checkpoint by viperx states no licence.

Quality is the SDR its publishers (or the benchmark named) report per stem, in dB, on the dataset
named; speed is a job's time relative to htdemucs's, measured on this project's benchmark machine
(bench/README.md), or None where it was not measured.
"""

import math
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from separation import engine

FOUR_STEMS = ("drums", "bass", "other", "vocals")
VOCALS_INSTRUMENTAL = ("vocals", "instrumental")
DEMUCS_ROOT = "https://dl.fbaipublicfiles.com/demucs/"
DEMUCS_README = "https://github.com/adefossez/demucs#separating-tracks"
MULTISONG = "MVSep Multisong"
MULTISONG_SOURCE = "https://mvsep.com/quality_checker/multisong_leaderboard"
# Part of the price, not an operator knob: the pages and the API say "per 10 minutes".
PRICE_PERIOD_SECONDS = 600


@dataclass(frozen=True)
class Quality:
    sdr: dict[str, float]  # stem -> published SDR in dB; stems not published are absent
    overall: float | None  # the published average over the stems
    dataset: str
    source: str  # where the figures are published


@dataclass(frozen=True)
class WeightFile:
    """One file of a model's weights as its publisher hosts it."""

    url: str
    name: str  # the file's name in the model folder
    # hex; a prefix where the publisher gives only that (demucs: in the file's name); "" for none,
    # which install_model refuses without --allow-unverified
    sha256: str
    size: int | None = None  # bytes, where known


@dataclass(frozen=True)
class Entry:
    label: str
    family: str  # "demucs", "roformer" or "ensemble"
    stems: tuple[str, ...]
    licence: str
    commercial: bool  # the weights' licence allows commercial use
    quality: Quality | None
    price_multiplier: int = 1
    speed: float | None = None  # a job's time relative to htdemucs's, measured here
    files: tuple[WeightFile, ...] = ()
    demucs_members: tuple[str, ...] = ()  # demucs: the signatures in demucs/remote/NAME.yaml
    parts: dict[str, str] = field(default_factory=dict)  # ensemble: stem -> model name


def _demucs_files(root: str, *names: str) -> tuple[WeightFile, ...]:
    # demucs names each file SIGNATURE-SHA256PREFIX.th and checks that prefix when it downloads.
    return tuple(
        WeightFile(DEMUCS_ROOT + root + name, name, name.rsplit("-", 1)[1].removesuffix(".th")) for name in names
    )


DEMUCS_MIT = "MIT"  # the demucs repository's licence, under which its weights are released
CATALOGUE: dict[str, Entry] = {
    "htdemucs": Entry(
        label="Hybrid Transformer Demucs",
        family="demucs",
        stems=FOUR_STEMS,
        licence=DEMUCS_MIT,
        commercial=True,
        quality=Quality({}, 9.00, "MUSDB18-HQ test", DEMUCS_README),
        speed=1.0,
        files=_demucs_files("hybrid_transformer/", "955717e8-8726e21a.th"),
        demucs_members=("955717e8",),
    ),
    "htdemucs_6s": Entry(
        label="Hybrid Transformer Demucs, 6 stems",
        family="demucs",
        stems=(*FOUR_STEMS, "guitar", "piano"),
        licence=DEMUCS_MIT,
        commercial=True,
        quality=None,  # demucs publishes none (its piano stem is called weak)
        files=_demucs_files("hybrid_transformer/", "5c90dfd2-34c22ccb.th"),
        demucs_members=("5c90dfd2",),
    ),
    "htdemucs_ft": Entry(
        label="Hybrid Transformer Demucs, fine-tuned",
        family="demucs",
        stems=FOUR_STEMS,
        licence=DEMUCS_MIT,
        commercial=True,
        quality=Quality({}, 9.20, "MUSDB18-HQ test", DEMUCS_README),
        price_multiplier=4,
        speed=3.8,  # bench/README.md goal 5: 161.9 s against htdemucs's 42.3 s for a minute
        files=_demucs_files(
            "hybrid_transformer/",
            "f7e0c4bc-ba3fe64a.th",
            "d12395a8-e57c48e6.th",
            "92cfc3b6-ef3bcb9c.th",
            "04573f0d-f3cf25b2.th",
        ),
        demucs_members=("f7e0c4bc", "d12395a8", "92cfc3b6", "04573f0d"),
    ),
    "hdemucs_mmi": Entry(
        label="Hybrid Demucs v3",
        family="demucs",
        stems=FOUR_STEMS,
        licence=DEMUCS_MIT,
        commercial=True,
        quality=None,
        files=_demucs_files("hybrid_transformer/", "75fc33f5-1941ce65.th"),
        demucs_members=("75fc33f5",),
    ),
    "mdx_extra": Entry(
        label="Demucs MDX extra",
        family="demucs",
        stems=FOUR_STEMS,
        licence=DEMUCS_MIT,
        commercial=True,
        quality=None,
        price_multiplier=4,
        files=_demucs_files(
            "mdx_final/", "e51eebcc-c1b80bdd.th", "a1d90b5c-ae9d2452.th", "5d2d6c55-db83574e.th", "cfa93e08-61801ae1.th"
        ),
        demucs_members=("e51eebcc", "a1d90b5c", "5d2d6c55", "cfa93e08"),
    ),
    "mel_roformer_vocals": Entry(
        label="Mel-Band RoFormer vocals (Kimberley Jensen)",
        family="roformer",
        stems=VOCALS_INSTRUMENTAL,
        licence="MIT",
        commercial=True,
        quality=Quality({"vocals": 11.01, "instrumental": 17.32}, None, MULTISONG, MULTISONG_SOURCE),
        price_multiplier=2,
        files=(
            WeightFile(
                "https://huggingface.co/KimberleyJSN/melbandroformer/resolve/main/MelBandRoformer.ckpt",
                "model.ckpt",
                # Not yet taken from the hub's published SHA-256 into the catalogue: until it is,
                # install_model installs this model only with --allow-unverified.
                "",
            ),
            WeightFile(
                "https://raw.githubusercontent.com/KimberleyJensen/Mel-Band-Roformer-Vocal-Model/"
                "41d04ae1c8ea89261b488e90953192efe650fa4f/configs/config_vocals_mel_band_roformer.yaml",
                "config.yaml",
                # The SHA-256 of that file at that commit, computed from the repository's git blob.
                "976be96199cf8b94ebfa1f19c87355eea437028d3c8505ad8c3c890f49b9cb89",
            ),
        ),
    ),
    "bs_roformer_viperx": Entry(
        label="BS-RoFormer vocals (viperx 1297)",
        family="roformer",
        stems=VOCALS_INSTRUMENTAL,
        licence="none stated (no grant of use)",
        commercial=False,
        quality=None,
        price_multiplier=2,
    ),
    "vocals_roformer_demucs": Entry(
        label="Ensemble: Mel-Band RoFormer vocals, htdemucs drums, bass and other",
        family="ensemble",
        stems=FOUR_STEMS,
        licence="MIT (both parts)",
        commercial=True,
        quality=None,  # none published for the combination; each part's is listed with it
        parts={"drums": "htdemucs", "bass": "htdemucs", "other": "htdemucs", "vocals": "mel_roformer_vocals"},
    ),
    "demo": Entry(
        label="Demo model (untrained: for trying the service)",
        family="demucs",
        stems=FOUR_STEMS,
        licence="MIT (randomly initialised here)",
        commercial=True,
        quality=None,
    ),
    "demo_roformer": Entry(
        label="Demo RoFormer (untrained: for trying the service)",
        family="roformer",
        stems=VOCALS_INSTRUMENTAL,
        licence="MIT (randomly initialised here)",
        commercial=True,
        quality=None,
    ),
    "demo_ensemble": Entry(
        label="Demo ensemble (untrained: RoFormer vocals, Demucs the rest)",
        family="ensemble",
        stems=FOUR_STEMS,
        licence="MIT (randomly initialised here)",
        commercial=True,
        quality=None,
        parts={"drums": "demo", "bass": "demo", "other": "demo", "vocals": "demo_roformer"},
    ),
}
# Kept for the callers that only need the names.
SEPARATION_MODELS = CATALOGUE


@dataclass(frozen=True)
class SeparationModel:
    name: str
    label: str
    family: str
    stems: tuple[str, ...]
    price_multiplier: int
    licence: str
    commercial: bool
    quality: Quality | None
    speed: float | None
    installed: bool
    parts: dict[str, str]

    @property
    def untrained(self) -> bool:
        return self.name.startswith("demo")

    @property
    def quality_text(self) -> str:
        """The published quality in words, for the pages and `install_model --list`."""
        if self.quality is None:
            return "untrained" if self.untrained else "not published"
        if self.quality.sdr:
            figures = ", ".join(f"{stem} {sdr:.2f}" for stem, sdr in self.quality.sdr.items())
        else:
            figures = f"{self.quality.overall:.2f} average"
        return f"{figures} dB SDR ({self.quality.dataset})"

    @property
    def speed_text(self) -> str:
        return "not measured" if self.speed is None else f"{self.speed:g}x htdemucs's time"


def entry_price(name: str) -> int:
    """An ensemble costs the sum of its parts (each model once); any other model its multiplier."""
    entry = CATALOGUE[name]
    if entry.family != "ensemble":
        return entry.price_multiplier
    return sum(CATALOGUE[part].price_multiplier for part in dict.fromkeys(entry.parts.values()))


def ensemble_parts(name: str) -> dict[str, str] | None:
    """An ensemble's model per stem, in its stems' order (what the engine runs); None otherwise."""
    entry = CATALOGUE.get(name)
    return dict(entry.parts) if entry is not None and entry.family == "ensemble" else None


def loadable_names(names: list[str]) -> list[str]:
    """The models a worker loads for these catalogue names: an ensemble's parts instead of it."""
    return list(dict.fromkeys(part for name in names for part in (ensemble_parts(name) or {name: name}).values()))


def entry_installed(name: str) -> bool:
    entry = CATALOGUE[name]
    if entry.family == "ensemble":
        return all(entry_installed(part) for part in set(entry.parts.values()))
    return engine.model_is_installed(name, settings.DEMUCS_MODEL_REPO)


def offered_names() -> list[str]:
    """The catalogue's names on offer here: commercially licensed weights, unless the operator
    allows the others (MODELS_NONCOMMERCIAL)."""
    allow = settings.MODELS_NONCOMMERCIAL
    return [
        name
        for name, entry in CATALOGUE.items()
        if (entry.commercial or allow)
        and (entry.family != "ensemble" or all(CATALOGUE[part].commercial or allow for part in entry.parts.values()))
    ]


def models_list() -> list[SeparationModel]:
    return [
        SeparationModel(
            name=name,
            label=CATALOGUE[name].label,
            family=CATALOGUE[name].family,
            stems=CATALOGUE[name].stems,
            price_multiplier=entry_price(name),
            licence=CATALOGUE[name].licence,
            commercial=CATALOGUE[name].commercial,
            quality=CATALOGUE[name].quality,
            speed=CATALOGUE[name].speed,
            installed=entry_installed(name),
            parts=dict(CATALOGUE[name].parts),
        )
        for name in offered_names()
    ]


def model_get(name: str) -> SeparationModel | None:
    return next((model for model in models_list() if model.name == name), None)


def default_model_name(models: list[SeparationModel]) -> str:
    """DEFAULT_MODEL, or the demo model when DEFAULT_MODEL's weights are not installed."""
    installed = {model.name for model in models if model.installed}
    if settings.DEFAULT_MODEL not in installed and "demo" in installed:
        return "demo"
    return settings.DEFAULT_MODEL


def job_cost(*, model: SeparationModel, duration_seconds: float) -> Decimal:
    """The multiplier times each started price period (10 minutes): a normal song costs 1 credit."""
    periods = max(1, math.ceil(duration_seconds / PRICE_PERIOD_SECONDS))
    return Decimal(model.price_multiplier * periods)


def model_settings_validate() -> None:
    """Stops start-up when DEFAULT_MODEL or WORKER_PRELOAD_MODELS names a model not on offer."""
    offered_list = offered_names()
    offered = ", ".join(offered_list)
    if settings.DEFAULT_MODEL not in offered_list:
        raise ImproperlyConfigured(f"DEFAULT_MODEL must be one of {offered}; got {settings.DEFAULT_MODEL!r}")
    preload = settings.WORKER_PRELOAD_MODELS
    if isinstance(preload, list) and not set(preload) <= set(offered_list):
        raise ImproperlyConfigured(
            f"WORKER_PRELOAD_MODELS must be installed, default, none or a comma-separated list of {offered}; "
            f"got {','.join(preload)!r}"
        )


STEM_LABELS = {
    "drums": "Drums",
    "bass": "Bass",
    "other": "Other instruments",
    "vocals": "Vocals",
    "guitar": "Guitar",
    "piano": "Piano",
    "no_vocals": "Instrumental (no vocals)",
}


def stem_label(name: str) -> str:
    """A stem's name for people: "no_vocals" is "Instrumental (no vocals)", "no_drums" is
    "Everything but drums"; the API keeps the names as they are."""
    if name in STEM_LABELS:
        return STEM_LABELS[name]
    if name.startswith("no_"):
        return f"Everything but {stem_label(name[3:]).lower()}"
    return name.replace("_", " ").capitalize()
