"""How a Demucs network runs on a batch of chunks (config.backend, config.precision): in torch as
loaded, in torch with the network in half precision, or exported to ONNX and run by OpenVINO or
ONNX Runtime on the CPU. bench/README.md has what each measured; OpenVINO in float32 is the
default, the fastest on a CPU while within 60 dB of torch. A worker on a GPU runs torch whatever
the backend (OpenVINO's and ONNX Runtime's builds here are for the CPU).

HTDemucs is split at its STFT: the spectrogram before the network and the masking and inverse
STFT after it stay in torch and float32 (complex arithmetic, which neither half precision nor the
ONNX export handle well); the part between, the encoders, the cross-transformer and the decoders
(nearly all of the compute), is `HTDemucsCore`, run under autocast or exported. Older Demucs
networks run in torch as loaded whatever the settings (their log says so once), and so do RoFormer
models, whose passes call them directly (roformer.py).

The ONNX export is made here, once per network and cache folder: the file's name is a hash of the
weights, the segment and the versions of demucs and torch, so a worker finds the export a
previous start (or another worker) made, and a changed model gets a new one. It is written into
a temporary folder and renamed into place, so a reader never sees half an export.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from separation.engine.config import EngineConfig
from separation.engine.errors import EngineError

logger = logging.getLogger(__name__)

BACKENDS = ("openvino", "onnxruntime", "torch")
PRECISIONS = ("float32", "float16", "bfloat16")
ONNX_FILE = "network.onnx"

_networks: dict[tuple, object] = {}
_networks_lock = threading.Lock()


def network_for(member, config: EngineConfig, device: str):
    """A callable taking chunks [B, C, T] to sources [B, S, C, T] for this member: the member
    itself, or its split form with the core in half precision, OpenVINO or ONNX Runtime. Kept for
    the process's life, as the member is (the key is the member's id)."""
    if config.backend not in BACKENDS:
        raise EngineError(f"Unknown backend {config.backend!r}: use {', '.join(BACKENDS)}.")
    if config.precision not in PRECISIONS:
        raise EngineError(f"Unknown precision {config.precision!r}: use {', '.join(PRECISIONS)}.")
    backend = config.backend if device == "cpu" else "torch"
    if backend == "onnxruntime" and config.precision != "float32":
        raise EngineError("The onnxruntime backend runs in float32 only.")
    if backend == "torch" and config.precision == "float32":
        return member
    from demucs.htdemucs import HTDemucs

    key = (id(member), backend, config.precision, device, str(config.onnx_cache))
    with _networks_lock:
        network = _networks.get(key)
        if network is not None:
            return network
        if not isinstance(member, HTDemucs):
            logger.info(
                "The %s backend in %s runs HTDemucs networks only; %s runs in torch, float32.",
                backend,
                config.precision,
                type(member).__name__,
            )
            network = member
        elif backend == "openvino":
            network = SplitHTDemucs(member, OpenVinoCore(member, config))
        elif backend == "onnxruntime":
            network = SplitHTDemucs(member, OnnxCore(member, config))
        else:
            network = SplitHTDemucs(member, HalfCore(member, config.precision))
        _networks[key] = network
        return network


class SplitHTDemucs:
    """HTDemucs.forward in three parts: the STFT (torch, float32), the core (torch in half
    precision, OpenVINO or ONNX Runtime), then the masking and the inverse STFT (torch, float32)."""

    def __init__(self, member, core):
        self.member = member
        self.core = core

    def __call__(self, mix):
        import torch.nn.functional as F

        member = self.member
        length = mix.shape[-1]
        training_length = int(member.segment * member.samplerate)
        if length < training_length:
            mix = F.pad(mix, (0, training_length - length))
        z = member._spec(mix)
        x, xt = self.core(member._magnitude(z), mix)
        out = xt + member._ispec(member._mask(z, x), training_length)
        return out[..., :length]


def htdemucs_core_class():
    """HTDemucsCore, built on first use: torch is imported after the worker's fork (__init__.py)."""
    import torch
    from einops import rearrange

    class HTDemucsCore(torch.nn.Module):
        """The middle of demucs 4.1.0's HTDemucs.forward, from the normalised magnitude
        spectrogram and waveform to both branches' outputs, scaled back: (x [B, S, C*2, F, T],
        xt [B, S, C, L]). Inference only (no training-length bookkeeping)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, mag, mix):
            model = self.model
            x = mag
            batch, _, bins, frames = x.shape
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) / (1e-5 + std)
            meant = mix.mean(dim=(1, 2), keepdim=True)
            stdt = mix.std(dim=(1, 2), keepdim=True)
            xt = (mix - meant) / (1e-5 + stdt)

            saved, saved_t, lengths, lengths_t = [], [], [], []
            for idx, encode in enumerate(model.encoder):
                lengths.append(x.shape[-1])
                inject = None
                if idx < len(model.tencoder):
                    lengths_t.append(xt.shape[-1])
                    tenc = model.tencoder[idx]
                    xt = tenc(xt)
                    if not tenc.empty:
                        saved_t.append(xt)
                    else:
                        inject = xt  # the branches merge here
                x = encode(x, inject)
                if idx == 0 and model.freq_emb is not None:
                    bins_idx = torch.arange(x.shape[-2], device=x.device)
                    emb = model.freq_emb(bins_idx).t()[None, :, :, None].expand_as(x)
                    x = x + model.freq_emb_scale * emb
                saved.append(x)
            if model.crosstransformer:
                if model.bottom_channels:
                    f = x.shape[2]
                    x = rearrange(x, "b c f t-> b c (f t)")
                    x = model.channel_upsampler(x)
                    x = rearrange(x, "b c (f t)-> b c f t", f=f)
                    xt = model.channel_upsampler_t(xt)
                x, xt = model.crosstransformer(x, xt)
                if model.bottom_channels:
                    x = rearrange(x, "b c f t-> b c (f t)")
                    x = model.channel_downsampler(x)
                    x = rearrange(x, "b c (f t)-> b c f t", f=f)
                    xt = model.channel_downsampler_t(xt)
            for idx, decode in enumerate(model.decoder):
                x, pre = decode(x, saved.pop(-1), lengths.pop(-1))
                offset = model.depth - len(model.tdecoder)
                if idx >= offset:
                    tdec = model.tdecoder[idx - offset]
                    length_t = lengths_t.pop(-1)
                    if tdec.empty:
                        xt, _ = tdec(pre[:, :, 0], None, length_t)
                    else:
                        xt, _ = tdec(xt, saved_t.pop(-1), length_t)
            sources = len(model.sources)
            x = x.view(batch, sources, -1, bins, frames) * std[:, None] + mean[:, None]
            xt = xt.view(batch, sources, -1, mix.shape[-1]) * stdt[:, None] + meant[:, None]
            return x, xt

    return HTDemucsCore


class HalfCore:
    """The core under torch's autocast in float16 or bfloat16: convolutions and matrix products in
    half precision, normalisations and the residual sums in float32; outputs in float32."""

    def __init__(self, member, precision: str):
        import torch

        self.dtype = getattr(torch, precision)
        self.module = htdemucs_core_class()(member).eval()

    def __call__(self, mag, mix):
        import torch

        with torch.inference_mode(), torch.autocast(device_type=mix.device.type, dtype=self.dtype):
            x, xt = self.module(mag, mix)
        return x.float(), xt.float()


class OpenVinoCore:
    """The core exported to ONNX (once, cached), compiled by OpenVINO for this CPU at the configured
    precision (float32 unless asked: OpenVINO would otherwise pick bfloat16 where the CPU has it)
    and for a fixed batch of config.batch chunks: with the batch left dynamic, as exported, a job
    measured barely faster than torch; fixed, 0.81 of torch's time per segment. A smaller batch
    (a pass's last call) is padded with silence."""

    HINTS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}

    def __init__(self, member, config: EngineConfig):
        import openvino
        import torch

        core = openvino.Core()
        model = core.read_model(str(onnx_export(member, cache=config.onnx_cache)))
        self.batch = config.batch
        model.reshape({port.any_name: [self.batch, *list(port.get_partial_shape())[1:]] for port in model.inputs})
        properties = {
            "INFERENCE_PRECISION_HINT": self.HINTS[config.precision],
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(model, "CPU", properties)
        self.request = self.compiled.create_infer_request()

    def __call__(self, mag, mix):
        import torch
        import torch.nn.functional as F

        count = mag.shape[0]
        if count < self.batch:
            mag = F.pad(mag, (0, 0, 0, 0, 0, 0, 0, self.batch - count))
            mix = F.pad(mix, (0, 0, 0, 0, 0, self.batch - count))
        outputs = self.request.infer({"mag": mag.contiguous().numpy(), "mix": mix.contiguous().numpy()})
        x, xt = (outputs[self.compiled.output(index)][:count] for index in (0, 1))
        return torch.from_numpy(x.copy()), torch.from_numpy(xt.copy())


class OnnxCore:
    """The core exported to ONNX (once, cached) and run by ONNX Runtime on this worker's threads."""

    def __init__(self, member, config: EngineConfig):
        import onnxruntime
        import torch

        path = onnx_export(member, cache=config.onnx_cache)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, mag, mix):
        import torch

        x, xt = self.session.run(None, {"mag": mag.contiguous().numpy(), "mix": mix.contiguous().numpy()})
        return torch.from_numpy(x), torch.from_numpy(xt)


