"""The VideoLDM UNet: the SD 2.1 UNet with a temporal partner after every spatial ResBlock and transformer.

One builder for every variant (image-only SD 2.1, image-to-video, text-to-video, tiny test models): the
structure comes from `unet_layout(config)`, which names each layer's site exactly as the released weights
do, so the official file loads strictly after stripping `model.diffusion_model.`.
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from lightning_svd.models.attention import Attention
from lightning_svd.models.blocks import (
    BlockInputs,
    Downsample,
    InputConv,
    UNetBlock,
    Upsample,
    VideoResBlock,
    VideoTransformer,
    zero_initialised,
)
from lightning_svd.models.embeddings import timestep_embedding


@dataclass
class UNetConfig:
    """Architecture of a (Video)UNet; defaults are the released SVD backbone apart from the I/O sizes.

    Attention sits at the levels in `attention_levels` (0 = full resolution) and always in the middle block.
    Heads: `heads_per_level` if given, else `channels // head_channels`. `adm_in_channels` None means no
    vector conditioning (`label_emb`). `temporal=False` builds the plain image UNet. GroupNorm epsilons:
    `resnet_eps` everywhere (and the output norm) except the ResBlocks named in `resnet_eps_overrides`
    (site path -> eps, e.g. diffusers folders use 1e-6 in some blocks); transformers use
    `transformer_norm_eps`.
    """

    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (0, 1, 2)
    head_channels: int = 64
    heads_per_level: tuple[int, ...] | None = None
    transformer_depth: int = 1
    context_dim: int = 1024
    adm_in_channels: int | None = None
    linear_projection: bool = True
    temporal: bool = True
    extra_ff_mix_layer: bool = True
    merge_factor: float = 0.5
    temporal_kernel_size: int = 3
    dropout: float = 0.0
    norm_groups: int = 32
    resnet_eps: float = 1e-5
    resnet_eps_overrides: Mapping[str, float] = field(default_factory=dict)
    transformer_norm_eps: float = 1e-6
    attention_max_batch_heads: int = 32768
    gradient_checkpointing: bool = False

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)
        self.attention_levels = tuple(self.attention_levels)
        if self.heads_per_level is not None:
            self.heads_per_level = tuple(self.heads_per_level)
        self.resnet_eps_overrides = dict(self.resnet_eps_overrides)
        levels = len(self.channel_mult)
        if not self.channel_mult or self.num_res_blocks < 1:
            raise ValueError("UNetConfig needs at least one level (channel_mult) and num_res_blocks >= 1")
        if any(level not in range(levels) for level in self.attention_levels):
            raise ValueError(f"attention_levels {self.attention_levels} must lie in 0..{levels - 1}")
        if self.heads_per_level is not None and len(self.heads_per_level) != levels:
            raise ValueError(f"heads_per_level needs one entry per level ({levels}), got {self.heads_per_level}")
        for level in range(levels):
            channels, heads = self.level_channels(level), self.heads(level)
            if channels % self.norm_groups:
                raise ValueError(f"level {level} width {channels} is not divisible by norm_groups {self.norm_groups}")
            if heads < 1 or channels % heads:
                raise ValueError(f"level {level} width {channels} cannot be split into {heads} attention heads")
        if self.temporal_kernel_size % 2 == 0:
            raise ValueError(f"temporal_kernel_size must be odd, got {self.temporal_kernel_size}")

    def level_channels(self, level: int) -> int:
        return self.model_channels * self.channel_mult[level]

    def heads(self, level: int) -> int:
        if self.heads_per_level is not None:
            return self.heads_per_level[level]
        return self.level_channels(level) // self.head_channels

    @property
    def time_embed_dim(self) -> int:
        return self.model_channels * 4

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


@dataclass(frozen=True)
class LayerSite:
    """One layer of the UNet: its released module path, its kind, and where it sits.

    stage is "down", "middle" or "up"; index counts the layers of the same kind within the level (the
    numbering diffusers uses for `resnets.{i}` / `attentions.{i}`).
    """

    path: str
    kind: str
    stage: str
    level: int
    index: int
    in_channels: int
    out_channels: int

    @property
    def block(self) -> str:
        return self.path.rsplit(".", 1)[0]


def unet_layout(config: UNetConfig) -> list[LayerSite]:
    """Every layer of the UNet in execution order, named as in the released checkpoints."""
    levels = len(config.channel_mult)
    sites = [LayerSite("input_blocks.0.0", "input_conv", "down", 0, 0, config.in_channels, config.model_channels)]
    skip_channels = [config.model_channels]
    channels = config.model_channels
    for level in range(levels):
        width = config.level_channels(level)
        for index in range(config.num_res_blocks):
            block = f"input_blocks.{len(skip_channels)}"
            sites.append(LayerSite(f"{block}.0", "resnet", "down", level, index, channels, width))
            if level in config.attention_levels:
                sites.append(LayerSite(f"{block}.1", "transformer", "down", level, index, width, width))
            channels = width
            skip_channels.append(width)
        if level != levels - 1:
            block = f"input_blocks.{len(skip_channels)}"
            sites.append(LayerSite(f"{block}.0", "downsample", "down", level, 0, width, width))
            skip_channels.append(width)
    last = levels - 1
    sites += [
        LayerSite("middle_block.0", "resnet", "middle", last, 0, channels, channels),
        LayerSite("middle_block.1", "transformer", "middle", last, 0, channels, channels),
        LayerSite("middle_block.2", "resnet", "middle", last, 1, channels, channels),
    ]
    block_index = 0
    for level in reversed(range(levels)):
        width = config.level_channels(level)
        for index in range(config.num_res_blocks + 1):
            block = f"output_blocks.{block_index}"
            sites.append(LayerSite(f"{block}.0", "resnet", "up", level, index, channels + skip_channels.pop(), width))
            position = 1
            if level in config.attention_levels:
                sites.append(LayerSite(f"{block}.1", "transformer", "up", level, index, width, width))
                position = 2
            if level and index == config.num_res_blocks:
                sites.append(LayerSite(f"{block}.{position}", "upsample", "up", level, 0, width, width))
            channels = width
            block_index += 1
    return sites


class VideoUNet(nn.Module):
    """`unet(x, c_noise, context, y=None, num_frames=T, image_only_indicator=None) -> (B*T, C_out, H, W)`.

    x: (B*T, C_in, H, W) frames of B clips; c_noise: (B*T,) noise conditioning; context: (B*T, L, D)
    cross-attention tokens; y: (B*T, adm_in_channels) vector conditioning (needed iff the model has it);
    image_only_indicator: (B, T), 1 where a frame is a still image (default zeros). When every frame is
    image-only the temporal branches are skipped, which gives exactly the spatial UNet's output.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config = dataclasses.replace(config)
        width = config.model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(width, config.time_embed_dim), nn.SiLU(), nn.Linear(config.time_embed_dim, config.time_embed_dim)
        )
        self.label_emb = None
        if config.adm_in_channels is not None:
            self.label_emb = nn.Sequential(
                nn.Sequential(
                    nn.Linear(config.adm_in_channels, config.time_embed_dim),
                    nn.SiLU(),
                    nn.Linear(config.time_embed_dim, config.time_embed_dim),
                )
            )
        blocks: dict[str, list[nn.Module]] = {}
        for site in unet_layout(config):
            blocks.setdefault(site.block, []).append(self._build_layer(site))
        self.input_blocks = nn.ModuleList(
            [UNetBlock(layers) for block, layers in blocks.items() if block.startswith("input_blocks.")]
        )
        self.middle_block = UNetBlock(blocks["middle_block"])
        self.output_blocks = nn.ModuleList(
            [UNetBlock(layers) for block, layers in blocks.items() if block.startswith("output_blocks.")]
        )
        self.out = nn.Sequential(
            nn.GroupNorm(config.norm_groups, width, eps=config.resnet_eps),
            nn.SiLU(),
            zero_initialised(nn.Conv2d(width, config.out_channels, 3, padding=1)),
        )
        self.set_gradient_checkpointing(config.gradient_checkpointing)
        self.set_attention_max_batch_heads(config.attention_max_batch_heads)

    def _build_layer(self, site: LayerSite) -> nn.Module:
        config = self.config
        builders = {
            "input_conv": lambda: InputConv(site.in_channels, site.out_channels, 3, padding=1),
            "resnet": lambda: VideoResBlock(
                site.in_channels,
                site.out_channels,
                config.time_embed_dim,
                config.resnet_eps_overrides.get(site.path, config.resnet_eps),
                config.norm_groups,
                config.dropout,
                config.temporal,
                config.temporal_kernel_size,
                config.merge_factor,
            ),
            "transformer": lambda: VideoTransformer(
                site.out_channels,
                config.heads(site.level),
                config.transformer_depth,
                config.context_dim,
                config.linear_projection,
                config.transformer_norm_eps,
                config.norm_groups,
                config.dropout,
                config.temporal,
                config.extra_ff_mix_layer,
                config.merge_factor,
            ),
            "downsample": lambda: Downsample(site.out_channels),
            "upsample": lambda: Upsample(site.out_channels),
        }
        return builders[site.kind]()

    def blocks(self) -> list[UNetBlock]:
        return [*self.input_blocks, self.middle_block, *self.output_blocks]

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each ResBlock / transformer in the backward pass instead of storing its activations."""
        self.config.gradient_checkpointing = enabled
        for block in self.blocks():
            block.gradient_checkpointing = enabled

    def set_attention_max_batch_heads(self, max_batch_heads: int) -> None:
        """Split attention calls whose (sequence x head) count exceeds this (temporal attention at high res)."""
        if max_batch_heads < 1:
            raise ValueError(f"attention_max_batch_heads must be >= 1, got {max_batch_heads}")
        self.config.attention_max_batch_heads = max_batch_heads
        for module in self.modules():
            if isinstance(module, Attention):
                module.max_batch_heads = max_batch_heads

    def _check_inputs(self, x, c_noise, context, y, num_frames, image_only_indicator) -> None:
        config = self.config
        if x.ndim != 4 or x.shape[1] != config.in_channels:
            raise ValueError(f"x must be (B*T, {config.in_channels}, H, W), got {tuple(x.shape)}")
        frames = x.shape[0]
        if num_frames < 1 or frames % num_frames:
            raise ValueError(f"x holds {frames} frames, not a multiple of num_frames={num_frames}")
        factor = config.downsampling_factor
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"H and W must be multiples of {factor}, got {tuple(x.shape[2:])}")
        if tuple(c_noise.shape) != (frames,):
            raise ValueError(f"c_noise must be ({frames},) (one value per frame), got {tuple(c_noise.shape)}")
        if context.ndim != 3 or context.shape[0] != frames or context.shape[2] != config.context_dim:
            raise ValueError(f"context must be ({frames}, L, {config.context_dim}), got {tuple(context.shape)}")
        if config.adm_in_channels is None and y is not None:
            raise ValueError("this UNet has no vector conditioning (adm_in_channels=None): pass y=None")
        if config.adm_in_channels is not None and (y is None or tuple(y.shape) != (frames, config.adm_in_channels)):
            got = None if y is None else tuple(y.shape)
            raise ValueError(f"y must be ({frames}, {config.adm_in_channels}) vector conditioning, got {got}")
        clips = frames // num_frames
        if image_only_indicator is not None and tuple(image_only_indicator.shape) != (clips, num_frames):
            raise ValueError(
                f"image_only_indicator must be ({clips}, {num_frames}), got {tuple(image_only_indicator.shape)}"
            )

    def forward(
        self,
        x: torch.Tensor,
        c_noise: torch.Tensor,
        context: torch.Tensor,
        y: torch.Tensor | None = None,
        num_frames: int = 1,
        image_only_indicator: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check_inputs(x, c_noise, context, y, num_frames, image_only_indicator)
        frames = x.shape[0]
        emb = self.time_embed(timestep_embedding(c_noise, self.config.model_channels).to(x.dtype))
        if self.label_emb is not None:
            emb = emb + self.label_emb(y.to(x.dtype))
        if image_only_indicator is None:
            image_only = torch.zeros(frames, dtype=torch.bool, device=x.device)
            run_temporal = self.config.temporal
        else:
            image_only = image_only_indicator.reshape(frames).bool()
            run_temporal = self.config.temporal and not bool(image_only.all())
        context = context.to(x.dtype)
        inputs = BlockInputs(
            emb=emb,
            context=context,
            clip_context=context.unflatten(0, (-1, num_frames))[:, 0],
            num_frames=num_frames,
            image_only=image_only,
            run_temporal=run_temporal,
        )
        h = x
        skips = []
        for block in self.input_blocks:
            h = block(h, inputs)
            skips.append(h)
        h = self.middle_block(h, inputs)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), inputs)
        return self.out(h)


# tiny: CPU tests. svd: the released image-to-video UNet (8 in: noisy + conditioning-frame latents; vector =
# fps_id, motion_bucket_id, cond_aug as 3 x 256 sinusoids). svd_t2v: the text-to-video base (vector = fps and
# motion score, 2 x 256). sd21: the SD 2.1 image UNet (stage-1 image model).
PRESETS: dict[str, UNetConfig] = {
    "tiny": UNetConfig(
        in_channels=4,
        out_channels=4,
        model_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(0,),
        head_channels=16,
        context_dim=32,
        adm_in_channels=24,
    ),
    "svd": UNetConfig(in_channels=8, out_channels=4, adm_in_channels=768),
    "svd_t2v": UNetConfig(in_channels=4, out_channels=4, adm_in_channels=512),
    "sd21": UNetConfig(in_channels=4, out_channels=4, temporal=False),
}


def check_option_names(options: Mapping[str, object]) -> None:
    """Fail on option names that are not UNetConfig fields, listing the valid ones."""
    valid = {f.name for f in dataclasses.fields(UNetConfig)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"unknown UNet option(s) {unknown}; valid options: {sorted(valid)}")


def config_with_overrides(config: UNetConfig, overrides: Mapping[str, object]) -> UNetConfig:
    """A copy of `config` with `overrides` applied; unknown option names fail with the valid ones listed."""
    check_option_names(overrides)
    return dataclasses.replace(config, **overrides)


def build_unet(preset: str, **overrides) -> VideoUNet:
    """Build a preset UNet (`tiny`, `svd`, `svd_t2v`, `sd21`) with any `UNetConfig` field overridden."""
    if preset not in PRESETS:
        raise ValueError(f"unknown UNet preset {preset!r}; choose one of {sorted(PRESETS)}")
    return VideoUNet(config_with_overrides(PRESETS[preset], overrides))
