"""How a worker runs its models: where they are installed, on which device, the chunking
options (shifts, overlap, segment), and how each network runs (networks.py)."""

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
    backend: str = "torch"  # "openvino", "onnxruntime" (CPU workers) or "torch" (networks.py)
    precision: str = "float32"  # the network's: float32, float16, bfloat16 (not on onnxruntime)
    batch: int = 1  # chunks of one pass per forward call
    onnx_cache: Path | None = None  # where the onnxruntime backend keeps its exports
