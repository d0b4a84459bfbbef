"""The RoFormer family: BS-RoFormer and Mel-Band RoFormer checkpoints in the format of the
Music-Source-Separation-Training project (MSST: a checkpoint plus its YAML config), with the model
code of the `bs-roformer` package, run through the same streaming engine as Demucs.

What differs from Demucs is the chunk arithmetic, which follows MSST's `demix` (generic mode,
one chunk per batch): the mix is not normalised; when longer than twice the border
(chunk_size - step, step = chunk_size // num_overlap) it is padded by the border on both sides by
reflection; chunks of chunk_size start every step, a last chunk longer than half a chunk is padded
to a whole one by reflecting itself (else with zeros); each output is weighed by a window that
fades in and out over chunk_size // 10 (the first chunk does not fade in, the last does not fade
out), and the sum is divided by the summed weights. `RoformerPass` does that incrementally: output
before the next chunk's start is final, so about a chunk of audio is held.

A model trained for one target (a vocals model) has the sources [target, "instrumental"]: the
instrumental is the mix minus the target, as MSST's --extract_instrumental makes it.

Imports: numpy and the standard library only at import time (fork safety; engine/__init__.py).
"""

from __future__ import annotations

from pathlib import Path

from separation.engine.errors import EngineError
from separation.engine.roformer_checkpoint import load_msst_state, network_class, network_kwargs

INSTRUMENTAL = "instrumental"


def _config_loader():
    """A safe YAML loader that also reads the `!!python/tuple` tags MSST's configs use."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor(
        "tag:yaml.org,2002:python/tuple", lambda loader, node: tuple(loader.construct_sequence(node))
    )
    return Loader


def read_config(path: Path) -> dict:
    import yaml

    with open(path) as file:
        config = yaml.load(file, Loader=_config_loader())  # noqa: S506 - a SafeLoader subclass
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise EngineError(f"{path} is not a Music-Source-Separation-Training config (no `model` section).")
    return config


class RoformerModel:
    """A RoFormer network with what the engine asks of a model: samplerate, audio_channels,
    sources, its chunk arithmetic's sizes, and one forward call per chunk."""

    def __init__(self, network, config: dict):
        audio = config.get("audio", {})
        inference = config.get("inference", {})
        training = config.get("training", {})
        self.network = network
        self.samplerate = int(audio.get("sample_rate", 44100))
        self.audio_channels = network.audio_channels
        self.chunk_size = int(audio.get("chunk_size", inference.get("chunk_size", 8 * self.samplerate)))
        self.num_overlap = int(inference.get("num_overlap", 4))
        self.segment = self.chunk_size / self.samplerate
        if inference.get("normalize"):
            raise EngineError("RoFormer configs with inference.normalize are not supported.")
        target = training.get("target_instrument")
        instruments = [str(name) for name in training.get("instruments", [])]
        if target:
            self.produced = [str(target)]
            self.sources = [str(target), INSTRUMENTAL]
        else:
            self.produced = instruments
            self.sources = instruments
        if len(self.produced) != network.num_stems:
            raise EngineError(f"The config names {len(self.produced)} outputs but the model makes {network.num_stems}.")

    @classmethod
    def load(cls, checkpoint: Path, config_path: Path) -> RoformerModel:
        import torch

        config = read_config(config_path)
        network_type = network_class(config["model"])
        network = network_type(**network_kwargs(network_type, config["model"]))
        load_msst_state(network, torch.load(checkpoint, map_location="cpu", weights_only=True))
        return cls(network, config)

    @property
    def complement(self) -> bool:
        """Whether the last source is the mix minus the others (a single-target model)."""
        return len(self.sources) > len(self.produced)

    def to(self, device):
        self.network.to(device)
        return self

    def eval(self):
        self.network.eval()
        return self

    def __call__(self, chunk):
        """[B, C, T] -> [B, S, C, T], S the produced sources."""
        out = self.network(chunk)
        return out[:, None] if out.dim() == 3 else out


