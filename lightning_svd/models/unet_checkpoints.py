"""Load and save UNet weights: official sgm single files, SD 2.1 ldm checkpoints and diffusers folders.

`load_unet(path)` infers the architecture from the file (tensor shapes for single files, config.json for
diffusers folders) and loads strictly. The one allowed gap: layers the file's model never had, i.e. temporal
layers (a `temporal=True` override on an image checkpoint) or the vector embedding (`adm_in_channels=...` on
a checkpoint without `label_emb`); those start as the release initialises them.
"""

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lightning_svd.models.state_dict_io import CheckpointError, read_state_dict, write_state_dict
from lightning_svd.models.unet import UNetConfig, VideoUNet, check_option_names, config_with_overrides
from lightning_svd.models.unet_diffusers import diffusers_config, sgm_to_diffusers_names, unet_config_from_diffusers

OFFICIAL_PREFIX = "model.diffusion_model."
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model"
TEMPORAL_KEY = re.compile(r"\.(time_stack|time_mixer|time_pos_embed)\.")
SHOWN_PER_LIST = 5
HEADS_METADATA = "lightning_svd.unet_heads_per_level"


def official_unet_tensors(tensors: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The UNet tensors of a single file, prefix stripped; other models' tensors (VAE, conditioner) ignored."""
    unet = {k.removeprefix(OFFICIAL_PREFIX): v for k, v in tensors.items() if k.startswith(OFFICIAL_PREFIX)}
    if unet:
        return unet
    if "input_blocks.0.0.weight" in tensors:
        return dict(tensors)
    raise CheckpointError(
        f"{source} holds no UNet weights: expected keys under '{OFFICIAL_PREFIX}' (official/ldm checkpoints) or a "
        "bare UNet state dict with 'input_blocks.0.0.weight'; for a diffusers UNet pass its folder"
    )


def infer_config(
    tensors: Mapping[str, torch.Tensor], source: str, overrides: Mapping[str, object] | None = None
) -> UNetConfig:
    """Architecture from tensor shapes, with `overrides` applied on top.

    Head counts are not stored in weight files: 64 channels per head is assumed (SD 2.x, SVD) unless
    `head_channels` or `heads_per_level` is overridden.
    """
    try:
        conv_in = tensors["input_blocks.0.0.weight"]
        model_channels = conv_in.shape[0]
        blocks = {int(k.split(".")[1]) for k in tensors if k.startswith("input_blocks.")}
        downsamples = sorted(i for i in blocks if f"input_blocks.{i}.0.op.weight" in tensors)
        num_res_blocks = downsamples[0] - 1 if downsamples else max(blocks)
        first_blocks = [1 + level * (num_res_blocks + 1) for level in range(len(downsamples) + 1)]
        temporal_conv = tensors.get("middle_block.0.time_stack.in_layers.2.weight")
        label_emb = tensors.get("label_emb.0.0.weight")
        inferred = {
            "in_channels": conv_in.shape[1],
            "out_channels": tensors["out.2.weight"].shape[0],
            "model_channels": model_channels,
            "channel_mult": tuple(
                tensors[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0] // model_channels for i in first_blocks
            ),
            "num_res_blocks": num_res_blocks,
            "attention_levels": tuple(
                level for level, i in enumerate(first_blocks) if f"input_blocks.{i}.1.proj_in.weight" in tensors
            ),
            "transformer_depth": len(
                {k.split(".")[3] for k in tensors if k.startswith("middle_block.1.transformer_blocks.")}
            ),
            "context_dim": tensors["middle_block.1.transformer_blocks.0.attn2.to_k.weight"].shape[1],
            "adm_in_channels": None if label_emb is None else label_emb.shape[1],
            "linear_projection": tensors["middle_block.1.proj_in.weight"].ndim == 2,
            "temporal": temporal_conv is not None,
            "extra_ff_mix_layer": any(".time_stack.0.ff_in." in k for k in tensors),
            "temporal_kernel_size": 3 if temporal_conv is None else temporal_conv.shape[2],
        }
    except (KeyError, IndexError, ValueError) as error:
        raise CheckpointError(
            f"cannot infer a UNet architecture from {source} (missing or malformed tensor: {error})"
        ) from error
    overrides = dict(overrides or {})
    try:
        check_option_names(overrides)
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    try:
        return UNetConfig(**{**inferred, **overrides})
    except (ValueError, TypeError) as error:
        raise CheckpointError(
            f"{source}: {error} (weight files do not store attention head counts: 64 channels per head is assumed "
            "unless head_channels= or heads_per_level= is given)"
        ) from error


def stored_heads(path: Path) -> dict[str, tuple[int, ...]]:
    """`heads_per_level` from a safetensors file written by `save_unet_official`, else nothing."""
    if path.suffix != ".safetensors":
        return {}
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if HEADS_METADATA not in metadata:
        return {}
    return {"heads_per_level": tuple(json.loads(metadata[HEADS_METADATA]))}


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_PER_LIST])
    more = len(names) - SHOWN_PER_LIST
    return f"[{shown}{f', ... (+{more} more)' if more > 0 else ''}]"


