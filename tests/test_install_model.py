"""`manage.py install_model`: official weights from a (here: loopback) server into the model folder,
resumed after a cut, checked against the catalogue's checksum, moved into place whole; `--list`.

The server is a real HTTP server on 127.0.0.1 serving files made here; the catalogue entries point at
it through MODEL_DOWNLOAD_BASE_URL, keeping the publishers' paths."""

import dataclasses
import hashlib
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.management import CommandError, call_command

from separation import engine
from separation.catalog import CATALOGUE, DEMUCS_ROOT, WeightFile
from separation.engine import EngineConfig

pytestmark = pytest.mark.unit

SIGNATURE = "0badcafe"


class Files:
    """What the loopback server serves, and what it saw."""

    def __init__(self):
        self.content: dict[str, bytes] = {}
        self.headers: dict[str, dict[str, str]] = {}  # extra response headers per path
        self.cut_after: dict[str, int] = {}  # path -> send this many bytes, then drop the connection (once)
        self.ranges: list[str | None] = []


@pytest.fixture
def server(settings):
    files = Files()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path = urlsplit(self.path).path
            data = files.content.get(path)
            if data is None:
                self.send_error(404)
                return
            requested = self.headers.get("Range")
            files.ranges.append(requested)
            start = int(requested.removeprefix("bytes=").rstrip("-")) if requested else 0
            self.send_response(206 if requested else 200)
            if requested:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            for name, value in files.headers.get(path, {}).items():
                self.send_header(name, value)
            self.end_headers()
            cut = files.cut_after.pop(path, None)
            self.wfile.write(data[start:cut] if cut is not None else data[start:])
            if cut is not None:
                self.close_connection = True

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    settings.MODEL_DOWNLOAD_BASE_URL = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield files
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def repo(settings, tmp_path, hf_offline) -> Path:
    settings.DEMUCS_MODEL_REPO = tmp_path / "models"
    return settings.DEMUCS_MODEL_REPO


