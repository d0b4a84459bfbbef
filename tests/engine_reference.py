"""Comparing what the streaming engine wrote with a whole-song reference (the engine and the
RoFormer and ensemble tests)."""

from pathlib import Path

import numpy as np
import soundfile

TOLERANCE = 1e-4  # max absolute difference, on [-1, 1] samples


def written(path: Path) -> np.ndarray:
    """A 16-bit wav the engine wrote, as the floats it converted (x * 32767, truncated)."""
    return soundfile.read(path, dtype="int16", always_2d=True)[0].T.astype(np.float64) / 32767


def assert_equal_to_reference(result, expected):
    assert list(result.stems) == list(expected)
    for name, stem in expected.items():
        ours = written(result.stems[name])
        assert ours.shape == stem.shape
        difference = float(np.abs(ours - stem).max())
        print(f"{name}: max abs difference {difference:.2e}")
        assert difference < TOLERANCE, name
