"""The separation models on offer (settings.SEPARATION_MODELS), whether their weights are
installed, and what a job costs."""

import math
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from separation import engine


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
        for name, spec in settings.SEPARATION_MODELS.items()
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
    periods = max(1, math.ceil(duration_seconds / settings.PRICE_PERIOD_SECONDS))
    return Decimal(model.price_multiplier * periods)
