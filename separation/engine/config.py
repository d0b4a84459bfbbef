"""How a worker runs its models: where they are installed, on which device, and the chunking
options (shifts, overlap, segment)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EngineConfig:
    model_repo: Path | None  # local demucs repo folder (.th files and bag .yaml files)
    device: str = "auto"  # "auto" (cuda if available else cpu), "cpu", "cuda", "cuda:N"
    shifts: int = 1
    overlap: float = 0.25
    segment: float | None = None  # None = the model's default
    workers: int = 1  # worker processes sharing this machine's cores
