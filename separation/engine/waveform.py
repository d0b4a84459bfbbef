"""Each stem's waveform picture (the job page draws it): per pixel column the min and max of
the stem's mono mix-down, gathered block by block as the stem is written, then one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WAVEFORM_SIZE = (1000, 120)  # width, height in pixels
WAVEFORM_COLOR = (0x5B, 0x3D, 0xF5, 255)
WAVEFORM_MIN_PEAK = 0.05  # quieter stems are drawn at most 20 times larger


class WaveformPeaks:
    """Per pixel column, the min and max of a mono signal given block by block; column c spans
    frames [c * frames // width, (c + 1) * frames // width), as numpy's reduceat splits it."""

    def __init__(self, frames: int, width: int):
        self.frames = frames
        self.starts = np.minimum((np.arange(width) * frames) // width, max(frames - 1, 0))
        self.low = np.full(width, np.inf, dtype=np.float32)
        self.high = np.full(width, -np.inf, dtype=np.float32)
        self.position = 0

    def add(self, samples: np.ndarray) -> None:
        begin, end = self.position, self.position + samples.shape[-1]
        self.position = end
        if end <= begin:
            return
        first = int(np.searchsorted(self.starts, begin, side="right")) - 1
        last = int(np.searchsorted(self.starts, end - 1, side="right")) - 1
        # Columns that start at the same frame (fewer frames than columns) each hold that one frame.
        while first > 0 and self.starts[first - 1] == self.starts[first]:
            first -= 1
        columns = slice(first, last + 1)
        local = np.maximum(self.starts[columns] - begin, 0)
        self.low[columns] = np.minimum(self.low[columns], np.minimum.reduceat(samples, local))
        self.high[columns] = np.maximum(self.high[columns], np.maximum.reduceat(samples, local))


def write_waveform(peaks: WaveformPeaks, path: Path) -> None:
    """A 1000x120 PNG from the per-column min/max of the mono mix-down, #5b3df5 on transparent;
    scaled to the stem's own peak, as players draw it, so quiet stems show their shape, but
    near-silence is not blown up into a full-height band of noise."""
    from PIL import Image

    width, height = WAVEFORM_SIZE
    low, high = peaks.low, peaks.high
    scale = np.float32(max(float(max(np.abs(low).max(initial=0.0), np.abs(high).max(initial=0.0))), WAVEFORM_MIN_PEAK))
    low, high = low / scale, high / scale
    middle = (height - 1) / 2
    top = np.floor(middle - np.clip(high, -1, 1) * middle).astype(int)
    bottom = np.ceil(middle - np.clip(low, -1, 1) * middle).astype(int)
    rows = np.arange(height)[:, None]
    pixels = np.zeros((height, width, 4), dtype=np.uint8)
    pixels[(rows >= top[None, :]) & (rows <= bottom[None, :])] = WAVEFORM_COLOR
    Image.fromarray(pixels, "RGBA").save(path, format="PNG", optimize=False)
