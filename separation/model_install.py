"""Installing a catalogue model's official weights into the model folder (`manage.py install_model`).

Each file is downloaded from where its publisher hosts it (or, with MODEL_DOWNLOAD_BASE_URL, from a
mirror keeping the publisher's paths) into a partial file beside its target, resumed with an HTTP
Range request when an earlier download was cut, and checked against the catalogue's checksum; only
when every file of the model is checked are they renamed into place, the one that makes the model
count as installed (a demucs bag's NAME.yaml, a RoFormer's config.yaml) last, so a worker never
sees half a model, and a file that fails its checksum takes the model's other downloads with it
(the source is not to be trusted), leaving nothing behind. Workers load a model on its first job
and keep it, so a running worker picks up a newly installed model without a restart.

Checksums: every file, a RoFormer's config as much as its weights, has its SHA-256 in the catalogue
(demucs's files a prefix of it, from their names). A model with a file that has none is refused
before anything is downloaded, unless the operator passes --allow-unverified: then it is installed
with a warning, checked at least against the SHA-256 its host publishes where there is one
(HuggingFace's X-Linked-Etag for an LFS file), which catches a damaged download but not a host
serving something else.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from separation.catalog import CATALOGUE, Entry

# Small enough that a cut download keeps nearly all it received (a cut block is lost whole).
BLOCK_BYTES = 1 << 16
# (connect, read): an offline machine (bin/first-model) gives up soon; a slow host may pause.
TIMEOUT_SECONDS = (10, 60)
SHA256 = re.compile(r"[0-9a-f]{64}")


class InstallError(Exception):
    """A model could not be installed; the message says why, for the operator."""


class ChecksumMismatch(InstallError):
    """A file is not what its checksum says: its source is not to be trusted."""


@dataclass(frozen=True)
class Download:
    url: str
    target: Path
    sha256: str  # hex, or a prefix of it; empty: take the host's published one


def download_url(url: str, base_url: str) -> str:
    """The publisher's URL, or the same path under `base_url` (a mirror, the tests' loopback)."""
    if not base_url:
        return url
    base = urlsplit(base_url.rstrip("/"))
    original = urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path + original.path, original.query, ""))


def model_folder(repo: Path, name: str, entry: Entry) -> Path:
    """Where a model's files go: demucs reads its folder flat; a RoFormer has a folder of its own."""
    return repo / name if entry.family == "roformer" else repo


def downloads_for(name: str, repo: Path, base_url: str) -> list[Download]:
    entry = CATALOGUE[name]
    if entry.family == "ensemble":
        raise InstallError(
            f"{name} is an ensemble: install its parts ({', '.join(sorted(set(entry.parts.values())))})."
        )
    if not entry.files:
        raise InstallError(f"{name} has no official download: write it with create_demo_model or copy it in.")
    folder = model_folder(repo, name, entry)
    return [Download(download_url(file.url, base_url), folder / file.name, file.sha256) for file in entry.files]


def _demucs_bag_yaml(name: str, entry: Entry) -> str:
    """NAME.yaml as demucs ships it (demucs/remote/NAME.yaml: weights, segment), for our members.
    Found without importing demucs, which would import torch."""
    import yaml

    spec = importlib.util.find_spec("demucs")
    remote = Path(next(iter(spec.submodule_search_locations))) / "remote" / f"{name}.yaml"
    bag = yaml.safe_load(remote.read_text()) if remote.is_file() else {}
    bag["models"] = list(entry.demucs_members)
    return yaml.safe_dump(bag, default_flow_style=None)


def _published_sha256(response) -> str:
    """The SHA-256 a host publishes for a file: HuggingFace's X-Linked-Etag for LFS files."""
    for header in ("X-Linked-Etag", "ETag"):
        value = response.headers.get(header, "").strip('"W/').lower()
        if SHA256.fullmatch(value):
            return value
    return ""


def _hash_file(path: Path, digest) -> None:
    with open(path, "rb") as file:
        while block := file.read(BLOCK_BYTES):
            digest.update(block)


def _receive(response, partial: Path, mode: str, done: int, digest, progress) -> None:
    """Append the response's body to the partial file; InstallError when the body is cut short."""
    import requests

    length = response.headers.get("Content-Length")
    total = done + int(length) if length is not None else None
    try:
        with open(partial, mode) as file:
            for block in response.iter_content(BLOCK_BYTES):
                file.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
    except requests.RequestException as error:
        raise InstallError(
            f"{response.url} was cut at {done} bytes ({error}); run the command again to resume."
        ) from None
    if total is not None and done != total:
        raise InstallError(f"{response.url} was cut at {done} of {total} bytes; run the command again to resume.")


