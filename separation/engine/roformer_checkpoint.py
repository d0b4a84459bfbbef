"""Music-Source-Separation-Training (MSST) checkpoints and configs for the `bs-roformer` package.

MSST trains its own copy of lucidrains' BS-RoFormer and Mel-Band RoFormer and saves the network's
state dict (sometimes as {"state_dict": ...} or {"model": ...}, its keys sometimes prefixed
"module." by DataParallel or "model."). The package (1.2.x) has since grown hyper-connections
(several residual streams), value residuals and an optional linear-attention transformer in every
Mel-Band layer; with those switched off it computes what MSST's copy computes, with these names:

    MSST                                    package
    layers.N.0 / layers.N.1 (time, freq)    Mel-Band: layers.N.1 / layers.N.2 (layers.N.0: the
                                            linear one); BS: layers.N.0 / layers.N.1, as MSST
    ....layers.M.0.to_qkv.weight            ....layers.M.0.branch.to_qkv.weight (the residual wrapper)

band_split.*, mask_estimators.* and the layers' final norms have the same names. The package's
BSRoformer always mixes the first layer's attention values into the later layers' (value
residuals, no switch); MSST's checkpoints have no such mix, so it is loaded as one that mixes in
nothing (weight 0, bias -inf: sigmoid gives exactly 0, and v.lerp(first, 0) is v). The MSST config's
`model` section becomes the package's constructor arguments: MSST's defaults where the package's
differ, training-only switches dropped, and switches the package cannot honour refused.

Imports: numpy and the standard library only at import time (fork safety; engine/__init__.py).
"""

from __future__ import annotations

import inspect
import logging
import re

from separation.engine.errors import ModelUnavailable

logger = logging.getLogger(__name__)

# The package's later additions, which MSST's model code does not have: off.
PACKAGE_ADDITIONS_OFF = {"num_residual_streams": 1, "add_value_residual": False}
# MSST's defaults where the package's differ: a config that leaves them out means MSST's.
MSST_DEFAULTS = {"zero_dc": True, "linear_transformer_depth": 0}
# Switches for training or speed only (gradient checkpointing, an attention kernel): dropped.
TRAINING_ONLY = {"use_torch_checkpoint", "sage_attention"}
# Switches that change what the network computes, which the package lacks: only their neutral value.
NEUTRAL_ONLY = {"skip_connection": False, "mlp_expansion_factor": 4, "linear_transformer_depth": 0}

TRANSFORMER = re.compile(r"^layers\.(\d+)\.(\d+)\.")
RESIDUAL_BRANCH = re.compile(r"^(layers\.\d+\.\d+\.layers\.\d+\.\d+)\.")
PACKAGE_BRANCH = re.compile(r"^(layers\.\d+\.\d+\.layers\.\d+\.\d+)\.branch\.")
VALUE_RESIDUAL_MIX = re.compile(r"\.to_value_residual_mix\.(weight|bias)$")
WRAPPERS = ("state_dict", "model")
PREFIXES = ("module.", "model.")


def network_class(model_config: dict):
    """Mel-Band RoFormer configs name their number of mel bands; BS-RoFormer configs their bands."""
    from bs_roformer import BSRoformer, MelBandRoformer

    return MelBandRoformer if "num_bands" in model_config else BSRoformer


def network_kwargs(cls, model_config: dict) -> dict:
    """The MSST config's model section as the package's `cls` takes it; ModelUnavailable naming the
    keys when it asks for something the package cannot do."""
    accepted = inspect.signature(cls.__init__).parameters
    config = {**{key: value for key, value in MSST_DEFAULTS.items() if key in accepted}, **model_config}
    kwargs = {key: value for key, value in PACKAGE_ADDITIONS_OFF.items() if key in accepted}
    refused, dropped = [], []
    for key, value in config.items():
        if key in accepted:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        elif key in NEUTRAL_ONLY and value == NEUTRAL_ONLY[key] or key in TRAINING_ONLY:
            dropped.append(key)
        else:
            refused.append(f"{key}: {value!r}")
    if kwargs.get("linear_transformer_depth"):  # its layout and arithmetic are not checked against MSST's
        refused.append(f"linear_transformer_depth: {kwargs['linear_transformer_depth']!r}")
    if refused:
        raise ModelUnavailable(
            f"The RoFormer config asks for what the bs-roformer package's {cls.__name__} does not do "
            f"({'; '.join(refused)})."
        )
    if dropped:
        logger.info("RoFormer config keys not taken by %s: %s", cls.__name__, ", ".join(sorted(dropped)))
    return kwargs


def unwrap(checkpoint) -> dict:
    """The state dict inside a checkpoint as MSST saves it: bare or wrapped, keys maybe prefixed."""
    state = checkpoint
    for wrapper in WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state:
        raise ModelUnavailable("The RoFormer checkpoint holds no state dict.")
    for prefix in PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key.removeprefix(prefix): value for key, value in state.items()}
    return state


def transformer_shift(network) -> int:
    """Where MSST's first transformer of a layer sits in the package's: 1 in a MelBandRoformer (whose
    slot 0 is the linear transformer, None here), 0 in a BSRoformer (time and frequency only)."""
    return len(network.layers[0]) - 2


def msst_to_package(state: dict, *, shift: int) -> dict:
    """MSST's state-dict names as the package's modules name them (layout in the module docstring),
    for a network without a linear transformer (network_kwargs refuses one)."""

    def rename(key: str) -> str:
        key = TRANSFORMER.sub(lambda match: f"layers.{match[1]}.{int(match[2]) + shift}.", key)
        return RESIDUAL_BRANCH.sub(r"\1.branch.", key)

    return {rename(key): value for key, value in state.items()}


def package_to_msst(state: dict, *, shift: int) -> dict:
    """The inverse of msst_to_package: what MSST would save for this package network (the demo
    models are written so); value-residual mixes, which MSST has not, are left out."""

    def rename(key: str) -> str:
        key = PACKAGE_BRANCH.sub(r"\1.", key)
        return TRANSFORMER.sub(lambda match: f"layers.{match[1]}.{int(match[2]) - shift}.", key)

    return {rename(key): value for key, value in state.items() if not VALUE_RESIDUAL_MIX.search(key)}


def load_msst_state(network, checkpoint) -> None:
    """Load an MSST checkpoint (as torch.load returns it) into a package network; ModelUnavailable
    naming the missing and unexpected keys, or the mismatched shapes, when it does not fit."""
    state = msst_to_package(unwrap(checkpoint), shift=transformer_shift(network))
    expected = network.state_dict()
    for key, value in expected.items():
        if VALUE_RESIDUAL_MIX.search(key) and key not in state:
            state[key] = value.new_full(value.shape, float("-inf") if key.endswith("bias") else 0.0)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelUnavailable(
            "The RoFormer checkpoint does not fit its config's network: "
            f"missing {_some(missing)}; unexpected {_some(unexpected)}."
        )
    shapes = [
        f"{key} {tuple(state[key].shape)} for {tuple(value.shape)}"
        for key, value in expected.items()
        if tuple(state[key].shape) != tuple(value.shape)
    ]
    if shapes:
        raise ModelUnavailable(f"The RoFormer checkpoint does not fit its config's network: {_some(shapes)}.")
    network.load_state_dict(state)


def _some(items: list[str], shown: int = 5) -> str:
    if not items:
        return "none"
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
