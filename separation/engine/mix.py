"""The mix as the model takes it: the input converted to the model's channels and rate block by
block, read twice. The first read measures the whole mix (its length, mean and standard
deviation: demucs normalises by the whole mix's statistics); the second feeds the chunks
through a sliding window, so only about a segment of audio is held whatever the song's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from separation.engine.errors import AudioDecodeError, AudioTooLong
from separation.engine.reader import InputReader
from separation.engine.resample import Resampler


def mix_blocks(reader: InputReader, model):
    """The mix at the model's samplerate and channel count (Separator._load_audio's
    convert_audio: channels, then julius), block by block."""
    import torch
    from demucs.audio import convert_audio_channels

    resampler = Resampler(reader.samplerate, model.samplerate)
    for block in reader.blocks():
        y = resampler.feed(convert_audio_channels(torch.from_numpy(block), model.audio_channels))
        if y.shape[-1]:
            yield y
    y = resampler.finish()
    if y is not None and y.shape[-1]:
        yield y


@dataclass(frozen=True)
class MixStatistics:
    input_frames: int
    frames: int  # at the model's samplerate
    mean: object  # float32 scalar tensors, as Separator.separate_tensor computes them
    std: object


def mix_statistics(
    reader: InputReader, model, report: Callable[[float], None], max_seconds: float | None = None
) -> MixStatistics:
    """First read: the length of the converted mix, and the mean and (unbiased) standard deviation
    of its channel average, accumulated in float64 block by block (Chan et al.). Stops with
    AudioTooLong past `max_seconds`, before anything is separated."""
    import torch

    count, mean, m2 = 0, 0.0, 0.0
    seconds = max_seconds if max_seconds is not None else reader.duration
    expected = max(1.0, seconds * reader.samplerate)
    limit = None if max_seconds is None else int(max_seconds * reader.samplerate)
    for block in mix_blocks(reader, model):
        if limit is not None and reader.frames_read > limit:
            raise AudioTooLong(
                seconds_at_least=reader.frames_read / reader.samplerate,
                message="The file holds more audio than was measured when it was uploaded.",
            )
        ref = block.mean(0).double()
        size = ref.numel()
        block_mean = float(ref.mean())
        block_m2 = float(((ref - block_mean) ** 2).sum())
        delta = block_mean - mean
        total = count + size
        mean += delta * size / total
        m2 += block_m2 + delta * delta * count * size / total
        count = total
        report(min(reader.frames_read / expected, 1.0))
    std = math.sqrt(m2 / (count - 1)) if count > 1 else math.nan
    return MixStatistics(
        input_frames=reader.frames_read,
        frames=count,
        mean=torch.tensor(mean, dtype=torch.float32),
        std=torch.tensor(std, dtype=torch.float32) + 1e-8,
    )


def unnormalised(stats: MixStatistics) -> MixStatistics:
    """The statistics for a model that takes the mix as it is: mean 0 and std 1, so normalising
    and scaling back change nothing."""
    import torch

    return MixStatistics(stats.input_frames, stats.frames, torch.tensor(0.0), torch.tensor(1.0))


class MixWindow:
    """The converted mix through a sliding window over a second read of the file."""

    def __init__(self, blocks, stats: MixStatistics, channels: int):
        import torch

        self.blocks = blocks
        self.stats = stats
        self.start = 0
        self.data = torch.zeros(channels, 0)

    def _ensure(self, end: int) -> None:
        import torch

        end = min(end, self.stats.frames)
        pieces = [self.data]
        have = self.start + self.data.shape[-1]
        while have < end:
            block = next(self.blocks, None)
            if block is None:
                raise AudioDecodeError("The file changed while it was being read.")
            pieces.append(block)
            have += block.shape[-1]
        if len(pieces) > 1:
            self.data = torch.cat(pieces, dim=-1)

    def raw(self, start: int, end: int):
        self._ensure(end)
        return self.data[..., start - self.start : end - self.start]

    def normalised(self, start: int, length: int, stats: MixStatistics | None = None):
        """(mix - mean) / std over [start, start + length), zeros outside the mix, as apply_model
        sees the normalised mix through TensorChunk.padded; `stats` for a model of an ensemble
        that normalises differently (a RoFormer beside Demucs)."""
        import torch

        stats = stats or self.stats
        out = torch.zeros(self.data.shape[0], length)
        low, high = max(start, 0), min(start + length, self.stats.frames)
        if high > low:
            out[..., low - start : high - start] = (self.raw(low, high) - stats.mean) / stats.std
        return out

    def view(self, stats: MixStatistics) -> MixView:
        return MixView(self, stats)

    def discard_before(self, position: int) -> None:
        if position > self.start:
            drop = min(position - self.start, self.data.shape[-1])
            self.data = self.data[..., drop:]
            self.start += drop


class MixView:
    """One window seen with one model's statistics: what a pass of that model reads."""

    def __init__(self, window: MixWindow, stats: MixStatistics):
        self.window = window
        self.stats = stats

    def normalised(self, start: int, length: int):
        return self.window.normalised(start, length, self.stats)
