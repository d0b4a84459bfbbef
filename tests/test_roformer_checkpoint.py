"""Checkpoints as the Music-Source-Separation-Training project (MSST) saves them, loaded into the
`bs-roformer` package's networks (separation/engine/roformer_checkpoint.py).

The MSST names below are facts: the state-dict keys MSST's own models/bs_roformer/ code gives a
network of one layer (Mel-Band) and two layers (BS), each with one time and one frequency
transformer of depth 1. The renaming is checked against them, and a checkpoint in that layout, bare
or wrapped or prefixed as MSST's training scripts save it, must give the package network's outputs."""

import pytest
import torch
import yaml

from separation.engine.errors import ModelUnavailable
from separation.engine.roformer import RoformerModel
from separation.engine.roformer_checkpoint import (
    load_msst_state,
    msst_to_package,
    network_class,
    network_kwargs,
    package_to_msst,
    transformer_shift,
)

pytestmark = pytest.mark.unit

# Under MSST's layers.N.T (T: 0 time, 1 frequency transformer): its attention and feed-forward.
MSST_TRANSFORMER_KEYS = [
    "layers.0.0.rotary_embed.freqs",
    "layers.0.0.norm.gamma",
    "layers.0.0.to_qkv.weight",
    "layers.0.0.to_gates.weight",
    "layers.0.0.to_gates.bias",
    "layers.0.0.to_out.0.weight",
    "layers.0.1.net.0.gamma",
    "layers.0.1.net.1.weight",
    "layers.0.1.net.1.bias",
    "layers.0.1.net.4.weight",
    "layers.0.1.net.4.bias",
]
# MSST's Mel-Band transformers end with a norm, its BS ones do not.
MSST_MEL_LAYER_KEYS = {f"layers.0.{t}.{key}" for t in (0, 1) for key in [*MSST_TRANSFORMER_KEYS, "norm.gamma"]}
MSST_BS_LAYER_KEYS = {f"layers.{n}.{t}.{key}" for n in (0, 1) for t in (0, 1) for key in MSST_TRANSFORMER_KEYS}

TINY = dict(stereo=True, num_stems=1, dim=16, heads=2, dim_head=8, time_transformer_depth=1, freq_transformer_depth=1)
MEL = dict(TINY, depth=1, num_bands=8, mask_estimator_depth=1, stft_hop_length=441)
BS = dict(TINY, depth=2, freqs_per_bands=[2] * 12 + [1001], mask_estimator_depth=1)


def package_network(model_config: dict, seed: int):
    cls = network_class(model_config)
    torch.manual_seed(seed)
    return cls(**network_kwargs(cls, model_config)).eval()


def outputs(network) -> torch.Tensor:
    generator = torch.Generator().manual_seed(5)
    with torch.inference_mode():
        return network(torch.randn(1, 2, 22050, generator=generator))


def as_msst(network) -> dict:
    return package_to_msst(network.state_dict(), shift=transformer_shift(network))


def test_the_renaming_gives_the_names_msst_saves():
    mel, bs = package_network(MEL, 1), package_network(BS, 1)

    mel_keys, bs_keys = set(as_msst(mel)), set(as_msst(bs))

    assert {key for key in mel_keys if key.startswith("layers.")} == MSST_MEL_LAYER_KEYS
    assert {key for key in bs_keys if key.startswith("layers.")} == MSST_BS_LAYER_KEYS
    assert {key for key in mel_keys if not key.startswith("layers.")} == {
        key for key in mel.state_dict() if not key.startswith("layers.")
    }


