"""The GPU settings side by side: real-time factor, peak GPU memory and SNR against float32 for
DEMUCS_PRECISION x DEMUCS_BATCH, on the htdemucs-size model and the four-model htdemucs_ft-size bag.

    .venv/bin/python -m bench.gpu --minutes 3                       # on a machine with CUDA
    .venv/bin/python -m bench.gpu --device cpu --minutes 0.2 --batches 1 2 --models htdemucs  # a dry run

Every combination separates the same track through `engine.separate`, as a worker does (shifts 1,
overlap 0.25, the model's segment), after one untimed run that loads the model and sets up the
kernels. The float32, batch 1 output of each model is the reference: the SNR of every other
combination is over all its stems against it (16-bit wav files, so about 90 dB is the ceiling).
Settings under 40 dB are marked "no" and must not be turned on. The models are the untrained
presets of `create_demo_model` (real size and compute, no skill), written into a temporary folder.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from testkit.audio import write_test_audio  # noqa: E402

MIN_SNR_DB = 40


def stems_of(result) -> np.ndarray:
    import soundfile

    return np.stack([soundfile.read(path, dtype="float64")[0] for path in result.stems.values()])


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = np.sum((reference - estimate) ** 2)
    return float(10 * np.log10(np.sum(reference**2) / max(noise, 1e-30)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--models", nargs="+", default=["htdemucs", "htdemucs_ft"], choices=["htdemucs", "htdemucs_ft"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "float16", "bfloat16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    args = parser.parse_args()
    # The reference first: float32 at batch 1.
    precisions = ["float32"] + [precision for precision in args.precisions if precision != "float32"]
    batches = sorted({1, *args.batches})

    import torch

    from separation import engine
    from separation.demo_models import create_demo_model
    from separation.engine import EngineConfig

    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    song = write_test_audio(work / "song.wav", args.minutes * 60, seed=0)
    cuda = args.device.startswith("cuda")
    print(
        f"device {args.device}: {torch.cuda.get_device_name(args.device) if cuda else 'CPU'}; torch {torch.__version__}"
    )
    print("| model | precision | batch | seconds | s per s of audio | peak GPU memory | SNR vs float32 | keep |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        create_demo_model(work / "models", name=name, preset=name)
        reference = None
        for precision in precisions:
            for batch in batches:
                config = EngineConfig(
                    model_repo=work / "models", device=args.device, precision=precision, batch=batch, shifts=1
                )
                out = work / f"{name}-{precision}-{batch}"
                engine.separate(input_path=song, output_dir=out / "warm", model_name=name, config=config)
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                random.seed(0)  # the same random shifts in every combination
                started = time.monotonic()
                result = engine.separate(input_path=song, output_dir=out / "timed", model_name=name, config=config)
                if cuda:
                    torch.cuda.synchronize()
                seconds = time.monotonic() - started
                stems = stems_of(result)
                if reference is None:
                    reference = stems  # float32, batch 1: the first combination
                snr = snr_db(reference, stems)
                memory = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if cuda else "-"
                keep = "yes" if snr >= MIN_SNR_DB else "no"
                rtf = seconds / (args.minutes * 60)
                print(
                    f"| {name} | {precision} | {batch} | {seconds:.2f} | {rtf:.4f} | {memory} | {snr:.1f} dB | {keep} |"
                )


if __name__ == "__main__":
    main()
