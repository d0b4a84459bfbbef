"""demucs's apply_model, done incrementally: the split into overlapping segments with their
triangle weights, the random shifts (Python's `random`, drawn in apply_model's order), the bag's
weights, and every (bag member, shift) pass in lockstep over the mix, so only about a segment of
audio is held. The result equals demucs.api.Separator.separate_tensor's (within float rounding).
Chunks run on all of the worker's cores, one forward call at a time (models.py says why), each
call on config.batch chunks of one pass (one by default; several help a GPU), through the network
networks.py makes for the configured backend and precision.

What the arithmetic asks of a model (its members, the segment it takes, the window a chunk is
padded to, one forward call) is in the first few functions; the passes only use those and the
model's samplerate, channels and sources.

Bags. Members whose weights are zero for every stem the job needs do not run (a two-stem job on
htdemucs_ft runs its vocals model only). no_STEM is then the mix minus STEM (demucs's
`--other-method minus`, at the model's rate); when every source is computed anyway (a single
model, or a bag whose members all run) it is the sum of the other sources (`--other-method add`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from separation.engine.config import EngineConfig
from separation.engine.encode import StemWriter
from separation.engine.errors import EngineError
from separation.engine.mix import MixStatistics, MixWindow, mix_blocks
from separation.engine.models import load_model, resolve_device
from separation.engine.networks import network_for
from separation.engine.progress import Progress
from separation.engine.reader import InputReader
from separation.engine.roformer import RoformerModel, RoformerPass

logger = logging.getLogger(__name__)


def members(model) -> list:
    """The networks that run: a bag's members, or the model itself."""
    from demucs.apply import BagOfModels

    return list(model.models) if isinstance(model, BagOfModels) else [model]


def bag_weights(model) -> list[list[float]] | None:
    """Per member, its weight for each source; None for a single model."""
    from demucs.apply import BagOfModels

    return [list(weight) for weight in model.weights] if isinstance(model, BagOfModels) else None


def effective_segment(model, segment: float | None) -> float | None:
    """The segment to use: None keeps each model's own. A transformer model cannot take a
    segment longer than it was trained on, so a longer setting is capped to the longest
    allowed (demucs's CLI refuses it; a service-wide setting should not break one model)."""
    if segment is None:
        return None
    from demucs.htdemucs import HTDemucs

    limits = [float(member.segment) for member in members(model) if isinstance(member, HTDemucs)]
    if limits and segment > min(limits):
        logger.info("Segment %.2f s capped to %.2f s for this model.", segment, min(limits))
        return min(limits)
    return segment


def padded_length(member, length: int, segment: float | None) -> int:
    """How long a window a member sees for a chunk of `length` frames (TensorChunk.padded's
    valid length): an HTDemucs always takes whole segments."""
    from demucs.htdemucs import HTDemucs

    if isinstance(member, HTDemucs) and segment is not None:
        return int(segment * member.samplerate)
    if hasattr(member, "valid_length"):
        return member.valid_length(length)
    return length


def forward(network, chunks, length: int, device: str):
    """The network on padded chunks [B, C, T]: the outputs [B, S, C, length] center-trimmed to
    `length`, on the CPU."""
    import torch
    from demucs.utils import center_trim

    with torch.inference_mode():
        out = network(chunks.to(device))
    return center_trim(out, length).to("cpu")


def warm_up(name: str, config: EngineConfig) -> bool:
    """Load the model and run each of its members once on a segment of silence: torch's first call
    sets up its kernels (seconds on a CPU), which the first job would otherwise pay. Whether this
    call loaded the model (False: this process had it already)."""
    import torch

    model, loaded = load_model(name, config)
    device = resolve_device(config.device)
    if isinstance(model, RoformerModel):
        forward(model, torch.zeros(1, model.audio_channels, model.chunk_size), model.chunk_size, device)
        return loaded
    segment = effective_segment(model, config.segment)
    for member in members(model):
        length = int(member.samplerate * float(segment if segment is not None else member.segment))
        chunks = torch.zeros(config.batch, member.audio_channels, length)
        forward(network_for(member, config, device), chunks, length, device)
    return loaded