@pytest.mark.parametrize(
    "wrap",
    [
        lambda state: state,
        lambda state: {"state_dict": state},
        lambda state: {"model": state},
        lambda state: {f"module.{key}": value for key, value in state.items()},
        lambda state: {"state_dict": {f"model.{key}": value for key, value in state.items()}},
    ],
    ids=["bare", "state_dict", "model", "module-prefix", "wrapped-and-prefixed"],
)
@pytest.mark.parametrize("model_config", [MEL, BS], ids=["mel-band", "bs"])
def test_an_msst_checkpoint_loads_into_the_same_outputs(model_config, wrap):
    original = package_network(model_config, seed=1)
    fresh = package_network(model_config, seed=2)
    assert not torch.equal(outputs(original), outputs(fresh))
    if "freqs_per_bands" in model_config:
        # The package's BS layers after the first mix in the first one's attention values; MSST's
        # have no such mix, and load as mixing in nothing: the original must do the same.
        for name, parameter in original.named_parameters():
            if "to_value_residual_mix" in name:
                parameter.data.fill_(float("-inf") if name.endswith("bias") else 0.0)

    load_msst_state(fresh, wrap(as_msst(original)))

    assert torch.equal(outputs(fresh), outputs(original))


def write_model(tmp_path, state: dict, model_config: dict = MEL):
    checkpoint, config = tmp_path / "model.ckpt", tmp_path / "config.yaml"
    torch.save(state, checkpoint)
    config.write_text(
        yaml.safe_dump(
            {
                "audio": {"chunk_size": 88200, "sample_rate": 44100},
                "model": model_config,
                "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
                "inference": {"num_overlap": 2},
            }
        )
    )
    return checkpoint, config


def test_a_checkpoint_that_does_not_fit_names_its_missing_and_unexpected_keys(tmp_path):
    state = as_msst(package_network(MEL, seed=1))
    del state["layers.0.1.layers.0.0.to_qkv.weight"]
    state["layers.0.2.norm.gamma"] = torch.ones(16)

    with pytest.raises(ModelUnavailable) as error:
        RoformerModel.load(*write_model(tmp_path, state))

    assert "missing layers.0.2.layers.0.0.branch.to_qkv.weight" in str(error.value)
    assert "unexpected layers.0.3.norm.gamma" in str(error.value)


def test_a_checkpoint_of_another_size_names_the_shapes(tmp_path):
    state = as_msst(package_network(dict(MEL, dim=24), seed=1))

    with pytest.raises(ModelUnavailable, match=r"layers.0.1.layers.0.0.branch.norm.gamma \(24,\) for \(16,\)"):
        RoformerModel.load(*write_model(tmp_path, state))


def test_the_config_takes_msst_defaults_and_switches_the_package_additions_off():
    mel = network_kwargs(network_class(MEL), dict(MEL, use_torch_checkpoint=False, sage_attention=True))
    bs = network_kwargs(network_class(BS), dict(BS, zero_dc=False, skip_connection=False, mlp_expansion_factor=4))

    assert mel["zero_dc"] is True and mel["linear_transformer_depth"] == 0
    assert mel["num_residual_streams"] == 1 and mel["add_value_residual"] is False
    assert "use_torch_checkpoint" not in mel and "sage_attention" not in mel
    assert bs["zero_dc"] is False and bs["num_residual_streams"] == 1
    assert bs["freqs_per_bands"] == (2,) * 12 + (1001,)
    assert not {"skip_connection", "mlp_expansion_factor", "linear_transformer_depth"} & set(bs)


@pytest.mark.parametrize(
    "extra",
    [{"skip_connection": True}, {"mlp_expansion_factor": 2}, {"linear_transformer_depth": 1}, {"new_switch": 1}],
    ids=lambda extra: next(iter(extra)),
)
@pytest.mark.parametrize("model_config", [MEL, BS], ids=["mel-band", "bs"])
def test_the_config_refuses_what_the_package_cannot_do(model_config, extra):
    cls = network_class(model_config)

    with pytest.raises(ModelUnavailable, match=f"{next(iter(extra))}: {next(iter(extra.values()))}"):
        network_kwargs(cls, dict(model_config, **extra))


def test_msst_names_rename_both_ways():
    msst = {"layers.3.1.layers.2.0.to_qkv.weight": 1, "layers.3.1.norm.gamma": 2, "band_split.x": 3}

    package = msst_to_package(msst, shift=1)

    assert package == {
        "layers.3.2.layers.2.0.branch.to_qkv.weight": 1,
        "layers.3.2.norm.gamma": 2,
        "band_split.x": 3,
    }
    assert package_to_msst(package, shift=1) == msst