def fetch(
    download: Download,
    *,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[Path, str]:
    """Download one file into the partial file beside its target, resuming an earlier one, and check
    it; the partial file and the checksum it was checked against ("" for none). ChecksumMismatch
    (the partial file deleted) when it fails. progress(bytes_done, bytes_total or None) is called as
    blocks arrive."""
    import requests

    target = download.target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = requests.get(download.url, headers=headers, stream=True, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        raise InstallError(f"Could not reach {download.url}: {error}") from None
    with response:
        whole = response.status_code == 416 and have  # the partial file was complete already
        if response.status_code not in (200, 206) and not whole:
            raise InstallError(f"{download.url} answered {response.status_code}.")
        expected = download.sha256 or _published_sha256(response)
        digest = hashlib.sha256()
        if response.status_code == 206 or whole:
            _hash_file(partial, digest)  # the bytes we have count towards the checksum
        if not whole:
            # 200: no Range asked, or the server ignored it: start over.
            resume = response.status_code == 206
            _receive(response, partial, "ab" if resume else "wb", have if resume else 0, digest, progress)
    actual = digest.hexdigest()
    if expected and not actual.startswith(expected.lower()):
        partial.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{target.name}: checksum {actual[: len(expected)]} is not the published {expected}.")
    return partial, expected


def partial_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.partial")


def _discard(downloads: list[Download], folder: Path | None) -> None:
    """Delete the model's partial files, and its own folder (a RoFormer's) when that is left empty;
    the model folder itself stays (it may be a mounted volume)."""
    for download in downloads:
        partial_path(download.target).unlink(missing_ok=True)
    if folder is not None and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def install(
    name: str,
    *,
    repo: Path,
    base_url: str = "",
    allow_unverified: bool = False,
    progress_for: Callable[[Path], Callable[[int, int | None], None]] | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Path]:
    """Download a catalogue model's files into `repo`; the files written, the one that makes the
    model count as installed last. warn(message) hears of each file installed unverified."""
    entry = CATALOGUE.get(name)
    if entry is None:
        raise InstallError(f"Unknown model {name!r}; choose one of: {', '.join(CATALOGUE)}.")
    downloads = downloads_for(name, Path(repo), base_url)
    unverified = [download.target.name for download in downloads if not download.sha256]
    if unverified and not allow_unverified:
        raise InstallError(
            f"The catalogue has no checksum for {', '.join(unverified)}; refusing to install {name} "
            "(--allow-unverified installs it anyway)."
        )
    checked = []
    try:
        for download in downloads:
            progress = progress_for(download.target) if progress_for is not None else None
            checked.append(fetch(download, progress=progress))
    except ChecksumMismatch:
        folder = model_folder(Path(repo), name, entry)
        _discard(downloads, folder if folder != Path(repo) else None)
        raise
    written = []
    for download, (partial, expected) in zip(downloads, checked, strict=True):
        if not download.sha256 and warn is not None:
            how = f"checked only against the SHA-256 its host publishes ({expected})" if expected else "not checked"
            warn(f"{download.target.name}: no checksum in the catalogue; installed {how} (--allow-unverified).")
        os.chmod(partial, 0o644)
        os.replace(partial, download.target)
        written.append(download.target)
    if entry.family == "demucs":
        bag = Path(repo) / f"{name}.yaml"
        temp = bag.with_name(f".{bag.name}.partial")
        temp.write_text(_demucs_bag_yaml(name, entry))
        os.replace(temp, bag)
        written.append(bag)
    return written


def size_on_disk(name: str, repo: Path) -> int:
    """Bytes the model's files take in `repo` (0 when it is not there)."""
    entry = CATALOGUE[name]
    repo = Path(repo)
    if entry.family == "roformer":
        folder = repo / name
        return sum(path.stat().st_size for path in folder.iterdir() if path.is_file()) if folder.is_dir() else 0
    if entry.family == "ensemble" or not repo.is_dir():
        return 0
    signatures = {*entry.demucs_members, name}
    total = 0
    for path in repo.iterdir():
        stem = path.stem.rsplit("-", 1)[0] if path.suffix == ".th" else path.stem
        if path.is_file() and path.suffix in (".th", ".yaml") and stem in signatures:
            total += path.stat().st_size
    return total