class Pass:
    """One apply_model pass of one member over the (shifted) mix: demucs's split arithmetic,
    chunk by chunk. Pass position t is mix position t + base (base < 0: the shift's zero prefix)."""

    def __init__(self, *, member: int, model, network, base: int, frames: int, segment, overlap: float, sources: int):
        import torch

        self.member = member
        self.model = model
        self.network = network
        self.segment = segment
        self.base = base
        self.length = frames - base
        seconds = segment if segment is not None else model.segment
        self.segment_length = int(model.samplerate * seconds)
        self.stride = int((1 - overlap) * self.segment_length)
        self.offsets = range(0, self.length, self.stride)
        half = self.segment_length // 2
        weight = torch.cat([torch.arange(1, half + 1), torch.arange(self.segment_length - half, 0, -1)])
        self.weight = weight / weight.max()  # transition_power 1
        self.out = torch.zeros(sources, model.audio_channels, 0)
        self.sum_weight = torch.zeros(0)
        self.start = 0  # pass position of self.out[..., 0]
        self.final = []  # finished output in mix positions, from the combiner's position on
        self.final_end = 0  # mix position up to which output is finished

    def chunk(self, index: int) -> tuple[int, int]:
        """(first mix position the model sees, how many) for chunk `index`: TensorChunk.padded."""
        offset = self.offsets[index]
        length = min(self.segment_length, self.length - offset)
        valid = padded_length(self.model, length, self.segment)
        return self.base + offset - (valid - length) // 2, valid

    def first_needed(self, index: int) -> int:
        return self.chunk(index)[0]

    def run(self, indices: range, mix, device: str) -> None:
        """Chunks `indices` (consecutive), in one forward call where their windows are the same
        size (an HTDemucs: always; another model: all but the last chunk)."""
        import torch

        groups = []  # [(window length, chunk length, [indices])]
        for index in indices:
            start, length = self.chunk(index)
            chunk_length = min(self.segment_length, self.length - self.offsets[index])
            if groups and groups[-1][:2] == (length, chunk_length):
                groups[-1][2].append(index)
            else:
                groups.append((length, chunk_length, [index]))
        for length, chunk_length, group in groups:
            chunks = torch.stack([mix.normalised(self.chunk(index)[0], length) for index in group])
            outs = forward(self.network, chunks, chunk_length, device)
            for index, out in zip(group, outs, strict=True):
                self.add(index, out)

    def add(self, index: int, out) -> None:
        """Adds chunk `index`'s output (sources, channels, length), center-trimmed; positions before
        the next chunk are then finished."""
        import torch

        offset = self.offsets[index]
        length = out.shape[-1]
        missing = offset + length - (self.start + self.out.shape[-1])
        if missing > 0:
            self.out = torch.cat([self.out, self.out.new_zeros(*self.out.shape[:-1], missing)], dim=-1)
            self.sum_weight = torch.cat([self.sum_weight, self.sum_weight.new_zeros(missing)])
        at = offset - self.start
        self.out[..., at : at + length] += self.weight[:length] * out
        self.sum_weight[at : at + length] += self.weight[:length]
        done = (self.offsets[index + 1] if index + 1 < len(self.offsets) else self.length) - self.start
        finished = self.out[..., :done] / self.sum_weight[:done]
        self.out, self.sum_weight = self.out[..., done:], self.sum_weight[done:]
        first = self.start + self.base  # mix position of finished[..., 0]
        self.start += done
        if first < 0:  # the shift's zero prefix is dropped
            finished = finished[..., -first:]
        if finished.shape[-1]:
            self.final.append(finished)
            self.final_end = self.start + self.base

    def take(self, count: int):
        import torch

        whole = torch.cat(self.final, dim=-1) if len(self.final) > 1 else self.final[0]
        self.final = [whole[..., count:]] if whole.shape[-1] > count else []
        return whole[..., :count].clone()


@dataclass(frozen=True)
class Plan:
    members: list[int]  # bag members that run
    weights: list[list[float]] | None  # the bag's weights; None for a single model
    minus: bool  # two stems: no_STEM = mix - STEM (else the sum of the other sources)
    complement: bool = False  # the last source is the mix minus the others (a one-target RoFormer)
    shifts: bool = True  # demucs's random shifts apply (MSST's demix has none)
    normalise: bool = True  # the model sees (mix - mean) / std, as demucs does (MSST's demix does not)


def plan_for(model, two_stems: str | None) -> Plan:
    """Which bag members run: those with a non-zero weight for a stem the job needs. When that
    leaves some out, the other sources are incomplete and no_STEM is the mix minus STEM."""
    if isinstance(model, RoformerModel):
        return Plan(members=[0], weights=None, minus=False, complement=model.complement, shifts=False, normalise=False)
    weights = bag_weights(model)
    if weights is None:
        return Plan(members=[0], weights=None, minus=False)
    every = [index for index, weight in enumerate(weights) if any(value != 0 for value in weight)]
    if two_stems is None:
        return Plan(members=every, weights=weights, minus=False)
    stem = list(model.sources).index(two_stems)
    needed = [index for index, weight in enumerate(weights) if weight[stem] != 0]
    return Plan(members=needed, weights=weights, minus=needed != every)


def passes_for(model, plan: Plan, *, frames: int, config: EngineConfig, segment, device: str) -> list[Pass]:
    """apply_model's passes, with its random shifts drawn in its order (every bag member's, even
    the ones that do not run, so the others get the shifts demucs would give them)."""
    import random

    if isinstance(model, RoformerModel):
        return [RoformerPass(model=model, frames=frames)]
    passes = []
    for index, member in enumerate(members(model)):
        bases = [0]
        if config.shifts:
            max_shift = int(0.5 * member.samplerate)
            bases = [random.randint(0, max_shift) - max_shift for _ in range(config.shifts)]
        if index not in plan.members:
            continue
        for base in bases:
            passes.append(
                Pass(
                    member=index,
                    model=member,
                    network=network_for(member, config, device),
                    base=base,
                    frames=frames,
                    segment=segment,
                    overlap=config.overlap,
                    sources=len(model.sources),
                )
            )
    return passes


