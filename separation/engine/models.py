"""Which models are installed, and loading them: once per worker process, on its device.

`model_is_installed` runs in the web process, so it reads folders and YAML only (no torch, no
network). `load_model` and `resolve_device` belong in the worker, after django-q2's fork: they
import torch, may query CUDA and set torch's thread count. Loaded models stay in this process's
cache for the worker's life.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

from separation.engine.config import EngineConfig
from separation.engine.errors import EngineError, ModelUnavailable

logger = logging.getLogger(__name__)

# demucs.hf.DEFAULT_NAMESPACE; copied because importing demucs.hf imports torch.
HF_NAMESPACE = "adefossez"


def _hf_repo_name(name: str) -> str:
    """demucs.hf.hf_repo_name, copied: importing demucs.hf would import torch."""
    if name == "htdemucs":
        return "HTDemucs"
    if name.startswith("htdemucs_"):
        return "HTDemucs-" + name[len("htdemucs_") :]
    return "Demucs-" + name


def _local_signatures(repo: Path) -> set[str]:
    """Signatures demucs.repo.LocalRepo finds in a folder: NAME.th and NAME-<checksum>.th."""
    signatures = set()
    for file in repo.iterdir():
        if file.suffix == ".th":
            signatures.add(file.stem.rsplit("-", 1)[0] if "-" in file.stem else file.stem)
    return signatures


def _bag_members(yaml_path: Path) -> list[str] | None:
    import yaml

    try:
        with open(yaml_path) as file:
            bag = yaml.safe_load(file)
        members = bag["models"]
    except Exception:
        return None
    if not isinstance(members, list) or not members:
        return None
    return [str(member) for member in members]


ROFORMER_CHECKPOINT = "model.ckpt"
ROFORMER_CONFIG = "config.yaml"


def roformer_files(name: str, repo: Path) -> tuple[Path, Path]:
    """A RoFormer in the Music-Source-Separation-Training format: its checkpoint and YAML config,
    in a folder of its own named after the model."""
    return repo / name / ROFORMER_CHECKPOINT, repo / name / ROFORMER_CONFIG


def _installed_in_repo(name: str, repo: Path) -> bool:
    try:
        if not repo.is_dir():
            return False
        if all(path.is_file() for path in roformer_files(name, repo)):
            return True
        signatures = _local_signatures(repo)
    except OSError:
        return False
    if name in signatures:
        return True
    bag = repo / f"{name}.yaml"
    if not bag.is_file():
        return False
    members = _bag_members(bag)
    return members is not None and all(member in signatures for member in members)


def _installed_in_hf_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    name = name.removeprefix("hf://")
    namespace, _, short = name.rpartition("/")
    repo_id = f"{namespace or HF_NAMESPACE}/{_hf_repo_name(short)}"
    try:
        yaml_path = try_to_load_from_cache(repo_id, f"{short}.yaml")
        if not isinstance(yaml_path, str):
            return False
        members = _bag_members(Path(yaml_path))
        if members is None:
            return False
        return all(isinstance(try_to_load_from_cache(repo_id, f"{sig}.safetensors"), str) for sig in members)
    except Exception:
        return False


def model_is_installed(name: str, model_repo: Path | None) -> bool:
    """True when the weights are on disk: NAME.th / NAME-<checksum>.th or a complete NAME.yaml
    bag in model_repo, or the bag in the HuggingFace cache. No network, no torch."""
    if not name:
        return False
    if model_repo is not None and _installed_in_repo(name, Path(model_repo)):
        return True
    return _installed_in_hf_cache(name)


_models: dict[tuple[str, str | None, str], object] = {}
_models_lock = threading.Lock()
_torch_configured = False


def resolve_device(preference: str) -> str:
    """ "auto" -> "cuda" when available else "cpu"; "cpu", "cuda", "cuda:N" are checked."""
    import torch

    preference = (preference or "auto").strip().lower()
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", preference)
    if match is None:
        raise EngineError(f"Unknown device {preference!r}: use auto, cpu, cuda or cuda:N.")
    if not torch.cuda.is_available():
        raise EngineError(f"The device {preference!r} was requested but CUDA is not available.")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise EngineError(f"The device {preference!r} does not exist ({torch.cuda.device_count()} GPU(s)).")
    return preference


def _configure_torch(workers: int, device: str) -> None:
    """Once per process: split this machine's cores between the worker processes, and on a CPU
    turn off nn.MultiheadAttention's inference fast path, which computes self-attention with
    explicit bmm and softmax; the regular path uses scaled_dot_product_attention (measured on
    htdemucs with torch 2.13: 11% less time per segment, outputs within 5e-7). Running two
    chunks at once on half the cores each was measured no faster, so chunks run one by one."""
    global _torch_configured
    if _torch_configured:
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, workers)))
    if device == "cpu":
        torch.backends.mha.set_fastpath_enabled(False)
    _torch_configured = True


def load_model(name: str, config: EngineConfig) -> tuple[object, bool]:
    """The model `name` (a demucs model or bag, or a RoformerModel), on its device in eval mode, and
    whether this call loaded it (False: it came from this process's cache, which keeps one per
    (name, model_repo, device)). A model installed after the worker started is loaded on first use."""
    device = resolve_device(config.device)
    repo = Path(config.model_repo) if config.model_repo is not None else None
    key = (name, str(repo) if repo is not None else None, device)
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            return model, False
        _configure_torch(config.workers, device)
        try:
            from demucs.pretrained import get_model

            from separation.engine.roformer import RoformerModel

            if repo is not None and all(path.is_file() for path in roformer_files(name, repo)):
                model = RoformerModel.load(*roformer_files(name, repo))
            elif repo is not None and _installed_in_repo(name, repo):
                model = get_model(name, repo=repo)
            else:
                # The normal demucs way: the HuggingFace hub (its cache when offline), then the
                # legacy download repo. Without network this fails (set HF_HUB_OFFLINE=1 to
                # make it fail at once rather than after the hub's retries).
                model = get_model(name)
            model.to(device)
            model.eval()
        except (Exception, SystemExit) as error:  # demucs calls sys.exit() on some errors
            logger.warning("Could not load the model %r: %r", name, error)
            raise ModelUnavailable(f"The model {name!r} is not available on this server.") from error
        _models[key] = model
        return model, True