def window(chunk_size: int, fade: int, *, first: bool, last: bool):
    """MSST's _getWindowingArray, with the first chunk's fade-in and the last chunk's fade-out off."""
    import torch

    weights = torch.ones(chunk_size)
    if fade > 0:
        if not first:
            weights[:fade] = torch.linspace(0, 1, fade)
        if not last:
            weights[-fade:] = torch.linspace(1, 0, fade)
    return weights


class RoformerPass:
    """MSST's demix over the mix, chunk by chunk. Pass position p is mix position p - border
    (reflected at both ends when the mix is padded)."""

    member = 0

    def __init__(self, *, model: RoformerModel, frames: int):
        import torch

        self.model = model
        self.frames = frames
        self.chunk_size = model.chunk_size
        self.step = self.chunk_size // model.num_overlap
        self.fade = self.chunk_size // 10
        border = self.chunk_size - self.step
        self.border = border if frames > 2 * border and border > 0 else 0
        self.length = frames + 2 * self.border
        self.offsets = range(0, self.length, self.step)
        self.out = torch.zeros(len(model.produced), model.audio_channels, 0)
        self.sum_weight = torch.zeros(0)
        self.start = 0  # pass position of self.out[..., 0]
        self.final = []
        self.final_end = 0  # mix position up to which output is finished

    def _mix_indices(self, index: int):
        """The mix positions chunk `index` reads (pass positions reflected into the mix)."""
        import torch

        offset = self.offsets[index]
        positions = torch.arange(offset, min(offset + self.chunk_size, self.length)) - self.border
        positions = positions.abs()
        return torch.where(positions >= self.frames, 2 * (self.frames - 1) - positions, positions)

    def first_needed(self, index: int) -> int:
        return int(self._mix_indices(index).min())

    def run(self, indices: range, mix, device: str) -> None:
        for index in indices:
            self._run_one(index, mix, device)

    def _run_one(self, index: int, mix, device: str) -> None:
        import torch
        import torch.nn.functional as F

        indices = self._mix_indices(index)
        low, high = int(indices.min()), int(indices.max()) + 1
        part = mix.normalised(low, high - low)[:, indices - low]
        length = part.shape[-1]
        if length < self.chunk_size:
            mode = "reflect" if length > self.chunk_size // 2 else "constant"
            part = F.pad(part[None], (0, self.chunk_size - length), mode=mode)[0]
        with torch.inference_mode():
            out = self.model(part[None].to(device))[0].to("cpu")
        if out.shape[-1] < length:
            raise EngineError("The RoFormer returned less audio than it was given (chunk_size and hop do not fit).")
        # MSST checks "first" before "last": a single chunk keeps its fade-out.
        last = index == len(self.offsets) - 1 and index != 0
        weights = window(self.chunk_size, self.fade, first=index == 0, last=last)
        self._add(index, out[..., :length] * weights[:length], weights[:length])

    def _add(self, index: int, weighted, weights) -> None:
        import torch

        offset = self.offsets[index]
        length = weighted.shape[-1]
        missing = offset + length - (self.start + self.out.shape[-1])
        if missing > 0:
            self.out = torch.cat([self.out, self.out.new_zeros(*self.out.shape[:-1], missing)], dim=-1)
            self.sum_weight = torch.cat([self.sum_weight, self.sum_weight.new_zeros(missing)])
        at = offset - self.start
        self.out[..., at : at + length] += weighted
        self.sum_weight[at : at + length] += weights
        done = (self.offsets[index + 1] if index + 1 < len(self.offsets) else self.length) - self.start
        finished = torch.nan_to_num(self.out[..., :done] / self.sum_weight[:done], nan=0.0)
        self.out, self.sum_weight = self.out[..., done:], self.sum_weight[done:]
        first = self.start - self.border  # mix position of finished[..., 0]
        self.start += done
        if first < 0:  # the reflected border before the mix
            finished = finished[..., -first:]
            first = 0
        finished = finished[..., : max(0, self.frames - first)]  # the reflected border after it
        if finished.shape[-1]:
            self.final.append(finished)
            self.final_end = first + finished.shape[-1]

    def take(self, count: int):
        import torch

        whole = torch.cat(self.final, dim=-1) if len(self.final) > 1 else self.final[0]
        self.final = [whole[..., count:]] if whole.shape[-1] > count else []
        return whole[..., :count].clone()