def combine(passes: list[Pass], count: int, *, plan: Plan, shifts: int, stats: MixStatistics):
    """The next `count` finished positions of every pass -> the sources [S, C, count], as
    apply_model averages shifts and weighs bag members, and separate_tensor scales back."""
    estimates = 0.0
    totals = [0.0] * passes[0].out.shape[0]
    if plan.weights is not None:
        for weight in plan.weights:
            for k, value in enumerate(weight):
                totals[k] += value
    for member in plan.members:
        mine = [one for one in passes if one.member == member]
        if shifts and plan.shifts:
            out = 0.0
            for one in mine:
                out += one.take(count)
            out /= shifts
        else:
            out = mine[0].take(count)
        if plan.weights is None:
            estimates = out
            continue
        for k, value in enumerate(plan.weights[member]):
            out[k] *= value
        estimates += out
    if plan.weights is not None:
        for k in range(estimates.shape[0]):
            estimates[k] /= totals[k]
    return estimates * stats.std + stats.mean


def stem_names(sources: list[str], two_stems: str | None) -> list[str]:
    return list(sources) if two_stems is None else [two_stems, f"no_{two_stems}"]


def stems_from_sources(sources, names: list[str], model_sources: list[str], two_stems: str | None, plan: Plan, mix):
    """The stems from the sources [S, C, T]: all of them, or (STEM, no_STEM) where no_STEM adds
    the other sources (demucs's --other-method add) or, when they were not all computed, is the
    mix minus STEM (--other-method minus)."""
    import torch

    if two_stems is None:
        return dict(zip(names, sources, strict=True))
    index = model_sources.index(two_stems)
    selected = sources[index]
    if plan.minus:
        rest = mix - selected
    else:
        rest = torch.zeros_like(selected)
        for k, source in enumerate(sources):
            if k != index:
                rest += source
    return {two_stems: selected, f"no_{two_stems}": rest}


@dataclass
class Run:
    """One model's part of a separation: its plan, passes and mix statistics, and (in an
    ensemble) the stems taken from it; None takes them all, as a single model's job does."""

    model: object
    plan: Plan
    passes: list
    stats: MixStatistics
    take: list[str] | None = None


def separate_into(
    writers: dict[str, StemWriter],
    *,
    reader: InputReader,
    runs: list[Run],
    config: EngineConfig,
    device: str,
    two_stems: str | None,
    tracker: Progress,
) -> None:
    """Second read: every pass of every running member (of every model of an ensemble) over the
    mix in lockstep, chunk by chunk in order of position, so only about a segment of audio is
    held; finished positions are combined and handed to the writers."""
    import heapq

    import torch

    first = runs[0]
    mix = MixWindow(mix_blocks(reader, first.model), first.stats, first.model.audio_channels)
    views = [mix.view(run.stats) for run in runs]
    queue = [
        (one.first_needed(0), which, number, 0)
        for which, run in enumerate(runs)
        for number, one in enumerate(run.passes)
        if len(one.offsets)
    ]
    heapq.heapify(queue)
    every = [one for run in runs for one in run.passes]
    total = sum(len(one.offsets) for one in every)
    needs_mix = any(run.plan.minus or run.plan.complement for run in runs)
    done = 0
    combined = 0
    names = list(writers)
    while queue:
        _, which, number, index = heapq.heappop(queue)
        one = runs[which].passes[number]
        indices = range(index, min(index + config.batch, len(one.offsets)))
        one.run(indices, views[which], device)
        following = indices[-1] + 1
        if following < len(one.offsets):
            heapq.heappush(queue, (one.first_needed(following), which, number, following))
        done += len(indices)
        ready = min(p.final_end for p in every)
        if ready > combined:
            raw = mix.raw(combined, ready) if needs_mix else None
            stems = {}
            for run in runs:
                sources = combine(run.passes, ready - combined, plan=run.plan, shifts=config.shifts, stats=run.stats)
                if run.plan.complement:
                    sources = torch.cat([sources, (raw - sources.sum(0))[None]])
                if run.take is None:
                    stems.update(stems_from_sources(sources, names, list(run.model.sources), two_stems, run.plan, raw))
                else:
                    stems.update({name: sources[list(run.model.sources).index(name)] for name in run.take})
            for name, writer in writers.items():
                writer.add(stems[name])
            combined = ready
        mix.discard_before(min([combined] + [item[0] for item in queue]))
        tracker.separating(done / total)
    if combined != first.stats.frames:
        raise EngineError("The separation did not cover the whole track.")