def _fresh_groups(file_keys: set[str]) -> list:
    """Predicates for model keys a file may lack because its model never had those layers."""
    fresh = []
    if not any(TEMPORAL_KEY.search("." + k) for k in file_keys):
        fresh.append(lambda key: TEMPORAL_KEY.search("." + key) is not None)
    if not any(k.startswith("label_emb.") for k in file_keys):
        fresh.append(lambda key: key.startswith("label_emb."))
    return fresh


def check_fit(expected: Mapping[str, torch.Size], tensors: Mapping[str, torch.Tensor], source: str) -> set[str]:
    """Raise a CheckpointError naming every missing, unexpected and mis-shaped key; return the model keys
    that start freshly initialised (whole layer groups the file's model never had)."""
    fresh_groups = _fresh_groups(set(tensors))
    absent = [k for k in expected if k not in tensors]
    fresh = {k for k in absent if any(group(k) for group in fresh_groups)}
    missing = [k for k in absent if k not in fresh]
    unexpected = [k for k in tensors if k not in expected]
    misshaped = [
        f"{k}: file {list(tensors[k].shape)} vs model {list(expected[k])}"
        for k in expected
        if k in tensors and tensors[k].shape != expected[k]
    ]
    if missing or unexpected or misshaped:
        raise CheckpointError(
            f"{source} does not fit the UNet: {len(missing)} missing {_listed(missing)}; "
            f"{len(unexpected)} unexpected {_listed(unexpected)}; {len(misshaped)} mis-shaped {_listed(misshaped)}"
        )
    return fresh


def unet_from_tensors(
    config: UNetConfig, tensors: Mapping[str, torch.Tensor], source: str, dtype: torch.dtype | None
) -> VideoUNet:
    """Build the UNet and load `tensors` (released names) strictly; dtype None keeps the file's dtype."""
    if dtype is None:
        dtype = next((v.dtype for v in tensors.values() if v.is_floating_point()), torch.float32)
    with torch.device("meta"):
        skeleton = VideoUNet(config)
    fresh = check_fit({k: v.shape for k, v in skeleton.state_dict().items()}, tensors, source)
    tensors = {k: v.to(dtype) for k, v in tensors.items()}
    if not fresh:
        skeleton.load_state_dict(tensors, strict=True, assign=True)
        return skeleton
    model = VideoUNet(config).to(dtype)
    model.load_state_dict(tensors, strict=False)
    return model


def _diffusers_folder(path: Path) -> Path:
    if (path / "config.json").is_file():
        return path
    if (path / "unet" / "config.json").is_file():
        return path / "unet"
    raise CheckpointError(f"{path} is a folder without config.json (nor unet/config.json): not a diffusers UNet")


