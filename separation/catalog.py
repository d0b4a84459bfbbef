"""The separation models on offer, whether their weights are installed, and what a job costs.

The catalogue is the product's price list, so it lives here in code; operators choose among it
with DEFAULT_MODEL and WORKER_PRELOAD_MODELS, checked by `model_settings_validate` at start-up."""

import math
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from separation import engine

FOUR_STEMS = ["drums", "bass", "other", "vocals"]
# Each model: label, stems and price multiplier (credits per started price period).
SEPARATION_MODELS = {
    "htdemucs": {"label": "Hybrid Transformer Demucs", "stems": FOUR_STEMS, "price_multiplier": 1},
    "htdemucs_6s": {
        "label": "Hybrid Transformer Demucs, 6 stems",
        "stems": [*FOUR_STEMS, "guitar", "piano"],
        "price_multiplier": 1,
    },
    "hdemucs_mmi": {"label": "Hybrid Demucs v3", "stems": FOUR_STEMS, "price_multiplier": 1},
    "htdemucs_ft": {"label": "Hybrid Transformer Demucs, fine-tuned", "stems": FOUR_STEMS, "price_multiplier": 4},
    "mdx_extra": {"label": "Demucs MDX extra", "stems": FOUR_STEMS, "price_multiplier": 4},
    "demo": {"label": "Demo model (untrained: for trying the service)", "stems": FOUR_STEMS, "price_multiplier": 1},
}
# Part of the price, not an operator knob: the pages and the API say "per 10 minutes".
PRICE_PERIOD_SECONDS = 600


@dataclass(frozen=True)
class SeparationModel:
    name: str
    label: str
    stems: tuple[str, ...]
    price_multiplier: int
    installed: bool

    @property
    def untrained(self) -> bool:
        return self.name == "demo"


def models_list() -> list[SeparationModel]:
    return [
        SeparationModel(
            name=name,
            label=spec["label"],
            stems=tuple(spec["stems"]),
            price_multiplier=spec["price_multiplier"],
            installed=engine.model_is_installed(name, settings.DEMUCS_MODEL_REPO),
        )
        for name, spec in SEPARATION_MODELS.items()
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
    offered = ", ".join(SEPARATION_MODELS)
    if settings.DEFAULT_MODEL not in SEPARATION_MODELS:
        raise ImproperlyConfigured(f"DEFAULT_MODEL must be one of {offered}; got {settings.DEFAULT_MODEL!r}")
    preload = settings.WORKER_PRELOAD_MODELS
    if isinstance(preload, list) and not set(preload) <= set(SEPARATION_MODELS):
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
