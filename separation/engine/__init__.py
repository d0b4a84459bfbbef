"""The separation engine: a thin wrapper around demucs's own code paths.

Its only input is a file path and options, its only output is files and a progress callback,
so it runs (and is tested and benchmarked) without Django; nothing in it imports Django.

Fork safety. django-q2 forks its workers from the cluster process, and once a process has run
any multi-threaded torch operation, a child it forks hangs on its first torch operation. So
every module here imports only numpy, sphn and the standard library at import time; torch,
demucs, julius, lameenc, soundfile and Pillow are imported inside the functions that need them,
and nothing runs torch work at import time. The web process only calls `probe_audio`, the
excerpt functions and `model_is_installed`; loading models and separating belong in the worker, after the fork.

The modules: separate (the whole run, start here), reader (decoding window by window, probing),
excerpt (a free preview's loudest 30 seconds, cut from the decoded song),
models (installed models, devices, loading), networks (how a network runs: torch, half precision,
ONNX Runtime), resample, mix (the mix's statistics and sliding
window), apply (demucs's chunk, shift and bag arithmetic, and the loop all families run in),
roformer (the RoFormer family: MSST checkpoints and MSST's chunk arithmetic), encode (raw stems, wav/mp3/flac),
waveform, outputs (temporary files, the zip), progress, config and errors. Only the names below
are for the rest of the project.
"""

from separation.engine.apply import warm_up
from separation.engine.config import EngineConfig
from separation.engine.encode import ENCODE_BLOCK_FRAMES, MAX_OUTPUT_SAMPLERATE, OUTPUT_FORMATS
from separation.engine.errors import AudioDecodeError, AudioTooLong, EngineError, ModelUnavailable, SeparationAborted
from separation.engine.excerpt import ExcerptPlan, excerpt_plan, excerpt_write
from separation.engine.models import load_model, model_is_installed, resolve_device
from separation.engine.progress import SEPARATION_SHARE
from separation.engine.reader import AudioInfo, probe_audio
from separation.engine.separate import SeparationResult, separate

__all__ = [
    "ENCODE_BLOCK_FRAMES",
    "MAX_OUTPUT_SAMPLERATE",
    "OUTPUT_FORMATS",
    "SEPARATION_SHARE",
    "AudioDecodeError",
    "AudioInfo",
    "AudioTooLong",
    "EngineConfig",
    "EngineError",
    "ExcerptPlan",
    "ModelUnavailable",
    "SeparationAborted",
    "SeparationResult",
    "excerpt_plan",
    "excerpt_write",
    "load_model",
    "model_is_installed",
    "probe_audio",
    "resolve_device",
    "separate",
    "warm_up",
]
