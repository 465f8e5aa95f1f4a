"""Load and save autoencoder weights: official sgm/ldm files, bare VAE files and diffusers folders.

Our parameter names are the sgm names without `first_stage_model.`, so official files need only the prefix
stripped. Diffusers names are translated with the table below, which is checked by numeric parity tests
against diffusers itself (its own SVD conversion script mislabels VAE tensors, so no name map is trusted
without parity).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lightning_svd.models.autoencoder import (
    AUTOENCODER_PRESETS,
    AutoencoderConfig,
    AutoencoderKL,
    configure,
)
from lightning_svd.models.state_dict_io import CheckpointError, read_state_dict, write_state_dict

OFFICIAL_PREFIX = "first_stage_model."
DIFFUSERS_WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)
DIFFUSERS_SHARD_INDEXES = (
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin.index.json",
)
DIFFUSERS_CLASSES = ("AutoencoderKL", "AutoencoderKLTemporalDecoder")

# Diffusers block <-> sgm block, and which leaf table applies inside it. `{i}`/`{j}` are copied; diffusers
# counts decoder levels from the bottom (`{up}`) and sgm from the top (`{level}` = levels - 1 - up).
DIFFUSERS_BLOCKS: tuple[tuple[str, str, str], ...] = (
    ("encoder.conv_in", "encoder.conv_in", "plain"),
    ("encoder.down_blocks.{i}.resnets.{j}", "encoder.down.{i}.block.{j}", "resnet"),
    ("encoder.down_blocks.{i}.downsamplers.0.conv", "encoder.down.{i}.downsample.conv", "plain"),
    ("encoder.mid_block.resnets.0", "encoder.mid.block_1", "resnet"),
    ("encoder.mid_block.attentions.0", "encoder.mid.attn_1", "attention"),
    ("encoder.mid_block.resnets.1", "encoder.mid.block_2", "resnet"),
    ("encoder.conv_norm_out", "encoder.norm_out", "plain"),
    ("encoder.conv_out", "encoder.conv_out", "plain"),
    ("quant_conv", "quant_conv", "plain"),
    ("post_quant_conv", "post_quant_conv", "plain"),
    ("decoder.conv_in", "decoder.conv_in", "plain"),
    ("decoder.mid_block.resnets.0", "decoder.mid.block_1", "decoder_resnet"),
    ("decoder.mid_block.attentions.0", "decoder.mid.attn_1", "attention"),
    ("decoder.mid_block.resnets.1", "decoder.mid.block_2", "decoder_resnet"),
    ("decoder.up_blocks.{up}.resnets.{j}", "decoder.up.{level}.block.{j}", "decoder_resnet"),
    ("decoder.up_blocks.{up}.upsamplers.0.conv", "decoder.up.{level}.upsample.conv", "plain"),
    ("decoder.conv_norm_out", "decoder.norm_out", "plain"),
    ("decoder.conv_out", "decoder.conv_out", "plain"),
    ("decoder.time_conv_out", "decoder.conv_out.time_mix_conv", "plain"),
)
# Sub-module names inside a block, diffusers -> sgm.
RESNET_MODULES = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "conv_shortcut": "nin_shortcut",
}
VIDEO_RESNET_MODULES = {
    **{f"spatial_res_block.{d}": s for d, s in RESNET_MODULES.items()},
    "temporal_res_block.norm1": "time_stack.in_layers.0",
    "temporal_res_block.conv1": "time_stack.in_layers.2",
    "temporal_res_block.norm2": "time_stack.out_layers.0",
    "temporal_res_block.conv2": "time_stack.out_layers.3",
}
VIDEO_RESNET_PARAMETERS = {"time_mixer.mix_factor": "mix_factor"}
ATTENTION_MODULES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
# Names written by diffusers before 0.14; read, never written.
LEGACY_ATTENTION_MODULES = {"query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}
PROJECTION_WEIGHTS = ("q.weight", "k.weight", "v.weight", "proj_out.weight")


def _leaf_table(kind: str, temporal: bool, legacy: bool) -> dict[str, str]:
    """Diffusers leaf name -> sgm leaf name for one block kind."""
    if kind == "plain":
        return {"weight": "weight", "bias": "bias"}
    modules = {
        "resnet": RESNET_MODULES,
        "decoder_resnet": VIDEO_RESNET_MODULES if temporal else RESNET_MODULES,
        "attention": {**ATTENTION_MODULES, **(LEGACY_ATTENTION_MODULES if legacy else {})},
    }[kind]
    table = {f"{d}.{p}": f"{s}.{p}" for d, s in modules.items() for p in ("weight", "bias")}
    if kind == "decoder_resnet" and temporal:
        table.update(VIDEO_RESNET_PARAMETERS)
    return table


def _block_regex(template: str) -> re.Pattern:
    escaped = re.escape(template)
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>\\d+)", escaped) + r"\.(?P<leaf>.+)$")


def _rename_key(key: str, to_sgm: bool, levels: int, temporal: bool) -> tuple[str, bool] | None:
    """(new name, whether it is an attention projection weight) of one tensor, or None if no rule fits."""
    for diffusers_block, sgm_block, kind in DIFFUSERS_BLOCKS:
        source, target = (diffusers_block, sgm_block) if to_sgm else (sgm_block, diffusers_block)
        match = _block_regex(source).match(key)
        if match is None:
            continue
        leaves = _leaf_table(kind, temporal, legacy=to_sgm)
        if not to_sgm:
            leaves = {s: d for d, s in leaves.items()}
        leaf = leaves.get(match["leaf"])
        if leaf is None:
            continue
        fields = {k: int(v) for k, v in match.groupdict().items() if k != "leaf"}
        if "up" in fields:
            fields["level"] = levels - 1 - fields["up"]
        elif "level" in fields:
            fields["up"] = levels - 1 - fields["level"]
        sgm_leaf = leaf if to_sgm else match["leaf"]
        return f"{target.format(**fields)}.{leaf}", kind == "attention" and sgm_leaf in PROJECTION_WEIGHTS
    return None


def _count_levels(keys, pattern: str) -> int:
    indices = [int(m.group(1)) for k in keys if (m := re.match(pattern, k))]
    return max(indices) + 1 if indices else 0


def _convert(state_dict: Mapping[str, torch.Tensor], to_sgm: bool) -> dict[str, torch.Tensor]:
    keys = list(state_dict)
    if to_sgm:
        levels = _count_levels(keys, r"decoder\.up_blocks\.(\d+)\.") or _count_levels(
            keys, r"encoder\.down_blocks\.(\d+)\."
        )
        temporal = any(".temporal_res_block." in k or k.startswith("decoder.time_conv_out.") for k in keys)
    else:
        levels = _count_levels(keys, r"decoder\.up\.(\d+)\.") or _count_levels(keys, r"encoder\.down\.(\d+)\.")
        temporal = any(".time_stack." in k or k.startswith("decoder.conv_out.time_mix_conv.") for k in keys)
    converted = {}
    for key, tensor in state_dict.items():
        renamed = _rename_key(key, to_sgm, levels, temporal)
        if renamed is None:  # kept under its own name so a strict load reports it as unexpected
            converted[key] = tensor
            continue
        name, projection = renamed
        if projection:  # 1x1 conv (sgm) <-> linear (diffusers)
            tensor = tensor.reshape(tensor.shape[0], -1, 1, 1) if to_sgm else tensor.flatten(1)
        converted[name] = tensor
    return converted


def diffusers_to_sgm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers `AutoencoderKL`/`AutoencoderKLTemporalDecoder` tensor names -> our (sgm) names."""
    return _convert(state_dict, to_sgm=True)


