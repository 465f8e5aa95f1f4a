"""The diffusers layout of the UNet: config.json <-> UNetConfig, and tensor names diffusers <-> released (sgm).

The name map is data (per-kind renaming tables) plus small functions over `unet_layout`, so it covers any
config. It is verified by strict loading and forward parity against diffusers in the tests.
"""

from lightning_svd.models.state_dict_io import CheckpointError
from lightning_svd.models.unet import LayerSite, UNetConfig, unet_layout

VIDEO_CLASS = "UNetSpatioTemporalConditionModel"
IMAGE_CLASS = "UNet2DConditionModel"

RESBLOCK_NAMES = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
TRANSFORMER_NAMES = {
    "time_stack": "temporal_transformer_blocks",
    "time_pos_embed.0": "time_pos_embed.linear_1",
    "time_pos_embed.2": "time_pos_embed.linear_2",
}
TOP_LEVEL_NAMES = {
    "time_embed.0": "time_embedding.linear_1",
    "time_embed.2": "time_embedding.linear_2",
    "out.0": "conv_norm_out",
    "out.2": "conv_out",
}
VECTOR_EMBEDDING = {VIDEO_CLASS: "add_embedding", IMAGE_CLASS: "class_embedding"}
STAGE_PREFIX = {"down": "down_blocks", "middle": "mid_block", "up": "up_blocks"}

# diffusers' SVD blocks hard-code GroupNorm eps 1e-6 in the ResBlocks of cross-attention down blocks and of
# all up blocks (the release trained with 1e-5 everywhere); mirrored per site so parity is exact.
VIDEO_RESNET_EPS_1E6 = {("down", True), ("up", True), ("up", False)}

# UNet2DConditionModel options this UNet reproduces only at these values.
IMAGE_FIXED_OPTIONS = {
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "only_cross_attention": False,
    "mid_block_only_cross_attention": False,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "encoder_hid_dim": None,
    "dual_cross_attention": False,
    "addition_embed_type": None,
    "num_class_embeds": None,
    "resnet_time_scale_shift": "default",
    "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "time_embedding_act_fn": None,
    "timestep_post_act": None,
    "time_cond_proj_dim": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "attention_type": "default",
    "class_embeddings_concat": False,
    "cross_attention_norm": None,
    "reverse_transformer_layers_per_block": None,
}


SITE_COLLECTION = {
    "resnet": "resnets",
    "transformer": "attentions",
    "downsample": "downsamplers",
    "upsample": "upsamplers",
}


def _diffusers_site_prefix(site: LayerSite, levels: int) -> str:
    """`down_blocks.{level}`, `mid_block` or `up_blocks.{levels-1-level}`, then e.g. `resnets.{index}`."""
    if site.stage == "middle":
        block = STAGE_PREFIX["middle"]
    else:
        block_index = levels - 1 - site.level if site.stage == "up" else site.level
        block = f"{STAGE_PREFIX[site.stage]}.{block_index}"
    return f"{block}.{SITE_COLLECTION[site.kind]}.{site.index}"


