"""The RoFormer family against htdemucs, both at real size: seconds per minute of audio and peak RSS.

    .venv/bin/python -m bench.families --seconds 30 --rounds 2

Writes the `htdemucs` preset (the released htdemucs layout, 41.98 M parameters) and the
`mel_roformer` preset (the size of Kimberley Jensen's Mel-Band RoFormer vocals model: dim 384,
depth 6, 60 bands, 8 s chunks, 2 overlaps) into a temporary model folder, then separates the same
clip with each, alternating, every run in a fresh process (fork+exec) so its peak RSS is its own:
`engine.separate` as a worker runs it (CPU, shifts 1, overlap 0.25 for Demucs; MSST's chunking for
the RoFormer), writing four wavs or vocals and instrumental. Prints each run, the medians and the
ratios. The machine's load average is printed too: on shared cores, read the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from testkit.audio import write_test_audio

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS = {"htdemucs": "htdemucs", "mel_roformer": "mel_roformer"}  # name -> create_demo_model preset

RUN = """
import resource, sys, time
from pathlib import Path
from separation import engine
from separation.engine import EngineConfig

repo, name, song, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
config = EngineConfig(model_repo=repo, device="cpu", shifts=1, overlap=0.25)
engine.load_model(name, config)
started = time.monotonic()
engine.separate(input_path=song, output_dir=out, model_name=name, config=config)
print(time.monotonic() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run(repo: Path, name: str, song: Path, out: Path) -> tuple[float, float]:
    """(seconds of separation, after loading; peak RSS in MiB) of one run in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(repo), name, str(song), str(out)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "demucs_service.settings"},
    )
    seconds, rss_kib = done.stdout.split()[-2:]
    return float(seconds), int(rss_kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the test clip")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-families-") as temp:
        temp = Path(temp)
        repo = temp / "models"
        for name, preset in MODELS.items():
            subprocess.run(
                [
                    sys.executable,
                    "manage.py",
                    "create_demo_model",
                    "--repo",
                    str(repo),
                    "--name",
                    name,
                    "--preset",
                    preset,
                ],
                cwd=REPO_ROOT,
                check=True,
                env={**os.environ, "DEBUG": "1"},
            )
        song = write_test_audio(temp / "song.wav", args.seconds)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in MODELS}
        for round_number in range(args.rounds):
            for name in MODELS:
                seconds, rss = run(repo, name, song, temp / f"out-{name}-{round_number}")
                results[name].append((seconds, rss))
                print(
                    f"round {round_number + 1} {name}: {seconds:.1f} s, peak RSS {rss:.0f} MiB, load {os.getloadavg()}"
                )
    minutes = args.seconds / 60
    medians = {}
    for name, runs in results.items():
        per_minute = statistics.median(seconds for seconds, _ in runs) / minutes
        rss = statistics.median(rss for _, rss in runs)
        medians[name] = (per_minute, rss)
        print(f"{name}: {per_minute:.1f} s per minute of audio, peak RSS {rss:.0f} MiB")
    (roformer_time, roformer_rss), (demucs_time, demucs_rss) = medians["mel_roformer"], medians["htdemucs"]
    print(f"mel_roformer / htdemucs: time {roformer_time / demucs_time:.2f}, peak RSS {roformer_rss / demucs_rss:.2f}")


if __name__ == "__main__":
    main()