def read_diffusers_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a diffusers model folder: single file, sharded index, or a single variant file."""
    for suffix in (".safetensors", ".bin"):
        single = folder / f"{DIFFUSERS_WEIGHTS}{suffix}"
        if single.is_file():
            return read_state_dict(single)
        index = folder / f"{DIFFUSERS_WEIGHTS}{suffix}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in read_state_dict(folder / shard).items()}
    variants = sorted(folder.glob(f"{DIFFUSERS_WEIGHTS}.*.safetensors"))
    if len(variants) == 1:
        return read_state_dict(variants[0])
    raise CheckpointError(
        f"{folder} has no {DIFFUSERS_WEIGHTS}.safetensors / .bin (or a sharded index, or exactly one variant file); "
        f"found variants: {[v.name for v in variants]}"
    )


def read_diffusers_unet(path: Path) -> tuple[UNetConfig, dict[str, torch.Tensor]]:
    """Config and tensors of a diffusers UNet folder, the tensors renamed to the released names."""
    folder = _diffusers_folder(path)
    try:
        raw_config = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{folder / 'config.json'} is not valid JSON: {error}") from error
    config = unet_config_from_diffusers(raw_config)
    with torch.device("meta"):
        names = list(VideoUNet(config).state_dict())
    to_sgm = {v: k for k, v in sgm_to_diffusers_names(config, names, raw_config["_class_name"]).items()}
    tensors = {to_sgm.get(k, k): v for k, v in read_diffusers_weights(folder).items()}
    return config, tensors


def load_unet(path: str | Path, dtype: torch.dtype | None = torch.float32, **build_overrides) -> VideoUNet:
    """Load a UNet from an official/ldm single file (.safetensors/.ckpt) or a diffusers folder, strictly.

    `build_overrides` change the inferred UNetConfig: runtime options (gradient_checkpointing,
    attention_max_batch_heads), head counts for non-SD-2.x single files, or growing an image checkpoint into a
    video model (`temporal=True`, `adm_in_channels=N`). dtype None keeps the file's floating dtype.
    """
    path = Path(path)
    if path.is_dir():
        config, tensors = read_diffusers_unet(path)
        try:
            config = config_with_overrides(config, build_overrides)
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"cannot apply {build_overrides} to the UNet in {path}: {error}") from error
    elif path.is_file():
        tensors = official_unet_tensors(read_state_dict(path), str(path))
        heads_given = {"head_channels", "heads_per_level"} & set(build_overrides)
        config = infer_config(tensors, str(path), {**({} if heads_given else stored_heads(path)), **build_overrides})
    else:
        raise CheckpointError(f"UNet weights not found: {path}")
    return unet_from_tensors(config, tensors, str(path), dtype)


def save_unet_official(unet: VideoUNet, path: str | Path) -> Path:
    """Write the UNet as an official single file (`model.diffusion_model.*` safetensors).

    The head counts, which no tensor shape reveals, go into the safetensors metadata so the file reloads
    without a `heads_per_level` argument.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"official UNet files are .safetensors; got {path.name}")
    config = unet.config
    heads = [config.heads(level) for level in range(len(config.channel_mult))]
    tensors = {OFFICIAL_PREFIX + k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata={HEADS_METADATA: json.dumps(heads)})
    partial.replace(path)
    return path


def save_unet_diffusers(unet: VideoUNet, folder: str | Path, addition_time_embed_dim: int = 256) -> Path:
    """Write the UNet as a diffusers folder: config.json + diffusion_pytorch_model.safetensors."""
    folder = Path(folder)
    config = diffusers_config(unet.config, addition_time_embed_dim)
    state = unet.state_dict()
    names = sgm_to_diffusers_names(unet.config, list(state), config["_class_name"])
    folder.mkdir(parents=True, exist_ok=True)
    write_state_dict({names[k]: v for k, v in state.items()}, folder / f"{DIFFUSERS_WEIGHTS}.safetensors")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
