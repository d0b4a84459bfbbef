"""bin/first-model, as bin/run runs it on a first start: without the weights' host it falls back to the
demo model and says so. Slow: it runs the script twice, each a fresh Python process reading the
settings (the command itself is in test_install_model.py)."""

import os
import socket
import subprocess
import sys

import pytest

from testkit.processes import REPO_ROOT

pytestmark = pytest.mark.slow


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the socket is closed


def test_a_first_start_offline_falls_back_to_the_demo_model_and_says_so(tmp_path):
    """bin/first-model, as bin/run runs it, on a machine that cannot reach the weights' host."""
    env = dict(
        os.environ,
        DEMUCS_MODEL_REPO=str(tmp_path / "models"),
        MODEL_DOWNLOAD_BASE_URL=f"http://127.0.0.1:{closed_port()}",
        HF_HUB_OFFLINE="1",
        DEBUG="1",
    )

    first = subprocess.run(
        ["bin/first-model", sys.executable], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )

    assert first.returncode == 0, first.stderr
    assert "using the untrained demo model instead" in first.stderr
    assert (tmp_path / "models" / "demo.th").is_file()
    assert not (tmp_path / "models" / "htdemucs.yaml").exists()
    second = subprocess.run(
        ["bin/first-model", sys.executable], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0 and "Models installed (demo)" in second.stdout
    assert "demo model instead" not in second.stderr