def sgm_to_diffusers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (sgm) tensor names -> diffusers names (the temporal layout when the decoder is temporal)."""
    return _convert(state_dict, to_sgm=False)


def is_diffusers_layout(keys) -> bool:
    return any(re.match(r"(encoder|decoder)\.(down_blocks|up_blocks|mid_block)\.", k) for k in keys)


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, what: str) -> None:
    """Copy `state_dict` into `module`, or raise one CheckpointError naming every missing, unexpected and
    mis-shaped tensor."""
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected)
    misshaped = sorted(
        f"{k} (file {tuple(v.shape)}, model {tuple(expected[k].shape)})"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    )
    if missing or unexpected or misshaped:
        parts = [
            f"{label} {len(names)}: {_preview(names)}"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
            if names
        ]
        raise CheckpointError(f"{source} does not fit the {what}; " + "; ".join(parts))
    module.load_state_dict(dict(state_dict), strict=True)


def _preview(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


def infer_autoencoder_config(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Architecture fields readable from the tensors themselves (sgm names)."""
    for required in ("encoder.conv_in.weight", "encoder.conv_out.weight", "decoder.conv_in.weight"):
        if required not in state_dict:
            raise CheckpointError(f"cannot infer the autoencoder architecture: the weights lack {required!r}")
    base = state_dict["encoder.conv_in.weight"].shape[0]
    levels = _count_levels(state_dict, r"encoder\.down\.(\d+)\.")
    res_blocks = _count_levels(state_dict, r"encoder\.down\.0\.block\.(\d+)\.")
    if levels == 0 or res_blocks == 0:
        raise CheckpointError("cannot infer the autoencoder architecture: no 'encoder.down.N.block.M' tensors")
    multipliers = []
    for level in range(levels):
        key = f"encoder.down.{level}.block.0.conv1.weight"
        if key not in state_dict:
            raise CheckpointError(f"cannot infer the autoencoder architecture: the weights lack {key!r}")
        multipliers.append(state_dict[key].shape[0] // base)
    temporal = "decoder.conv_out.time_mix_conv.weight" in state_dict
    conv_out = "decoder.conv_out.weight"
    options = {
        "in_channels": state_dict["encoder.conv_in.weight"].shape[1],
        "out_channels": state_dict[conv_out].shape[0] if conv_out in state_dict else 3,
        "base_channels": base,
        "channel_multipliers": tuple(multipliers),
        "res_blocks_per_level": res_blocks,
        "latent_channels": state_dict["decoder.conv_in.weight"].shape[1],
        "mid_attention": "encoder.mid.attn_1.q.weight" in state_dict,
        "use_quant_conv": "quant_conv.weight" in state_dict,
        "use_post_quant_conv": "post_quant_conv.weight" in state_dict,
        "temporal_decoder": temporal,
    }
    if temporal:
        options["video_kernel_size"] = tuple(state_dict["decoder.conv_out.time_mix_conv.weight"].shape[2:])
    return options


def read_autoencoder_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors under our names, config options the file states but the tensors cannot show).

    Accepts an official sgm file or SD 2.1 ldm checkpoint (`first_stage_model.*`), a bare VAE file
    (`encoder.*`, `decoder.*`, sgm or diffusers names) and a diffusers folder (or a pipeline folder with
    `vae/`).
    """
    path = Path(path)
    if path.is_dir():
        return _read_diffusers_folder(path)
    state_dict = read_state_dict(path)
    if any(k.startswith(OFFICIAL_PREFIX) for k in state_dict):
        state_dict = {k[len(OFFICIAL_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(OFFICIAL_PREFIX)}
    elif not any(k.startswith(("encoder.", "decoder.")) for k in state_dict):
        raise CheckpointError(
            f"{path} holds no autoencoder weights: expected keys under 'first_stage_model.' (official or "
            "SD 2.1 checkpoint) or 'encoder.'/'decoder.' (bare VAE file), or pass a diffusers folder"
        )
    if is_diffusers_layout(state_dict):
        state_dict = diffusers_to_sgm(state_dict)
    return state_dict, {}


def _read_diffusers_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    if not (folder / "config.json").is_file() and (folder / "vae" / "config.json").is_file():
        folder = folder / "vae"
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} is not a diffusers autoencoder folder: it has no config.json")
    config = json.loads(config_path.read_text())
    class_name = config.get("_class_name")
    if class_name not in DIFFUSERS_CLASSES:
        raise CheckpointError(f"{config_path} describes a {class_name!r}; expected one of {list(DIFFUSERS_CLASSES)}")
    if config.get("act_fn", "silu") != "silu":
        raise CheckpointError(f"{config_path}: act_fn {config['act_fn']!r} is not supported (only 'silu')")
    if config.get("shift_factor") not in (None, 0, 0.0):
        raise CheckpointError(f"{config_path}: latent shift_factor {config['shift_factor']} is not supported")
    state_dict = diffusers_to_sgm(_read_diffusers_weights(folder))
    options = {"scale_factor": float(config.get("scaling_factor", AutoencoderConfig.scale_factor))}
    if class_name == "AutoencoderKL":
        options["norm_groups"] = int(config.get("norm_num_groups", 32))
    return state_dict, options


def _read_diffusers_weights(folder: Path) -> dict[str, torch.Tensor]:
    for name in DIFFUSERS_WEIGHT_FILES:
        if (folder / name).is_file():
            return read_state_dict(folder / name)
    for name in DIFFUSERS_SHARD_INDEXES:
        if (folder / name).is_file():
            shards = sorted(set(json.loads((folder / name).read_text())["weight_map"].values()))
            state_dict = {}
            for shard in shards:
                state_dict.update(read_state_dict(folder / shard))
            return state_dict
    raise CheckpointError(f"{folder} has no weights: expected one of {list(DIFFUSERS_WEIGHT_FILES)}")


def load_autoencoder(
    path: str | Path, preset: str | None = None, dtype: torch.dtype | None = torch.float32, **overrides
) -> AutoencoderKL:
    """Build the autoencoder a weight file describes and load it strictly.

    Without `preset` the architecture (temporal or plain decoder, widths, quant convs) is read from the
    file; with one, that preset is built and the file must fit it. `overrides` set any
    `AutoencoderConfig` field (e.g. `decode_chunk_size`). The GroupNorm group count and the latent scale
    are invisible in tensors: they come from a diffusers config.json, else the SD defaults (32, 0.18215),
    unless overridden. dtype None keeps the file's floating dtype.
    """
    state_dict, file_options = read_autoencoder_weights(path)
    if dtype is None:
        dtype = next((v.dtype for v in state_dict.values() if v.is_floating_point()), torch.float32)
    if preset is None:
        base = AutoencoderConfig(**infer_autoencoder_config(state_dict))
    elif preset in AUTOENCODER_PRESETS:
        base = AUTOENCODER_PRESETS[preset]
    else:
        raise ValueError(f"unknown autoencoder preset {preset!r}; choose one of {sorted(AUTOENCODER_PRESETS)}")
    try:
        config = configure(base, **{**file_options, **overrides})
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from error
    model = AutoencoderKL(config).to(dtype)
    kind = "temporal-decoder autoencoder" if config.temporal_decoder else "image autoencoder"
    load_strict(model, state_dict, str(path), f"{kind} ({preset or 'inferred'} config)")
    return model


def diffusers_config(config: AutoencoderConfig) -> dict:
    """The diffusers config.json for an autoencoder, or a CheckpointError when diffusers cannot express it."""
    common = {
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "down_block_types": ["DownEncoderBlock2D"] * len(config.channel_multipliers),
        "block_out_channels": list(config.level_channels),
        "layers_per_block": config.res_blocks_per_level,
        "latent_channels": config.latent_channels,
        "scaling_factor": config.scale_factor,
        "force_upcast": True,
    }
    if config.temporal_decoder:
        fixed = {"use_quant_conv": True, "use_post_quant_conv": False, "mid_attention": True, "norm_groups": 32}
        differing = [f"{k}={getattr(config, k)}" for k, v in fixed.items() if getattr(config, k) != v]
        if differing or config.video_kernel_size != (3, 1, 1):
            raise CheckpointError(
                f"AutoencoderKLTemporalDecoder cannot express {differing or ['video_kernel_size']}; "
                "save this model in the official layout instead"
            )
        return {"_class_name": "AutoencoderKLTemporalDecoder", **common}
    return {
        "_class_name": "AutoencoderKL",
        **common,
        "up_block_types": ["UpDecoderBlock2D"] * len(config.channel_multipliers),
        "act_fn": "silu",
        "norm_num_groups": config.norm_groups,
        "use_quant_conv": config.use_quant_conv,
        "use_post_quant_conv": config.use_post_quant_conv,
        "mid_block_add_attention": config.mid_attention,
    }


def save_autoencoder(model: AutoencoderKL, path: str | Path, layout: str = "official") -> Path:
    """Write `model` as an official single file (`first_stage_model.*`), a bare file, or a diffusers folder."""
    path = Path(path)
    state_dict = model.state_dict()
    if layout == "official":
        return write_state_dict({OFFICIAL_PREFIX + k: v for k, v in state_dict.items()}, path)
    if layout == "bare":
        return write_state_dict(state_dict, path)
    if layout == "diffusers":
        config = diffusers_config(model.config)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        write_state_dict(sgm_to_diffusers(state_dict), path / DIFFUSERS_WEIGHT_FILES[0])
        return path
    raise ValueError(f"unknown layout {layout!r}; choose 'official', 'bare' or 'diffusers'")