def _rename_start(name: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return name


def _diffusers_suffix(kind: str, suffix: str, diffusers_class: str) -> str:
    if kind == "resnet":
        if suffix.startswith("time_mixer."):
            return suffix
        if suffix.startswith("time_stack."):
            return "temporal_res_block." + _rename_start(suffix.removeprefix("time_stack."), RESBLOCK_NAMES)
        spatial = _rename_start(suffix, RESBLOCK_NAMES)
        return "spatial_res_block." + spatial if diffusers_class == VIDEO_CLASS else spatial
    if kind == "transformer":
        return _rename_start(suffix, TRANSFORMER_NAMES)
    if kind == "downsample":
        return _rename_start(suffix, {"op": "conv"})
    return suffix


def sgm_to_diffusers_names(config: UNetConfig, names: list[str], diffusers_class: str) -> dict[str, str]:
    """Map each released tensor name (without `model.diffusion_model.`) to its diffusers name."""
    levels = len(config.channel_mult)
    sites = {site.path: site for site in unet_layout(config)}
    vector = VECTOR_EMBEDDING[diffusers_class]
    top_level = {**TOP_LEVEL_NAMES, "label_emb.0.0": f"{vector}.linear_1", "label_emb.0.2": f"{vector}.linear_2"}
    mapping = {}
    for name in names:
        parts = name.split(".")
        depth = 2 if parts[0] == "middle_block" else 3
        site = sites.get(".".join(parts[:depth]))
        if site is None:
            mapping[name] = _rename_start(name, top_level)
        elif site.kind == "input_conv":
            mapping[name] = "conv_in." + ".".join(parts[depth:])
        else:
            suffix = _diffusers_suffix(site.kind, ".".join(parts[depth:]), diffusers_class)
            mapping[name] = f"{_diffusers_site_prefix(site, levels)}.{suffix}"
    return mapping


def _uniform(config: dict, key: str, default=None):
    value = config.get(key, default)
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise CheckpointError(f"diffusers config {key}={value}: only one value for every level is supported")
        return value[0]
    return value


def _levels_from_block_types(config: dict, cross_down: str, plain_down: str, cross_up: str, plain_up: str):
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    allowed = {cross_down, plain_down}
    if any(t not in allowed for t in down) or list(reversed(up)) != [
        cross_up if t == cross_down else plain_up for t in down
    ]:
        raise CheckpointError(
            f"unsupported diffusers block types down={down} up={up}: expected {sorted(allowed)} going down and "
            "the mirrored up blocks"
        )
    return tuple(level for level, block_type in enumerate(down) if block_type == cross_down)


def _channels(config: dict) -> tuple[int, tuple[int, ...]]:
    widths = list(config["block_out_channels"])
    if any(width % widths[0] for width in widths):
        raise CheckpointError(f"block_out_channels {widths} are not multiples of the first width")
    return widths[0], tuple(width // widths[0] for width in widths)


def _heads(value, levels: int) -> tuple[int, ...]:
    heads = tuple(value) if isinstance(value, (list, tuple)) else (value,) * levels
    if len(heads) != levels:
        raise CheckpointError(f"attention heads {value} do not give one value per level ({levels})")
    return heads


def unet_config_from_diffusers(config: dict) -> UNetConfig:
    """Translate a diffusers UNet config.json (video or image class) into the equivalent UNetConfig."""
    class_name = config.get("_class_name")
    if class_name == VIDEO_CLASS:
        return _video_config(config)
    if class_name == IMAGE_CLASS:
        return _image_config(config)
    raise CheckpointError(f"config.json describes {class_name!r}; expected {VIDEO_CLASS} or {IMAGE_CLASS}")


def _video_config(config: dict) -> UNetConfig:
    model_channels, channel_mult = _channels(config)
    attention_levels = _levels_from_block_types(
        config,
        "CrossAttnDownBlockSpatioTemporal",
        "DownBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "UpBlockSpatioTemporal",
    )
    base = UNetConfig(
        in_channels=config.get("in_channels", 8),
        out_channels=config.get("out_channels", 4),
        model_channels=model_channels,
        channel_mult=channel_mult,
        num_res_blocks=_uniform(config, "layers_per_block", 2),
        attention_levels=attention_levels,
        heads_per_level=_heads(config.get("num_attention_heads", (5, 10, 20, 20)), len(channel_mult)),
        transformer_depth=_uniform(config, "transformer_layers_per_block", 1),
        context_dim=_uniform(config, "cross_attention_dim", 1024),
        adm_in_channels=config.get("projection_class_embeddings_input_dim", 768),
        temporal=True,
        extra_ff_mix_layer=True,
        linear_projection=True,
    )
    overrides = {
        site.path: 1e-6
        for site in unet_layout(base)
        if site.kind == "resnet" and (site.stage, site.level in attention_levels) in VIDEO_RESNET_EPS_1E6
    }
    base.resnet_eps_overrides = overrides
    return base


def _option_matches(value, supported) -> bool:
    """Off-switches (False) may be given as any falsy value or a per-level list of them."""
    if supported is False:
        return not any(value) if isinstance(value, (list, tuple)) else not value
    return value == supported


def _image_config(config: dict) -> UNetConfig:
    for key, supported in IMAGE_FIXED_OPTIONS.items():
        if key in config and not _option_matches(config[key], supported):
            raise CheckpointError(
                f"UNet2DConditionModel option {key}={config[key]!r} is not supported (only {supported!r})"
            )
    class_embed_type = config.get("class_embed_type")
    if class_embed_type not in (None, "projection"):
        raise CheckpointError(f"UNet2DConditionModel class_embed_type={class_embed_type!r} is not supported")
    model_channels, channel_mult = _channels(config)
    attention_levels = _levels_from_block_types(
        config, "CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"
    )
    heads = config.get("num_attention_heads") or config.get("attention_head_dim", 8)
    return UNetConfig(
        in_channels=config.get("in_channels", 4),
        out_channels=config.get("out_channels", 4),
        model_channels=model_channels,
        channel_mult=channel_mult,
        num_res_blocks=_uniform(config, "layers_per_block", 2),
        attention_levels=attention_levels,
        heads_per_level=_heads(heads, len(channel_mult)),
        transformer_depth=_uniform(config, "transformer_layers_per_block", 1),
        context_dim=_uniform(config, "cross_attention_dim", 1280),
        adm_in_channels=config.get("projection_class_embeddings_input_dim") if class_embed_type else None,
        linear_projection=bool(config.get("use_linear_projection", False)),
        temporal=False,
        norm_groups=config.get("norm_num_groups", 32),
        resnet_eps=config.get("norm_eps", 1e-5),
        dropout=config.get("dropout", 0.0),
    )


def diffusers_config(config: UNetConfig, addition_time_embed_dim: int = 256) -> dict:
    """The diffusers config.json for a UNetConfig: the video class if temporal, else the image class.

    The video class embeds each micro-conditioning scalar itself with `addition_time_embed_dim` sinusoid
    channels (256 in SVD); weight files do not record it, so it is an argument.
    """
    levels = len(config.channel_mult)
    widths = [config.level_channels(level) for level in range(levels)]
    heads = [config.heads(level) for level in range(levels)]
    if config.transformer_depth < 1:
        raise CheckpointError("diffusers UNets need at least one transformer layer per attention block")
    if config.temporal:
        problems = {
            "adm_in_channels (vector conditioning)": config.adm_in_channels is not None,
            "extra_ff_mix_layer=True": config.extra_ff_mix_layer,
            "linear_projection=True": config.linear_projection,
            "norm_groups=32": config.norm_groups == 32,
            "temporal_kernel_size=3": config.temporal_kernel_size == 3,
            f"adm_in_channels divisible by addition_time_embed_dim={addition_time_embed_dim}": (
                config.adm_in_channels or 0
            )
            % addition_time_embed_dim
            == 0,
        }
        missing = [need for need, ok in problems.items() if not ok]
        if missing:
            raise CheckpointError(f"{VIDEO_CLASS} cannot represent this UNet: it requires {', '.join(missing)}")
        return {
            "_class_name": VIDEO_CLASS,
            "sample_size": None,
            "in_channels": config.in_channels,
            "out_channels": config.out_channels,
            "down_block_types": [
                "CrossAttnDownBlockSpatioTemporal" if level in config.attention_levels else "DownBlockSpatioTemporal"
                for level in range(levels)
            ],
            "up_block_types": [
                "CrossAttnUpBlockSpatioTemporal" if level in config.attention_levels else "UpBlockSpatioTemporal"
                for level in reversed(range(levels))
            ],
            "block_out_channels": widths,
            "addition_time_embed_dim": addition_time_embed_dim,
            "projection_class_embeddings_input_dim": config.adm_in_channels,
            "layers_per_block": config.num_res_blocks,
            "cross_attention_dim": config.context_dim,
            "transformer_layers_per_block": config.transformer_depth,
            "num_attention_heads": heads,
            "num_frames": 25,
        }
    image = {
        "_class_name": IMAGE_CLASS,
        "sample_size": None,
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "down_block_types": [
            "CrossAttnDownBlock2D" if level in config.attention_levels else "DownBlock2D" for level in range(levels)
        ],
        "up_block_types": [
            "CrossAttnUpBlock2D" if level in config.attention_levels else "UpBlock2D"
            for level in reversed(range(levels))
        ],
        "block_out_channels": widths,
        "layers_per_block": config.num_res_blocks,
        "cross_attention_dim": config.context_dim,
        "transformer_layers_per_block": config.transformer_depth,
        "attention_head_dim": heads,
        "use_linear_projection": config.linear_projection,
        "norm_num_groups": config.norm_groups,
        "norm_eps": config.resnet_eps,
        "dropout": config.dropout,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }
    if config.adm_in_channels is not None:
        image["class_embed_type"] = "projection"
        image["projection_class_embeddings_input_dim"] = config.adm_in_channels
    return image