@pytest.fixture
def published_htdemucs(server, demo_model_repo, monkeypatch) -> bytes:
    """htdemucs's catalogue entry as demucs publishes it (SIGNATURE-SHA256PREFIX.th under
    hybrid_transformer/), its file a demo model made here."""
    data = (demo_model_repo / "demo.th").read_bytes()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    name = f"{SIGNATURE}-{prefix}.th"
    url = DEMUCS_ROOT + "hybrid_transformer/" + name
    server.content[urlsplit(url).path] = data
    entry = dataclasses.replace(
        CATALOGUE["htdemucs"], files=(WeightFile(url, name, prefix),), demucs_members=(SIGNATURE,)
    )
    monkeypatch.setitem(CATALOGUE, "htdemucs", entry)
    return data


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("install_model", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_installs_a_demucs_model_that_the_engine_then_loads(repo, published_htdemucs, server):
    assert not engine.model_is_installed("htdemucs", repo)

    out, _ = run("htdemucs")

    assert "Installed htdemucs" in out
    member = next(repo.glob(f"{SIGNATURE}-*.th"))
    assert member.read_bytes() == published_htdemucs
    assert (repo / "htdemucs.yaml").read_text().startswith("models:")
    assert engine.model_is_installed("htdemucs", repo)
    model, _ = engine.load_model("htdemucs", EngineConfig(model_repo=repo, device="cpu"))
    assert list(model.sources) == ["drums", "bass", "other", "vocals"]
    assert sorted(path.name for path in repo.iterdir()) == sorted([member.name, "htdemucs.yaml"])  # no leftovers


def test_it_resumes_a_cut_download_where_it_stopped(repo, published_htdemucs, server):
    path = next(iter(server.content))
    server.cut_after[path] = 100_000

    with pytest.raises(CommandError):
        run("htdemucs")
    assert not engine.model_is_installed("htdemucs", repo)
    kept = next(repo.glob(".*.partial")).stat().st_size
    assert 0 < kept <= 100_000

    run("htdemucs")

    assert server.ranges == [None, f"bytes={kept}-"]
    assert next(repo.glob(f"{SIGNATURE}-*.th")).read_bytes() == published_htdemucs
    assert engine.model_is_installed("htdemucs", repo)
    assert not list(repo.glob(".*.partial"))


def test_it_refuses_a_file_whose_checksum_is_not_the_published_one(repo, published_htdemucs, server):
    path = next(iter(server.content))
    middle = len(published_htdemucs) // 2
    server.content[path] = (
        published_htdemucs[:middle] + bytes([published_htdemucs[middle] ^ 1]) + published_htdemucs[middle + 1 :]
    )

    with pytest.raises(CommandError):
        run("htdemucs")

    assert not engine.model_is_installed("htdemucs", repo)
    assert not repo.exists() or not any(repo.iterdir())


ROFORMER_FILES = {"model.ckpt": b"checkpoint" * 1000, "config.yaml": b"model: {num_bands: 60}\n"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def roformer_entry(server, monkeypatch, *, catalogue: dict[str, str], published: dict[str, str] | None = None):
    """mel_roformer_vocals with the catalogue checksums given (a file left out has none), served
    from the loopback server as from HuggingFace, its host publishing the SHA-256s in `published`."""
    weights = []
    for name, data in ROFORMER_FILES.items():
        url = f"https://huggingface.co/someone/roformer/resolve/main/{name}"
        server.content[urlsplit(url).path] = data
        if name in (published or {}):
            server.headers[urlsplit(url).path] = {"X-Linked-Etag": f'"{published[name]}"'}
        weights.append(WeightFile(url, name, catalogue.get(name, "")))
    monkeypatch.setitem(
        CATALOGUE, "mel_roformer_vocals", dataclasses.replace(CATALOGUE["mel_roformer_vocals"], files=tuple(weights))
    )


def test_it_installs_a_roformer_whose_files_match_the_catalogue(repo, server, monkeypatch):
    roformer_entry(server, monkeypatch, catalogue={name: sha256(data) for name, data in ROFORMER_FILES.items()})

    _, err = run("mel_roformer_vocals")

    folder = repo / "mel_roformer_vocals"
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == ROFORMER_FILES
    assert engine.model_is_installed("mel_roformer_vocals", repo)
    assert "Warning" not in err


def test_it_refuses_a_tampered_config_and_leaves_nothing_in_the_model_folder(repo, server, monkeypatch):
    roformer_entry(server, monkeypatch, catalogue={name: sha256(data) for name, data in ROFORMER_FILES.items()})
    server.content["/someone/roformer/resolve/main/config.yaml"] = b"model: {num_bands: 61}\n"

    with pytest.raises(CommandError):
        run("mel_roformer_vocals")

    assert len(server.ranges) == 2  # the checkpoint was downloaded and checked first
    assert not engine.model_is_installed("mel_roformer_vocals", repo)
    assert not (repo / "mel_roformer_vocals").exists()


def test_it_refuses_a_model_with_a_file_the_catalogue_has_no_checksum_for_unless_told(repo, server, monkeypatch):
    config = ROFORMER_FILES["config.yaml"]
    roformer_entry(server, monkeypatch, catalogue={"config.yaml": sha256(config)})

    with pytest.raises(CommandError):
        run("mel_roformer_vocals")
    assert server.ranges == []  # refused before anything was downloaded
    assert not engine.model_is_installed("mel_roformer_vocals", repo)

    _, err = run("mel_roformer_vocals", "--allow-unverified")

    assert engine.model_is_installed("mel_roformer_vocals", repo)
    assert (repo / "mel_roformer_vocals" / "model.ckpt").read_bytes() == ROFORMER_FILES["model.ckpt"]
    assert "Warning: model.ckpt: no checksum in the catalogue; installed not checked" in err
    assert "config.yaml" not in err


def test_unverified_it_still_checks_a_file_against_the_sha256_its_host_publishes(repo, server, monkeypatch):
    roformer_entry(server, monkeypatch, catalogue={}, published={"model.ckpt": sha256(b"another checkpoint")})

    with pytest.raises(CommandError):
        run("mel_roformer_vocals", "--allow-unverified")
    assert not (repo / "mel_roformer_vocals").exists()

    roformer_entry(server, monkeypatch, catalogue={}, published={"model.ckpt": sha256(ROFORMER_FILES["model.ckpt"])})
    _, err = run("mel_roformer_vocals", "--allow-unverified")
    assert engine.model_is_installed("mel_roformer_vocals", repo)
    assert "checked only against the SHA-256 its host publishes" in err


def test_it_lists_the_catalogue_with_installed_state_size_licence_and_quality(settings, demo_model_repo, hf_offline):
    settings.DEMUCS_MODEL_REPO = demo_model_repo

    out, _ = run("--list")

    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert set(CATALOGUE) <= set(lines)
    assert "yes" in lines["demo"].split() and "MB" in lines["demo"]
    assert " no " in lines["htdemucs"] and "9.00 average dB SDR (MUSDB18-HQ test)" in lines["htdemucs"]
    assert "MIT" in lines["mel_roformer_vocals"] and "vocals 11.01" in lines["mel_roformer_vocals"]
    assert "not offered" in lines["bs_roformer_viperx"]


def test_it_never_downloads_a_model_that_is_not_in_the_catalogue(repo, server):
    with pytest.raises(CommandError):
        run("../../etc/passwd")
    assert server.ranges == []