def onnx_key(member) -> str:
    """What the export depends on: the weights, the segment, and the versions that export it."""
    import demucs
    import torch

    digest = hashlib.sha256()
    segment = int(member.segment * member.samplerate)
    digest.update(f"{type(member).__name__}|{segment}|demucs {demucs.__version__}|torch {torch.__version__}".encode())
    for name, tensor in member.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def onnx_export(member, *, cache: Path | None) -> Path:
    """The ONNX file of this member's core: from the cache folder, or exported into it now."""
    if cache is None:
        raise EngineError("The onnxruntime backend needs a folder for its exports (DEMUCS_ONNX_CACHE).")
    folder = Path(cache) / onnx_key(member)
    if (folder / ONNX_FILE).is_file():
        return folder / ONNX_FILE
    Path(cache).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=cache))
    try:
        _export_core(member, scratch / ONNX_FILE)
        try:
            os.rename(scratch, folder)
        except OSError:
            if not (folder / ONNX_FILE).is_file():  # not another worker's export of the same
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("Exported %s to ONNX at %s.", type(member).__name__, folder)
    return folder / ONNX_FILE


def _export_core(member, path: Path) -> None:
    import torch
    from torch.export import Dim

    core = htdemucs_core_class()(member).eval()
    length = int(member.segment * member.samplerate)
    # An example batch of two: with one, the export would fix the batch size at one.
    mix = torch.zeros(2, member.audio_channels, length)
    mix[..., ::7] = 1.0  # not silence: the normalisation divides by the deviation
    mag = member._magnitude(member._spec(mix))
    batch = Dim("batch", min=1, max=64)
    with torch.no_grad():
        torch.onnx.export(
            core,
            (mag, mix),
            str(path),
            dynamo=True,
            dynamic_shapes=({0: batch}, {0: batch}),
            input_names=["mag", "mix"],
            output_names=["x", "xt"],
            external_data=True,
            verbose=False,
        )
